"""Readers for the official layouts of the four retrieval datasets.

Each reader returns absolute image paths, labels remapped to ``0..C-1`` within
each split (In-Shop's query and gallery jointly, since they share items), and
for CUB-200-2011 and Cars-196 optionally the bounding boxes ``x1, y1, x2, y2``
in pixels that the loader crops before augmenting.

The splits are the retrieval (zero-shot) splits of the DML literature, not the
datasets' classification splits:

- cub200: classes 1-100 train, 101-200 test (``train_test_split.txt`` ignored);
- cars196: classes 1-98 train, 99-196 test (the annotations' ``test`` flag ignored);
- sop: ``Ebay_train.txt`` / ``Ebay_test.txt``;
- inshop: ``list_eval_partition.txt`` (train / query / gallery).

Image files themselves are not checked here (SOP has 120k of them); a missing
image is reported, in one line, when the loader first reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from benchmark.config import CROPPABLE, DATASETS
from benchmark.errors import ConfigError, DatasetNotFoundError, UserError


# Class-id boundaries of the retrieval splits (first test class id).
CUB_FIRST_TEST_CLASS = 101
CARS_FIRST_TEST_CLASS = 99


class DatasetFormatError(UserError):
    """An annotation file or image exists but cannot be parsed/decoded."""


@dataclass
class Split:
    """One split: absolute image paths, labels 0..C-1, optional boxes [N,4] (x1,y1,x2,y2)."""

    paths: list[str]
    labels: np.ndarray
    boxes: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
            if len(self.boxes) != len(self.paths):
                raise ValueError("boxes and paths differ in length")
        if len(self.labels) != len(self.paths):
            raise ValueError("labels and paths differ in length")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return int(np.unique(self.labels).size)

    def subset(self, mask: np.ndarray) -> "Split":
        """The images where ``mask`` holds (labels kept as they are)."""
        idx = np.flatnonzero(mask)
        return Split(
            paths=[self.paths[i] for i in idx],
            labels=self.labels[idx],
            boxes=None if self.boxes is None else self.boxes[idx],
        )


@dataclass
class DatasetSplits:
    """cub200/cars196/sop: train + test; inshop: train + query + gallery (test None).

    ``val`` holds the training classes held out by ``DataConfig.val_classes``
    (set by :func:`benchmark.data.loaders.prepare_splits`).
    """

    train: Split
    test: Optional[Split] = None
    query: Optional[Split] = None
    gallery: Optional[Split] = None
    val: Optional[Split] = None


def remap_labels(*label_arrays: np.ndarray) -> list[np.ndarray]:
    """Map the original ids found in all arrays jointly to 0..C-1 in sorted id order."""
    joined = np.concatenate([np.asarray(a) for a in label_arrays]) if label_arrays else np.array([])
    uniq = np.unique(joined)
    return [np.searchsorted(uniq, np.asarray(a)).astype(np.int64) for a in label_arrays]


# ---------------------------------------------------------------------------
# Layout descriptions and the existence check
# ---------------------------------------------------------------------------

_LAYOUT = {
    "cub200": "CUB_200_2011 layout: images.txt, image_class_labels.txt, bounding_boxes.txt, "
    "images/<class>/<file>.jpg",
    "cars196": "Cars-196 layout: cars_annos.mat (struct array 'annotations': relative_im_path, "
    "bbox_x1, bbox_y1, bbox_x2, bbox_y2, class, test), car_ims/<file>.jpg",
    "sop": "Stanford_Online_Products layout: Ebay_train.txt, Ebay_test.txt "
    "('image_id class_id super_class_id path'), <category>_final/<file>.JPG",
    "inshop": "In-Shop layout: list_eval_partition.txt ('image_name item_id evaluation_status'), "
    "img/<...>/id_XXXXXXXX/<file>.jpg",
}


def _required(dataset: str, cropped: bool) -> list[str]:
    if dataset == "cub200":
        req = ["images.txt", "image_class_labels.txt", "images"]
        if cropped:
            req.append("bounding_boxes.txt")
        return req
    if dataset == "cars196":
        return ["cars_annos.mat"]
    if dataset == "sop":
        return ["Ebay_train.txt", "Ebay_test.txt"]
    if dataset == "inshop":
        return ["list_eval_partition.txt"]
    raise ConfigError(f"data.dataset: unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")


def expected_layout(dataset: str) -> str:
    return _LAYOUT[dataset]


def check_dataset(dataset: str, root: Path, cropped: bool = False) -> None:
    """Raise a one-line DatasetNotFoundError when the annotation files are missing."""
    required = _required(dataset, cropped)
    if cropped and dataset not in CROPPABLE:
        raise ConfigError(
            f"data.cropped: {dataset} has no bounding boxes (only {', '.join(CROPPABLE)} do)"
        )
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"{dataset}: --data-root {root} does not exist or is not a directory; "
            f"expected {_LAYOUT[dataset]}"
        )
    missing = [str(root / name) for name in required if not (root / name).exists()]
    if missing:
        raise DatasetNotFoundError(
            f"{dataset}: missing {', '.join(missing)} under --data-root {root}; "
            f"expected {_LAYOUT[dataset]}"
        )


# ---------------------------------------------------------------------------
# Parsing helpers
# ---------------------------------------------------------------------------


def _read_rows(path: Path, ncols: int, skip: int = 0) -> list[list[str]]:
    """Whitespace-separated rows of a text annotation file; one-line error on a bad row."""
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except UnicodeDecodeError:
        raise DatasetFormatError(f"{path}: not a text file") from None
    for lineno, line in enumerate(lines[skip:], start=skip + 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < ncols:
            raise DatasetFormatError(
                f"{path}:{lineno}: expected {ncols} columns, got {len(parts)}: {line.strip()!r}"
            )
        rows.append(parts[:ncols])
    return rows


def inside(root: Path, rel: str, listed_in: Path) -> str:
    """``root/rel`` as an absolute path, refused in one line when ``rel`` (read from
    the annotation file ``listed_in``) leaves ``root`` ('../..', an absolute path)."""
    full = os.path.normpath(os.path.join(root, rel))
    base = os.path.normpath(root)
    if os.path.isabs(rel) or not (full == base or full.startswith(base + os.sep)):
        raise DatasetFormatError(f"{listed_in}: image path {rel!r} leaves the dataset folder {base}")
    return full


def _int(value: str, path: Path, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DatasetFormatError(f"{path}: {what} {value!r} is not an integer") from None


def _float(value: str, path: Path, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DatasetFormatError(f"{path}: {what} {value!r} is not a number") from None


def _split_by_class(
    paths: list[str], classes: np.ndarray, boxes: Optional[np.ndarray], first_test: int
) -> tuple[Split, Split]:
    is_train = classes < first_test
    out = []
    for mask in (is_train, ~is_train):
        idx = np.flatnonzero(mask)
        (labels,) = remap_labels(classes[idx])
        out.append(
            Split(
                paths=[paths[i] for i in idx],
                labels=labels,
                boxes=None if boxes is None else boxes[idx],
            )
        )
    return out[0], out[1]


# ---------------------------------------------------------------------------
# The readers
# ---------------------------------------------------------------------------


def _read_cub(root: Path, cropped: bool) -> DatasetSplits:
    images = _read_rows(root / "images.txt", 2)
    labels = {k: v for k, v in _read_rows(root / "image_class_labels.txt", 2)}
    ids = [r[0] for r in images]
    missing = [i for i in ids if i not in labels]
    if missing:
        raise DatasetFormatError(
            f"{root / 'image_class_labels.txt'}: no class for image id {missing[0]} "
            f"({len(missing)} image(s) of images.txt have none)"
        )
    paths = [inside(root / "images", r[1], root / "images.txt") for r in images]
    classes = np.array(
        [_int(labels[i], root / "image_class_labels.txt", "class id") for i in ids], dtype=np.int64
    )
    boxes = None
    if cropped:
        bbpath = root / "bounding_boxes.txt"
        bb = {r[0]: r[1:] for r in _read_rows(bbpath, 5)}
        missing = [i for i in ids if i not in bb]
        if missing:
            raise DatasetFormatError(f"{bbpath}: no box for image id {missing[0]}")
        xywh = np.array(
            [[_float(v, bbpath, "box value") for v in bb[i]] for i in ids], dtype=np.float64
        ).reshape(-1, 4)
        boxes = np.stack(
            [xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]], axis=1
        )
    train, test = _split_by_class(paths, classes, boxes, CUB_FIRST_TEST_CLASS)
    return DatasetSplits(train=train, test=test)


def _mat_field(rec, name: str, path: Path):
    try:
        return rec[name]
    except (KeyError, ValueError, IndexError):
        raise DatasetFormatError(
            f"{path}: 'annotations' has no field {name!r}; expected {_LAYOUT['cars196']}"
        ) from None


def _scalar(value) -> object:
    arr = np.asarray(value)
    while arr.dtype == object and arr.size == 1:
        arr = np.asarray(arr.reshape(-1)[0])
    return arr.reshape(-1)[0] if arr.size else None


def _read_cars(root: Path, cropped: bool) -> DatasetSplits:
    import scipy.io  # local: only this reader needs scipy

    path = root / "cars_annos.mat"
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise DatasetFormatError(f"{path}: cannot read as a MATLAB file ({exc})") from None
    if "annotations" not in mat:
        raise DatasetFormatError(
            f"{path}: no 'annotations' struct array; expected {_LAYOUT['cars196']}"
        )
    ann = np.asarray(mat["annotations"]).reshape(-1)
    if ann.dtype.names is None:
        raise DatasetFormatError(f"{path}: 'annotations' is not a struct array")
    paths, classes, boxes = [], [], []
    for rec in ann:
        rel = str(_scalar(_mat_field(rec, "relative_im_path", path)))
        paths.append(inside(root, rel, path))
        classes.append(int(_scalar(_mat_field(rec, "class", path))))
        if cropped:
            boxes.append(
                [float(_scalar(_mat_field(rec, k, path))) for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")]
            )
    box_arr = np.array(boxes, dtype=np.float64).reshape(-1, 4) if cropped else None
    train, test = _split_by_class(
        paths, np.array(classes, dtype=np.int64), box_arr, CARS_FIRST_TEST_CLASS
    )
    return DatasetSplits(train=train, test=test)


def _read_sop_file(root: Path, name: str) -> Split:
    path = root / name
    rows = _read_rows(path, 4, skip=1)
    classes = np.array([_int(r[1], path, "class_id") for r in rows], dtype=np.int64)
    (labels,) = remap_labels(classes)
    return Split(paths=[inside(root, r[3], path) for r in rows], labels=labels)


def _read_sop(root: Path, cropped: bool) -> DatasetSplits:
    return DatasetSplits(
        train=_read_sop_file(root, "Ebay_train.txt"), test=_read_sop_file(root, "Ebay_test.txt")
    )


def _inshop_item(value: str, path: Path) -> int:
    digits = value[3:] if value.startswith("id_") else value
    return _int(digits, path, "item_id")


def _read_inshop(root: Path, cropped: bool) -> DatasetSplits:
    path = root / "list_eval_partition.txt"
    rows = _read_rows(path, 3, skip=2)  # line 1: count, line 2: header
    groups: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "query": ([], []), "gallery": ([], [])}
    for name, item, status in rows:
        if status not in groups:
            raise DatasetFormatError(
                f"{path}: evaluation_status {status!r} of {name} is not train, query or gallery"
            )
        groups[status][0].append(inside(root, name, path))
        groups[status][1].append(_inshop_item(item, path))
    for status in ("train", "query", "gallery"):
        if not groups[status][0]:
            raise DatasetFormatError(f"{path}: no image has evaluation_status {status!r}")
    (train_labels,) = remap_labels(np.array(groups["train"][1]))
    q_labels, g_labels = remap_labels(np.array(groups["query"][1]), np.array(groups["gallery"][1]))
    return DatasetSplits(
        train=Split(groups["train"][0], train_labels),
        query=Split(groups["query"][0], q_labels),
        gallery=Split(groups["gallery"][0], g_labels),
    )


_READERS = {"cub200": _read_cub, "cars196": _read_cars, "sop": _read_sop, "inshop": _read_inshop}


def read_dataset(dataset: str, root: Path, cropped: bool = False) -> DatasetSplits:
    """Read ``dataset`` from its official layout under ``root``."""
    check_dataset(dataset, root, cropped)
    root = Path(os.path.abspath(root))
    splits = _READERS[dataset](root, cropped)
    for name in ("train", "test", "query", "gallery"):
        split = getattr(splits, name)
        if split is not None and len(split) == 0:
            raise DatasetFormatError(f"{dataset}: the {name} split under {root} has no images")
    return splits
