"""DM2 relation matrix and mutual loss (DM2 eqs. 1-2) against hand-computed values."""
import math

import pytest
import torch

from benchmark.losses import dm2_mutual_loss, relation_matrix


def test_relation_matrix_is_euclidean_distance():
    e = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    expected = torch.tensor([[0.0, 3.0, 4.0], [3.0, 0.0, 5.0], [4.0, 5.0, 0.0]])
    assert torch.allclose(relation_matrix(e), expected, atol=1e-5)


def test_relation_matrix_gradient_is_finite_on_diagonal_and_duplicates():
    e = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0]], requires_grad=True)
    relation_matrix(e).sum().backward()
    assert torch.isfinite(e.grad).all()
    # d/de_2 of sum_ij Psi_ij = 2 * sum_j (e_2 - e_j)/||e_2 - e_j|| = 2 * 2 * (1,2)/sqrt(5)
    assert torch.allclose(e.grad[2], 4 * torch.tensor([1.0, 2.0]) / math.sqrt(5), atol=1e-5)


def test_mutual_loss_matches_equation_by_hand():
    e_l = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], requires_grad=True)  # Psi: 3, 4, 5
    e_k = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)  # Psi: 1, 1, sqrt2
    loss = dm2_mutual_loss(relation_matrix(e_l), [relation_matrix(e_k)])
    # (1/N^2) sum_ij (Psi^l - Psi^k)^2 with N = 3, each off-diagonal pair counted twice:
    # (2/9) * ((3-1)^2 + (4-1)^2 + (5-sqrt2)^2) = (2/9) * (4 + 9 + 12.857864376) = 5.746192084
    assert loss.item() == pytest.approx(5.746192084, rel=1e-5)
    # eq. 2: the mean over the other members; a second member equal to l adds 0
    loss2 = dm2_mutual_loss(relation_matrix(e_l), [relation_matrix(e_k), relation_matrix(e_l)])
    assert loss2.item() == pytest.approx(5.746192084 / 2, rel=1e-5)


def test_mutual_loss_sends_no_gradient_into_the_target():
    e_l = torch.randn(5, 4, requires_grad=True)
    e_k = torch.randn(5, 4, requires_grad=True)
    dm2_mutual_loss(relation_matrix(e_l), [relation_matrix(e_k)]).backward()
    assert e_k.grad is None
    assert e_l.grad is not None and e_l.grad.abs().sum() > 0


def test_mutual_loss_without_others_is_zero():
    e = torch.randn(4, 3, requires_grad=True)
    assert dm2_mutual_loss(relation_matrix(e), []).item() == 0.0
