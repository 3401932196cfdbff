"""ABE's losses (ABE paper, Sec. 3.4 and 4): contrastive (eq. 10) and divergence (eq. 9).

Hand-written: eq. 10 hinges the SQUARED distance ([m - D^2]_+), which no
pytorch-metric-learning loss does (its ContrastiveLoss hinges D), and the
divergence loss exists nowhere else.
"""

from __future__ import annotations

import torch
from torch import nn

from .binomial import _masked_mean, pair_masks
from .mutual import squared_distances


def abe_contrastive_loss(
    emb: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 1.0,
    pairs: str = "all",
) -> torch.Tensor:
    """ABE eq. 10: contrastive loss on squared Euclidean distances, margin m_c.

    Per pair (i, j) with ``D = ||e_i - e_j||``: ``y D^2 + (1 - y) [m - D^2]_+``.
    The paper's eq. 10 sums this over its training pairs and divides by their
    number N. Its batch (Sec. 4) is 32 images plus one partner each, positive
    for the first 16 and negative for the next 16, so the pairs are
    (i, partner_i): 16 positive and 16 negative.

    ``pairs="partners"``: exactly eq. 10 on that layout. The batch must be
    [B/2 images; B/2 partners] (row i pairs with row i + B/2); the loss is the
    mean over the B/2 pairs.

    ``pairs="all"`` (default; any batch): every unordered pair i < j, with the
    positive and negative sets averaged separately and weighted 1/2 each:
    ``0.5 * mean_pos D^2 + 0.5 * mean_neg [m - D^2]_+``. On a set of pairs that
    is half positive, half negative (the ABE batch) this equals eq. 10's
    ``(1/N) sum``; on other batches it keeps positives from being drowned by
    the far more numerous negatives. A side with no pairs contributes 0.
    """
    if pairs == "partners":
        b = emb.shape[0]
        if b % 2:
            raise ValueError(f"abe_contrastive_loss(pairs='partners') needs an even batch, got {b}")
        a, p = emb[: b // 2], emb[b // 2:]
        y = (labels[: b // 2] == labels[b // 2:]).to(emb.dtype)
        d2 = (a - p).pow(2).sum(1)
        return (y * d2 + (1 - y) * torch.relu(margin - d2)).mean()
    if pairs != "all":
        raise ValueError(f"pairs must be 'all' or 'partners', got {pairs!r}")
    d2 = squared_distances(emb)
    pos, neg = pair_masks(labels.to(emb.device))
    upper = torch.ones_like(pos).triu(1)
    pos, neg = pos & upper, neg & upper
    return 0.5 * _masked_mean(d2, pos) + 0.5 * _masked_mean(torch.relu(margin - d2), neg)


def divergence_loss(emb: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """ABE eq. 9: push apart the M learners' embeddings of the same image.

    ``emb`` [B, M, d] (B images, M learners). Eq. 9 is
    ``sum_i sum_{p,q} max(0, m - ||B_p(x_i) - B_q(x_i)||^2)``; we take the sum
    over ORDERED learner pairs p != q (the p = q terms are the constant m with
    no gradient and are left out) and the MEAN over the images of the batch
    instead of the sum, which puts it on the same per-image scale as eq. 10's
    1/N. With M = 1 the loss is 0.
    """
    if emb.dim() != 3:
        raise ValueError(f"divergence_loss expects [B, M, d], got shape {tuple(emb.shape)}")
    b, m, _ = emb.shape
    sq = emb.pow(2).sum(2)  # [B, M]
    d2 = (sq[:, :, None] + sq[:, None, :] - 2.0 * emb @ emb.transpose(1, 2)).clamp_min(0.0)
    off = ~torch.eye(m, dtype=torch.bool, device=emb.device)
    hinge = torch.relu(margin - d2) * off
    return hinge.sum(dim=(1, 2)).mean()


class AbeContrastiveLoss(nn.Module):
    """Module form of :func:`abe_contrastive_loss`.

    forward(embeddings [B, d] or [B, M, d], labels [B]); for [B, M, d] the
    learners' losses are summed (ABE eq. 8's ``sum_m L_metric,(m)``).
    """

    def __init__(self, margin: float = 1.0, pairs: str = "all"):
        super().__init__()
        self.margin, self.pairs = float(margin), pairs

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if embeddings.dim() == 3:
            return sum(
                abe_contrastive_loss(embeddings[:, m], labels, self.margin, self.pairs)
                for m in range(embeddings.shape[1])
            )
        return abe_contrastive_loss(embeddings, labels, self.margin, self.pairs)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, pairs={self.pairs!r}"
