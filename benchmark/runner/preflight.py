"""Checks made before any training starts, so a mistake stops the command at once
with one line instead of after hours of other runs. It receives bound specs
(benchmark.runner.binding): data.root is the dataset's own folder, or None when
no --data-root was given.

For every dataset the selection uses (once each): its layout and annotation
files are read, every listed image must exist, and each split is fingerprinted
(benchmark.data.inventory); real data whose split sizes match neither paper is
named in a warning. For every run: pretrained weights are on disk, the
held-out validation classes leave classes to train on, the largest Recall@K is
below the test set size, and the networks and losses build and run on the
meta device (benchmark.train.dry).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from benchmark.config import TrainConfig, digest, semantic_dict
from benchmark.errors import ConfigError, DatasetNotFoundError
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


@dataclass
class DatasetFacts:
    """A dataset as read for one command: split sizes and fingerprints."""

    train_classes: int
    retrieval_size: int  # images a test query is ranked against (the gallery for In-Shop)
    fingerprints: dict[str, str]

    def tag(self) -> str:
        """The fingerprints as a run records them (tag bench.data)."""
        return json.dumps(self.fingerprints, sort_keys=True, separators=(",", ":"))


def _data_key(cfg: TrainConfig) -> tuple:
    d = cfg.data
    return (d.dataset, d.root, d.cropped, json.dumps(dataclasses.asdict(d.synthetic)) if d.synthetic else None)


def dataset_facts(cfg: TrainConfig, sizes: Optional[dict] = None) -> DatasetFacts:
    """Read the run's dataset (generating synthetic data if needed): one-line errors
    for a missing layout or missing image files."""
    from benchmark.data import ensure_synthetic, read_dataset
    from benchmark.data.inventory import inventory

    d = cfg.data
    if d.synthetic is not None:
        root = ensure_synthetic(d.dataset, d.synthetic, Path(d.root))
    elif d.root is None:
        raise DatasetNotFoundError(
            f"dataset {d.dataset} needs --data-root DIR (the folder holding the official files; see README "
            f"'Datasets'), or use --profile smoke for the bundled synthetic data")
    else:
        root = Path(d.root)
    splits = read_dataset(d.dataset, root, d.cropped)
    inv = inventory(splits, root)
    if inv.missing:
        split, paths = next(iter(inv.missing.items()))
        raise DatasetNotFoundError(
            f"{d.dataset} under {root}: {inv.missing_count} image(s) listed in the annotation files are missing "
            f"(first, in {split}: {paths[0]}); `python -m benchmark data check` lists them")
    if d.synthetic is None and sizes:
        _compare_sizes(d.dataset, root, inv.sizes, sizes.get(d.dataset, {}))
    retrieval = len(splits.gallery) if splits.test is None else len(splits.test) - 1
    return DatasetFacts(splits.train.num_classes, retrieval, inv.fingerprints)


def _compare_sizes(dataset: str, root: Path, found: dict, stated: dict) -> None:
    """Warn, in one line, when a split's image count matches neither paper's statement."""
    for split, papers in stated.items():
        if split not in found:
            continue
        counts = {p: c.get("images") for p, c in papers.items() if c.get("images") is not None}
        if counts and found[split][0] not in counts.values():
            said = ", ".join(f"{p} {n:,}" for p, n in sorted(counts.items()))
            print(f"warning: {dataset} under {root}: the {split} split has {found[split][0]:,} images; the papers "
                  f"state {said} (`python -m benchmark data check` compares every split)", file=sys.stderr)


def _stated_retrieval_size(dataset: str, sizes: Optional[dict]) -> Optional[int]:
    """Images a query of the real dataset is ranked against, by the papers' counts."""
    splits = (sizes or {}).get(dataset) or {}
    split = "gallery" if "gallery" in splits else "test"
    counts = [c.get("images") for c in (splits.get(split) or {}).values() if c.get("images")]
    if not counts:
        return None
    return max(counts) - (0 if split == "gallery" else 1)


def _check_against_data(spec: RunSpec, facts: DatasetFacts, sizes: Optional[dict] = None) -> None:
    cfg = spec.config
    if cfg.data.val_classes >= facts.train_classes:
        raise ConfigError(f"{spec.label}: data.val_classes: {cfg.data.val_classes} held-out classes leave none of "
                          f"the {facts.train_classes} training classes of {cfg.data.dataset} to train on")
    k = max(cfg.eval.recall_ks)
    if k > facts.retrieval_size:
        message = (f"{spec.label}: eval.recall_ks: Recall@{k} needs more than the {facts.retrieval_size} "
                   f"images a {cfg.data.dataset} query is ranked against")
        real = _stated_retrieval_size(cfg.data.dataset, sizes)
        if cfg.data.synthetic is None or real is None or k > real:
            raise ConfigError(message)
        # a small synthetic stand-in (smoke, rehearsal) keeps the real dataset's Ks: there they read 100
        print(f"warning: {message} (a synthetic stand-in: it reads 100)", file=sys.stderr)


def _build_key(cfg: TrainConfig, num_classes: int) -> str:
    """What decides whether a job's networks and losses build: not its λ, lr or seed."""
    data = semantic_dict(cfg)
    keep = {k: data.get(k) for k in ("method", "cohort", "abe", "loss")}
    if cfg.cohort is not None:
        keep["cohort"] = {"members": data["cohort"]["members"], "model_diversity": cfg.cohort.model_diversity}
    if cfg.distill is not None:
        keep["distill"] = {k: v for k, v in data["distill"].items() if k != "teacher"}
        keep["teacher"] = _build_key(cfg.distill.teacher, num_classes)
    keep.update(crop=cfg.data.crop_size, classes=num_classes)
    return digest(keep)


def preflight(specs: Iterable[RunSpec], *, sizes: Optional[dict] = None) -> dict[str, DatasetFacts]:
    """Check every spec (one line for the first problem); returns spec hash -> the
    facts of its dataset (fingerprints, for the runner to record and compare).
    ``sizes``: what the papers state about each split (tables/datasets.yaml)."""
    from benchmark.models.pretrained import check_weights
    from benchmark.train.dry import dry_build

    specs = list(specs)
    facts: dict[tuple, DatasetFacts] = {}
    out: dict[str, DatasetFacts] = {}
    seen_weights: set = set()
    built: set[str] = set()
    for spec in specs:
        key = _data_key(spec.config)
        if key not in facts:
            facts[key] = dataset_facts(spec.config, sizes)
        out[spec.hash] = facts[key]
        _check_against_data(spec, facts[key], sizes)
        for arch, pretrained, weights in _models(spec.config):
            if pretrained and (arch, weights) not in seen_weights:
                seen_weights.add((arch, weights))
                check_weights(arch, weights)
        classes = facts[key].train_classes - spec.config.data.val_classes
        build = _build_key(spec.config, classes)
        if build not in built:
            built.add(build)
            dry_build(spec.config, classes, spec.label)
    return out
