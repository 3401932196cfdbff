"""ABE contrastive (eq. 10) and divergence (eq. 9) losses against hand-computed values."""
import pytest
import torch

from benchmark.losses import abe_contrastive_loss, divergence_loss


def test_abe_contrastive_all_pairs_by_hand():
    emb = torch.tensor([[0.0, 0.0], [0.6, 0.0], [0.0, 0.5]])
    labels = torch.tensor([0, 0, 1])
    # pos (0,1): D^2 = 0.36; neg (0,2): [1 - 0.25]_+ = 0.75; neg (1,2): [1 - 0.61]_+ = 0.39
    # 0.5 * 0.36 + 0.5 * (0.75 + 0.39) / 2 = 0.18 + 0.285 = 0.465
    assert abe_contrastive_loss(emb, labels, margin=1.0).item() == pytest.approx(0.465, abs=1e-6)


def test_abe_contrastive_partner_pairs_is_eq10():
    # batch = [anchors; partners]: pairs (a, b) positive and (c, d) negative
    # the negative pair lies inside the margin, so its term counts and tells the
    # readings apart: a hinge on D would give 0.38, no negative term 0.18
    a, c, b, d = [0.0, 0.0], [0.0, 0.5], [0.6, 0.0], [0.0, 1.1]
    emb = torch.tensor([a, c, b, d])
    labels = torch.tensor([0, 1, 0, 2])
    # (1/N) sum: (D^2(a,b) + [1 - D^2(c,d)]_+) / 2 = (0.36 + [1 - 0.36]_+) / 2 = 0.5
    loss = abe_contrastive_loss(emb, labels, margin=1.0, pairs="partners")
    assert loss.item() == pytest.approx(0.5, abs=1e-6)


def test_divergence_loss_by_hand():
    img1 = [[0.0, 0.0], [0.5, 0.0], [0.0, 2.0]]  # D^2: (0,1) 0.25, (0,2) 4, (1,2) 4.25
    img2 = [[1.0, 1.0]] * 3  # all learners agree: every pair D^2 = 0
    emb = torch.tensor([img1, img2], requires_grad=True)
    # image 1: ordered pairs p != q: 2 * [1 - 0.25]_+ = 1.5; image 2: 6 * 1 = 6; mean = 3.75
    loss = divergence_loss(emb, margin=1.0)
    assert loss.item() == pytest.approx(3.75, abs=1e-6)
    loss.backward()
    assert torch.isfinite(emb.grad).all()


def test_divergence_loss_single_learner_is_zero():
    assert divergence_loss(torch.randn(4, 1, 8)).item() == 0.0
