"""Scale-out against real engines: a local Slurm cluster (with accounting), a
PostgreSQL database and an MLflow tracking server on it, as `.ci/services up`
starts them (CI does; locally: `eval "$(bash .ci/services up slurm postgres mlflow)"`).
Tests skip with a one-line reason when a service is not up. The claim race runs
everywhere."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UP = set(filter(None, os.environ.get("BENCHMARK_SERVICES", "").split(",")))
ONE = ["dm2/table1", "--profile", "smoke", "--row", "MD+TD+VD", "--dataset", "cub200", "--threads", "1",
       "--no-progress"]

needs_slurm = pytest.mark.skipif(
    "slurm" not in UP or shutil.which("sbatch") is None,
    reason="no Slurm cluster: run `eval \"$(bash .ci/services up slurm)\"` first")
needs_server = pytest.mark.skipif(
    not {"postgres", "mlflow"} <= UP,
    reason="no MLflow server on PostgreSQL: run `eval \"$(bash .ci/services up postgres mlflow)\"` first")


def _env(home: Path, server: bool = False) -> dict:
    env = dict(os.environ)
    if not server:
        env.pop("MLFLOW_TRACKING_URI", None)
    env.update(BENCHMARK_HOME=str(home), BENCHMARK_OFFLINE="1", PYTHONPATH=str(ROOT))
    return env


def _cli(home: Path, *args: str, server: bool = False, check: bool = True, timeout: int = 900):
    proc = subprocess.run([sys.executable, "-m", "benchmark", *args], env=_env(home, server), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-4000:])
    return proc


def _runs(uri: str, experiment: str = "dm2") -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


def _finals(run) -> dict:
    return {k: v for k, v in run.data.metrics.items() if k.startswith("final")}


def _sqlite(home: Path) -> str:
    return f"sqlite:///{home / 'mlflow.db'}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The one-row run made locally with one thread: what every executor must end with."""
    home = tmp_path_factory.mktemp("local")
    _cli(home, "run", *ONE)
    (run,) = _runs(_sqlite(home))
    return _finals(run)


@pytest.mark.slow
def test_two_commands_started_together_make_each_run_once(tmp_path):
    """Two identical `run` commands on one home: each run is claimed by one of them,
    the other waits for it; one MLflow run per hash, all FINISHED, both exit 0."""
    home = tmp_path / "home"
    args = ["run", "dm2/table1", "--profile", "smoke", "--dataset", "cub200", "--set", "schedule.epochs=2",
            "--threads", "1", "--no-progress", "--format", "json"]
    procs = [subprocess.Popen([sys.executable, "-m", "benchmark", *args], env=_env(home), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    summaries = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert sum(s["made"] for s in summaries) == 5  # each of Table 1's five CUB runs made once
    runs = _runs(_sqlite(home))
    hashes = [r.data.tags["bench.hash"] for r in runs]
    assert len(runs) == 5 and len(set(hashes)) == 5 and {r.info.status for r in runs} == {"FINISHED"}
    assert all("bench.owner" in r.data.tags and "bench.heartbeat" in r.data.tags for r in runs)


@pytest.mark.slow
def test_a_claim_is_exclusive_and_freed_when_its_holder_dies(tmp_path, monkeypatch):
    from benchmark.runner import claims

    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path))
    code = ("import os, sys, time; os.environ['BENCHMARK_HOME'] = sys.argv[1]\n"
            "from benchmark.runner.claims import try_claim\n"
            "c = try_claim('abc'); print('held' if c else 'busy', flush=True); time.sleep(60)")
    holder_proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                                   env=_env(tmp_path), cwd=ROOT)
    assert holder_proc.stdout.readline().strip() == "held"
    assert claims.try_claim("abc") is None
    info = claims.holder("abc")
    assert info["owner"].endswith(f":{holder_proc.pid}")
    holder_proc.kill()
    holder_proc.wait()
    mine = claims.try_claim("abc")  # the kernel released the dead holder's lock
    assert mine is not None and claims.try_claim("abc") is None
    mine.release()
    assert claims.holder("abc") is None


@needs_slurm
@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_run_ends_with_the_local_numbers(tmp_path, reference):
    home = tmp_path / "home"
    out = _cli(home, "run", *ONE, "--executor", "slurm", "--slurm-cpus", "1", "--format", "json")
    assert json.loads(out.stdout.strip().splitlines()[-1])["made"] == 1
    (run,) = _runs(_sqlite(home))
    assert run.info.status == "FINISHED" and _finals(run) == reference
    assert run.data.tags["bench.owner"].split(" slurm ")[1]  # trained inside a Slurm job


def _running_jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True, check=True)
    return out.stdout.split()


@needs_slurm
@pytest.mark.slurm
@pytest.mark.slow
def test_a_preempted_slurm_job_is_requeued_and_ends_with_the_uninterrupted_numbers(tmp_path, reference):
    """USR2 (what Slurm sends before preemption or the time limit, with submitit's
    signal delay) mid-run: the job is requeued, resumes from its last checkpoint,
    and ends with the numbers of the uninterrupted local run."""
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "run", *ONE, "--executor", "slurm",
                             "--slurm-cpus", "1", "--format", "json"], env=_env(home), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = list((home / "runs").glob("*/checkpoint.pt"))
        if found:
            ckpt = found[0]
            break
        time.sleep(0.2)
    assert ckpt is not None, "no checkpoint before the job ended"
    (job,) = _running_jobs()
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    logs = "".join(p.read_text(errors="replace") for p in (home / "slurm").glob("*/*_log.err"))
    assert "requeu" in logs.lower(), logs[-2000:]  # submitit: the job was requeued, not just finished
    (run,) = _runs(_sqlite(home))
    assert run.info.status == "FINISHED" and _finals(run) == reference


@needs_server
@pytest.mark.services
@pytest.mark.slow
def test_pool_report_and_tune_against_a_tracking_server_on_postgresql(tmp_path):
    """MLflow server on PostgreSQL: a pool of 2 trains, its teacher's weights travel as
    artifacts, report reads the server, and a tune study on PostgreSQL resumes."""
    home = tmp_path / "home"
    uri = os.environ["MLFLOW_TRACKING_URI"]
    data_seed = str(random.randrange(10**6, 10**7))  # runs of this test session only (the server persists)
    sel = ["dm2/table1", "--profile", "smoke", "--dataset", "cub200", "--row", "MD", "--row", "MD+TD",
           "--set", "schedule.epochs=2", "--set", f"data.synthetic.seed={data_seed}", "--no-progress"]
    out = _cli(home, "run", *sel, "--executor", "pool", "--workers", "2", "--format", "json", server=True)
    assert json.loads(out.stdout.strip().splitlines()[-1])["made"] == 2
    mine = [r for r in _runs(uri) if r.data.params.get("data.synthetic.seed") == data_seed]
    assert len(mine) == 2 and {r.info.status for r in mine} == {"FINISHED"}
    cells = json.loads(_cli(home, "report", "dm2/table1", "--profile", "smoke", "--format", "json",
                            server=True).stdout)
    assert any(c["variant"] and f"data.synthetic.seed={data_seed}" in c["variant"] and c["reproduced"] is not None
               for c in cells)
    storage = os.environ["BENCHMARK_OPTUNA_STORAGE"]
    tune = ["tune", "dm2/table6", "--profile", "smoke", "--row", "Proxy-NCA", "--dataset", "cub200",
            "--set", "schedule.epochs=2", "--set", f"data.synthetic.seed={data_seed}", "--storage", storage,
            "--workers", "2", "--trials", "2", "--no-progress", "--format", "json"]
    first = json.loads(_cli(home, *tune, server=True).stdout.strip().splitlines()[-1])
    second = json.loads(_cli(home, *tune, server=True).stdout.strip().splitlines()[-1])
    assert first["study"] == second["study"] and second["n_trials"] == first["n_trials"] + 2 >= 4
