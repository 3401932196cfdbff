"""Losses: L_DML (metric losses), DM2's mutual loss, ABE's losses, distillation.

- :func:`build_metric_loss` (metric.py): triplet (+ distance-weighted miner),
  contrastive, proxy_nca, arcface (pytorch-metric-learning), binomial_deviance,
  abe_contrastive (hand-written).
- :func:`relation_matrix`, :func:`dm2_mutual_loss` (mutual.py): DM2 eqs. 1-2.
- :func:`divergence_loss`, :func:`abe_contrastive_loss` (abe.py): ABE eqs. 9-10.
- :func:`rkd_da_loss`, :func:`darkrank_loss`, :func:`compact_loss`,
  :func:`build_distill_loss` (distill.py): DM2 Table 4.
"""

from .abe import AbeContrastiveLoss, abe_contrastive_loss, divergence_loss
from .binomial import BinomialDevianceLoss, binomial_deviance_loss
from .distill import (
    DistillLoss,
    build_distill_loss,
    compact_loss,
    darkrank_loss,
    rkd_da_loss,
)
from .metric import MetricLoss, build_metric_loss
from .mutual import dm2_mutual_loss, relation_matrix, squared_distances

__all__ = [
    "AbeContrastiveLoss",
    "BinomialDevianceLoss",
    "DistillLoss",
    "MetricLoss",
    "abe_contrastive_loss",
    "binomial_deviance_loss",
    "build_distill_loss",
    "build_metric_loss",
    "compact_loss",
    "darkrank_loss",
    "divergence_loss",
    "dm2_mutual_loss",
    "relation_matrix",
    "rkd_da_loss",
    "squared_distances",
]
