"""`data check`: what is wrong with a copy of a dataset, before it costs a GPU-day.

For each split: images and classes (compared with what the papers state, by the
caller), listed images that are missing, classes with a single image (a test
query with no positive: Recall@K and MAP@R silently drop it), and every image
decoded once:

- ``unreadable``: no decoder opens it;
- ``truncated``: the file ends before the image does;
- ``corrupt``: libjpeg-turbo reports corrupt data (a JPEG damaged in the middle
  still decodes, to wrong pixels, without a word from PIL or torchvision: the
  strict decoder of simplejpeg reports libjpeg's warnings as errors);
- ``grayscale``, ``cmyk``, ``other_mode``: decodable, but not RGB (the loader
  converts them; real CUB and Cars contain such files). Notes, not errors.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .inventory import SPLITS
from .readers import DatasetSplits, Split

ERRORS = ("missing", "unreadable", "truncated", "corrupt")
NOTES = ("grayscale", "cmyk", "other_mode")


def image_fault(path: str) -> Optional[str]:
    """The fault of one image file (see the module's kinds), None when it is a clean RGB image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    try:
        with Image.open(path) as img:
            mode = img.mode
            img.load()
    except UnidentifiedImageError:
        return "unreadable"
    except OSError as exc:
        return "truncated" if "truncated" in str(exc) else "unreadable"
    except Exception:  # a decoder bug on a hostile file is still an unreadable file
        return "unreadable"
    if data[:2] == b"\xff\xd8" and mode in ("RGB", "L"):  # JPEG: ask libjpeg-turbo, strictly
        import simplejpeg

        try:
            simplejpeg.decode_jpeg(data, colorspace="RGB" if mode == "RGB" else "GRAY", strict=True)
        except ValueError as exc:
            return "truncated" if "Premature end" in str(exc) else "corrupt"
    if mode in ("L", "LA", "I", "I;16", "F", "1"):
        return "grayscale"
    if mode == "CMYK":
        return "cmyk"
    if mode != "RGB":
        return "other_mode"
    return None


@dataclass
class SplitCheck:
    name: str
    images: int
    classes: int
    singletons: list[int] = field(default_factory=list)  # labels of one-image classes
    faults: dict[str, list[str]] = field(default_factory=dict)  # kind -> paths

    @property
    def errors(self) -> int:
        return sum(len(self.faults.get(k, [])) for k in ERRORS)

    def as_dict(self) -> dict:
        return {"split": self.name, "images": self.images, "classes": self.classes,
                "singleton_classes": len(self.singletons),
                "faults": {k: len(v) for k, v in self.faults.items()},
                "examples": {k: v[:5] for k, v in self.faults.items()}}


def check_split(name: str, split: Split, *, decode: bool = True, workers: int = 4,
                progress: Optional[Callable[[int], None]] = None) -> SplitCheck:
    labels, counts = np.unique(split.labels, return_counts=True)
    out = SplitCheck(name, len(split), int(labels.size), singletons=[int(x) for x in labels[counts == 1]])
    if decode:
        check = image_fault
    else:
        def check(path: str) -> Optional[str]:
            return None if Path(path).exists() else "missing"
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # decoders release the GIL
        for path, fault in zip(split.paths, pool.map(check, split.paths, chunksize=64)):
            if fault is not None:
                out.faults.setdefault(fault, []).append(path)
            if progress is not None:
                progress(1)
    return out


def check_splits(splits: DatasetSplits, *, decode: bool = True, workers: int = 4,
                 progress: Optional[Callable[[int], None]] = None) -> list[SplitCheck]:
    return [check_split(name, getattr(splits, name), decode=decode, workers=workers, progress=progress)
            for name in SPLITS if getattr(splits, name) is not None]
