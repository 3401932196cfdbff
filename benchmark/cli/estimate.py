"""`plan --estimate`: each run's FLOPs and GPU-hours, totals per table, and the
rehearsal profile's measured CPU speed beside them (read from the tracking store)."""

from __future__ import annotations

import argparse
from typing import Iterable, Optional

from benchmark.errors import ConfigError

PETA = 1e15
REHEARSAL = "rehearsal"
REHEARSAL_COMMAND = "python -m benchmark run dm2/table1 --profile rehearsal --row MD+TD+VD --dataset cub200"
SECONDS_PER_ITERATION = "train/seconds_per_iteration"
SECONDS_PER_IMAGE = "eval/seconds_per_image"
PEAK_MEMORY = "sys/peak_memory_mb"


def figure(x: float) -> str:
    """A number for a table: thousands separated, at least three significant digits."""
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:#.3g}"


def check_options(args: argparse.Namespace) -> None:
    """--device and --efficiency only with --estimate; an efficiency in (0, 1]."""
    if not args.estimate:
        given = [flag for flag, value in (("--device", args.device), ("--efficiency", args.efficiency))
                 if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --estimate")
    elif args.efficiency is not None and not 0 < args.efficiency <= 1:
        raise ConfigError(f"--efficiency {args.efficiency}: the share of the peak reached, in (0, 1]")


def device_of(args: argparse.Namespace) -> str:
    from benchmark.estimate import DEFAULT_DEVICE

    return args.device or DEFAULT_DEVICE


def run_estimates(catalog, planned, device: str, efficiency: Optional[float]) -> dict[str, dict]:
    """The ``estimate`` object of each planned run, by hash."""
    from benchmark.estimate import estimate, run_sizes

    stated = catalog.dataset_sizes()
    return {r.spec.hash: estimate(r.spec.config, run_sizes(r.spec.config, stated, r.spec.paper), device, efficiency)
            for r in planned}


def _tables(planned) -> dict[str, set[str]]:
    """The tables each run serves: those its cells fill and those of the runs it teaches."""
    out = {r.spec.hash: set(r.spec.tables) for r in planned}
    for r in reversed(planned):  # students after their teachers in a plan
        if r.spec.teacher is not None and r.spec.teacher.hash in out:
            out[r.spec.teacher.hash] |= out[r.spec.hash]
    return out


def _add(parts: list[dict]) -> dict:
    return {"flops": sum(p["flops"] for p in parts), "gpu_hours": sum(p["gpu_hours"] for p in parts)}


def _sum(estimates: Iterable[dict]) -> dict:
    """Runs, FLOPs and GPU-hours of some estimates together (training, evaluation, both)."""
    estimates = list(estimates)
    return {"runs": len(estimates), "train": _add([e["train"] for e in estimates]),
            "eval": _add([e["eval"] for e in estimates]), **_add(estimates)}


def totals(planned, estimates: dict[str, dict]) -> dict:
    """All runs once, and per table every run that table needs."""
    per_table: dict[str, list[dict]] = {}
    for h, tables in _tables(planned).items():
        for t in tables:
            per_table.setdefault(t, []).append(estimates[h])
    return {**_sum(estimates.values()), "tables": {t: _sum(es) for t, es in sorted(per_table.items())}}


def summary_lines(planned, estimates: dict[str, dict], device: str) -> list[str]:
    """The per-table totals, the grand total and how they count, as text."""
    from tabulate import tabulate

    from benchmark.estimate import DEVICES

    t = totals(planned, estimates)
    dev = DEVICES[device]
    efficiencies = sorted({e["efficiency"] for e in estimates.values()})
    precisions = sorted({e["precision"] for e in estimates.values()})
    peaks = ", ".join(f"{p} {dev.peak[p] / 1e12:,.1f}" for p in precisions)

    def row(name: str, s: dict) -> list:
        return [name, s["runs"], *(figure(x) for x in (s["train"]["flops"] / PETA, s["eval"]["flops"] / PETA,
                                                       s["flops"] / PETA, s["gpu_hours"]))]

    rows = [row(name, s) for name, s in t["tables"].items()] + [row("total (each run once)", t)]
    return [
        "",
        f"estimate on {dev.name} ({device}): peak {peaks} TFLOP/s (fp32 = TF32 tensor cores where the GPU has them), "
        f"at {', '.join(f'{e:.0%}' for e in efficiencies)} of it (--efficiency; assumptions in "
        f"benchmark/estimate/devices.py)",
        tabulate(rows, headers=["table", "runs", "train PFLOP", "eval PFLOP", "PFLOP", "GPU-hours"],
                 disable_numparse=True, colalign=["left"] + ["right"] * 5),
        "A run counts in the line of every table it fills cells of (a teacher also in its students' tables) and "
        "once in the total, so the lines can add up to more than the total.",
        f"total: {figure(t['flops'] / 1e18)} EFLOP, {figure(t['gpu_hours'])} GPU-hours on {device}",
    ]


def rehearsal_lines(device: str, efficiency: Optional[float], stated: dict) -> list[str]:
    """The finished rehearsal runs of the tracking store: their measured CPU speed
    beside the FLOPs the estimate gives them, and the speed it assumes on ``device``."""
    from benchmark import names as N
    from benchmark.config import load_config
    from benchmark.estimate import DEVICES, precision_of, run_cost, run_sizes
    from benchmark.runner.store import RunStore

    store = RunStore()
    latest: dict = {}
    for rec in store.finished_runs(REHEARSAL):
        if rec.hash not in latest or rec.end_time > latest[rec.hash].end_time:
            latest[rec.hash] = rec
    if not latest:
        return ["", f"no finished {REHEARSAL} run in {store.label} to compare the estimate with; make one (on 2 CPU "
                    f"cores within 30 minutes): {REHEARSAL_COMMAND}"]
    lines = ["", f"measured in the {REHEARSAL} profile ({store.label}), against the estimate's FLOPs:"]
    for rec in sorted(latest.values(), key=lambda r: r.tags.get(N.TAG_LABEL, r.hash)):
        data = (store.logged_config(rec.run_id) or {}).get("config")
        seconds = rec.metrics.get(SECONDS_PER_ITERATION)
        if data is None or not seconds:
            continue
        cfg = load_config(data, f"run {rec.run_id}")
        cost = run_cost(cfg, run_sizes(cfg, stated, rec.tags.get(N.TAG_PAPER, "")))
        rate = DEVICES[device].throughput(precision_of(cfg), efficiency)
        where = rec.tags.get(N.TAG_DEVICE, "cpu")
        per_iteration = cost.flops_per_iteration
        text = (f"  {rec.tags.get(N.TAG_LABEL, rec.hash)} [{where}]: {figure(per_iteration / 1e12)} TFLOP per "
                f"iteration in {figure(seconds)} s = {figure(per_iteration / seconds / 1e9)} GFLOP/s (the estimate "
                f"assumes {figure(rate / 1e12)} TFLOP/s on {device}: {figure(per_iteration / rate)} s per iteration)")
        per_image = rec.metrics.get(SECONDS_PER_IMAGE)
        if per_image:
            text += (f"; evaluation {figure(cost.eval_flops_per_image / 1e9)} GFLOP per image in {figure(per_image)} "
                     f"s = {figure(cost.eval_flops_per_image / per_image / 1e9)} GFLOP/s")
        memory = rec.metrics.get(PEAK_MEMORY)
        if memory:
            text += f"; peak memory {memory:,.0f} MB"
        lines.append(text)
    return lines
