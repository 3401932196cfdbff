"""DM2's mutual loss on relation matrices (DM2 paper, Sec. 3, eqs. 1-3).

Hand-written: no library has DM2's relational mutual loss.
"""

from __future__ import annotations

from typing import Sequence

import torch

# Squared distances below this are treated as 0 inside the square root, so the
# gradient of ||e_i - e_j|| stays finite where two embeddings coincide (i = j).
_EPS = 1e-12


def squared_distances(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``D[i, j] = ||a_i - b_j||^2`` (clamped at 0) via the Gram matrix; [A, B]."""
    if b is None:
        sq = a.pow(2).sum(1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * (a @ a.t())
    else:
        d2 = a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2.0 * (a @ b.t())
    return d2.clamp_min(0.0)


def relation_matrix(e: torch.Tensor) -> torch.Tensor:
    """DM2's relation matrix of one model over a mini-batch.

    ``Psi_ij = ||e_i - e_j||_2`` for embeddings ``e`` [N, d] -> [N, N]
    (DM2 Sec. 3.1, the definition before eq. 1). The diagonal is exactly 0 and
    the gradient is finite everywhere: distances below 1e-6 have zero gradient
    (the square root is taken of ``max(d^2, 1e-12)``) instead of NaN.
    """
    if e.dim() != 2:
        raise ValueError(f"relation_matrix expects [N, d] embeddings, got shape {tuple(e.shape)}")
    d2 = squared_distances(e)
    off_diag = 1.0 - torch.eye(e.shape[0], dtype=e.dtype, device=e.device)
    return d2.clamp_min(_EPS).sqrt() * off_diag


def dm2_mutual_loss(psi_l: torch.Tensor, psi_others: Sequence[torch.Tensor]) -> torch.Tensor:
    """DM2 mutual loss of model l against the rest of the cohort (eqs. 1-2).

    eq. 1: ``L^{l<-k} = (1/N^2) sum_i sum_j (Psi^l_ij - Psi^k_ij)^2``
    eq. 2: ``L^l_DM2 = 1/(L-1) sum_{k != l} L^{l<-k}`` (the mean over the others)

    ``psi_l`` [N, N] is model l's relation matrix (gradients flow into it);
    each of ``psi_others`` is a target and is detached, so model l's loss never
    sends gradient into model k. The caller forms eq. 3,
    ``L^l = L^l_DML + lambda * L^l_DM2``. With no others the loss is 0.
    """
    if len(psi_others) == 0:
        return psi_l.sum() * 0.0
    terms = []
    for psi_k in psi_others:
        if psi_k.shape != psi_l.shape:
            raise ValueError(
                f"relation matrices differ in shape: {tuple(psi_l.shape)} vs {tuple(psi_k.shape)}"
            )
        terms.append((psi_l - psi_k.detach().to(psi_l.dtype)).pow(2).mean())
    return torch.stack(terms).mean()
