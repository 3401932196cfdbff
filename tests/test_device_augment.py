"""data.augment_on: device — the loader only decodes, the views are drawn where the
batch is trained. On CPU tensors the batches are today's bytes; on a GPU the
resizes are float32 (checked there when one is present, within two levels)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image

from benchmark.config import DataConfig, TrainConfig, digest, semantic_dict
from benchmark.data import Split, TrainBatches
from benchmark.data.decoded import DecodedBatch, distinct, pack, unpack
from benchmark.data.transforms import TrainTransform, _resize_float, resize_into, to_channels_last

TRANSFORMS = ["random_resized_crop", "resize_pad_random_crop", "multi_resolution_crop"]
CFG = DataConfig(batch_size=8, images_per_class=2, crop_size=16, resize_size=24, num_workers=0,
                 rrc_scale=(0.1, 1.0), multires_range=(0.5, 1.8))


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """JPEGs of varied shapes, smaller and larger than the crop, with texture."""
    root = tmp_path_factory.mktemp("device_augment")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(20):
        h, w = 12 + 5 * (i % 5), 30 - 4 * (i % 4)
        p = root / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
        labels.append(i // 5)
    return Split(paths=paths, labels=np.array(labels))


def _epochs(cfg: DataConfig, split: Split, device=None, view_ids=None) -> list:
    tb = TrainBatches(cfg, split, 4, 3, view_ids=view_ids, device=device)
    out = [batch for e in (0, 1) for batch in tb.epoch(e, 3)]
    tb.close()
    return out


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_views_made_on_the_device_are_the_loaders_bytes(split, transform):
    cfg = dataclasses.replace(CFG, train_transform=transform)
    loader = _epochs(cfg, split)
    on_device = _epochs(dataclasses.replace(cfg, augment_on="device"), split, device="cpu")
    assert _same(loader, on_device)
    x = on_device[0][0]
    assert x.shape == (8, 4, 3, 16, 16) and x.permute(0, 1, 3, 4, 2).is_contiguous()  # channels-last, as before


def test_device_views_with_workers_the_cache_and_a_subset_of_views(split):
    """Workers send decoded batches (read from a shared cache after the first epoch);
    a rank making only some views makes those views' bytes."""
    cfg = dataclasses.replace(CFG, train_transform="multi_resolution_crop")
    loader = _epochs(cfg, split, view_ids=[3, 1])
    fancy = dataclasses.replace(cfg, augment_on="device", num_workers=2, decoded_cache_mb=4)
    assert _same(loader, _epochs(fancy, split, view_ids=[3, 1]))


def test_a_decoded_batch_is_one_tensor_that_unpacks_as_prepared():
    tt = TrainTransform(CFG)
    images = [tt.prepare(torch.randint(0, 256, (3, h, w), dtype=torch.uint8)) for h, w in ((5, 7), (9, 4))]
    order, slots = distinct([4, 2, 4, 4, 2])
    assert order == [4, 2] and slots == [0, 1, 0, 0, 1]
    batch = pack(images, slots, torch.arange(5), epoch=2, batch_index=7)
    assert isinstance(batch, DecodedBatch) and batch.pixels.dim() == 1 and batch.pixels.numel() == 3 * (35 + 36)
    for got, img in zip(unpack(batch, torch.device("cpu")), images):
        assert torch.equal(got, img) and got.stride() == img.stride()


def test_the_gpu_resize_formula_is_torchvisions_and_a_level_from_the_cpu_kernel():
    """What runs off the CPU, evaluated here: torchvision's float path for uint8 on GPUs,
    one level at most from the CPU's uint8 kernel on these images."""
    g = torch.Generator().manual_seed(0)
    for (h, w), (nh, nw) in [((40, 60), (17, 33)), ((25, 30), (50, 41)), ((64, 64), (64, 20))]:
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        gpu_formula = _resize_float(to_channels_last(img), [nh, nw]).to(torch.uint8)[0]
        torchvision_float = F.resize(img.float(), [nh, nw], antialias=True).round().to(torch.uint8)
        assert torch.equal(gpu_formula, torchvision_float)
        cpu = resize_into(to_channels_last(img), torch.empty(1, nh, nw, 3, dtype=torch.uint8).permute(0, 3, 1, 2))[0]
        assert (cpu.int() - gpu_formula.int()).abs().max() <= 1


def test_pinned_batches_for_cuda_only(split):
    assert TrainBatches(CFG, split, 1, 0, device="cuda")._get_loader().pin_memory
    assert not TrainBatches(CFG, split, 1, 0)._get_loader().pin_memory


def test_where_the_views_are_made_is_not_part_of_a_run():
    base = TrainConfig()
    moved = dataclasses.replace(base, data=dataclasses.replace(base.data, augment_on="device"))
    assert digest(semantic_dict(moved)) == digest(semantic_dict(base))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_views_on_a_gpu_are_within_two_levels_of_the_cpus(split, transform):
    cfg = dataclasses.replace(CFG, train_transform=transform)
    cpu = _epochs(cfg, split)
    gpu = _epochs(dataclasses.replace(cfg, augment_on="device", num_workers=2), split, device="cuda")
    for (x, y), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and yg.is_cuda and torch.equal(y, yg.cpu())
        assert (x.int() - xg.cpu().int()).abs().max() <= 2
