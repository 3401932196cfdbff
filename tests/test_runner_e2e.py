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


def test_set_run_is_a_variant_and_report_rewrites_only_its_table(tmp_path):
    """A --set run shows as a labelled variant of its row (report --format json), and
    after a one-row run `report` rewrites only that table's pages, the manifest and the
    index: every other committed page is left as it is."""
    import filecmp
    import shutil

    home = tmp_path / "home"
    own = ONE_RUN[:-2]  # the recipe's own run (ONE_RUN's shorter schedule is itself a variant)
    _cli(home, "run", *own, "--no-progress")
    _cli(home, "run", *own, "--set", "cohort.lambda_mutual=5", "--no-progress")
    cells = json.loads(_cli(home, "report", "dm2/table1", "--profile", "smoke", "--format", "json").stdout)
    ens = {c["variant"]: c for c in cells if (c["row"], c["column"]) == ("MD+TD+VD", "cub_ens")}
    assert set(ens) == {None, "cohort.lambda_mutual=5"}
    assert all(0 < c["reproduced"] <= 100 and c["n"] == 1 for c in ens.values())
    variants = [c for c in cells if c["variant"] is not None]
    assert len(variants) == 5 and {c["row"] for c in variants} == {"MD+TD+VD"}  # its 5 CUB cells, no other row

    out = tmp_path / "reports"
    shutil.copytree(ROOT / "reports", out)
    before = tmp_path / "before"
    shutil.copytree(out, before)
    _cli(home, "report", "--profile", "smoke", "--out", str(out))
    changed = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                     if p.is_file() and not ((before / p.relative_to(out)).exists()
                                             and filecmp.cmp(p, before / p.relative_to(out), shallow=False)))
    assert changed == ["README.md", "claims.md", "claims/abe.pdf", "claims/abe.png", "claims/dm2.pdf",
                       "claims/dm2.png", "dm2/table1.md", "dm2/table1.tex", "pages.json"], changed
    md = (out / "dm2" / "table1.md").read_text(encoding="utf-8")
    assert "variant: cohort.lambda_mutual=5" in md


def test_bare_table_name_selects_it_in_every_paper(tmp_path):
    plan = json.loads(_cli(tmp_path / "home", "plan", "table1", "--profile", "smoke", "--format", "json").stdout)
    assert {r["paper"] for r in plan} == {"dm2", "abe"} and len(plan) == 10 + 11 * 1


def _start(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmark", "run", *args, "--no-progress"], env=_env(home),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for_checkpoint(home: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list((home / "runs").glob("*/checkpoint.pt")):
            return
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared before the run ended")


def test_sigterm_marks_the_run_killed_in_one_line_and_it_resumes(tmp_path):
    """SIGTERM (what Slurm, systemd and kill send) is handled as Ctrl-C: one line,
    the MLflow run KILLED, and the repeated command resumes to the same numbers."""
    import mlflow

    straight = tmp_path / "straight"
    _cli(straight, "run", *ONE_RUN, "--no-progress")
    expected, _ = _final_metrics(straight)
    home = tmp_path / "term"
    proc = _start(home, *ONE_RUN)
    _wait_for_checkpoint(home, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = [ln for ln in err.splitlines() if "terminated" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    client = mlflow.tracking.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("dm2").experiment_id])
    assert run.info.status == "KILLED"
    resumed = json.loads(_cli(home, "run", *ONE_RUN, "--no-progress", "--format", "json").stdout.splitlines()[-1])
    assert resumed["resumed"] == 1
    got, _ = _final_metrics(home)
    assert got == expected


def test_a_finished_run_keeps_one_copy_of_its_weights_and_is_rechecked_on_changed_data(tmp_path):
    """After a run finishes its folder holds config.json only; its final.pt is the
    MLflow artifact. Repaired data is noticed before a finished run is reused."""
    home = tmp_path / "home"
    _cli(home, "run", *ONE_RUN, "--no-progress")
    _, run = _final_metrics(home)
    (folder,) = list((home / "runs").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]
    art = Path(run.info.artifact_uri.replace("file://", ""))
    assert (art / "final.pt").is_file() and (art / "config.json").is_file()
    assert json.loads(run.data.tags["bench.data"]).keys() == {"train", "test"}
    # the data changes under the run (a repaired image): reused with a warning, or trained again
    image = sorted((home / "data").glob("cub200-*/images/*/*.jpg"))[-1]
    image.write_bytes(image.read_bytes() + b"\0")
    again = _cli(home, "run", *ONE_RUN, "--no-progress", "--format", "json")
    assert json.loads(again.stdout.splitlines()[-1])["made"] == 0
    warnings = [ln for ln in again.stderr.splitlines() if "other data" in ln]
    assert len(warnings) == 1 and "test differ" in warnings[0] and "--recheck-data" in warnings[0]
    redo = _cli(home, "run", *ONE_RUN, "--no-progress", "--recheck-data", "--format", "json")
    assert json.loads(redo.stdout.splitlines()[-1])["made"] == 1
    quiet = _cli(home, "run", *ONE_RUN, "--no-progress", "--format", "json")
    assert "other data" not in quiet.stderr and json.loads(quiet.stdout.splitlines()[-1])["made"] == 0


def test_a_bf16_smoke_run_trains_on_cpu_under_its_own_hash(tmp_path):
    home = tmp_path / "home"
    one = ["dm2/table1", "--profile", "smoke", "--row", "Independent", "--dataset", "cub200"]
    fp32 = json.loads(_cli(home, "plan", *one, "--format", "json").stdout)
    bf16_args = [*one, "--set", "precision=bf16"]
    bf16 = json.loads(_cli(home, "plan", *bf16_args, "--format", "json").stdout)
    assert {r["hash"] for r in fp32}.isdisjoint({r["hash"] for r in bf16})
    _cli(home, "run", *bf16_args, "--no-progress")
    metrics, run = _final_metrics(home)
    assert run.data.tags["bench.hash"] == bf16[0]["hash"]
    assert run.data.params.get("precision") == "bf16"
    assert 0 < metrics["final/ensemble/recall_at_1"] <= 100
    assert json.loads(_cli(home, "plan", *bf16_args, "--format", "json").stdout)[0]["finished"] is True
