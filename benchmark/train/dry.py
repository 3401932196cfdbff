"""A weightless build of a job's networks and losses, before anything trains.

Every model, loss and optimiser of the job is constructed on torch's ``meta``
device (shapes only: no memory, no weights read, a BN-Inception cohort in well
under a second) and one evaluation batch of ``data.crop_size`` images is passed
through, so an unknown architecture, an impossible shape, a loss parameter the
loss does not take or too few classes for the loss fail at once, in one line,
instead of after the runs before it have trained for hours.
"""

from __future__ import annotations

import dataclasses

import torch

from benchmark.config import TrainConfig
from benchmark.errors import ConfigError, UserError


def _without_weights(cfg: TrainConfig) -> TrainConfig:
    cfg = dataclasses.replace(cfg)
    if cfg.cohort is not None:
        cfg.cohort = dataclasses.replace(cfg.cohort, members=[dataclasses.replace(m, pretrained=False)
                                                              for m in cfg.cohort.members])
    if cfg.abe is not None:
        cfg.abe = dataclasses.replace(cfg.abe, pretrained=False)
    if cfg.distill is not None:
        cfg.distill = dataclasses.replace(cfg.distill, student=dataclasses.replace(cfg.distill.student, pretrained=False),
                                          teacher=_without_weights(cfg.distill.teacher))
    return cfg


def _method(cfg: TrainConfig, num_classes: int, device: torch.device):
    from benchmark.train import build_method

    if cfg.method != "distill":
        return build_method(cfg, num_classes, device, {})
    from benchmark.train.distill import DistillMethod

    teacher = _method(cfg.distill.teacher, num_classes, device)
    return DistillMethod(cfg, num_classes, device, None, teacher=teacher)


def dry_build(cfg: TrainConfig, num_classes: int, where: str = "config") -> None:
    """Build the job's method on the meta device and embed one batch; a one-line
    ConfigError naming ``where`` when that fails."""
    meta = torch.device("meta")
    try:
        with meta:
            method = _method(_without_weights(cfg), num_classes, meta)
            images = torch.empty(2, 3, cfg.data.crop_size, cfg.data.crop_size, dtype=torch.uint8)
            out = method.embed(images)
    except UserError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError, AssertionError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ConfigError(f"{where}: the networks cannot be built or run on {cfg.data.crop_size}x"
                          f"{cfg.data.crop_size} images ({reason})") from None
    for source, emb in out.items():
        if emb.dim() != 2 or emb.shape[0] != 2:
            raise ConfigError(f"{where}: source {source} embeds to shape {tuple(emb.shape)}, not [batch, dim]")
