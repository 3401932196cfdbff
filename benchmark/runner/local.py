"""Planning and local execution of run specs.

plan: each spec (teachers first) with its state in MLflow: ``finished`` (skipped),
``resume`` (an unfinished MLflow run and maybe a checkpoint: continued) or ``new``.
run_spec: one bound spec, trained and tracked in its working folder
``$BENCHMARK_HOME/runs/<hash>`` (a kill loses at most the epoch in progress;
repeating the command resumes): the function every caller that trains uses
(benchmark.runner.work for every executor, and tune's trials).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from benchmark import names as N
from benchmark.errors import UserError
from benchmark.recipes.spec import RunSpec
from benchmark.runner.home import run_dir
from benchmark.runner.records import RunRecord
from benchmark.runner.tracking import MlflowLogger, Tracker, flatten


@dataclass
class PlannedRun:
    spec: RunSpec
    state: str  # finished | resume | new | retrain (finished on other data, --recheck-data)
    record: Optional[RunRecord]

    def as_dict(self) -> dict:
        from benchmark.runner.claims import holder

        d = self.spec.summary()
        d["state"] = self.state
        d["finished"] = self.state == "finished"
        d["mlflow_run_id"] = self.record.run_id if self.record else None
        d["claimed_by"] = None if self.state == "finished" else (holder(self.spec.hash) or {}).get("owner")
        return d


def ordered(specs: list[RunSpec]) -> list[RunSpec]:
    """Dependencies (teachers) before the runs that need them, each spec once."""
    out: list[RunSpec] = []
    seen: set[str] = set()

    def visit(s: RunSpec) -> None:
        if s.hash in seen:
            return
        if s.teacher is not None:
            visit(s.teacher)
        seen.add(s.hash)
        out.append(s)

    for s in specs:
        visit(s)
    return out


def plan(specs: list[RunSpec], tracker: Tracker) -> list[PlannedRun]:
    specs = ordered(specs)
    records = tracker.find(s.hash for s in specs)
    out = []
    for s in specs:
        rec = records.get(s.hash)
        if rec is not None and rec.status == "FINISHED":
            out.append(PlannedRun(s, "finished", rec))
        elif rec is not None:
            out.append(PlannedRun(s, "resume", rec))
        else:
            out.append(PlannedRun(s, "new", None))
    return out


def register_cells(runs: list[PlannedRun], tracker: Tracker) -> int:
    """Tag finished runs with the cells this command selects them for (a run made
    for DM² Table 1 also fills Table 5 when `run dm2/table5` reuses it), so the
    report shows them there. Returns how many runs were tagged."""
    from benchmark.runner.store import RunStore

    store = RunStore(tracker.uri)
    tagged = 0
    for r in runs:
        if r.state != "finished" or r.record is None or not r.spec.cells:
            continue
        before = dict(r.record.tags)
        legacy = store.legacy_cells(r.record.run_id) if r.record.cells() is None else ()
        tracker.add_cells(r.record, r.spec, legacy)
        tagged += int(r.record.tags != before)
    return tagged


def teacher_weights(spec: RunSpec, tracker: Tracker) -> Path:
    """The teacher's final.pt: in its working folder while it is kept there, else the
    artifact of its finished MLflow run (read in place from a local artifact store,
    downloaded from a server)."""
    t = spec.teacher
    local = run_dir(t.hash) / N.FINAL_WEIGHTS
    if local.exists():
        return local
    rec = tracker.find([t.hash]).get(t.hash)
    if rec is None or rec.status != "FINISHED":
        raise UserError(f"{spec.label}: its teacher run {t.hash} ({t.label}) has not finished")
    return (tracker.local_artifact(rec.run_id, N.FINAL_WEIGHTS)
            or tracker.download(rec.run_id, N.FINAL_WEIGHTS, run_dir(t.hash) / "downloaded"))


def check_data(runs: list[PlannedRun], tags: Mapping[str, str], recheck: bool) -> list[str]:
    """Compare the data each finished run trained on with the data here now (its
    ``bench.data`` tag against this command's fingerprints). A run that differs is
    reused with a one-line warning, or with ``recheck`` planned to train afresh.
    Returns the warnings."""
    out = []
    for r in runs:
        if r.state != "finished" or r.record is None:
            continue
        then, now = r.record.tags.get(N.TAG_DATA), tags.get(r.spec.hash)
        if then is None or now is None or then == now:
            continue  # a run logged before fingerprints were recorded is not compared
        import json

        old, new = json.loads(then), json.loads(now)
        splits = ", ".join(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))
        if recheck:
            r.state, r.record = "retrain", None
            out.append(f"{r.spec.label}: finished on other data ({splits} differ); training it again (--recheck-data)")
        else:
            out.append(f"{r.spec.label}: finished on other data than is under the data root now ({splits} "
                       f"differ); reused as it is; --recheck-data trains it again")
    return out


def fetch_checkpoint(tracker: Tracker, run_id: str, workdir: Path) -> None:
    """A run resumed on a machine that does not have its working folder (a job
    requeued on another node): its last checkpoint from the tracking server."""
    from benchmark.train.checkpoints import ARTIFACT_DIR, CHECKPOINT

    if (workdir / CHECKPOINT).exists():
        return
    try:
        got = tracker.download(run_id, f"{ARTIFACT_DIR}/{CHECKPOINT}", workdir / ".fetched")
    except Exception:  # none uploaded yet: the run starts from its first epoch
        return
    Path(got).replace(workdir / CHECKPOINT)
    shutil.rmtree(workdir / ".fetched", ignore_errors=True)


def prune(workdir: Path) -> None:
    """A finished run keeps one copy of its weights: the final.pt artifact of its
    MLflow run. Its resume checkpoints, best-so-far weights and the working copy
    of final.pt are removed (config.json stays, a few kilobytes)."""
    for name in ("checkpoint.pt", "checkpoint.prev.pt", "best.pt", N.FINAL_WEIGHTS):
        try:
            (Path(workdir) / name).unlink()
        except FileNotFoundError:
            pass


def machine_tags(spec: RunSpec) -> dict[str, str]:
    """What a run's numbers depend on beyond its config: torch's thread count and the
    device it trains on (bit-identical reruns need the same, and the same versions)."""
    import platform

    import torch

    from benchmark.train.common import resolve_device

    device = resolve_device(spec.config.device)
    if device.type == "cuda":
        kind = torch.cuda.get_device_name(device)
    else:
        kind = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    kind = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return {N.TAG_THREADS: str(torch.get_num_threads()), N.TAG_DEVICE: f"{device.type}: {kind}"[:250]}


def run_spec(
    spec: RunSpec,
    tracker: Tracker,
    *,
    record: Optional[RunRecord] = None,
    workdir: Optional[Path] = None,
    experiment: Optional[str] = None,
    tags: Optional[Mapping[str, str]] = None,
    params: Mapping[str, str] = (),
    logger: Optional[Callable] = None,
    keep_files: bool = True,
    interrupted: tuple = (KeyboardInterrupt,),
    progress: bool = True,
    extra_tags: Mapping[str, str] = (),
    on_start: Optional[Callable[[str], None]] = None,
    ranks: int = 1,
    threads: Optional[int] = None,
) -> tuple[str, object]:
    """Train one bound spec and track it; returns (MLflow run id, TrainResult).

    By default the run is the spec's own (found again by its hash; ``record``
    reopens an unfinished one) in ``$BENCHMARK_HOME/runs/<hash>``. A tuning trial
    passes its own ``experiment``, ``tags`` (instead of the identity tags), extra
    ``params``, a ``logger`` wrapper (reporting to Optuna), a ``workdir`` and
    ``keep_files=False`` (the folder is removed and no weights are logged).
    The MLflow run ends FINISHED, KILLED (an exception in ``interrupted``) or FAILED;
    a finished run's folder is pruned to its config.json (:func:`prune`).
    ``ranks`` > 1 trains a cohort over that many processes (runtime, not identity:
    the same hash, the same numbers at equal ``threads`` per rank).
    """
    from benchmark.train import train

    extra_tags = {**machine_tags(spec), N.TAG_RANKS: str(ranks), **dict(extra_tags)}
    if tags is None:
        run_id = tracker.start(spec, record, extra_tags)
    else:
        run_id = tracker.start_run(experiment or spec.paper, {**dict(tags), **dict(extra_tags)},
                                   {**flatten(spec.config_dict()), **dict(params)})
    if on_start is not None:
        on_start(run_id)
    workdir = Path(workdir) if workdir is not None else run_dir(spec.hash)
    if not keep_files:
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    base = MlflowLogger(tracker, run_id)
    try:
        if record is not None and tracker.remote:
            fetch_checkpoint(tracker, run_id, workdir)
        if record is None:
            tracker.log_config(run_id, spec, workdir / N.CONFIG_FILE)
        inputs = {"teacher": teacher_weights(spec, tracker)} if spec.teacher is not None else {}
        result = train(spec.config, logger(base) if logger is not None else base, workdir, inputs,
                       progress=progress, desc=spec.label, ranks=ranks, threads=threads)
        if keep_files:
            base.log_artifact(result.checkpoint)
    except interrupted:
        tracker.finish(run_id, "KILLED")
        raise
    except BaseException:
        tracker.finish(run_id, "FAILED")
        raise
    finally:
        if not keep_files:
            shutil.rmtree(workdir, ignore_errors=True)
    tracker.finish(run_id, "FINISHED")
    if keep_files:
        prune(workdir)
        if tracker.remote:  # its last resume checkpoint travelled to the server: not needed any more
            from benchmark.train.checkpoints import ARTIFACT_DIR

            tracker.delete_artifacts(run_id, ARTIFACT_DIR)
    return run_id, result
