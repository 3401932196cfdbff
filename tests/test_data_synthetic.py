"""The synthetic generator: official layouts, round trip through the readers, determinism, cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.config import SyntheticConfig
from benchmark.data import ensure_synthetic, read_dataset
from benchmark.data import synthetic as syn
from benchmark.errors import ConfigError

SMALL = SyntheticConfig(classes=6, images_per_class=4, image_size=32, seed=3)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("dataset", ["cub200", "cars196", "sop", "inshop"])
def test_round_trip_through_official_reader(tmp_path, dataset):
    root = ensure_synthetic(dataset, SMALL, tmp_path)
    cropped = dataset in ("cub200", "cars196")
    s = read_dataset(dataset, root, cropped=cropped)
    assert len(s.train) == 3 * 4 and s.train.num_classes == 3
    np.testing.assert_array_equal(np.bincount(s.train.labels), [4, 4, 4])
    if dataset == "inshop":
        assert s.test is None
        assert len(s.query) + len(s.gallery) == 12
        assert set(s.query.labels) == set(s.gallery.labels) == {0, 1, 2}
        evaluated = s.query.paths + s.gallery.paths
    else:
        assert len(s.test) == 12 and s.test.num_classes == 3
        evaluated = s.test.paths
    assert not set(s.train.paths) & set(evaluated)
    for split in (s.train,) if not cropped else (s.train, s.test):
        for i, p in enumerate(split.paths):
            with Image.open(p) as im:
                w, h = im.size
            assert max(w, h) == 32 and min(w, h) >= 16  # longer side = image_size
            if cropped:
                x1, y1, x2, y2 = split.boxes[i]
                assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


def test_class_ids_follow_the_official_split_rules(tmp_path):
    cub = ensure_synthetic("cub200", SMALL, tmp_path)
    ids = sorted({int(l.split()[1]) for l in (cub / "image_class_labels.txt").read_text().splitlines()})
    assert ids == [1, 2, 3, 101, 102, 103]
    with pytest.raises(ConfigError, match="data.synthetic.classes"):
        ensure_synthetic("cars196", SyntheticConfig(classes=200), tmp_path)
    ensure_synthetic("sop", SyntheticConfig(classes=200, images_per_class=2, image_size=16), tmp_path)


def test_box_encloses_the_object():
    # At difficulty 0 there is no clutter and the background is one flat colour:
    # every pixel outside the box is background, and the object reaches each box edge.
    for cls in range(4):
        proto = syn._prototype(0, cls)
        for j in range(5):
            img, box = syn._draw_image(proto, 0, cls, j, 48, 0.0)
            a = np.asarray(img).astype(int)
            colours, counts = np.unique(a.reshape(-1, 3), axis=0, return_counts=True)
            bg = colours[counts.argmax()]
            obj = np.abs(a - bg).sum(-1) > 0
            x1, y1, x2, y2 = (int(v) for v in box)
            outside = obj.copy()
            outside[y1:y2, x1:x2] = False
            assert not outside.any()
            ys, xs = np.nonzero(obj)
            assert xs.min() - x1 <= 2 and x2 - 1 - xs.max() <= 2
            assert ys.min() - y1 <= 2 and y2 - 1 - ys.max() <= 2


def test_deterministic_and_seed_dependent(tmp_path):
    a = ensure_synthetic("cub200", SMALL, tmp_path / "a")
    b = ensure_synthetic("cub200", SMALL, tmp_path / "b")
    assert _digest(a) == _digest(b)
    c = ensure_synthetic("cub200", SyntheticConfig(classes=6, images_per_class=4, image_size=32, seed=4), tmp_path / "a")
    assert c != a
    assert _digest(c) != _digest(a)


def test_reused_from_cache_and_keyed_by_config(tmp_path, monkeypatch):
    root = ensure_synthetic("sop", SMALL, tmp_path)

    def boom(*args):
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setitem(syn._WRITERS, "sop", boom)
    assert ensure_synthetic("sop", SMALL, tmp_path) == root
    with pytest.raises(AssertionError):  # another difficulty is another dataset
        ensure_synthetic("sop", SyntheticConfig(classes=6, images_per_class=4, image_size=32, seed=3, difficulty=2.0), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no temporary left behind


def test_lost_race_keeps_the_winner(tmp_path, monkeypatch):
    """Another process renames its copy into place first: ours is discarded, theirs returned."""
    real = syn._WRITERS["inshop"]
    final = tmp_path / "placeholder"

    def racing_writer(root, cfg, n_train):
        real(root, cfg, n_train)
        final.mkdir()
        (final / "winner").write_text("x")

    name = ensure_synthetic("inshop", SMALL, tmp_path / "probe").name
    final = tmp_path / name
    monkeypatch.setitem(syn._WRITERS, "inshop", racing_writer)
    assert ensure_synthetic("inshop", SMALL, tmp_path) == final
    assert (final / "winner").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "probe"])
