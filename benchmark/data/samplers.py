"""Batch samplers: index lists per batch, drawn from an explicit torch.Generator.

Written by hand because pytorch-metric-learning's MPerClassSampler draws from
the global NumPy RNG (no generator, so a resumed run could not reproduce its
batches) and neither it nor torch has ABE's pair sampler.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from benchmark.errors import ConfigError


def _class_index(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    labels = np.asarray(labels)
    classes, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(classes))
    members = np.split(order, np.cumsum(counts)[:-1])
    return classes, members


class ClassBalancedSampler(Sampler[list[int]]):
    """P x K batches: P = batch_size / K distinct classes, K images of each.

    Each batch picks P classes uniformly without replacement, then K images of
    each without replacement; only a class with fewer than K images is sampled
    with replacement (all its images, then random repeats).
    """

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        images_per_class: int,
        num_batches: int,
        generator: torch.Generator,
    ):
        if images_per_class < 1 or batch_size % images_per_class:
            raise ConfigError(
                f"data.batch_size: {batch_size} is not a multiple of data.images_per_class={images_per_class}"
            )
        self.k = images_per_class
        self.p = batch_size // images_per_class
        self.classes, self.members = _class_index(labels)
        if self.p > len(self.classes):
            raise ConfigError(
                f"data.batch_size: {batch_size} / images_per_class {images_per_class} = {self.p} classes per "
                f"batch, but the training split has only {len(self.classes)} classes"
            )
        self.num_batches = num_batches
        self.generator = generator

    def __len__(self) -> int:
        return self.num_batches

    def _take(self, members: np.ndarray) -> list[int]:
        n = len(members)
        perm = torch.randperm(n, generator=self.generator).numpy()
        if n >= self.k:
            pick = perm[: self.k]
        else:
            extra = torch.randint(n, (self.k - n,), generator=self.generator).numpy()
            pick = np.concatenate([perm, extra])
        return members[pick].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.num_batches):
            chosen = torch.randperm(len(self.classes), generator=self.generator)[: self.p].tolist()
            batch: list[int] = []
            for c in chosen:
                batch.extend(self._take(self.members[c]))
            yield batch


class ABEPairSampler(Sampler[list[int]]):
    """ABE's batches (B = batch_size, a multiple of 4; the paper's B = 64).

    Layout of each batch of indices:
      [0, B/2)        B/2 distinct random images (the anchors a_0..a_{B/2-1});
      [B/2, 3B/4)     position B/2+i: a positive partner of a_i (same class, another
                      image when the class has one), i < B/4;
      [3B/4, B)       position 3B/4+i: a negative partner of a_{B/4+i} (another class).
    """

    def __init__(self, labels: np.ndarray, batch_size: int, num_batches: int, generator: torch.Generator):
        if batch_size % 4 or batch_size <= 0:
            raise ConfigError(f"data.batch_size: abe_pairs needs a positive multiple of 4, got {batch_size}")
        self.labels = np.asarray(labels)
        self.n = len(self.labels)
        self.batch_size = batch_size
        if self.n < batch_size // 2:
            raise ConfigError(
                f"data.batch_size: abe_pairs draws {batch_size // 2} distinct images per batch, "
                f"but the training split has only {self.n}"
            )
        classes, members = _class_index(self.labels)
        if len(classes) < 2:
            raise ConfigError("data: abe_pairs needs at least 2 training classes for negative pairs")
        self.members_of = {int(c): m for c, m in zip(classes, members)}
        self.num_batches = num_batches
        self.generator = generator

    def __len__(self) -> int:
        return self.num_batches

    def _positive(self, a: int) -> int:
        members = self.members_of[int(self.labels[a])]
        if len(members) == 1:
            return a
        j = int(torch.randint(len(members) - 1, (), generator=self.generator))
        # skip the anchor itself: draw among the other len-1 members
        pos = int(np.searchsorted(members, a))
        return int(members[j + 1] if j >= pos else members[j])

    def _negative(self, a: int) -> int:
        while True:
            j = int(torch.randint(self.n, (), generator=self.generator))
            if self.labels[j] != self.labels[a]:
                return j

    def __iter__(self) -> Iterator[list[int]]:
        half, quarter = self.batch_size // 2, self.batch_size // 4
        for _ in range(self.num_batches):
            anchors = torch.randperm(self.n, generator=self.generator)[:half].tolist()
            pos = [self._positive(a) for a in anchors[:quarter]]
            neg = [self._negative(a) for a in anchors[quarter:]]
            yield anchors + pos + neg
