"""A procedurally drawn stand-in dataset, written in a real dataset's official layout.

Used by the smoke profile and by tests: the generated files go through exactly
the same reader and loader as the real data, so the whole path is exercised
without downloading anything.

Each class is an object made of 2-3 coloured parts (polygon shapes at fixed
offsets in the object's frame; the class prototype). Colours come from a small
shared palette and shapes from a small shared set, so no single colour or shape
identifies a class: the arrangement does. Each image draws its class's object
under nuisances whose strength scales with ``difficulty``: position, scale,
rotation, per-part jitter, colour jitter, a gradient background, clutter
shapes drawn from the same palette/shape set, and pixel noise. Everything is
a deterministic function of ``SyntheticConfig.seed``.

No library generates such data in a DML layout, hence the hand-written drawing
(PIL's ImageDraw does the rasterising).

Class split: ``classes // 2`` training classes, the rest test classes. Class
ids are chosen so the official readers' rules split them (CUB: ids 1.. train,
101.. test; Cars: 1.. and 99..; SOP and In-Shop list the splits directly).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmark.config import DATASETS, SyntheticConfig
from benchmark.errors import ConfigError

from .readers import CARS_FIRST_TEST_CLASS, CUB_FIRST_TEST_CLASS

# Bump when the drawing or the layout changes: the cache key includes it.
GENERATOR_VERSION = 2  # 2: content also depends on the dataset name

_PALETTE = np.array(
    [
        [220, 40, 40],
        [40, 170, 60],
        [40, 80, 220],
        [235, 200, 40],
        [170, 60, 200],
        [40, 200, 210],
        [240, 130, 30],
        [240, 240, 240],
    ],
    dtype=np.float64,
)
_SHAPES = ("ellipse", "square", "triangle", "pentagon", "star", "bar")

_SOP_SUPER = (
    "bicycle", "cabinet", "chair", "coffee_maker", "fan", "kettle",
    "lamp", "mug", "sofa", "stapler", "table", "toaster",
)  # fmt: skip


# ---------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------


def _unit_shape(kind: str) -> np.ndarray:
    """Vertices [K,2] of a shape of radius ~1 centred at the origin."""
    if kind == "ellipse":
        t = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        return np.stack([np.cos(t), 0.6 * np.sin(t)], axis=1)
    if kind == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * 0.8
    if kind == "triangle":
        t = np.array([90, 210, 330]) * math.pi / 180
        return np.stack([np.cos(t), -np.sin(t)], axis=1)
    if kind == "pentagon":
        t = np.arange(5) * 2 * math.pi / 5 + math.pi / 2
        return np.stack([np.cos(t), -np.sin(t)], axis=1)
    if kind == "star":
        t = np.arange(10) * math.pi / 5 + math.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([r * np.cos(t), -r * np.sin(t)], axis=1)
    if kind == "bar":
        return np.array([[-1, -0.3], [1, -0.3], [1, 0.3], [-1, 0.3]], dtype=np.float64)
    raise ValueError(kind)


_UNIT = {k: _unit_shape(k) for k in _SHAPES}


def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


@dataclasses.dataclass
class _Prototype:
    shapes: list[str]
    colours: np.ndarray  # [P,3]
    offsets: np.ndarray  # [P,2] in object units
    sizes: np.ndarray  # [P]
    angles: np.ndarray  # [P]


def _prototype(seed: int, cls: int) -> _Prototype:
    rng = np.random.default_rng([seed, 1, cls])
    n = int(rng.integers(2, 4))
    shapes = [_SHAPES[i] for i in rng.integers(0, len(_SHAPES), n)]
    colours = _PALETTE[rng.choice(len(_PALETTE), n, replace=False)]
    # Parts on a ring around the centre so the arrangement (not just the colour set) matters.
    base = rng.uniform(0, 2 * math.pi)
    ang = base + np.arange(n) * 2 * math.pi / n + rng.uniform(-0.5, 0.5, n)
    rad = rng.uniform(0.2, 0.45, n)
    offsets = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    sizes = rng.uniform(0.3, 0.5, n)
    angles = rng.uniform(0, 2 * math.pi, n)
    return _Prototype(shapes, colours, offsets, sizes, angles)


def _draw_image(
    proto: _Prototype, seed: int, cls: int, index: int, size: int, difficulty: float
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """One image of class ``cls`` and the box (x1, y1, x2, y2) enclosing its object."""
    # Calibration: at difficulty 1 (24 classes x 12 images, 64 px, 48 px crops) a
    # random-init 4-layer CNN scores test Recall@1 ~30% and 50 Adam steps of triplet
    # training raise it to ~60% (chance ~8%); difficulty 2 is near chance for both.
    d = 0.5 * max(0.0, float(difficulty))
    rng = np.random.default_rng([seed, 2, cls, index])
    short = int(round(size * rng.uniform(0.65, 1.0)))
    w, h = (size, short) if rng.random() < 0.5 else (short, size)

    # Background: a gradient between two greyish colours (tint and contrast grow with d).
    c0 = rng.uniform(30, 220) + rng.normal(0, 30 * min(d, 1.5), 3)
    c1 = c0 + rng.normal(0, 50 * min(d, 1.5), 3)
    t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, h)[:, None, None]
    bg = c0 * (1 - t) + c1 * t
    bg = np.broadcast_to(bg, (h, w, 3))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)

    # Clutter: random parts from the same shape set and palette.
    n_clutter = int(rng.poisson(2.0 * d))
    for _ in range(n_clutter):
        kind = _SHAPES[int(rng.integers(len(_SHAPES)))]
        r = rng.uniform(0.05, 0.12) * short
        c = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        pts = _UNIT[kind] @ _rot(rng.uniform(0, 2 * math.pi)).T * r + c
        col = _PALETTE[int(rng.integers(len(_PALETTE)))] + rng.normal(0, 20, 3)
        draw.polygon([tuple(p) for p in pts], fill=tuple(int(v) for v in np.clip(col, 0, 255)))

    # The object: prototype under scale / rotation / position / part jitter.
    scale = short * rng.uniform(0.45, 0.55) * (1 - 0.25 * min(d, 1.5) * rng.random())
    theta = rng.uniform(-1, 1) * min(d, 1.5) * math.pi / 3
    if rng.random() < 0.5 * min(d, 1.0):
        flip = np.array([[-1.0, 0.0], [0.0, 1.0]])  # mirror image of the object
    else:
        flip = np.eye(2)
    R = _rot(theta) @ flip
    margin = 0.55 * scale
    cx = rng.uniform(margin, max(margin, w - margin))
    cy = rng.uniform(margin, max(margin, h - margin))
    all_pts = []
    order = rng.permutation(len(proto.shapes))  # which part is on top varies
    for p in order:
        off = proto.offsets[p] + rng.normal(0, 0.06 * d, 2)
        sz = proto.sizes[p] * np.exp(rng.normal(0, 0.12 * d))
        ang = proto.angles[p] + rng.normal(0, 0.3 * d)
        local = _UNIT[proto.shapes[p]] @ _rot(ang).T * sz + off
        pts = local @ R.T * scale + np.array([cx, cy])
        col = proto.colours[p] + rng.normal(0, 18 * d, 3) + rng.normal(0, 12 * d)
        draw.polygon([tuple(q) for q in pts], fill=tuple(int(v) for v in np.clip(col, 0, 255)))
        all_pts.append(pts)
    pts = np.concatenate(all_pts)
    x1, y1 = np.floor(pts.min(axis=0))
    x2, y2 = np.ceil(pts.max(axis=0)) + 1
    box = (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))

    # Occluders on top of the object (so a box crop does not remove all clutter).
    for _ in range(int(rng.poisson(2.0 * d))):
        kind = _SHAPES[int(rng.integers(len(_SHAPES)))]
        r = rng.uniform(0.06, 0.12) * short
        c = np.array([rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3])])
        pts = _UNIT[kind] @ _rot(rng.uniform(0, 2 * math.pi)).T * r + c
        col = _PALETTE[int(rng.integers(len(_PALETTE)))] + rng.normal(0, 20, 3)
        draw.polygon([tuple(p) for p in pts], fill=tuple(int(v) for v in np.clip(col, 0, 255)))

    sigma = 10.0 * d
    if sigma > 0:
        arr = np.asarray(img, dtype=np.float32) + rng.normal(0, sigma, (h, w, 3)).astype(np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img, box


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------


def _check(dataset: str, cfg: SyntheticConfig) -> tuple[int, int]:
    if dataset not in DATASETS:
        raise ConfigError(f"data.dataset: unknown dataset {dataset!r}")
    if cfg.classes < 2:
        raise ConfigError(f"data.synthetic.classes: needs at least 2 (half train, half test), got {cfg.classes}")
    if cfg.images_per_class < 2:
        raise ConfigError(f"data.synthetic.images_per_class: needs at least 2, got {cfg.images_per_class}")
    if cfg.image_size < 16:
        raise ConfigError(f"data.synthetic.image_size: needs at least 16 pixels, got {cfg.image_size}")
    if cfg.difficulty < 0:
        raise ConfigError(f"data.synthetic.difficulty: must be >= 0, got {cfg.difficulty}")
    n_train = cfg.classes // 2
    n_test = cfg.classes - n_train
    limit = {"cub200": CUB_FIRST_TEST_CLASS - 1, "cars196": CARS_FIRST_TEST_CLASS - 1}.get(dataset)
    if limit is not None and max(n_train, n_test) > limit:
        raise ConfigError(
            f"data.synthetic.classes: {dataset} splits at class {limit}, so at most {2 * limit} classes fit, "
            f"got {cfg.classes}"
        )
    return n_train, n_test


def cache_key(dataset: str, cfg: SyntheticConfig) -> str:
    payload = json.dumps(
        {"dataset": dataset, "cfg": dataclasses.asdict(cfg), "version": GENERATOR_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def content_seed(dataset: str, cfg: SyntheticConfig) -> int:
    """The stand-ins for different datasets hold different images (otherwise a
    smoke CUB and a smoke Cars run would compute the same thing)."""
    return (int(cfg.seed) << 32) ^ zlib.crc32(dataset.encode())


def _images(cfg: SyntheticConfig, dataset: str):
    """Yield (class index 0..C-1, image index, PIL image, box)."""
    seed = content_seed(dataset, cfg)
    for c in range(cfg.classes):
        proto = _prototype(seed, c)
        for j in range(cfg.images_per_class):
            img, box = _draw_image(proto, seed, c, j, cfg.image_size, cfg.difficulty)
            yield c, j, img, box


def _save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=92)


def _write_cub(root: Path, cfg: SyntheticConfig, n_train: int) -> None:
    images, labels, boxes, split, classes = [], [], [], [], {}
    for k, (c, j, img, box) in enumerate(_images(cfg, "cub200"), start=1):
        cid = c + 1 if c < n_train else CUB_FIRST_TEST_CLASS + (c - n_train)
        cname = f"{cid:03d}.Synthetic_{cid}"
        classes[cid] = cname
        rel = f"{cname}/Synthetic_{cid}_{j:04d}.jpg"
        _save(img, root / "images" / rel)
        x1, y1, x2, y2 = box
        images.append(f"{k} {rel}")
        labels.append(f"{k} {cid}")
        boxes.append(f"{k} {x1:.1f} {y1:.1f} {x2 - x1:.1f} {y2 - y1:.1f}")
        split.append(f"{k} {int(j % 2 == 0)}")  # the classification split, unused by DML
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "bounding_boxes.txt").write_text("\n".join(boxes) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (root / "classes.txt").write_text("\n".join(f"{k} {v}" for k, v in sorted(classes.items())) + "\n")


def _write_cars(root: Path, cfg: SyntheticConfig, n_train: int) -> None:
    import scipy.io

    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    records = []
    for k, (c, j, img, box) in enumerate(_images(cfg, "cars196"), start=1):
        cid = c + 1 if c < n_train else CARS_FIRST_TEST_CLASS + (c - n_train)
        rel = f"car_ims/{k:06d}.jpg"
        _save(img, root / rel)
        x1, y1, x2, y2 = (int(math.floor(box[0])), int(math.floor(box[1])), int(math.ceil(box[2])), int(math.ceil(box[3])))
        records.append((rel, x1, y1, x2, y2, cid, int(j % 2)))  # `test` = classification flag
    ann = np.empty((1, len(records)), dtype=[(f, object) for f in fields])
    for i, rec in enumerate(records):
        ann[0, i] = (rec[0],) + tuple(np.array([[v]], dtype=np.int32) for v in rec[1:])
    names = np.empty((1, 196), dtype=object)
    for i in range(196):
        names[0, i] = f"Synthetic Car {i + 1}"
    scipy.io.savemat(str(root / "cars_annos.mat"), {"annotations": ann, "class_names": names})


def _write_sop(root: Path, cfg: SyntheticConfig, n_train: int) -> None:
    header = "image_id class_id super_class_id path"
    rows = {"train": [header], "test": [header]}
    counters = {"train": 0, "test": 0}
    for c, j, img, _box in _images(cfg, "sop"):
        which = "train" if c < n_train else "test"
        cid = c + 1
        sup = c % len(_SOP_SUPER)
        rel = f"{_SOP_SUPER[sup]}_final/{cid}_{j}.JPG"
        _save(img, root / rel)
        counters[which] += 1
        rows[which].append(f"{counters[which]} {cid} {sup + 1} {rel}")
    (root / "Ebay_train.txt").write_text("\n".join(rows["train"]) + "\n")
    (root / "Ebay_test.txt").write_text("\n".join(rows["test"]) + "\n")


def _write_inshop(root: Path, cfg: SyntheticConfig, n_train: int) -> None:
    rows = []
    for c, j, img, _box in _images(cfg, "inshop"):
        item = f"id_{c + 1:08d}"
        rel = f"img/SYNTHETIC/Objects/{item}/{j:02d}_1_front.jpg"
        _save(img, root / rel)
        if c < n_train:
            status = "train"
        else:
            status = "query" if j % 2 == 0 else "gallery"
        rows.append(f"{rel} {item} {status}")
    text = f"{len(rows)}\nimage_name item_id evaluation_status\n" + "\n".join(rows) + "\n"
    (root / "list_eval_partition.txt").write_text(text)


_WRITERS = {"cub200": _write_cub, "cars196": _write_cars, "sop": _write_sop, "inshop": _write_inshop}


def ensure_synthetic(dataset: str, cfg: SyntheticConfig, cache_dir: Path) -> Path:
    """Generate (once) the synthetic dataset in ``dataset``'s official layout; return its root.

    The directory name holds a hash of (dataset, cfg, generator version), so
    different configs never share files. Generation writes into a temporary
    directory that is renamed into place: a present directory is complete, and
    concurrent callers race harmlessly (the loser discards its copy).
    """
    if cfg.generator != GENERATOR_VERSION:
        raise ConfigError(
            f"data.synthetic.generator: this version of the harness generates version {GENERATOR_VERSION} "
            f"synthetic data, not {cfg.generator}"
        )
    n_train, _ = _check(dataset, cfg)
    cache_dir = Path(cache_dir)
    name = f"{dataset}-synthetic-{cfg.classes}x{cfg.images_per_class}-{cfg.image_size}px-{cache_key(dataset, cfg)}"
    final = cache_dir / name
    if final.is_dir():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=cache_dir))
    try:
        _WRITERS[dataset](tmp, cfg, n_train)
        (tmp / "SYNTHETIC.json").write_text(
            json.dumps({"dataset": dataset, "config": dataclasses.asdict(cfg), "version": GENERATOR_VERSION})
        )
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
