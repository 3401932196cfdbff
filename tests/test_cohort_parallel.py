"""Cohort-parallel DM² (Sec. 3.3): one cohort over several processes.

Identity is exact at equal thread counts (each rank one thread, as the single
process): the ranks make the same views from the same streams, draw the same
updates, each member's miner draws from its own stream, and no gradient crosses
members either way, so every number is the same, not merely close."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_reliability import _tiny_job  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _job(tmp_path, **kw):
    return _tiny_job(tmp_path, epochs=2, **{"cohort.lambda_mutual": 20.0, "cohort.view_diversity": True,
                                            "cohort.temporal.enabled": True, "loss.miner": "distance_weighted",
                                            "cohort.members": [{"arch": "tiny_inception", "pretrained": False,
                                                                "embedding_dim": 8}] * 4, **kw})


@pytest.mark.slow
def test_two_ranks_compute_what_one_process_computes(tmp_path):
    from benchmark.train import MemoryLogger, train

    torch.set_num_threads(1)
    cfg = _job(tmp_path)
    one, two = MemoryLogger(), MemoryLogger()
    a = train(cfg, one, tmp_path / "a", progress=False).final_metrics
    b = train(cfg, two, tmp_path / "b", progress=False, ranks=2, threads=1).final_metrics
    assert a == b
    measured = {"train/seconds_per_iteration", "eval/seconds_per_image", "sys/peak_memory_mb"}  # times, memory
    losses = lambda log: [(s, {k: v for k, v in m.items() if k not in measured})  # noqa: E731
                          for s, m in log.metrics]
    assert losses(one) == losses(two)  # every epoch's losses and evaluations, too
    same = torch.load(tmp_path / "a" / "final.pt", weights_only=True)["weights"]
    other = torch.load(tmp_path / "b" / "final.pt", weights_only=True)["weights"]
    for x, y in zip(same["models"], other["models"]):  # one cohort file, whatever the ranks
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_ranks_must_divide_the_cohort_and_apply_to_cohorts_only(tmp_path):
    from benchmark.errors import ConfigError
    from benchmark.train import train

    with pytest.raises(ConfigError, match="must divide the cohort's 4 members"):
        train(_job(tmp_path), workdir=tmp_path / "x", progress=False, ranks=3)


def _env(home: Path) -> dict:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(BENCHMARK_HOME=str(home), BENCHMARK_OFFLINE="1", PYTHONPATH=str(ROOT))
    return env


ONE = ["dm2/table1", "--profile", "smoke", "--row", "MD+TD+VD", "--dataset", "cub200", "--threads", "1",
       "--no-progress"]


def _finals(home: Path) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("dm2").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    return {k: v for k, v in runs[0].data.metrics.items() if k.startswith("final")}


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.slow
def test_killed_under_two_ranks_resumes_under_one_to_the_same_numbers(tmp_path):
    """The CLI run under --ranks 2 ends as the single-process run; a rank killed
    mid-run takes the run down in one line, and the repeated command under --ranks 1
    resumes the cohort checkpoint to the same final numbers."""
    straight = tmp_path / "straight"
    subprocess.run([sys.executable, "-m", "benchmark", "run", *ONE], env=_env(straight), cwd=ROOT, check=True,
                   capture_output=True, timeout=900)
    expected = _finals(straight)

    home = tmp_path / "ranks"
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "run", *ONE, "--ranks", "2"], env=_env(home),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list((home / "runs").glob("*/checkpoint.pt")):
        time.sleep(0.05)
    ranks = _children(proc.pid)
    assert ranks, "no rank process"
    for pid in ranks:  # the spawned rank (multiprocessing's resource tracker may be there too)
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"spawn_main" in cmd:
            os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "stopped" in lines[0] and "resume" in lines[0], err[-2000:]
    assert not list((home / "runs").glob("*/final.pt")), "killed too late: the run had finished"
    again = subprocess.run([sys.executable, "-m", "benchmark", "run", *ONE, "--ranks", "1", "--format", "json"],
                           env=_env(home), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout.splitlines()[-1])["resumed"] == 1
    assert _finals(home) == expected
