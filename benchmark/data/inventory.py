"""What a dataset's splits hold on disk: a fingerprint per split and the listed
images that are missing. Cheap (one ``stat`` per image, no decoding), so the
runner takes it before every command that trains on real data.

The fingerprint of a split is a digest of its annotation as read (each image's
path relative to the dataset folder, label and box) and of each image file's
size: a repaired or replaced copy of a dataset has another fingerprint, the same
files moved to another folder keep theirs. A run records the fingerprints of the
data it trained on; the runner compares them before it reuses a finished run.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .readers import DatasetSplits, Split

SPLITS = ("train", "val", "test", "query", "gallery")
DIGEST_CHARS = 16


@dataclass
class Inventory:
    fingerprints: dict[str, str] = field(default_factory=dict)  # split -> digest
    missing: dict[str, list[str]] = field(default_factory=dict)  # split -> missing image paths
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # split -> (images, classes)

    @property
    def missing_count(self) -> int:
        return sum(len(v) for v in self.missing.values())


def split_fingerprint(split: Split, root: Path) -> tuple[str, list[str]]:
    """(digest, missing paths) of one split."""
    h = hashlib.sha256()
    missing: list[str] = []
    base = os.path.normpath(root)
    for i, path in enumerate(split.paths):
        try:
            size = os.stat(path).st_size
        except OSError:
            missing.append(path)
            size = -1
        rel = os.path.relpath(path, base)
        box = "" if split.boxes is None else ",".join(f"{v:g}" for v in split.boxes[i])
        h.update(f"{rel}\t{size}\t{int(split.labels[i])}\t{box}\n".encode("utf-8"))
    return h.hexdigest()[:DIGEST_CHARS], missing


def inventory(splits: DatasetSplits, root: Path) -> Inventory:
    out = Inventory()
    for name in SPLITS:
        split: Optional[Split] = getattr(splits, name)
        if split is None:
            continue
        out.fingerprints[name], missing = split_fingerprint(split, root)
        if missing:
            out.missing[name] = missing
        out.sizes[name] = (len(split), split.num_classes)
    return out
