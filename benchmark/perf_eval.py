"""How much faster our Recall@1 is than pytorch-metric-learning's (pml) AccuracyCalculator.

pml's AccuracyCalculator uses faiss when installed; without faiss (this
environment) its default knn (FaissKNN) fails, so it is given pml's own torch
k-NN, ``CustomKNN(LpDistance(normalize_embeddings=False))``: the full query x
reference distance matrix by ``torch.cdist``, then ``torch.topk``. Which
backend ran is returned as ``pml_backend``. pml is asked for
``precision_at_1`` (= Recall@1) with ``ref_includes_query=True``, which
excludes each query itself, as ours does.

The data: random Gaussian embeddings (no ties) and labels with exactly
n / classes items per class (no query without a positive, so neither side's
handling of such queries matters). Each side runs once to warm up, then twice;
the best time counts. torch's thread count is left at its default.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from benchmark.evaluate import recall_at_k


def _best_time(fn: Callable[[], Any], repeats: int = 2) -> tuple[float, float, Any]:
    """Best wall-clock and best process CPU time (all threads) over ``repeats`` after a warm-up."""
    fn()  # warm-up
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, out


def _pml_calculator():
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    try:
        import faiss  # noqa: F401

        return AccuracyCalculator(include=("precision_at_1",), k=1), "faiss"
    except ImportError:
        from pytorch_metric_learning.distances import LpDistance
        from pytorch_metric_learning.utils.inference import CustomKNN

        knn = CustomKNN(LpDistance(normalize_embeddings=False))
        return (
            AccuracyCalculator(include=("precision_at_1",), k=1, knn_func=knn,
                               device=torch.device("cpu")),
            "torch (CustomKNN, LpDistance, full matrix)",
        )


def measure_eval_speedup(n: int = 20000, dim: int = 512, classes: int = 10000,
                         seed: int = 0) -> dict[str, Any]:
    """Time Recall@1 on random CPU embeddings: ours vs pml; assert both agree (|diff| < 1e-6).

    Returns ``eval_speedup_vs_pml`` (pml_s / ours_s, wall clock), ``ours_s``,
    ``pml_s``, ``recall_at_1`` (percent), plus the same in process CPU time
    (``cpu_speedup_vs_pml``, ``ours_cpu_s``, ``pml_cpu_s``), ``pml_backend``,
    ``threads`` and the sizes.
    """
    if n < 2 or classes < 1 or n % classes or n // classes < 2:
        raise ValueError(f"need n a multiple of classes with >= 2 items per class, got n={n}, classes={classes}")
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, dim, generator=g)
    labels = torch.randperm(n, generator=g) % classes

    ours_s, ours_cpu, ours = _best_time(lambda: recall_at_k(emb, labels, [1])[1])
    calc, backend = _pml_calculator()
    pml_s, pml_cpu, pml = _best_time(
        lambda: calc.get_accuracy(emb, labels, emb, labels, ref_includes_query=True)["precision_at_1"]
    )
    ours_frac, pml_frac = ours / 100.0, float(pml)
    if abs(ours_frac - pml_frac) >= 1e-6:
        raise AssertionError(f"Recall@1 differs: ours {ours_frac} vs pml {pml_frac}")
    return {
        "eval_speedup_vs_pml": pml_s / ours_s,
        "ours_s": ours_s,
        "pml_s": pml_s,
        "recall_at_1": ours,
        # CPU seconds (all threads): less sensitive than wall time to other load on the machine
        "ours_cpu_s": ours_cpu,
        "pml_cpu_s": pml_cpu,
        "cpu_speedup_vs_pml": pml_cpu / ours_cpu,
        "pml_backend": backend,
        "threads": torch.get_num_threads(),
        "n": n,
        "dim": dim,
        "classes": classes,
    }


if __name__ == "__main__":  # python -m benchmark.perf_eval
    for key, value in measure_eval_speedup().items():
        print(f"{key}: {value}")
