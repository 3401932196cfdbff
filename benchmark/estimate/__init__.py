"""What a run costs before it runs: its FLOPs (:mod:`.flops`) from the models, the
schedule and the dataset sizes (:mod:`.sizes`), and the GPU-hours they take on a
device (:mod:`.devices`) at its peak throughput times an assumed efficiency.

A pure function of a run's config and its dataset sizes: no data, no weights, no
tracking store.
"""

from __future__ import annotations

from typing import Optional

from benchmark.config import TrainConfig
from benchmark.estimate.devices import DEFAULT_DEVICE, DEVICES, Device
from benchmark.estimate.flops import Cost, forward_flops, run_cost, workload
from benchmark.estimate.sizes import Sizes, run_sizes, stated_sizes, synthetic_sizes

HOUR = 3600.0

__all__ = ["DEFAULT_DEVICE", "DEVICES", "Cost", "Device", "Sizes", "estimate", "forward_flops", "precision_of",
           "run_cost", "run_sizes", "stated_sizes", "synthetic_sizes", "workload"]


def precision_of(cfg: TrainConfig) -> str:
    """The run's numeric precision (configs written before the field are fp32)."""
    return getattr(cfg, "precision", "fp32")


def estimate(cfg: TrainConfig, sizes: Sizes, device: str = DEFAULT_DEVICE,
             efficiency: Optional[float] = None) -> dict:
    """The ``estimate`` object of one run: FLOPs and GPU-hours of its training, its
    evaluations and both, on ``device`` at ``efficiency`` (default: the device's)."""
    cost = run_cost(cfg, sizes)
    dev = DEVICES[device]
    precision = precision_of(cfg)
    rate = dev.throughput(precision, efficiency)

    def part(flops: float) -> dict:
        return {"flops": float(flops), "gpu_hours": flops / rate / HOUR}

    return {
        "device": device,
        "precision": precision,
        "peak_flops_per_s": dev.peak[precision],
        "efficiency": dev.efficiency if efficiency is None else efficiency,
        "iterations": cost.iterations,
        "evaluations": cost.evaluations,
        "flops_per_iteration": cost.flops_per_iteration,
        "train": part(cost.train_flops),
        "eval": part(cost.eval_flops),
        **part(cost.flops),
    }
