"""End to end through the CLI in subprocesses: a smoke run is tracked in MLflow,
repeating the command makes nothing, and a run killed with SIGKILL mid-way
resumes from its checkpoint and ends with the same metrics as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ONE_RUN = ["dm2/table1", "--profile", "smoke", "--row", "MD+TD+VD", "--dataset", "cub200", "--set", "schedule.epochs=4"]


def _env(home: Path) -> dict:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(BENCHMARK_HOME=str(home), BENCHMARK_OFFLINE="1", PYTHONPATH=str(ROOT))
    return env


def _cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "benchmark", *args], env=_env(home), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


def _final_metrics(home: Path) -> dict:
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("dm2")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"
    return {k: v for k, v in runs[0].data.metrics.items() if k.startswith("final")}, runs[0]


def test_run_then_rerun_makes_nothing_and_plan_says_finished(tmp_path):
    home = tmp_path / "home"
    first = _cli(home, "run", *ONE_RUN, "--no-progress", "--format", "json")
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["made"] == 1 and summary["reused"] == 0
    second = _cli(home, "run", *ONE_RUN, "--no-progress", "--format", "json")
    assert json.loads(second.stdout.strip().splitlines()[-1])["made"] == 0
    plan = json.loads(_cli(home, "plan", *ONE_RUN, "--format", "json").stdout)
    assert len(plan) == 1 and plan[0]["finished"] is True
    metrics, run = _final_metrics(home)
    assert 0 < metrics["final/ensemble/recall_at_1"] < 100
    assert run.data.tags["bench.hash"] == plan[0]["hash"]
    assert run.data.tags["bench.profile"] == "smoke"
    assert run.data.params["cohort.lambda_mutual"] == "20.0"
    assert "bench.git_commit" in run.data.tags and "torch=" in run.data.tags["bench.versions"]


def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    straight = tmp_path / "straight"
    _cli(straight, "run", *ONE_RUN, "--no-progress")
    expected, _ = _final_metrics(straight)

    home = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "run", *ONE_RUN, "--no-progress"],
                            env=_env(home), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 300
    ckpts: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        ckpts = list((home / "runs").glob("*/checkpoint.pt"))
        if ckpts:
            break
        time.sleep(0.05)
    assert ckpts, "no checkpoint appeared before the run ended"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list((home / "runs").glob("*/final.pt")), "killed too late: the run had finished"

    resumed = _cli(home, "run", *ONE_RUN, "--no-progress", "--format", "json")
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["made"] == 1 and summary["resumed"] == 1
    got, _ = _final_metrics(home)
    assert got == expected
