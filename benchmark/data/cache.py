"""Decoded training images kept in shared memory for the epochs after their first (``data.decoded_cache_mb``).

What is kept: an image as :meth:`TrainTransform.prepare` returns it (decoded,
cropped to its box, for ``resize_pad_random_crop`` resized onto its square),
the deterministic per-image step; the random views are drawn from it in every
epoch exactly as from a freshly decoded image, so the batches are the same
bytes with the cache and without it.

Layout: one uint8 buffer in shared memory (``share_memory_``: a /dev/shm
segment on Linux) holds each image's interleaved pixels (H*W*3 bytes) at an
offset fixed before the first epoch from the files' headers, read without
decoding. It is made before the DataLoader starts its workers, which therefore
map the same pages (forked, or sent the segment when spawned), as does the
main process.

Filling: whoever builds a batch (a worker, or the main process with
``num_workers: 0``) fills the slots of the images it decodes. A state per
image (empty, claimed, filled, uncached), also shared, is read and changed
under one inter-process lock: a batch claims the empty slots it needs, decodes
those images (and any another worker has claimed but not yet filled: decoded
again, not stored), copies its claims into their slots, then marks them filled.
The lock's release after the copy and its acquisition by a later reader order
the pixels before the flag on any CPU, so a reader that sees ``filled`` sees
the whole image. A slot whose image turns out not to have the shape its header
announced is marked uncached and that image decoded every epoch.

Budget: ``data.decoded_cache_mb`` MiB, and at most half of /dev/shm's free
space (the loader's batches travel through it too). When the images do not
all fit, the first ones of the split that do are kept, the rest decoded every
epoch, and a one-line warning on stderr says how many MiB all would need and
which key to raise. Each process that trains (each rank of a ``--ranks`` run)
has its own cache.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Callable, Optional

import numpy as np
import torch

from .readers import Split
from .transforms import TrainTransform

MIB = 1 << 20
_ALIGN = 64  # bytes: every image starts on a cache line
_EMPTY, _CLAIMED, _FILLED, _UNCACHED = 0, 1, 2, 3


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


class DecodedCache:
    """Slots for prepared images of the given shapes (None: that image is not cached)."""

    def __init__(self, shapes: list[Optional[tuple[int, int]]]):
        self.shapes = shapes
        self.offsets: list[int] = []
        total = 0
        for shape in shapes:
            self.offsets.append(total)
            total += 0 if shape is None else _aligned(shape[0] * shape[1] * 3)
        self.nbytes = total
        # Made in shared memory directly (as torch's collate does in workers): share_memory_()
        # of a fresh tensor would copy it there, 6x slower for a large cache.
        self.pixels = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(max(total, 1)))
        initial = [_UNCACHED if s is None else _EMPTY for s in shapes]
        self.state = torch.tensor(initial, dtype=torch.uint8).share_memory_()
        self.lock = multiprocessing.Lock()

    def _slot(self, idx: int) -> torch.Tensor:
        h, w = self.shapes[idx]
        start = self.offsets[idx]
        return self.pixels[start : start + h * w * 3].view(1, h, w, 3).permute(0, 3, 1, 2)

    def get_or_load(self, indices: list[int], load: Callable[[int], torch.Tensor]) -> list[torch.Tensor]:
        """The prepared images ``indices`` (distinct), read from their slots or made by ``load(idx)``
        (and then stored, when this call claimed the slot)."""
        with self.lock:
            states = self.state[indices].tolist()
            claims = [i for i, s in zip(indices, states) if s == _EMPTY]
            self.state[claims] = _CLAIMED
        images, filled, uncached = [], [], []
        for idx, state in zip(indices, states):
            if state == _FILLED:
                images.append(self._slot(idx))
                continue
            img = load(idx)
            if state == _EMPTY:
                if tuple(img.shape[-2:]) == self.shapes[idx]:
                    self._slot(idx).copy_(img)
                    filled.append(idx)
                else:
                    uncached.append(idx)
            images.append(img)
        if filled or uncached:
            with self.lock:
                self.state[filled] = _FILLED
                self.state[uncached] = _UNCACHED
        return images

    def filled(self) -> int:
        """How many images are in the cache (seen by this process, as by every other)."""
        with self.lock:
            return int((self.state == _FILLED).sum())


def _header_shape(path: str) -> Optional[tuple[int, int]]:
    """(H, W) from the image file's header, without decoding it; None if unreadable (the loader says why)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return h, w


def _shm_free_bytes() -> Optional[int]:
    """Free space of /dev/shm, where torch puts shared memory on Linux; None elsewhere."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def plan_decoded_cache(split: Split, transform: TrainTransform, budget_mb: int) -> Optional[DecodedCache]:
    """A cache for the training images of ``split`` within the budget (module docstring);
    None when ``budget_mb`` is 0 or no image fits."""
    if budget_mb <= 0:
        return None
    shapes: list[Optional[tuple[int, int]]] = []
    for i, path in enumerate(split.paths):
        hw = _header_shape(path)
        box = None if split.boxes is None else split.boxes[i]
        shapes.append(None if hw is None else transform.prepared_shape(*hw, box))
    sizes = np.array([0 if s is None else _aligned(s[0] * s[1] * 3) for s in shapes], dtype=np.int64)
    need = -(-int(sizes.sum()) // MIB)
    limit = budget_mb * MIB
    held_by, remedy = f"data.decoded_cache_mb={budget_mb}", f"raise data.decoded_cache_mb to {need}"
    shm = _shm_free_bytes()
    if shm is not None and shm // 2 < limit:
        limit = shm // 2
        held_by = f"half of the {shm // MIB} MiB free in /dev/shm"
        remedy = f"free {2 * need} MiB there, e.g. docker run --shm-size"
    fits = np.cumsum(sizes) <= limit
    kept = [s if ok else None for s, ok in zip(shapes, fits)]
    n_known, n_kept = sum(s is not None for s in shapes), sum(s is not None for s in kept)
    if n_kept < n_known:
        print(f"warning: the {n_known} decoded training images need {need} MiB; {held_by} holds the first "
              f"{n_kept}, the rest are decoded every epoch ({remedy} to keep all)", file=sys.stderr)
    return DecodedCache(kept) if n_kept else None
