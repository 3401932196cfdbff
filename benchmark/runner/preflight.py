"""Checks made before any training starts, so a missing dataset or weights file
stops the command at once with one line instead of after hours of other runs.
It receives bound specs (benchmark.runner.binding): data.root is the dataset's
own folder, or None when no --data-root was given."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from benchmark.config import TrainConfig
from benchmark.errors import DatasetNotFoundError
from benchmark.recipes.spec import RunSpec


def _models(cfg: TrainConfig) -> Iterable[tuple[str, bool, str | None]]:
    if cfg.cohort is not None:
        for m in cfg.cohort.members:
            yield m.arch, m.pretrained, m.weights
    if cfg.abe is not None:
        yield cfg.abe.arch, cfg.abe.pretrained, None
    if cfg.distill is not None:
        s = cfg.distill.student
        yield s.arch, s.pretrained, s.weights
        if cfg.distill.teacher is not None:
            yield from _models(cfg.distill.teacher)


def preflight(specs: Iterable[RunSpec]) -> None:
    from benchmark.data import check_dataset
    from benchmark.models.pretrained import check_weights

    seen_data, seen_weights = set(), set()
    for spec in specs:
        d = spec.config.data
        if d.synthetic is None:
            key = (d.dataset, d.root, d.cropped)
            if key not in seen_data:
                seen_data.add(key)
                if d.root is None:
                    raise DatasetNotFoundError(
                        f"{spec.label}: dataset {d.dataset} needs --data-root DIR (the folder holding the official "
                        f"files; see README 'Datasets'), or use --profile smoke for the bundled synthetic data"
                    )
                check_dataset(d.dataset, Path(d.root), d.cropped)
        for arch, pretrained, weights in _models(spec.config):
            if pretrained and (arch, weights) not in seen_weights:
                seen_weights.add((arch, weights))
                check_weights(arch, weights)
