"""Samplers, transforms and batch iterators: composition, determinism, views, decode-once."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image

from benchmark.config import DataConfig, SyntheticConfig
from benchmark.data import (
    ABEPairSampler,
    ClassBalancedSampler,
    EvalTransform,
    Split,
    TrainBatches,
    decode_count,
    eval_batches,
    prepare_splits,
)
from benchmark.data.rng import SplitMix64
from benchmark.data.transforms import (
    TrainTransform,
    crop_box,
    multires_params,
    resize_into,
    rrc_params,
    to_channels_last,
)
from benchmark.errors import ConfigError, DatasetNotFoundError, UserError

# ---------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_pk_sampler_composition():
    labels = np.repeat(np.arange(10), 6)
    labels[-4:] = 99  # class 9 -> 99 keeps 2 images + gains 4: classes of uneven size
    labels = np.concatenate([labels, [42, 42]])  # a class with fewer than K images
    batches = list(ClassBalancedSampler(labels, 12, 3, 50, _gen(0)))
    assert len(batches) == 50
    saw_small = False
    for b in batches:
        assert len(b) == 12
        per_class = Counter(labels[b].tolist())
        assert len(per_class) == 4 and set(per_class.values()) == {3}
        for c in per_class:
            idx = [i for i in b if labels[i] == c]
            if (labels == c).sum() >= 3:
                assert len(set(idx)) == 3  # without replacement when the class has K images
            else:
                saw_small = True
                assert set(idx) == set(np.flatnonzero(labels == c))  # all of them, then repeats
    assert saw_small
    assert batches == list(ClassBalancedSampler(labels, 12, 3, 50, _gen(0)))
    assert batches != list(ClassBalancedSampler(labels, 12, 3, 50, _gen(1)))


def test_pk_sampler_rejects_more_classes_than_exist():
    with pytest.raises(ConfigError, match="data.batch_size"):
        ClassBalancedSampler(np.repeat(np.arange(3), 5), 20, 5, 1, _gen(0))


@pytest.mark.parametrize("batch_size", [64, 8])
def test_abe_pair_sampler_structure(batch_size):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 20, 300)
    labels[0] = 1000  # a singleton class: its positive partner can only be itself
    half, quarter = batch_size // 2, batch_size // 4
    for b in ABEPairSampler(labels, batch_size, 30, _gen(5)):
        assert len(b) == batch_size
        anchors = b[:half]
        assert len(set(anchors)) == half
        for i in range(quarter):
            a, p = anchors[i], b[half + i]
            assert labels[a] == labels[p]
            assert a != p or (labels == labels[a]).sum() == 1
            n = b[half + quarter + i]
            assert labels[anchors[quarter + i]] != labels[n]
    with pytest.raises(ConfigError, match="multiple of 4"):
        ABEPairSampler(labels, 30, 1, _gen(0))


# ---------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------


def test_resize_into_is_torchvisions_resized_crop():
    """The kernel call the loader makes (channels-last crop of a decoded image,
    written into a channels-last batch slot) gives torchvision's planar bytes."""
    img = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=_gen(0))
    cl = to_channels_last(img)
    for top, left, h, w, size in [(0, 0, 37, 53, 24), (3, 5, 20, 30, 48), (1, 1, 30, 30, 30)]:
        expected = F.resized_crop(img, top, left, h, w, [size, size], antialias=True)
        slot = torch.zeros(size, size, 3, dtype=torch.uint8)
        out = slot.unsqueeze(0).permute(0, 3, 1, 2)
        assert resize_into(cl[:, :, top : top + h, left : left + w], out) is out
        assert torch.equal(slot.permute(2, 0, 1), expected)  # written in place, into the slot


def test_rrc_params_follow_scale_and_ratio():
    rng = SplitMix64(0)
    for _ in range(200):
        top, left, h, w = rrc_params(60, 80, (0.2, 0.6), (0.75, 4 / 3), rng)
        assert 0 <= top <= 60 - h and 0 <= left <= 80 - w
        assert 0.19 <= h * w / 4800 <= 0.61
        assert 0.7 <= w / h <= 1.4


def test_multires_params_follow_horde():
    """Longer side uniform in [int(0.8 c), int(1.8 c)] (rounded up), aspect kept,
    window offsets inside the resized image (0 along a side shorter than c)."""
    rng = SplitMix64(1)
    longer, padded = [], 0
    for _ in range(2000):
        nh, nw, top, left = multires_params(300, 400, 100, (0.8, 1.8), rng)
        longer.append(nw)
        assert 80 <= nw <= 180 and abs(nh - nw * 0.75) <= 1
        assert 0 <= top <= max(nh - 100, 0) and 0 <= left <= max(nw - 100, 0)
        padded += nh < 100
    # uniform: mean (80 + 180) / 2 = 130; P(0.75 * L < 100) = (133.3 - 80) / 100
    assert abs(np.mean(longer) - 130.5) < 2.5 and abs(padded / 2000 - 0.533) < 0.04
    nh, nw, _, _ = multires_params(400, 300, 100, (0.8, 1.8), SplitMix64(2))
    assert nh > nw  # portrait: the height is the longer side


@pytest.mark.parametrize("shape, ratio", [((50, 40), (0.8, 1.8)), ((90, 120), (0.5, 4.0))])
def test_multi_resolution_views_are_resize_then_crop_pad_and_flip(shape, ratio):
    """Each view is exactly torchvision's resize of the whole image (antialiased),
    the crop window, centred on a black canvas where the image is smaller, then
    the canvas flipped: what resizing, cropping and flipping in turn give (the
    second case has windows far smaller than the resized image, up- and
    down-scaling, so the window-only resize is checked where it saves most)."""
    cfg = DataConfig(train_transform="multi_resolution_crop", crop_size=32, multires_range=ratio)
    tt = TrainTransform(cfg)
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, *shape), dtype=torch.uint8, generator=g)
    seen = Counter()
    for k in range(120):
        rng = SplitMix64(k)
        nh, nw, top, left = multires_params(*shape, 32, ratio, rng)
        flip = rng.random() < 0.5
        full = F.resize(img, [nh, nw], antialias=True)
        hm, wm = min(32, nh), min(32, nw)
        expected = torch.zeros(3, 32, 32, dtype=torch.uint8)
        y, x = (32 - hm) // 2, (32 - wm) // 2
        expected[:, y : y + hm, x : x + wm] = full[:, top : top + hm, left : left + wm]
        if flip:
            expected = F.horizontal_flip(expected)
        assert torch.equal(tt(img, SplitMix64(k)), expected), k
        seen[(hm < 32 or wm < 32, flip)] += 1
    assert len(seen) == 4  # padded and not, flipped and not


def test_multires_range_is_checked_and_only_part_of_identity_when_used():
    from benchmark.config import load_config, semantic_dict

    base = {"method": "cohort", "cohort": {}}
    plain = load_config(dict(base, data={}))
    assert "multires_range" not in semantic_dict(plain)["data"]  # hashes of older runs unchanged
    other = load_config(dict(base, data={"multires_range": [0.5, 1.0]}))
    assert semantic_dict(other) == semantic_dict(plain)  # unused by random_resized_crop
    used = load_config(dict(base, data={"train_transform": "multi_resolution_crop", "multires_range": [0.5, 1.0]}))
    assert semantic_dict(used)["data"]["multires_range"] == [0.5, 1.0]
    for bad in ([1.8, 0.8], [0.0, 1.0]):
        with pytest.raises(ConfigError, match="data.multires_range"):
            TrainTransform(DataConfig(train_transform="multi_resolution_crop", multires_range=tuple(bad)))


def test_eval_transforms_shapes_and_padding():
    img = torch.full((3, 20, 40), 200, dtype=torch.uint8)
    cfg = DataConfig(resize_size=16, crop_size=16, test_transform="resize_pad_center_crop")
    out = EvalTransform(cfg)(img)
    assert out.shape == (3, 16, 16)
    assert (out[:, :4] == 0).all() and (out[:, 4:12] == 200).all() and (out[:, 12:] == 0).all()
    out = EvalTransform(dataclasses.replace(cfg, test_transform="resize_center_crop", crop_size=12))(img)
    assert out.shape == (3, 12, 12) and (out == 200).all()
    # square resize ignores the aspect ratio: a 20x40 image becomes 16x16, then centre 12
    ramp = torch.arange(40, dtype=torch.uint8).mul(6).expand(3, 20, 40).contiguous()
    cfg_sq = dataclasses.replace(cfg, test_transform="resize_square_center_crop", crop_size=12)
    expected = F.center_crop(F.resize(ramp, [16, 16], antialias=True), [12, 12])
    assert torch.equal(EvalTransform(cfg_sq)(ramp), expected)
    with pytest.raises(ConfigError, match="data.crop_size"):
        EvalTransform(dataclasses.replace(cfg, crop_size=32))


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------


def _patterned_split(root: Path, n_classes=4, per_class=5) -> Split:
    """PNG images whose red channel is a constant unique to the image and whose
    green/blue channels are gradients (so different crops/flips differ)."""
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:30, 0:40]
    paths, labels = [], []
    for i in range(n_classes * per_class):
        a = np.stack([np.full_like(xx, 10 + 10 * i), xx * 6, (yy * 8 + xx * 2) % 256], -1).astype(np.uint8)
        p = root / f"{i}.png"
        Image.fromarray(a).save(p)
        paths.append(str(p))
        labels.append(i // per_class)
    return Split(paths=paths, labels=np.array(labels))


@pytest.fixture(scope="module")
def patterned(tmp_path_factory):
    return _patterned_split(tmp_path_factory.mktemp("patterned"))


CFG = DataConfig(batch_size=8, images_per_class=2, crop_size=16, resize_size=20, num_workers=0, rrc_scale=(0.2, 1.0))


def _epoch(cfg, split, epoch, views=3, seed=0, iterations=3, **kw):
    return list(TrainBatches(cfg, split, views, seed).epoch(epoch, iterations, **kw))


def test_train_batch_shapes_and_labels(patterned):
    batches = _epoch(CFG, patterned, 0)
    assert len(batches) == 3
    for x, y in batches:
        assert x.shape == (8, 3, 3, 16, 16) and x.dtype == torch.uint8
        assert y.shape == (8,) and y.dtype == torch.int64
        assert sorted(Counter(y.tolist()).values()) == [2, 2, 2, 2]
    # iterations None = one pass: 20 images // batch 8
    assert len(list(TrainBatches(CFG, patterned, 1, 0).epoch(0, None))) == 2


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


@pytest.mark.parametrize("transform", ["random_resized_crop", "resize_pad_random_crop", "multi_resolution_crop"])
def test_deterministic_in_seed_and_epoch_whatever_the_workers(patterned, transform):
    cfg = dataclasses.replace(CFG, train_transform=transform)
    torch.manual_seed(123)  # the global RNG must not matter
    a = _epoch(cfg, patterned, 1)
    torch.manual_seed(456)
    b = _epoch(cfg, patterned, 1)
    assert _same(a, b)
    assert not _same(a, _epoch(cfg, patterned, 2))
    assert not _same(a, _epoch(cfg, patterned, 1, seed=1))
    tb = TrainBatches(dataclasses.replace(cfg, num_workers=2), patterned, 3, 0)
    assert _same(a, list(tb.epoch(1, 3)))
    next(iter(tb.epoch(0, 3)))  # abandoned mid-epoch: the persistent workers are reset
    assert _same(a, list(tb.epoch(1, 3)))
    assert _same(a[1:], list(tb.epoch(1, 3, start=1)))  # mid-epoch resume
    tb.close()


def test_loading_leaves_the_global_rng_alone(patterned):
    torch.manual_seed(0)
    expected = torch.rand(3)
    for workers in (0, 2):
        torch.manual_seed(0)
        cfg = dataclasses.replace(CFG, num_workers=workers)
        tb = TrainBatches(cfg, patterned, 2, 0)
        for e in range(2):
            list(tb.epoch(e, 2))
        list(eval_batches(cfg, patterned, 8))
        assert torch.equal(torch.rand(3), expected)


def test_views_differ_but_come_from_the_same_image(patterned):
    x, y = _epoch(CFG, patterned, 0, views=4, iterations=1)[0]
    idx = TrainBatches(CFG, patterned, 4, 0).batch_indices(0, 1)[0]
    for b in range(8):
        red = x[b, :, 0].float()
        # the red channel is constant per image: every view shows image idx[b]
        assert torch.allclose(red, torch.full_like(red, 10 + 10 * idx[b]), atol=1)
        gb = x[b, :, 1:]
        assert len({gb[v].numpy().tobytes() for v in range(4)}) == 4


def test_batch_views_are_torchvisions_resized_crop_and_flip(patterned):
    """The channels-last fast path (resize on interleaved pixels straight into the
    batch, or through a scratch buffer mirrored into it) gives the bytes of
    torchvision's planar ``resized_crop(antialias=True)`` + ``hflip`` with the
    same parameters."""
    from benchmark.data.loaders import _VIEW_STREAM
    from benchmark.data.rng import derive_seed
    from benchmark.data.transforms import load_image

    cfg = dataclasses.replace(CFG, crop_size=12, rrc_scale=(0.05, 1.0))  # both up- and down-scaling
    tb = TrainBatches(cfg, patterned, 4, 7)
    flips = 0
    for b, (x, _) in enumerate(tb.epoch(2, 2)):
        # storage [B,V,H,W,3]: every view x[:, v] is a channels-last [B,3,H,W]
        assert x.permute(0, 1, 3, 4, 2).is_contiguous()
        for pos, idx in enumerate(tb.batch_indices(2, 2)[b]):
            img = load_image(patterned.paths[idx]).contiguous()  # planar, as torchvision is used
            base = derive_seed(_VIEW_STREAM, 7, 2, b, pos)
            for v in range(4):
                rng = SplitMix64(derive_seed(base, v))
                top, left, h, w = rrc_params(*img.shape[-2:], cfg.rrc_scale, cfg.rrc_ratio, rng)
                expected = F.resized_crop(img, top, left, h, w, [12, 12], antialias=True)
                if rng.random() < 0.5:
                    expected = F.horizontal_flip(expected)
                    flips += 1
                assert torch.equal(x[pos, v], expected)
    assert 0 < flips < 64


def test_each_image_decoded_once_per_batch(patterned):
    # K = 8 images per class from classes of 5: every batch repeats images
    cfg = dataclasses.replace(CFG, batch_size=16, images_per_class=8)
    tb = TrainBatches(cfg, patterned, 4, 0)
    before = decode_count()
    n = sum(1 for _ in tb.epoch(0, 3))
    batches = tb.batch_indices(0, 3)
    distinct = sum(len(set(b)) for b in batches)
    assert all(len(set(b)) < len(b) for b in batches)  # the repeats are there
    assert n == 3 and decode_count() - before == distinct  # not once per position, nor per view


def test_box_crops_reach_the_batch(patterned):
    """With boxes (cropped CUB / Cars) the views show only the box: here the box
    is the image's left third, whose green channel (x * 6) stays below 80."""
    boxes = np.tile([[0.0, 0.0, 13.0, 30.0]], (len(patterned), 1))
    cfg = dataclasses.replace(CFG, rrc_scale=(0.5, 1.0))
    x, _ = _epoch(cfg, dataclasses.replace(patterned, boxes=boxes), 0, views=2, iterations=1)[0]
    assert x[:, :, 1].max() <= 80
    x, _ = _epoch(cfg, patterned, 0, views=2, iterations=1)[0]
    assert x[:, :, 1].max() > 150  # without boxes the right side shows


def test_crop_box_clamps_and_falls_back():
    img = torch.arange(3 * 10 * 20, dtype=torch.int32).view(3, 10, 20).to(torch.uint8)
    assert torch.equal(crop_box(img, np.array([2.4, 1.5, 7.2, 9.0])), img[:, 1:9, 2:8])  # floor / ceil
    assert torch.equal(crop_box(img, np.array([-5.0, -5.0, 50.0, 50.0])), img)  # clamped to the image
    assert torch.equal(crop_box(img, np.array([5.0, 5.0, 5.0, 9.0])), img)  # empty box: whole image


def test_abe_train_views_are_torchvisions_resize_pad_crop_flip():
    """ABE's augmentation: longer side -> resize_size, centred on a black square,
    random crop_size crop, flip; against torchvision's ops with the same draws."""
    cfg = DataConfig(train_transform="resize_pad_random_crop", resize_size=40, crop_size=32)
    tt = TrainTransform(cfg)
    img = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8, generator=_gen(3))
    resized = F.resize(img, [29, 40], antialias=True)  # 50 x 70 -> longer side 40
    square = F.pad(resized, [0, 5, 0, 6], fill=0)  # left, top, right, bottom: centred in 40 x 40
    flips = 0
    for k in range(40):
        rng = SplitMix64(k)
        top, left = int(rng.random() * 9), int(rng.random() * 9)
        expected = square[:, top : top + 32, left : left + 32]
        if rng.random() < 0.5:
            expected, flips = F.horizontal_flip(expected), flips + 1
        assert torch.equal(tt(img, SplitMix64(k)), expected), k
    assert 0 < flips < 40


def test_abe_sampler_batches(patterned):
    cfg = dataclasses.replace(CFG, sampler="abe_pairs")
    x, y = _epoch(cfg, patterned, 0, views=1, iterations=1)[0]
    assert y[:2].tolist() == y[4:6].tolist()  # positives of anchors 0, 1
    assert (y[2:4] != y[6:8]).all()


def test_eval_batches_in_order(patterned):
    cfg = dataclasses.replace(CFG, num_workers=2)
    got = list(eval_batches(cfg, patterned, 6))
    assert [len(y) for _, y in got] == [6, 6, 6, 2]
    assert torch.equal(torch.cat([y for _, y in got]), torch.from_numpy(patterned.labels))
    reds = torch.cat([x[:, 0, 8, 8] for x, _ in got]).tolist()
    assert reds == [10 + 10 * i for i in range(20)]
    assert all(x.shape[1:] == (3, 16, 16) and x.dtype == torch.uint8 for x, _ in got)


def test_missing_image_in_a_worker_is_one_line(patterned, tmp_path):
    split = dataclasses.replace(patterned, paths=[str(tmp_path / "gone.jpg")] + patterned.paths[1:])
    cfg = dataclasses.replace(CFG, num_workers=2, sampler="abe_pairs")
    with pytest.raises(DatasetNotFoundError) as exc:
        for _ in TrainBatches(cfg, split, 1, 0).epoch(0, 20):
            pass
    assert "\n" not in str(exc.value) and "gone.jpg" in str(exc.value)


def test_prepare_splits_synthetic_with_val_classes(tmp_path):
    syn = SyntheticConfig(classes=10, images_per_class=3, image_size=24)
    cfg = DataConfig(dataset="cub200", synthetic=syn, val_classes=2, cropped=True)
    s = prepare_splits(cfg, tmp_path)
    assert s.train.num_classes == 3 and s.val.num_classes == 2 and s.test.num_classes == 5
    assert set(s.train.labels) == {0, 1, 2} and set(s.val.labels) == {0, 1}
    assert s.val.boxes is not None and len(s.val.boxes) == 6
    # the held-out classes are the last ones: original ids 4 and 5
    assert all("/004." in p or "/005." in p for p in s.val.paths)
    with pytest.raises(ConfigError, match="data.val_classes"):
        prepare_splits(dataclasses.replace(cfg, val_classes=5), tmp_path)
    with pytest.raises(ConfigError, match="data.root"):
        prepare_splits(DataConfig(dataset="sop"), tmp_path)
    with pytest.raises(ConfigError, match="data.cropped"):
        prepare_splits(DataConfig(dataset="sop", synthetic=syn, cropped=True), tmp_path)


def test_undecodable_image_is_one_line(patterned, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    split = dataclasses.replace(patterned, paths=[str(bad)] + patterned.paths[1:])
    with pytest.raises(UserError) as exc:
        list(eval_batches(CFG, split, 4))
    assert "\n" not in str(exc.value) and "bad.jpg" in str(exc.value)


_DIGEST_SCRIPT = """
import hashlib, sys, numpy as np
from benchmark.config import DataConfig
from benchmark.data import Split, TrainBatches
split = Split(paths=sys.argv[1].split(','), labels=np.array([int(v) for v in sys.argv[2].split(',')]))
cfg = DataConfig(batch_size=8, images_per_class=2, crop_size=16, resize_size=20, num_workers=0, rrc_scale=(0.2, 1.0))
h = hashlib.sha256()
for x, y in TrainBatches(cfg, split, 3, 7).epoch(4, 2):
    h.update(x.numpy().tobytes()); h.update(y.numpy().tobytes())
print(h.hexdigest())
"""


@pytest.mark.slow  # a fresh interpreter imports torch + torchvision (~3-15 s)
def test_same_bytes_in_a_fresh_process(patterned):
    """What a killed-and-resumed run relies on: nothing depends on process state."""
    import hashlib
    import os
    import subprocess
    import sys

    h = hashlib.sha256()
    for x, y in TrainBatches(CFG, patterned, 3, 7).epoch(4, 2):
        h.update(x.numpy().tobytes())
        h.update(y.numpy().tobytes())
    args = [",".join(patterned.paths), ",".join(str(v) for v in patterned.labels)]
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", _DIGEST_SCRIPT, *args], capture_output=True, text=True, env=env, check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == h.hexdigest()
