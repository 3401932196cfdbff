"""The decoded-image cache (data.decoded_cache_mb): the batches of the decoding path,
bit for bit; each image decoded once across epochs; filled by and shared between
loader workers; bounded by its budget, with a one-line warning, caching what fits."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.config import DataConfig, TrainConfig, digest, semantic_dict
from benchmark.data import Split, TrainBatches, decode_count
from benchmark.data import cache as cache_mod
from benchmark.data.cache import MIB, DecodedCache, plan_decoded_cache
from benchmark.data.transforms import TrainTransform

TRANSFORMS = ["random_resized_crop", "resize_pad_random_crop", "multi_resolution_crop"]
CFG = DataConfig(batch_size=8, images_per_class=2, crop_size=16, resize_size=24, num_workers=0,
                 rrc_scale=(0.2, 1.0), multires_range=(0.8, 1.8), decoded_cache_mb=16)


def _write_split(root: Path, n_classes: int = 4, per_class: int = 5, side: int = 40) -> Split:
    """Images of varied shapes (so slots differ in size), half JPEG, half PNG, textured."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(n_classes * per_class):
        h, w = side - 3 * (i % 4), side + 5 * (i % 3)
        yy, xx = np.mgrid[0:h, 0:w]
        noise = rng.integers(0, 40, (h, w))
        a = np.stack([np.full_like(xx, 10 + 10 * i), (xx * 6 + noise) % 256, (yy * 8 + xx * 2) % 256], -1)
        p = root / (f"{i}.jpg" if i % 2 else f"{i}.png")
        Image.fromarray(a.astype(np.uint8)).save(p)
        paths.append(str(p))
        labels.append(i // per_class)
    return Split(paths=paths, labels=np.array(labels))


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return _write_split(tmp_path_factory.mktemp("cache_images"))


def _epoch(tb: TrainBatches, epoch: int, iterations: int = 3) -> list:
    return list(tb.epoch(epoch, iterations))


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_cached_batches_are_the_decoded_bytes_and_later_epochs_decode_nothing(split, transform):
    cfg = dataclasses.replace(CFG, train_transform=transform)
    decoding = TrainBatches(dataclasses.replace(cfg, decoded_cache_mb=0), split, 3, 5)
    assert decoding.cache is None
    reference = [_epoch(decoding, e) for e in (0, 1)]
    cached = TrainBatches(cfg, split, 3, 5)
    assert _same(_epoch(cached, 0), reference[0])  # filling
    assert _same(_epoch(cached, 1), reference[1])  # partly filling
    before = decode_count()
    assert _same(_epoch(cached, 0), reference[0]) and _same(_epoch(cached, 1), reference[1])
    assert decode_count() == before  # everything read back from the cache


def test_box_crops_are_cached_as_cropped(split):
    rng = np.random.default_rng(1)
    boxes = np.concatenate([rng.uniform(0, 12, (len(split), 2)), rng.uniform(20, 60, (len(split), 2))], axis=1)
    boxed = dataclasses.replace(split, boxes=boxes)  # some boxes reach past the image: clamped
    decoding = TrainBatches(dataclasses.replace(CFG, decoded_cache_mb=0), boxed, 2, 0)
    cached = TrainBatches(CFG, boxed, 2, 0)
    reference = _epoch(decoding, 0)
    assert _same(_epoch(cached, 0), reference) and _same(_epoch(cached, 0), reference)


def test_workers_fill_one_cache_that_every_process_reads(split, tmp_path):
    """Workers fill it, the main process sees their fills, and a later epoch needs no file at all."""
    moved = _write_split(tmp_path / "images")
    cfg = dataclasses.replace(CFG, num_workers=2, train_transform="multi_resolution_crop")
    reference = _epoch(TrainBatches(dataclasses.replace(cfg, num_workers=0, decoded_cache_mb=0), moved, 3, 2), 0)
    tb = TrainBatches(cfg, moved, 3, 2)
    assert _same(_epoch(tb, 0), reference)
    used = {i for batch in tb.batch_indices(0, 3) for i in batch}
    assert tb.cache.filled() == len(used)  # written in the workers, visible here
    shutil.rmtree(tmp_path / "images")  # decoding again would now fail
    assert _same(_epoch(tb, 0), reference)
    tb.close()


def test_a_budget_too_small_caches_the_first_images_and_says_what_all_need(tmp_path, capsys):
    big = _write_split(tmp_path, n_classes=2, per_class=5, side=300)  # ~0.27 MiB each, 2.5 MiB in all
    transform = TrainTransform(CFG)
    cache = plan_decoded_cache(big, transform, budget_mb=1)
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("warning:")
    assert "need 3 MiB" in err and "holds the first 3" in err and "raise data.decoded_cache_mb to 3" in err
    assert cache.nbytes <= MIB and cache.state.tolist() == [0] * 3 + [3] * 7  # the rest never cached
    cfg = dataclasses.replace(CFG, decoded_cache_mb=1, batch_size=4)
    reference = _epoch(TrainBatches(dataclasses.replace(cfg, decoded_cache_mb=0), big, 2, 0), 0, 2)
    tb = TrainBatches(cfg, big, 2, 0)
    assert _same(_epoch(tb, 0, 2), reference) and _same(_epoch(tb, 0, 2), reference)
    capsys.readouterr()
    assert plan_decoded_cache(big, transform, budget_mb=0) is None
    assert plan_decoded_cache(big, transform, budget_mb=3) is not None and capsys.readouterr().err == ""


def test_shared_memory_bounds_the_budget_too(split, monkeypatch, capsys):
    need = plan_decoded_cache(split, TrainTransform(CFG), budget_mb=16).nbytes
    monkeypatch.setattr(cache_mod, "_shm_free_bytes", lambda: need)  # half of it is left to the loader
    cache = plan_decoded_cache(split, TrainTransform(CFG), budget_mb=16)
    err = capsys.readouterr().err
    assert "/dev/shm" in err and "--shm-size" in err and 0 < cache.nbytes <= need // 2


def test_an_image_not_the_shape_its_header_gave_is_decoded_every_time():
    cache = DecodedCache([(4, 5), (2, 2)])
    img = torch.arange(4 * 5 * 3, dtype=torch.uint8).view(1, 4, 5, 3).permute(0, 3, 1, 2)
    loads = []

    def load(i):
        loads.append(i)
        return img

    for _ in range(2):
        out = cache.get_or_load([0, 1], load)
        assert all(torch.equal(o, img) for o in out)
    assert loads == [0, 1, 1] and cache.filled() == 1 and cache.state.tolist() == [2, 3]


def test_the_cache_settings_are_not_part_of_a_run():
    base = TrainConfig()
    cached = dataclasses.replace(base, data=dataclasses.replace(base.data, decoded_cache_mb=4096))
    assert digest(semantic_dict(cached)) == digest(semantic_dict(base))
    assert DataConfig().decoded_cache_mb == 0  # off unless asked for


def test_perf_measurement_reports_its_parts():
    from benchmark.perf_data import measure_decoded_cache

    out = measure_decoded_cache(batches=1, image=48, crop=24, batch=10, rounds=1)
    assert out["decoded_cache_same_bytes"] and out["decoded_cache_size_mb"] > 0
    # both times are printed rounded to 0.1 ms, the ratio (to 0.001) from the unrounded ones
    hit, dec, h = out["decoded_cache_s_per_batch"], out["decoding_s_per_batch"], 0.00005
    assert (hit - h) / (dec + h) - 0.001 <= out["decoded_cache_epoch_ratio"] <= (hit + h) / (dec - h) + 0.001
    assert "multi_resolution_crop" in out["decoded_cache_setup"]
