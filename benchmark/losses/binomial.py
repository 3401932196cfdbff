"""Binomial deviance loss (Yi et al. 2014; DM2 Table 6).

Hand-written: pytorch-metric-learning has no binomial deviance loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean [B, B] masks of positive pairs (same label, i != j) and negative pairs."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # An empty set of pairs contributes 0 (still connected to the graph).
    if not bool(mask.any()):
        return values.sum() * 0.0
    return values[mask].mean()


def binomial_deviance_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 2.0,
    beta: float = 0.5,
    c: float = 25.0,
) -> torch.Tensor:
    """Binomial deviance on the cosine similarities of all pairs of the batch.

    With ``S_ij = cos(e_i, e_j)``, over ordered pairs i != j:

        L = mean_{pos (i,j)} log(1 + exp(-alpha (S_ij - beta)))
          + mean_{neg (i,j)} log(1 + exp( alpha * c * (S_ij - beta)))

    alpha=2, beta=0.5 (DM2 Table 6, following [32]); c=25 is the negative cost
    of the common reference implementation. ``log(1+exp(x))`` is computed as
    softplus for numerical stability.
    """
    e = F.normalize(embeddings, dim=1)
    s = e @ e.t()
    pos, neg = pair_masks(labels.to(embeddings.device))
    pos_loss = F.softplus(-alpha * (s - beta))
    neg_loss = F.softplus(alpha * c * (s - beta))
    return _masked_mean(pos_loss, pos) + _masked_mean(neg_loss, neg)


class BinomialDevianceLoss(nn.Module):
    """Module form of :func:`binomial_deviance_loss`: forward(embeddings, labels)."""

    def __init__(self, alpha: float = 2.0, beta: float = 0.5, c: float = 25.0):
        super().__init__()
        self.alpha, self.beta, self.c = float(alpha), float(beta), float(c)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return binomial_deviance_loss(embeddings, labels, self.alpha, self.beta, self.c)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, c={self.c}"
