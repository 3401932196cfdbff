"""How many images a run trains on and evaluates: the papers' stated split sizes
(tables/datasets.yaml) for real data, the generator's own counts for synthetic data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from benchmark.config import TrainConfig
from benchmark.errors import ConfigError


@dataclass(frozen=True)
class Sizes:
    """Split sizes of one dataset. In-Shop ranks queries against a gallery
    (``test`` 0); the others rank each test image against the rest."""

    train: int
    train_classes: int
    test: int = 0
    query: int = 0
    gallery: int = 0

    def embedded(self) -> int:
        """Images one evaluation embeds."""
        return self.test + self.query + self.gallery

    def distances(self) -> int:
        """Entries of one evaluation's distance matrix."""
        return self.test * self.test + self.query * self.gallery


def synthetic_sizes(cfg: TrainConfig) -> Sizes:
    """The counts :mod:`benchmark.data.synthetic` writes: the first half of the
    classes trains, the rest tests (In-Shop: even images query, odd ones gallery)."""
    s = cfg.data.synthetic
    train_classes = s.classes // 2
    test_classes = s.classes - train_classes
    train = train_classes * s.images_per_class
    if cfg.data.dataset == "inshop":
        query = test_classes * ((s.images_per_class + 1) // 2)
        return Sizes(train, train_classes, query=query, gallery=test_classes * s.images_per_class - query)
    return Sizes(train, train_classes, test=test_classes * s.images_per_class)


def stated_sizes(dataset: str, stated: dict, paper: str) -> Sizes:
    """The sizes ``paper`` states for ``dataset`` (``stated``: Catalog.dataset_sizes()),
    the other paper's where it states none."""
    splits = stated.get(dataset, {})

    def count(split: str, key: str) -> int:
        by_paper = splits.get(split, {})
        for source in [paper, *sorted(by_paper)]:
            value: Optional[int] = (by_paper.get(source) or {}).get(key)
            if value is not None:
                return value
        return 0

    sizes = Sizes(count("train", "images"), count("train", "classes"), count("test", "images"),
                  count("query", "images"), count("gallery", "images"))
    if not sizes.train or not sizes.embedded():
        raise ConfigError(f"tables/datasets.yaml: no training or test image count for {dataset}")
    return sizes


def run_sizes(cfg: TrainConfig, stated: dict, paper: str) -> Sizes:
    """A run's split sizes: synthetic data's own, else what the papers state."""
    return synthetic_sizes(cfg) if cfg.data.synthetic is not None else stated_sizes(cfg.data.dataset, stated, paper)
