"""From a DataConfig to batches: split preparation, training and evaluation iterators.

Determinism: a training batch is a pure function of (seed, epoch, batch index):
the batch sampler's generator is seeded from (seed, epoch) in the main process,
and every view of every sample gets its own generator seeded from
(seed, epoch, batch index, position in batch, view). A worker therefore builds
exactly the bytes the main process would, whatever ``num_workers`` is, and a
run restarted from a checkpoint at an epoch boundary (or at batch ``start``)
sees the same batches as an uninterrupted one.

Each DataLoader item is a whole batch (``batch_size=None`` plus a sampler that
yields batch specs): the worker decodes each distinct image of the batch once,
applies the per-image deterministic part of the transform once, and draws V
independent views from it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from benchmark.config import CROPPABLE, DataConfig
from benchmark.errors import ConfigError, UserError

from .readers import DatasetSplits, Split, read_dataset, remap_labels
from .rng import SplitMix64, derive_seed
from .samplers import ABEPairSampler, ClassBalancedSampler
from .synthetic import ensure_synthetic
from .transforms import EvalTransform, TrainTransform, load_image

_SAMPLER_STREAM = 0x5A3D  # distinguishes the sampler's seed from the views' seeds
_VIEW_STREAM = 0x71E3


# ---------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------


def split_off_classes(split: Split, n: int) -> tuple[Split, Split]:
    """(rest, held_out): the last ``n`` classes (by label) become ``held_out``, labels 0..n-1."""
    classes = np.unique(split.labels)
    held = classes[len(classes) - n :]
    mask = np.isin(split.labels, held)
    rest, val = split.subset(~mask), split.subset(mask)
    (rest.labels,) = remap_labels(rest.labels)
    (val.labels,) = remap_labels(val.labels)
    return rest, val


def prepare_splits(cfg: DataConfig, cache_dir: Path) -> DatasetSplits:
    """The dataset's splits: synthetic (generated under ``cache_dir``) or read from ``cfg.root``.

    With ``cfg.val_classes = N`` the last N training classes move to ``val``.
    """
    if cfg.cropped and cfg.dataset not in CROPPABLE:
        raise ConfigError(f"data.cropped: {cfg.dataset} has no bounding boxes (only {', '.join(CROPPABLE)} do)")
    if cfg.synthetic is not None:
        root = ensure_synthetic(cfg.dataset, cfg.synthetic, Path(cache_dir))
    elif cfg.root is None:
        raise ConfigError(f"data.root: no dataset root given for {cfg.dataset} (set --data-root or data.root)")
    else:
        root = Path(cfg.root).expanduser()
    splits = read_dataset(cfg.dataset, root, cfg.cropped)
    if cfg.val_classes:
        n_train = splits.train.num_classes
        if cfg.val_classes >= n_train:
            raise ConfigError(
                f"data.val_classes: {cfg.val_classes} held-out classes leave none of the {n_train} "
                f"training classes of {cfg.dataset} to train on"
            )
        splits.train, splits.val = split_off_classes(splits.train, cfg.val_classes)
    return splits


# ---------------------------------------------------------------------------
# Batch building (runs in DataLoader workers)
# ---------------------------------------------------------------------------


def _private_generator() -> torch.Generator:
    """For DataLoader's own worker seeds, which it would otherwise draw from the global
    RNG at every iterator: data loading must not shift the trainer's random stream
    (and would shift it differently for different num_workers)."""
    g = torch.Generator()
    g.manual_seed(0)
    return g


class _BatchError:
    """A user error met in a worker, carried to the main process to be raised there.

    Raising in a worker would make torch re-raise it wrapped in a multi-line
    message with the worker's traceback; we want the one-line message.
    """

    def __init__(self, exc: UserError):
        self.exc_type = type(exc)
        self.message = str(exc)

    def raise_(self):
        raise self.exc_type(self.message)


def _unwrap(item):
    if isinstance(item, _BatchError):
        item.raise_()
    return item


class _SpecSampler(Sampler):
    """Yields the batch specs set for the current epoch (lets persistent workers be reused)."""

    def __init__(self):
        self.specs: list = []

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)


@contextlib.contextmanager
def _one_thread():
    """Build batches on one intra-op thread, also in the main process (num_workers=0).

    The per-image ops are tiny; spreading them over threads only adds
    synchronisation (several times slower on a loaded machine). DataLoader
    workers already run with one thread.
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class _TrainBatchDataset(Dataset):
    def __init__(self, split: Split, transform: TrainTransform, views: int, seed: int,
                 view_ids: Optional[list[int]] = None):
        self.split, self.transform, self.views, self.seed = split, transform, views, seed
        # Which of the views to make (all by default): a rank of a cohort trained over
        # several processes makes only its members' views, the same bytes as in one process.
        self.view_ids = list(range(views)) if view_ids is None else list(view_ids)

    def build(self, epoch: int, batch_index: int, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        with _one_thread():
            c = self.transform.crop
            # Pixels stay interleaved (RGB per pixel, as the decoder and the fast
            # uint8 resize produce them): each view is resized straight into its
            # slot of a channels-last batch. Models convert to planar float in
            # their input normalisation, a pass they make anyway.
            nv = len(self.view_ids)
            slots = torch.empty(len(indices) * nv, c, c, 3, dtype=torch.uint8)
            scratch = torch.empty(c, c, 3, dtype=torch.uint8)
            prepared: dict[int, torch.Tensor] = {}
            boxes = self.split.boxes
            k = 0
            for pos, idx in enumerate(indices):
                img = prepared.get(idx)
                if img is None:  # decoded once per batch, however many views / repeats
                    img = self.transform.prepare(
                        load_image(self.split.paths[idx], None if boxes is None else boxes[idx])
                    )
                    prepared[idx] = img
                base = derive_seed(_VIEW_STREAM, self.seed, epoch, batch_index, pos)
                for v in self.view_ids:
                    self.transform.view_into(img, SplitMix64(derive_seed(base, v)), slots[k], scratch)
                    k += 1
            out = slots.view(len(indices), nv, c, c, 3).permute(0, 1, 4, 2, 3)
            labels = torch.from_numpy(self.split.labels[np.asarray(indices, dtype=np.int64)])
        return out, labels

    def __getitem__(self, spec):
        try:
            return self.build(*spec)
        except UserError as exc:
            return _BatchError(exc)


class _EvalBatchDataset(Dataset):
    def __init__(self, split: Split, transform: EvalTransform):
        self.split, self.transform = split, transform

    def __getitem__(self, span):
        start, stop = span
        try:
            boxes = self.split.boxes
            with _one_thread():
                imgs = [
                    self.transform(load_image(self.split.paths[i], None if boxes is None else boxes[i]))
                    for i in range(start, stop)
                ]
        except UserError as exc:
            return _BatchError(exc)
        return torch.stack(imgs), torch.from_numpy(self.split.labels[start:stop])


# ---------------------------------------------------------------------------
# Public iterators
# ---------------------------------------------------------------------------


class TrainBatches:
    """Training batches of ``split``: ``epoch(e, iterations)`` yields (uint8 [B,V,3,H,W], int64 [B]).

    The images are channels-last in memory (storage [B,V,H,W,3]; ``x[:, v]`` is
    a channels-last [B,3,H,W]); models accept any layout.

    ``views`` independent augmentations of every image (1 when the trainer
    shares a single view); ``view_ids`` makes only those of them (in that order).
    Batches follow ``cfg.sampler``; workers persist across epochs when
    ``cfg.num_workers > 0``.
    """

    def __init__(self, cfg: DataConfig, split: Split, views: int, seed: int, view_ids: Optional[list[int]] = None):
        if views < 1:
            raise ValueError("views must be >= 1")
        if len(split) == 0:
            raise ConfigError(f"data: the training split of {cfg.dataset} is empty")
        self.cfg, self.split, self.views, self.seed = cfg, split, views, seed
        self.transform = TrainTransform(cfg)
        self.dataset = _TrainBatchDataset(split, self.transform, views, seed, view_ids)
        self._specs = _SpecSampler()
        self._loader: Optional[DataLoader] = None
        self.batch_sampler(0, 1)  # validate the sampler settings now, not mid-training

    def num_batches(self, iterations: Optional[int] = None) -> int:
        """Batches per epoch: ``iterations`` or one pass over the split (at least 1)."""
        if iterations is not None:
            return int(iterations)
        return max(1, len(self.split) // self.cfg.batch_size)

    def batch_sampler(self, epoch: int, iterations: Optional[int] = None) -> Sampler:
        gen = torch.Generator()
        gen.manual_seed(derive_seed(_SAMPLER_STREAM, self.seed, epoch))
        n = self.num_batches(iterations)
        if self.cfg.sampler == "abe_pairs":
            return ABEPairSampler(self.split.labels, self.cfg.batch_size, n, gen)
        return ClassBalancedSampler(self.split.labels, self.cfg.batch_size, self.cfg.images_per_class, n, gen)

    def batch_indices(self, epoch: int, iterations: Optional[int] = None) -> list[list[int]]:
        return list(self.batch_sampler(epoch, iterations))

    def build(self, epoch: int, batch_index: int, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch in this process (what a worker does)."""
        return _unwrap(self.dataset[(epoch, batch_index, list(indices))])

    def _get_loader(self) -> DataLoader:
        if self._loader is None:
            workers = max(0, int(self.cfg.num_workers))
            self._loader = DataLoader(
                self.dataset,
                batch_size=None,
                sampler=self._specs,
                num_workers=workers,
                persistent_workers=workers > 0,
                generator=_private_generator(),
            )
        return self._loader

    def epoch(self, epoch: int, iterations: Optional[int] = None, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch`` (from batch ``start``, for a mid-epoch resume)."""
        specs = [(epoch, b, idx) for b, idx in enumerate(self.batch_indices(epoch, iterations))][start:]
        if not specs:
            return iter(())
        self._specs.specs = specs
        return map(_unwrap, iter(self._get_loader()))

    def close(self) -> None:
        """Stop persistent workers (also happens when the object is garbage-collected)."""
        self._loader = None


def eval_batches(cfg: DataConfig, split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``split`` in order, with ``cfg.test_transform``: (uint8 [B,3,H,W], int64 [B])."""
    if batch_size <= 0:
        raise ConfigError(f"eval.batch_size: must be positive, got {batch_size}")
    transform = EvalTransform(cfg)
    spans = [(s, min(s + batch_size, len(split))) for s in range(0, len(split), batch_size)]
    workers = min(max(0, int(cfg.num_workers)), len(spans))
    specs = _SpecSampler()
    specs.specs = spans
    loader = DataLoader(
        _EvalBatchDataset(split, transform),
        batch_size=None,
        sampler=specs,
        num_workers=workers,
        generator=_private_generator(),
    )
    return map(_unwrap, loader)  # a plain function, so bad settings raise at the call
