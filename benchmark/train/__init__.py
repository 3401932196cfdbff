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


def build_method(cfg: TrainConfig, num_classes: int, device: torch.device, inputs: Mapping[str, Path],
                 ranks=None):
    if cfg.method == "cohort":
        from benchmark.train.cohort import CohortMethod
        from benchmark.train.ranks import SINGLE

        return CohortMethod(cfg, num_classes, device, ranks or SINGLE)
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


def _train_rank(config: TrainConfig, workdir: Path, inputs: Mapping[str, Path], progress: bool, desc: str,
                logger: Optional[TrainLogger], ranks) -> TrainResult:
    """One rank's share of a job (the whole job in one process)."""
    from benchmark.train.loop import run_loop

    from benchmark.train.precision import configure_device

    device = resolve_device(config.device)
    if ranks.world > 1 and device.type == "cuda":  # one device per rank, from the one the job names
        device = torch.device("cuda", (device.index or 0) + ranks.rank)
        torch.cuda.set_device(device)
    configure_device(device)
    splits = prepare(config, workdir)
    num_classes = int(len(np.unique(splits.train.labels)))
    method = build_method(config, num_classes, device, dict(inputs or {}), ranks)
    return run_loop(config, method, splits, device, logger or NullLogger(), workdir, progress=progress, desc=desc)


def train(
    config: TrainConfig,
    logger: Optional[TrainLogger] = None,
    workdir: Path | str = "run",
    inputs: Optional[Mapping[str, Path]] = None,
    *,
    progress: bool = True,
    desc: str = "",
    ranks: int = 1,
    threads: Optional[int] = None,
) -> TrainResult:
    """Train one job; resumes from ``workdir/checkpoint.pt`` when it exists.

    ``ranks`` > 1 trains a cohort over that many processes (torch.distributed:
    gloo on the CPU, NCCL with one GPU per rank), its members split among them;
    it is how the job runs, not what it computes: the same numbers at equal
    ``threads`` (torch threads of each rank), and the same checkpoint, so a run
    may resume with another number of ranks.
    """
    import functools

    from benchmark.errors import ConfigError
    from benchmark.train.ranks import run_ranks

    workdir = Path(workdir)
    if ranks > 1:
        if config.method != "cohort":
            raise ConfigError(f"--ranks {ranks}: only a cohort (method cohort) trains over several processes; "
                              f"this job is method {config.method}")
        members = len(config.cohort.members)
        if members % ranks:
            raise ConfigError(f"--ranks {ranks}: must divide the cohort's {members} members")
        if threads is None:  # the cores shared among the ranks, not each rank taking all of them
            threads = max(1, torch.get_num_threads() // ranks)
    backend = "nccl" if resolve_device(config.device).type == "cuda" else "gloo"
    main = functools.partial(_train_rank, config, workdir, dict(inputs or {}), progress, desc, logger)
    worker = functools.partial(_train_rank, config, workdir, dict(inputs or {}), False, desc, None)
    return run_ranks(main, ranks, backend=backend, threads=threads, worker_fn=worker)
