"""From a DataConfig to batches: split preparation, training and evaluation iterators.

Determinism: a training batch is a pure function of (seed, epoch, batch index):
the batch sampler's generator is seeded from (seed, epoch) in the main process,
and every view of every sample gets its own generator seeded from
(seed, epoch, batch index, position in batch, view). A worker therefore builds
exactly the bytes the main process would, whatever ``num_workers`` is, and a
run restarted from a checkpoint at an epoch boundary (or at batch ``start``)
sees the same batches as an uninterrupted one.

Each DataLoader item is a whole batch (``batch_size=None`` plus a sampler that
yields batch specs): the worker decodes each distinct image of the batch once
(or reads it from the decoded-image cache, :mod:`benchmark.data.cache`),
applies the per-image deterministic part of the transform once, and draws V
independent views from it. With ``data.augment_on: device`` the worker stops
after decoding and the main process draws the same views on the training
device (:class:`ViewMaker`, :mod:`benchmark.data.decoded`).
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

from .cache import DecodedCache, plan_decoded_cache
from .decoded import DecodedBatch, distinct, pack, unpack
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


class ViewMaker:
    """The views ``view_ids`` of every position of a batch, from its prepared images, on their device.

    Every view of every position draws from its own SplitMix64 stream, seeded
    from (seed, epoch, batch index, position, view), so a batch is the same
    bytes wherever it is made. On a GPU the resizes run in float32 and can
    differ from the CPU's by a level or two at some pixels
    (:func:`~benchmark.data.transforms.resize_into`); the draws are the same.
    """

    def __init__(self, transform: TrainTransform, seed: int, view_ids: list[int]):
        self.transform, self.seed, self.view_ids = transform, seed, list(view_ids)

    def __call__(self, images: list[torch.Tensor], slots: list[int], epoch: int, batch_index: int) -> torch.Tensor:
        """uint8 [B, V, 3, crop, crop], channels-last in memory; position ``pos`` shows ``images[slots[pos]]``."""
        c, nv = self.transform.crop, len(self.view_ids)
        device = images[0].device
        # Pixels stay interleaved (RGB per pixel, as the decoder and the fast
        # uint8 resize produce them): each view is resized straight into its
        # slot of a channels-last batch. Models convert to planar float in
        # their input normalisation, a pass they make anyway.
        out = torch.empty(len(slots) * nv, c, c, 3, dtype=torch.uint8, device=device)
        scratch = torch.empty(c, c, 3, dtype=torch.uint8, device=device)
        k = 0
        for pos, slot in enumerate(slots):
            base = derive_seed(_VIEW_STREAM, self.seed, epoch, batch_index, pos)
            for v in self.view_ids:
                self.transform.view_into(images[slot], SplitMix64(derive_seed(base, v)), out[k], scratch)
                k += 1
        return out.view(len(slots), nv, c, c, 3).permute(0, 1, 4, 2, 3)


class _TrainBatchDataset(Dataset):
    """A batch from its spec (epoch, batch index, indices): (views, labels), or without
    ``make_views`` the decoded images (a :class:`DecodedBatch`) for the device to augment."""

    def __init__(self, split: Split, transform: TrainTransform, make_views: Optional[ViewMaker],
                 cache: Optional[DecodedCache]):
        self.split, self.transform, self.make_views, self.cache = split, transform, make_views, cache

    def _load(self, idx: int) -> torch.Tensor:
        boxes = self.split.boxes
        return self.transform.prepare(load_image(self.split.paths[idx], None if boxes is None else boxes[idx]))

    def build(self, epoch: int, batch_index: int, indices: list[int]):
        with _one_thread():
            order, slots = distinct(indices)  # each image decoded once per batch, however many views / repeats
            if self.cache is None:
                images = [self._load(i) for i in order]
            else:
                images = self.cache.get_or_load(order, self._load)
            labels = torch.from_numpy(self.split.labels[np.asarray(indices, dtype=np.int64)])
            if self.make_views is None:
                return pack(images, slots, labels, epoch, batch_index)
            return self.make_views(images, slots, epoch, batch_index), labels

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

    ``device`` is where training runs (CPU when None). For CUDA the loader
    pins its batches, so that copies to the device can be asynchronous. With
    ``cfg.augment_on == "device"`` the views are made there and the batches
    come on ``device``; otherwise they come on the CPU, for the trainer to move.
    ``cfg.decoded_cache_mb`` keeps the decoded images for later epochs
    (:mod:`benchmark.data.cache`). Neither changes a batch's bytes on the CPU.
    """

    def __init__(self, cfg: DataConfig, split: Split, views: int, seed: int, view_ids: Optional[list[int]] = None,
                 device: Optional[torch.device] = None):
        if views < 1:
            raise ValueError("views must be >= 1")
        if len(split) == 0:
            raise ConfigError(f"data: the training split of {cfg.dataset} is empty")
        self.cfg, self.split, self.views, self.seed = cfg, split, views, seed
        self.device = torch.device("cpu" if device is None else device)
        self.transform = TrainTransform(cfg)
        # Which of the views to make (all by default): a rank of a cohort trained over
        # several processes makes only its members' views, the same bytes as in one process.
        self.make_views = ViewMaker(self.transform, seed, range(views) if view_ids is None else view_ids)
        self._specs = _SpecSampler()
        self._loader: Optional[DataLoader] = None
        self.batch_sampler(0, 1)  # validate the sampler settings now, not mid-training
        self.cache = plan_decoded_cache(split, self.transform, cfg.decoded_cache_mb)
        on_device = cfg.augment_on == "device"
        self.dataset = _TrainBatchDataset(split, self.transform, None if on_device else self.make_views, self.cache)

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
        """One batch in this process (what a worker does, then the device)."""
        return self._finish(_unwrap(self.dataset[(epoch, batch_index, list(indices))]))

    def _finish(self, item):
        """A loader item -> (images, labels): the views of a DecodedBatch made on the device."""
        if not isinstance(item, DecodedBatch):
            return item
        images = self.make_views(unpack(item, self.device), item.slots.tolist(), item.epoch, item.batch_index)
        return images, item.labels.to(self.device, non_blocking=True)

    def _get_loader(self) -> DataLoader:
        if self._loader is None:
            workers = max(0, int(self.cfg.num_workers))
            self._loader = DataLoader(
                self.dataset,
                batch_size=None,
                sampler=self._specs,
                num_workers=workers,
                persistent_workers=workers > 0,
                pin_memory=self.device.type == "cuda",
                generator=_private_generator(),
            )
        return self._loader

    def epoch(self, epoch: int, iterations: Optional[int] = None, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch`` (from batch ``start``, for a mid-epoch resume)."""
        specs = [(epoch, b, idx) for b, idx in enumerate(self.batch_indices(epoch, iterations))][start:]
        if not specs:
            return iter(())
        self._specs.specs = specs
        return map(self._finish, map(_unwrap, iter(self._get_loader())))

    def close(self) -> None:
        """Stop persistent workers (also happens when the object is garbage-collected)."""
        self._loader = None


def eval_batches(cfg: DataConfig, split: Split, batch_size: int,
                 pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``split`` in order, with ``cfg.test_transform``: (uint8 [B,3,H,W], int64 [B]);
    in pinned memory with ``pin_memory`` (for asynchronous copies to a CUDA device)."""
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
        pin_memory=pin_memory,
        generator=_private_generator(),
    )
    return map(_unwrap, loader)  # a plain function, so bad settings raise at the call
