"""`perf --device cuda`: what one GPU does with the paper's cohort, in absolute
numbers (a GPU has no in-process baseline to divide by, except the data
pipeline, which is compared with the training it feeds).

- training: images per second per member of a 4-member BN-Inception-512 DM²
  cohort (temporal diversity on, λ = 20, view diversity), batch 120, 256 crops,
  in fp32 and bf16; and the model FLOP utilisation: the step's FLOPs (forward
  of every member, backward of the updated ones, counted by
  :mod:`benchmark.stats`) over the time, against the device's peak
  (:mod:`benchmark.estimate`).
- evaluation: images per second embedding 256-px crops with all 4 members.
- data: images per second the loader makes of 4-view training batches from
  500-px JPEGs with DM²'s augmentation, beside the images per second the
  fp32 training consumes (> 1: the loader keeps up).

Timings synchronise the device before reading the clock; warm-up steps run
first (cuDNN's autotuning, allocator growth).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmark import config as C


def _cohort_config(precision: str, batch: int, crop: int) -> C.TrainConfig:
    member = C.ModelConfig(arch="bn_inception", embedding_dim=512, pretrained=False, freeze_bn=True)
    return C.normalize(C.TrainConfig(
        method="cohort",
        data=C.DataConfig(dataset="cub200", batch_size=batch, images_per_class=5, crop_size=crop,
                          resize_size=crop, train_transform="multi_resolution_crop"),
        loss=C.LossConfig(name="triplet", params={"margin": 0.2}, miner="distance_weighted",
                          miner_params={"cutoff": 0.5, "nonzero_loss_cutoff": 1.4}),
        optim=C.OptimConfig(name="adam", lr=3e-5),
        cohort=C.CohortConfig(members=[member] * 4, lambda_mutual=20.0, lambda_warmup_epochs=0.0),
        precision=precision, device="cuda",
    ))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_training(device: torch.device, precision: str, steps: int = 20, warmup: int = 5,
                     batch: int = 120, crop: int = 256) -> dict[str, Any]:
    """Images/s per member and model FLOP utilisation of the cohort's step."""
    from benchmark.stats import model_stats
    from benchmark.train.cohort import CohortMethod
    from benchmark.train.common import generator
    from benchmark.train.precision import configure_device

    configure_device(device)
    cfg = _cohort_config(precision, batch, crop)
    method = CohortMethod(cfg, num_classes=batch // 5, device=device)
    macs = model_stats(method.models[0], crop)["macs"]  # per image, one member's forward
    images = torch.randint(0, 256, (batch, 4, 3, crop, crop), dtype=torch.uint8, device=device)
    labels = torch.arange(batch // 5, device=device).repeat_interleave(5)
    gen = generator(0, "perf_gpu")
    for _ in range(warmup):
        method.train_step(images, labels, 5.0, gen)
    _sync(device)
    t0 = time.perf_counter()
    updated = 0.0
    for _ in range(steps):
        updated += float(method.train_step(images, labels, 5.0, gen)["updated_members"])
    _sync(device)
    seconds = time.perf_counter() - t0
    # forward of all 4 members, backward (2x the forward) of the updated ones
    flops = 2 * macs * batch * (4 * steps + 2 * updated)
    return {
        f"train_{precision}_images_per_s_per_member": round(batch * steps / seconds, 1),
        f"train_{precision}_s_per_iteration": round(seconds / steps, 4),
        f"train_{precision}_tflops": round(flops / seconds / 1e12, 2),
        f"train_{precision}_peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if device.type == "cuda" else None,
    }


@torch.no_grad()
def measure_evaluation(device: torch.device, precision: str = "fp32", batches: int = 10,
                       batch: int = 256, crop: int = 256) -> dict[str, Any]:
    """Images/s embedding test crops with all 4 members (the ensemble)."""
    from benchmark.train.cohort import CohortMethod

    method = CohortMethod(_cohort_config(precision, 120, crop), num_classes=24, device=device)
    images = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8, device=device)
    for _ in range(2):
        method.embed(images)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        method.embed(images)
    _sync(device)
    return {f"eval_{precision}_images_per_s": round(batch * batches / (time.perf_counter() - t0), 1)}


def measure_data_pipeline(workers: int, batches: int = 12, batch: int = 120, crop: int = 256,
                          image: int = 500) -> dict[str, Any]:
    """Images/s of 4-view training batches (DM²'s augmentation) from 500-px JPEGs."""
    from benchmark.data import TrainBatches, prepare_splits

    data = C.DataConfig(
        dataset="cub200", synthetic=C.SyntheticConfig(classes=96, images_per_class=10, image_size=image),
        batch_size=batch, images_per_class=5, resize_size=293, crop_size=crop,
        train_transform="multi_resolution_crop", multires_range=(0.8, 1.8), num_workers=workers,
    )
    with tempfile.TemporaryDirectory() as tmp:
        splits = prepare_splits(data, Path(tmp))
        tb = TrainBatches(data, splits.train, views=4, seed=0)
        stream = tb.epoch(0, batches + 2)
        for _ in range(2):  # workers started, first batches out
            next(stream)
        t0 = time.perf_counter()
        n = sum(1 for _ in stream)
        seconds = time.perf_counter() - t0
    return {"data_images_per_s": round(n * batch / seconds, 1), "data_workers": workers}


def run_device_perf(device_name: str) -> dict[str, Any]:
    """Every figure of the module docstring on ``device_name`` (e.g. ``cuda``)."""
    import os

    from benchmark.train.common import resolve_device

    device = resolve_device(device_name)
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    for precision in ("fp32", "bf16"):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        out.update(measure_training(device, precision))
        out.update(measure_evaluation(device, precision))
    out.update(measure_data_pipeline(workers=min(16, os.cpu_count() or 1)))
    out["data_over_training_fp32"] = round(
        out["data_images_per_s"] / out["train_fp32_images_per_s_per_member"], 2)
    out["data_over_training_bf16"] = round(
        out["data_images_per_s"] / out["train_bf16_images_per_s_per_member"], 2)
    peak = _peak_flops(out["device"])
    if peak:
        for precision in ("fp32", "bf16"):
            out[f"train_{precision}_mfu"] = round(out[f"train_{precision}_tflops"] * 1e12 / peak[precision], 3)
    out["setup"] = ("4 x BN-Inception-512 from scratch, frozen BN, batch 120, 256 crops, TD+VD, lambda 20, "
                    "triplet + distance-weighted sampling; data: 500-px JPEGs, 4 views")
    return out


def _peak_flops(device_name: str) -> dict[str, float]:
    """The device's peak FLOP/s per precision, from the estimate's device table (by name)."""
    from benchmark.estimate.devices import device_peaks_for_name

    return device_peaks_for_name(device_name)
