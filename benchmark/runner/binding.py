"""Runtime binding: the fields of a resolved run that say where and how it runs,
not what it computes (so not part of its hash), set in this one place after
resolution and before preflight:

- ``data.root``: the synthetic data cache (``$BENCHMARK_HOME/data``) for generated
  data, else the dataset's own folder found under ``--data-root``;
- ``device``: ``--device`` (auto | cpu | cuda | cuda:N).

A distillation run's teacher (its spec and the teacher config inside its own
config) is bound alike.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from benchmark.config import TrainConfig
from benchmark.data.roots import dataset_root
from benchmark.recipes.spec import RunSpec
from benchmark.runner.home import data_cache_dir


def bind_config(cfg: TrainConfig, *, data_root: Optional[str] = None, device: str = "auto") -> TrainConfig:
    cfg = dataclasses.replace(cfg, device=device)
    if cfg.data.synthetic is not None:
        root = cfg.data.root or str(data_cache_dir())
    elif data_root is not None:
        root = str(dataset_root(cfg.data.dataset, Path(data_root)))
    else:
        root = cfg.data.root  # None: preflight says that --data-root is needed
    cfg.data = dataclasses.replace(cfg.data, root=root)
    if cfg.distill is not None and cfg.distill.teacher is not None:
        cfg.distill = dataclasses.replace(
            cfg.distill, teacher=bind_config(cfg.distill.teacher, data_root=data_root, device=device))
    return cfg


def bind(spec: RunSpec, *, data_root: Optional[str] = None, device: str = "auto") -> RunSpec:
    """``spec`` with its runtime fields set (a new object; the hash is unchanged)."""
    teacher = bind(spec.teacher, data_root=data_root, device=device) if spec.teacher is not None else None
    return dataclasses.replace(spec, config=bind_config(spec.config, data_root=data_root, device=device),
                               teacher=teacher)
