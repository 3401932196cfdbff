"""Distillation losses (DM2 Table 4): loop references, hand cases and invariances."""
import itertools
import math

import pytest
import torch

from benchmark.errors import ConfigError
from benchmark.losses import build_distill_loss, compact_loss, darkrank_loss, rkd_da_loss


def _smooth_l1(x, y):
    d = abs(x - y)
    return 0.5 * d * d if d < 1 else d - 0.5


def _rkd_loop(s, t, wd, wa):
    """RKD-DA written out with loops over pairs and triples (float64)."""
    n = len(s)

    def dist(e):
        return [[float(torch.dist(e[i], e[j])) for j in range(n)] for i in range(n)]

    def norm(d):
        nz = [d[i][j] for i in range(n) for j in range(n) if i != j]
        m = sum(nz) / len(nz)
        return [[v / m for v in row] for row in d]

    def cos(e, i, j, k):
        u, v = e[j] - e[i], e[k] - e[i]
        if u.norm() == 0 or v.norm() == 0:
            return 0.0
        return float(u @ v / (u.norm() * v.norm()))

    ds, dt = norm(dist(s)), norm(dist(t))
    ld = sum(_smooth_l1(ds[i][j], dt[i][j]) for i in range(n) for j in range(n)) / n**2
    la = sum(_smooth_l1(cos(s, i, j, k), cos(t, i, j, k))
             for i, j, k in itertools.product(range(n), repeat=3)) / n**3
    return wd * ld + wa * la


def test_rkd_da_matches_loop_reference():
    torch.manual_seed(0)
    s, t = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    assert rkd_da_loss(s, t, 20, 40).item() == pytest.approx(_rkd_loop(s, t, 20, 40), rel=1e-6)


def test_rkd_da_is_zero_for_a_scaled_rotated_teacher_and_keeps_teacher_fixed():
    torch.manual_seed(1)
    t = torch.randn(6, 4, requires_grad=True)
    q, _ = torch.linalg.qr(torch.randn(4, 4))
    s = (3.0 * t.detach() @ q).requires_grad_()
    assert rkd_da_loss(s, t).item() == pytest.approx(0.0, abs=1e-5)
    loss = rkd_da_loss(torch.randn(6, 2, requires_grad=True), t)
    loss.backward()
    assert t.grad is None


def _darkrank_loop(s, t, alpha, beta, k):
    n, total = len(s), 0.0
    for i in range(n):
        others = sorted((j for j in range(n) if j != i), key=lambda j: float(torch.dist(t[i], t[j])))
        ranked = [-alpha * float(torch.dist(s[i], s[j])) ** beta for j in others[:k]]
        total -= sum(ranked[r] - math.log(sum(math.exp(v) for v in ranked[r:])) for r in range(k))
    return total / n


def test_darkrank_matches_loop_reference():
    torch.manual_seed(2)
    s, t = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    got = darkrank_loss(s, t, alpha=3, beta=3, lam=2.0, k=4).item()
    assert got == pytest.approx(2.0 * _darkrank_loop(s, t, 3, 3, 4), rel=1e-6)


def test_darkrank_is_smaller_when_student_ranks_like_teacher():
    # 1-D points: the teacher's neighbour order of anchor 0 is 1, 2, 3, 4
    t = torch.tensor([[0.0], [0.1], [0.3], [0.6], [1.0]])
    same = t * 0.5  # same ranking everywhere
    reversed_ = torch.tensor([[0.0], [1.0], [0.6], [0.3], [0.1]])
    assert darkrank_loss(same, t, alpha=1, beta=1, k=4) < darkrank_loss(reversed_, t, alpha=1, beta=1, k=4)


def test_compact_by_hand_and_dimension_check():
    s = torch.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    t = torch.zeros(2, 2)
    # lam * mean ||s_i - t_i|| = 10 * (0 + 5) / 2 = 25
    loss = compact_loss(s, t, lam=10)
    assert loss.item() == pytest.approx(25.0)
    loss.backward()
    assert torch.isfinite(s.grad).all()  # zero distance: zero gradient, not NaN
    with pytest.raises(ConfigError) as info:
        compact_loss(torch.randn(2, 4), torch.randn(2, 8))
    assert "\n" not in str(info.value) and "4-d vs teacher 8-d" in str(info.value)


def test_build_distill_loss_params_and_errors():
    s, t = torch.randn(6, 4), torch.randn(6, 4)
    fn = build_distill_loss("darkrank", {"alpha": 2, "k": 3})
    assert fn(s, t).item() == pytest.approx(darkrank_loss(s, t, alpha=2, beta=3, lam=1, k=3).item())
    assert build_distill_loss("rkd_da", {})(s, t).item() == pytest.approx(rkd_da_loss(s, t).item())
    for name, params, key in [
        ("rkd_da", {"lambda_angle": 1}, "distill.params.lambda_angle"),
        ("darkrank", {"k": 0}, "distill.params.k"),
        ("compact", {"lam": "x"}, "distill.params.lam"),
    ]:
        with pytest.raises(ConfigError) as info:
            build_distill_loss(name, params)
        assert str(info.value).startswith(key + ":") and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="distill.loss"):
        build_distill_loss("compact", {}, student_dim=512, teacher_dim=2048)
