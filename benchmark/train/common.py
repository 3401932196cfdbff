"""Small pieces every trainer shares: seeds, devices, LR schedules.
(Checkpoint files: :mod:`benchmark.train.checkpoints`.)
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Iterable

import numpy as np
import torch

from benchmark.config import OptimConfig, TrainConfig
from benchmark.errors import ConfigError


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from any printable parts (seed, epoch, purpose...).

    Every random stream of a run is derived from (config seed, epoch, purpose)
    so that an epoch replays identically after a restart: this is what makes a
    killed-and-resumed run end with the same numbers as an uninterrupted one.
    """
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: Any) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(derive_seed(*parts))
    return g


def seed_globals(*parts: Any) -> None:
    """Seed the global RNGs (libraries such as pytorch-metric-learning's miners use them)."""
    s = derive_seed(*parts)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s % (2**32))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device: '{name}' is not a torch device") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: '{name}' requested but CUDA is not available on this machine")
    return device


def build_optimizer(cfg: OptimConfig, groups: list[dict]) -> torch.optim.Optimizer:
    groups = [g for g in groups if g["params"]]
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def param_groups(cfg: OptimConfig, model_params: Iterable, loss_params: Iterable) -> list[dict]:
    groups = [{"params": [p for p in model_params if p.requires_grad]}]
    loss_params = [p for p in loss_params if p.requires_grad]
    if loss_params:
        groups.append({"params": loss_params, "lr": cfg.loss_lr if cfg.loss_lr is not None else cfg.lr})
    return groups


def build_scheduler(cfg: OptimConfig, optimizer: torch.optim.Optimizer, epochs: int):
    """Stepped once per epoch."""
    if cfg.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.lr_step_epochs or []), gamma=cfg.lr_gamma)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))


def step_scheduler(scheduler) -> None:
    """Advance an epoch. A cohort member that temporal diversity never drew in an
    epoch has not stepped its optimiser; torch warns about that order, harmlessly."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
        scheduler.step()


def config_fingerprint(cfg: TrainConfig) -> str:
    from benchmark.config import digest, semantic_dict

    return digest(semantic_dict(cfg))
