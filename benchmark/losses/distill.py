"""Embedding distillation losses of DM2 Table 4 (Sec. 4.6): RKD-DA, DarkRank (HardRank), Compact.

Hand-written: pytorch-metric-learning has no distillation losses. Every loss
takes ``student`` [B, d_s] (gradients flow) and ``teacher`` [B, d_t] (detached:
the teacher is fixed) embeddings of the same B images, in the same order.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import ConfigError

from . import _params as P
from .mutual import relation_matrix


def _normalized_distances(e: torch.Tensor) -> torch.Tensor:
    d = relation_matrix(e)
    positive = d[d > 0]
    if positive.numel() == 0:  # every embedding identical: nothing to normalise by
        return d
    return d / positive.mean()


def _angle_cosines(e: torch.Tensor) -> torch.Tensor:
    """``A[i, j, k] = cos(angle at e_i between e_j and e_k)`` = <unit(e_j - e_i), unit(e_k - e_i)>.

    Degenerate triples (j = i or k = i) have a zero difference vector and give 0.
    """
    diff = e[None, :, :] - e[:, None, :]  # [i, j] = e_j - e_i
    unit = F.normalize(diff, p=2, dim=2)
    return unit @ unit.transpose(1, 2)


def rkd_da_loss(student: torch.Tensor, teacher: torch.Tensor,
                w_distance: float = 20.0, w_angle: float = 40.0) -> torch.Tensor:
    """Relational KD, distance + angle (Park et al. 2019; DM2 Table 4 "RKD-DA").

    ``w_distance * mean_{i,j} smoothL1(psi_s_ij, psi_t_ij)
      + w_angle * mean_{i,j,k} smoothL1(A_s_ijk, A_t_ijk)``

    - psi: Euclidean distance matrix divided by its mean over non-zero entries
      (i.e. over i != j), for student and teacher separately;
    - A: the cosine of the angle at e_i formed by e_j and e_k, for every
      (i, j, k) triple; degenerate triples give 0 on both sides;
    - smooth-L1 with threshold 1 (torch default); means over all B^2 pairs and
      all B^3 triples (the zero-loss diagonal/degenerate entries included, as
      in the reference behaviour that the lambdas 20 and 40 were tuned for).

    Both terms are invariant to scaling either embedding set, so a student
    equal to c * teacher has loss 0. Dimensions may differ.
    """
    with torch.no_grad():
        t_d = _normalized_distances(teacher.detach())
        t_a = _angle_cosines(teacher.detach())
    s_d = _normalized_distances(student)
    s_a = _angle_cosines(student)
    t_d, t_a = t_d.to(s_d.dtype), t_a.to(s_a.dtype)
    return w_distance * F.smooth_l1_loss(s_d, t_d) + w_angle * F.smooth_l1_loss(s_a, t_a)


def darkrank_loss(student: torch.Tensor, teacher: torch.Tensor, alpha: float = 3.0,
                  beta: float = 3.0, lam: float = 1.0, k: int = 4) -> torch.Tensor:
    """DarkRank's HardRank loss (Chen et al. 2018; DM2 Table 4, alpha 3, beta 3, lambda 1).

    For each anchor i, pi_i = the teacher's k nearest other samples of the batch
    (Euclidean distance, nearest first; self excluded). Student scores are
    ``s_ij = -alpha * d_s(i, j)^beta``. The Plackett-Luce log-likelihood of
    the teacher's list under the student's scores, with the list's own items as
    the candidate set (the top-k list, as in the reference behaviour), is

        log P(pi_i) = sum_{r=1}^{k} [ s_{i,pi_r} - log sum_{u=r}^{k} exp(s_{i,pi_u}) ]

    and the loss is ``lam * mean_i (-log P(pi_i))``. k is capped at B - 1.
    """
    b = student.shape[0]
    k = min(int(k), b - 1)
    if k < 1:
        return student.sum() * 0.0
    with torch.no_grad():
        t_d = relation_matrix(teacher.detach())
        t_d.fill_diagonal_(float("inf"))
        order = torch.topk(t_d, k, dim=1, largest=False).indices  # [B, k], nearest first
    scores = -alpha * relation_matrix(student).pow(beta)
    ranked = scores.gather(1, order)  # [B, k] in the teacher's order
    tail_lse = torch.logcumsumexp(ranked.flip(1), dim=1).flip(1)  # logsumexp of ranks r..k
    log_lik = (ranked - tail_lse).sum(1)
    return lam * (-log_lik).mean()


def compact_loss(student: torch.Tensor, teacher: torch.Tensor, lam: float = 10.0) -> torch.Tensor:
    """Compact networks' absolute teacher loss (Yu et al. 2019; DM2 Table 4, lambda 10).

    ``lam * mean_i ||s_i - t_i||_2``: the mean distance between the student's
    and the teacher's embedding of the same image. It needs equal dimensions;
    otherwise a ConfigError says so (a concatenated 2x/4x 512-d teacher is
    1024/2048-d while DM2's student is 512-d).
    """
    if student.shape != teacher.shape:
        raise ConfigError(
            f"distill.loss: compact compares embeddings directly and needs equal dimensions, "
            f"got student {student.shape[-1]}-d vs teacher {teacher.shape[-1]}-d"
        )
    diff = student - teacher.detach().to(student.dtype)
    # sqrt of a clamped square: zero gradient (not NaN) where student == teacher
    return lam * diff.pow(2).sum(1).clamp_min(1e-12).sqrt().mean()


DISTILL_PARAMS: dict[str, dict[str, tuple[Any, P.Checker]]] = {
    "rkd_da": {
        "w_distance": (20.0, P.number(min=0)),
        "w_angle": (40.0, P.number(min=0)),
    },
    "darkrank": {
        "alpha": (3.0, P.number(min=0, min_exclusive=True)),
        "beta": (3.0, P.number(min=0, min_exclusive=True)),
        "lam": (1.0, P.number(min=0)),
        "k": (4, P.integer(min=1)),
    },
    "compact": {"lam": (10.0, P.number(min=0))},
}

_FUNCS = {"rkd_da": rkd_da_loss, "darkrank": darkrank_loss, "compact": compact_loss}


class DistillLoss(nn.Module):
    """``forward(student [B, d_s], teacher [B, d_t]) -> scalar``; no parameters."""

    def __init__(self, name: str, params: dict[str, Any]):
        super().__init__()
        self.name, self.params = name, dict(params)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return _FUNCS[self.name](student, teacher, **self.params)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, params={self.params}"


def build_distill_loss(name: str, params: Optional[dict[str, Any]] = None, *,
                       student_dim: Optional[int] = None,
                       teacher_dim: Optional[int] = None) -> DistillLoss:
    """Distillation loss ``name`` (rkd_da | darkrank | compact) with checked ``params``.

    Unknown or bad params raise a one-line ConfigError naming
    ``distill.params.<key>``. When both dims are given, compact's equal-dimension
    requirement is checked here, before any training.
    """
    if name not in DISTILL_PARAMS:
        raise ConfigError(f"distill.loss: unknown distillation loss {name!r} "
                          f"(known: {', '.join(DISTILL_PARAMS)})")
    p = P.resolve(params, DISTILL_PARAMS[name], "distill.params", f"distillation loss '{name}'")
    if name == "compact" and student_dim is not None and teacher_dim is not None \
            and student_dim != teacher_dim:
        raise ConfigError(
            f"distill.loss: compact needs the student's embedding_dim to equal the teacher's "
            f"({student_dim} != {teacher_dim}); set distill.student.embedding_dim: {teacher_dim}"
        )
    return DistillLoss(name, p)
