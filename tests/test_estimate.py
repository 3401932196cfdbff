"""`plan --estimate`: FLOPs from the models, the schedule and the dataset sizes,
GPU-hours on a device, and the rehearsal's measured speed beside them."""

from __future__ import annotations

import dataclasses
import json

import pytest

from benchmark.cli import main
from benchmark.config import (CohortConfig, DataConfig, ModelConfig, ScheduleConfig, SyntheticConfig,
                              TemporalConfig, TrainConfig)
from benchmark.estimate import DEVICES, Sizes, estimate, run_cost, stated_sizes, synthetic_sizes


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BENCHMARK_OFFLINE", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _cohort(members: int, temporal: bool) -> TrainConfig:
    member = ModelConfig(arch="tiny_inception", embedding_dim=16, pretrained=False)
    return TrainConfig(
        method="cohort",
        data=DataConfig(synthetic=SyntheticConfig(classes=24, images_per_class=12), batch_size=40, crop_size=48),
        cohort=CohortConfig(members=[member] * members, temporal=TemporalConfig(enabled=temporal)),
        schedule=ScheduleConfig(epochs=3, iterations_per_epoch=None, eval_every=2),
    )


def _forward(cfg: TrainConfig) -> int:
    """Hand count: 2 FLOPs per multiply-add of one member, built with random weights."""
    from benchmark.models import build_embedding_model
    from benchmark.stats import model_stats

    model = build_embedding_model(cfg.cohort.members[0], backbone_seed=0, head_seed=0)
    return 2 * model_stats(model, cfg.data.crop_size)["macs"]


def test_cohort_flops_are_the_formula_from_model_stats():
    cfg = _cohort(members=2, temporal=False)
    f = _forward(cfg)
    sizes = synthetic_sizes(cfg)
    assert sizes == Sizes(train=144, train_classes=12, test=144)
    cost = run_cost(cfg, sizes)
    iterations = 3 * (144 // 40)  # one pass over the training images per epoch
    evaluations = 2  # after epoch 2 and after the last
    assert (cost.iterations, cost.evaluations) == (iterations, evaluations)
    assert cost.train_flops == iterations * 40 * 2 * 3 * f  # two members, forward + backward each
    # every evaluation: 144 test images through both members, then the distance
    # matrices of member1, member2 (16-d) and the ensemble (32-d)
    assert cost.eval_flops == evaluations * (144 * 2 * f + 2 * 144 * 144 * (16 + 16 + 32))


def test_temporal_diversity_lowers_training_flops_by_the_expected_fraction():
    full, temporal = run_cost(_cohort(4, False), Sizes(600, 12, 600)), run_cost(_cohort(4, True), Sizes(600, 12, 600))
    # p = 1, 1/2, 1/4, 1/8: a member not updated runs its forward (1) and no backward (2)
    assert temporal.train_flops / full.train_flops == pytest.approx((4 + 2 * (1 + .5 + .25 + .125)) / 12)
    assert temporal.eval_flops == full.eval_flops


def test_gpu_hours_follow_the_device_table_and_precision():
    cfg = _cohort(2, False)
    sizes = synthetic_sizes(cfg)
    h200, a100 = estimate(cfg, sizes, "h200"), estimate(cfg, sizes, "a100", efficiency=0.5)
    assert h200["flops"] == a100["flops"] == h200["train"]["flops"] + h200["eval"]["flops"]
    assert h200["gpu_hours"] == pytest.approx(h200["flops"] / (DEVICES["h200"].peak["fp32"] * 0.35) / 3600)
    assert a100["gpu_hours"] == pytest.approx(a100["flops"] / (156e12 * 0.5) / 3600)
    cfg.precision = "bf16"  # TrainConfig.precision, where the schema has it
    assert estimate(cfg, sizes, "h200")["gpu_hours"] == pytest.approx(h200["gpu_hours"] / 2)


def test_dataset_sizes_stated_and_synthetic():
    stated = {"inshop": {"train": {"dm2": {"classes": 3997, "images": 25882}},
                         "query": {"dm2": {"classes": None, "images": None}, "abe": {"classes": 3985, "images": 14218}},
                         "gallery": {"abe": {"classes": 3985, "images": 12612}}}}
    inshop = stated_sizes("inshop", stated, "dm2")  # DM² states no query/gallery split: ABE's counts
    assert (inshop.embedded(), inshop.distances()) == (14218 + 12612, 14218 * 12612)
    cfg = _cohort(1, False)
    synthetic = SyntheticConfig(classes=10, images_per_class=5)
    cfg.data = dataclasses.replace(cfg.data, dataset="inshop", synthetic=synthetic)
    assert synthetic_sizes(cfg) == Sizes(train=25, train_classes=5, query=15, gallery=10)


def test_plan_all_paper_estimate_gives_every_run_positive_gpu_hours(capsys):
    assert main(["plan", "all", "--profile", "paper", "--estimate", "--device", "a100", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    runs, totals = out["runs"], out["totals"]
    assert runs and all(r["estimate"]["gpu_hours"] > 0 and r["estimate"]["device"] == "a100" for r in runs)
    assert totals["runs"] == len(runs)
    assert totals["gpu_hours"] == pytest.approx(sum(r["estimate"]["gpu_hours"] for r in runs))
    assert totals["flops"] == pytest.approx(totals["train"]["flops"] + totals["eval"]["flops"])
    assert set(totals["tables"]) == {t for r in runs for t in {f"{c['paper']}/{c['table']}" for c in r["cells"]}}


def test_text_totals_per_table_and_how_to_measure(capsys):
    assert main(["plan", "dm2/table4", "--profile", "smoke", "--row", "RKD-DA", "--dataset", "cub200",
                 "--estimate"]) == 0
    out = capsys.readouterr().out
    assert "dm2/table4" in out and "total (each run once)" in out and "GPU-hours" in out
    assert "--profile rehearsal --row MD+TD+VD --dataset cub200" in out  # no rehearsal run measured yet


def test_measured_rehearsal_run_is_printed_beside_the_estimate(tmp_path):
    from benchmark.cli.estimate import figure, rehearsal_lines
    from benchmark.recipes import Catalog, Context, expand, select
    from benchmark.runner.tracking import Tracker

    catalog = Catalog()
    spec = expand(catalog, select(catalog, "dm2/table1", "smoke"), Context(profile="smoke", rows=["MD+TD+VD"],
                                                                          datasets=["cub200"]))[0]
    spec = dataclasses.replace(spec, profile="rehearsal")
    tracker = Tracker()
    rid = tracker.start(spec)
    tracker.log_config(rid, spec, tmp_path / "config.json")
    tracker.log_metrics(rid, {"train/seconds_per_iteration": 2.0, "eval/seconds_per_image": 0.01,
                              "sys/peak_memory_mb": 1234.0}, step=1)
    tracker.finish(rid)
    per_iteration = run_cost(spec.config, synthetic_sizes(spec.config)).flops_per_iteration
    line = rehearsal_lines("h200", None, catalog.dataset_sizes())[-1]
    assert spec.label in line and "in 2.00 s" in line and "1,234 MB" in line
    assert f"= {figure(per_iteration / 2.0 / 1e9)} GFLOP/s" in line


def test_unknown_device_is_one_argparse_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "all", "--estimate", "--device", "tpu"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert exit_.value.code == 2 and len(lines) == 1 and "--device" in lines[0] and "h200" in lines[0]


def test_device_without_estimate_is_one_line(capsys):
    assert main(["plan", "dm2/table1", "--profile", "smoke", "--device", "a100"]) == 2
    assert capsys.readouterr().err.strip() == "error: --device: only with --estimate"
