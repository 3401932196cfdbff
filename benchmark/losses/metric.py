"""The metric-learning loss L_DML, built from a :class:`LossConfig`.

pytorch-metric-learning (pml) supplies triplet, contrastive, Proxy-NCA, ArcFace
and the distance-weighted miner; binomial deviance and ABE's contrastive loss
are hand-written (pml has neither: see binomial.py, abe.py).

Choices (DM2 Table 6 and Sec. 4; ABE eq. 10):

- ``triplet``: pml ``TripletMarginLoss(margin)`` on L2 distances of the
  normalised embeddings, pml's default reduction (mean over triplets with a
  non-zero loss). Params: margin (default 0.2: DM2 does not print it), swap,
  smooth_loss. Miner ``distance_weighted``: pml ``DistanceWeightedMiner(cutoff,
  nonzero_loss_cutoff)`` (Wu et al.; defaults 0.5, 1.4), one negative drawn per
  (anchor, positive) pair.
- ``contrastive``: the standard (Hadsell et al. 2006, DM2's [5]) contrastive
  loss ``y D^2 + (1-y) [m - D]_+^2`` with m = ``margin`` (1.0 in DM2 Table 6),
  D the L2 distance of normalised embeddings, mean over positive pairs plus
  mean over negative pairs. pml's ``ContrastiveLoss(pos_margin=0,
  neg_margin=margin)`` gives the pair enumeration and the terms ``[D - 0]_+``
  and ``[m - D]_+``; a tiny subclass squares them (``squared: false`` keeps
  pml's unsquared form). pml's ``MeanReducer`` replaces its default
  average-over-non-zero so that all pairs count, as in Hadsell's loss.
- ``proxy_nca``: pml ``ProxyNCALoss`` with one proxy per class (a parameter
  of the module, [num_classes, embedding_dim]); param softmax_scale (pml default 1).
- ``arcface``: pml ``ArcFaceLoss`` (its weight W is a module parameter),
  scale 64 and margin 0.5 RADIANS (ArcFace paper, DM2 Table 6). pml takes the
  margin in DEGREES, so the configured radians are converted:
  0.5 rad = 28.6479 degrees.
- ``binomial_deviance``: :func:`benchmark.losses.binomial_deviance_loss`
  (alpha 2, beta 0.5, c 25).
- ``abe_contrastive``: :func:`benchmark.losses.abe_contrastive_loss`
  (margin 1, pairs "all" | "partners").

Proxy-NCA and ArcFace need labels in [0, num_classes): the caller maps the
training classes to contiguous ids.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.reducers import MeanReducer
from torch import nn

from benchmark.config import LossConfig
from benchmark.errors import ConfigError

from . import _params as P
from . import registry as R
from .abe import AbeContrastiveLoss
from .binomial import BinomialDevianceLoss

# name -> {param: (default, checker)}
LOSS_PARAMS: dict[str, dict[str, tuple[Any, P.Checker]]] = {
    "triplet": {
        "margin": (0.2, P.number(min=0)),
        "swap": (False, P.boolean()),
        "smooth_loss": (False, P.boolean()),
    },
    "contrastive": {
        "margin": (1.0, P.number(min=0)),
        "pos_margin": (0.0, P.number(min=0)),
        "squared": (True, P.boolean()),
    },
    "proxy_nca": {"softmax_scale": (1.0, P.number(min=0, min_exclusive=True))},
    "arcface": {
        "scale": (64.0, P.number(min=0, min_exclusive=True)),
        "margin": (0.5, P.number(min=0)),  # radians
    },
    "binomial_deviance": {
        "alpha": (2.0, P.number(min=0, min_exclusive=True)),
        "beta": (0.5, P.number()),
        "c": (25.0, P.number(min=0, min_exclusive=True)),
    },
    "abe_contrastive": {
        "margin": (1.0, P.number(min=0)),
        "pairs": ("all", P.choice("all", "partners")),
    },
}

MINER_PARAMS: dict[str, dict[str, tuple[Any, P.Checker]]] = {
    "distance_weighted": {
        "cutoff": (0.5, P.number(min=0)),
        "nonzero_loss_cutoff": (1.4, P.number(min=0, min_exclusive=True)),
    },
}

# Losses a pair/triplet miner can feed.
_MINEABLE = {"triplet", "contrastive"}


def check_loss_config(cfg: LossConfig) -> None:
    """``loss.name``, ``loss.params``, ``loss.miner`` and ``loss.miner_params`` against
    the harness's six losses and every pml loss and miner (their constructors'
    parameters); a one-line ConfigError naming the key and listing the valid ones."""
    name = cfg.name
    if name in LOSS_PARAMS:
        P.resolve(cfg.params, LOSS_PARAMS[name], "loss.params", f"loss '{name}'")
    elif name in R.pml_losses():
        R.check_params(R.pml_losses()[name], cfg.params, "loss.params", f"loss '{name}'")
    else:
        raise ConfigError(f"loss.name: unknown loss {name!r} (known: {', '.join(R.loss_names(tuple(LOSS_PARAMS)))})")
    if cfg.miner is None:
        if cfg.miner_params:
            key = next(iter(cfg.miner_params))
            raise ConfigError(f"loss.miner_params.{key}: given but loss.miner is not set")
        return
    if cfg.miner not in MINER_PARAMS and cfg.miner not in R.pml_miners():
        raise ConfigError(f"loss.miner: unknown miner {cfg.miner!r} "
                          f"(known: {', '.join(R.miner_names(tuple(MINER_PARAMS)))})")
    if name in LOSS_PARAMS and name not in _MINEABLE:
        raise ConfigError(
            f"loss.miner: {cfg.miner} mines pairs/triplets for {' or '.join(sorted(_MINEABLE))}, "
            f"not for loss '{name}'"
        )
    if cfg.miner in MINER_PARAMS:
        P.resolve(cfg.miner_params, MINER_PARAMS[cfg.miner], "loss.miner_params", f"miner '{cfg.miner}'")
    else:
        R.check_params(R.pml_miners()[cfg.miner], cfg.miner_params, "loss.miner_params", f"miner '{cfg.miner}'")


def _build_miner(cfg: LossConfig) -> nn.Module | None:
    if cfg.miner is None:
        return None
    if cfg.miner in MINER_PARAMS:  # the papers' miner, built as it always was
        mp = P.resolve(cfg.miner_params, MINER_PARAMS[cfg.miner], "loss.miner_params", f"miner '{cfg.miner}'")
        return pml_miners.DistanceWeightedMiner(cutoff=mp["cutoff"], nonzero_loss_cutoff=mp["nonzero_loss_cutoff"])
    entry = R.pml_miners()[cfg.miner]
    try:
        return entry.build(cfg.miner_params)
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ConfigError(f"loss.miner_params: pml {entry.cls.__name__} rejects "
                          f"{dict(cfg.miner_params)} ({reason})") from None


class HadsellContrastiveLoss(pml_losses.ContrastiveLoss):
    """pml's ContrastiveLoss with squared terms: ``[D - m_pos]_+^2`` and ``[m_neg - D]_+^2``."""

    def pos_calc(self, pos_pair_dist, margin):
        return super().pos_calc(pos_pair_dist, margin).pow(2)

    def neg_calc(self, neg_pair_dist, margin):
        return super().neg_calc(neg_pair_dist, margin).pow(2)


class MetricLoss(nn.Module):
    """L_DML: ``forward(embeddings [B, d], labels [B]) -> scalar``.

    ``loss`` holds any parameters (proxies, ArcFace W), so ``parameters()`` of
    this module is what the optimiser must train beside the model.
    """

    def __init__(self, name: str, loss: nn.Module, miner: Optional[nn.Module] = None,
                 num_classes: Optional[int] = None):
        super().__init__()
        self.name = name
        self.loss = loss
        self.miner = miner
        self.num_classes = num_classes  # set when labels must be class ids < num_classes

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.to(embeddings.device)
        if self.num_classes is not None and labels.numel() and (
            int(labels.min()) < 0 or int(labels.max()) >= self.num_classes
        ):
            raise ValueError(
                f"{self.name}: labels must be class ids in [0, {self.num_classes}), "
                f"got range [{int(labels.min())}, {int(labels.max())}]"
            )
        if self.miner is not None:
            return self.loss(embeddings, labels, self.miner(embeddings, labels))
        return self.loss(embeddings, labels)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def build_metric_loss(cfg: LossConfig, num_classes: int, embedding_dim: int) -> MetricLoss:
    """Build L_DML from ``cfg`` (see the module docstring for each loss's exact form).

    Raises ConfigError (one line) naming ``loss.params.<key>`` /
    ``loss.miner_params.<key>`` for unknown or bad parameters, and ``loss.miner``
    for a miner on a loss that cannot use one.
    """
    check_loss_config(cfg)
    name = cfg.name
    miner = _build_miner(cfg)
    if name not in LOSS_PARAMS:  # any other pytorch-metric-learning loss (benchmark.losses.registry)
        entry = R.pml_losses()[name]
        try:
            loss = entry.build(cfg.params, num_classes, embedding_dim)
        except (TypeError, ValueError, AssertionError, KeyError) as exc:
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise ConfigError(f"loss.params: pml {entry.cls.__name__} rejects {dict(cfg.params)} ({reason})") from None
        return MetricLoss(name, loss, miner, num_classes if "num_classes" in entry.sized else None)
    p = P.resolve(cfg.params, LOSS_PARAMS[name], "loss.params", f"loss '{name}'")

    if name == "triplet":
        loss = pml_losses.TripletMarginLoss(margin=p["margin"], swap=p["swap"],
                                            smooth_loss=p["smooth_loss"])
        return MetricLoss(name, loss, miner)
    if name == "contrastive":
        cls = HadsellContrastiveLoss if p["squared"] else pml_losses.ContrastiveLoss
        loss = cls(pos_margin=p["pos_margin"], neg_margin=p["margin"], reducer=MeanReducer())
        return MetricLoss(name, loss, miner)
    if name == "proxy_nca":
        loss = pml_losses.ProxyNCALoss(num_classes=num_classes, embedding_size=embedding_dim,
                                       softmax_scale=p["softmax_scale"])
        return MetricLoss(name, loss, None, num_classes)
    if name == "arcface":
        loss = pml_losses.ArcFaceLoss(num_classes=num_classes, embedding_size=embedding_dim,
                                      margin=math.degrees(p["margin"]), scale=p["scale"])
        return MetricLoss(name, loss, None, num_classes)
    if name == "binomial_deviance":
        return MetricLoss(name, BinomialDevianceLoss(p["alpha"], p["beta"], p["c"]))
    if name == "abe_contrastive":
        return MetricLoss(name, AbeContrastiveLoss(p["margin"], p["pairs"]))
    raise AssertionError(name)  # unreachable: LOSS_PARAMS lists every name
