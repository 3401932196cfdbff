"""The training core: ``train(config, logger, workdir, inputs) -> TrainResult``.

It reads a :class:`benchmark.config.TrainConfig` and reports through a
:class:`benchmark.train.api.TrainLogger`; it knows nothing of MLflow, Optuna or
recipes, and runs wherever torch, torchvision and pytorch-metric-learning do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import torch

from benchmark.config import TrainConfig
from benchmark.train.api import MemoryLogger, NullLogger, TrainLogger, TrainResult
from benchmark.train.common import resolve_device

__all__ = ["train", "build_method", "prepare", "TrainLogger", "TrainResult", "NullLogger", "MemoryLogger"]


def build_method(cfg: TrainConfig, num_classes: int, device: torch.device, inputs: Mapping[str, Path]):
    if cfg.method == "cohort":
        from benchmark.train.cohort import CohortMethod

        return CohortMethod(cfg, num_classes, device)
    if cfg.method == "abe":
        from benchmark.train.abe import ABEMethod

        return ABEMethod(cfg, num_classes, device)
    from benchmark.train.distill import DistillMethod

    return DistillMethod(cfg, num_classes, device, inputs.get("teacher"))


def prepare(cfg: TrainConfig, workdir: Path):
    """The dataset splits of a job: ``data.root`` is the dataset's own folder, or for
    synthetic data the cache it is generated in (default ``workdir/data``)."""
    from benchmark.data import prepare_splits

    cache = Path(cfg.data.root) if (cfg.data.synthetic is not None and cfg.data.root) else Path(workdir) / "data"
    return prepare_splits(cfg.data, cache)


def train(
    config: TrainConfig,
    logger: Optional[TrainLogger] = None,
    workdir: Path | str = "run",
    inputs: Optional[Mapping[str, Path]] = None,
    *,
    progress: bool = True,
    desc: str = "",
) -> TrainResult:
    """Train one job; resumes from ``workdir/checkpoint.pt`` when it exists."""
    from benchmark.train.loop import run_loop

    workdir = Path(workdir)
    device = resolve_device(config.device)
    splits = prepare(config, workdir)
    num_classes = int(len(np.unique(splits.train.labels)))
    method = build_method(config, num_classes, device, dict(inputs or {}))
    return run_loop(config, method, splits, device, logger or NullLogger(), workdir, progress=progress, desc=desc)
