"""`perf`'s cohort-parallel measure (DM² Sec. 3.3: "the training time of DM² almost
stayed the same compared to that of a single model").

cohort_parallel_step_ratio: one DM² training step of a 2-member cohort on 2 ranks
(one process and one thread each, gloo over loopback) over one single-model step
of the same backbone and batch in one process with one thread. The share of the
step spent in the all-gathers (the members' relation matrices and their losses)
is measured on rank 0. Goal <= 1.3 on 2 CPU cores.
"""

from __future__ import annotations

import functools
import time

import torch

from benchmark import config as C


def _config(members: int, arch: str, image: int, batch: int) -> C.TrainConfig:
    member = C.ModelConfig(arch=arch, embedding_dim=512, pretrained=False, freeze_bn=False)
    return C.normalize(C.TrainConfig(
        method="cohort",
        data=C.DataConfig(dataset="cub200", batch_size=batch, images_per_class=5, crop_size=image, resize_size=image),
        loss=C.LossConfig(name="triplet", params={"margin": 0.2}, miner="distance_weighted",
                          miner_params={"cutoff": 0.5, "nonzero_loss_cutoff": 1.4}),
        optim=C.OptimConfig(name="adam", lr=1e-4, weight_decay=5e-4),
        cohort=C.CohortConfig(members=[member] * members, lambda_mutual=20.0, lambda_warmup_epochs=0.0,
                              temporal=C.TemporalConfig(enabled=False), view_diversity=True),
        device="cpu"))


def _steps(members: int, arch: str, image: int, batch: int, steps: int, ranks) -> dict:
    """Seconds per step (after one warm-up step) and seconds per step in all-gathers."""
    from benchmark.train.cohort import CohortMethod
    from benchmark.train.common import generator

    torch.set_num_threads(1)
    cfg = _config(members, arch, image, batch)
    method = CohortMethod(cfg, num_classes=100, device=torch.device("cpu"), ranks=ranks)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, len(method.view_ids), 3, image, image), dtype=torch.uint8, generator=g)
    labels = torch.arange(batch // 5).repeat_interleave(5)
    gathered = [0.0]
    real = ranks.all_gather

    def timed(t):
        t0 = time.perf_counter()
        out = real(t)
        gathered[0] += time.perf_counter() - t0
        return out

    ranks.all_gather = timed
    method.train_step(images, labels, 10.0, generator(0, -1))  # warm-up (allocations, first collective)
    ranks.barrier()
    gathered[0] = 0.0
    t0 = time.perf_counter()
    for s in range(steps):
        method.train_step(images, labels, 10.0, generator(0, s))
    total = time.perf_counter() - t0
    return {"step_s": total / steps, "gather_s": gathered[0] / steps}


def measure_cohort_parallel(steps: int = 8, arch: str = "tiny_inception", image: int = 128, batch: int = 60,
                            rounds: int = 5) -> dict:
    """Alternating rounds of both; the fastest round of each (the least disturbed by
    whatever else the machine does) gives the ratio."""
    from benchmark.train.ranks import SINGLE, run_ranks

    threads = torch.get_num_threads()
    singles, parallels = [], []
    try:
        for _ in range(rounds):
            singles.append(_steps(1, arch, image, batch, steps, SINGLE))
            parallels.append(run_ranks(functools.partial(_steps, 2, arch, image, batch, steps), 2, threads=1))
    finally:
        torch.set_num_threads(threads)
    single = min(singles, key=lambda r: r["step_s"])
    parallel = min(parallels, key=lambda r: r["step_s"])
    return {
        "cohort_parallel_step_ratio": round(parallel["step_s"] / single["step_s"], 3),
        "cohort_parallel_gather_share": round(parallel["gather_s"] / parallel["step_s"], 4),
        "cohort_parallel_setup": f"2-member DM² cohort ({arch}, batch {batch}, {image}px) on 2 ranks x 1 thread "
                                 f"vs one model in one process x 1 thread; fastest of {rounds} rounds of {steps} steps",
        "cohort_parallel_step_s": round(parallel["step_s"], 4),
        "single_model_step_s": round(single["step_s"], 4),
        "cohort_parallel_ratio_rounds": [round(p["step_s"] / s["step_s"], 3) for s, p in zip(singles, parallels)],
    }
