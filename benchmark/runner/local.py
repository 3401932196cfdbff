"""Planning and local execution of run specs.

plan: each spec (teachers first) with its state in MLflow: ``finished`` (skipped),
``resume`` (an unfinished MLflow run and maybe a checkpoint: continued) or ``new``.
execute: one spec after the other in this process, each in its own working
folder ``$BENCHMARK_HOME/runs/<hash>`` so a kill loses at most the epoch in
progress; repeating the command resumes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from tqdm.auto import tqdm

from benchmark.config import to_dict
from benchmark.errors import UserError
from benchmark.runner.home import data_cache_dir, run_dir
from benchmark.runner.tracking import MlflowLogger, RunRecord, Tracker
from benchmark.spec import RunSpec


@dataclass
class PlannedRun:
    spec: RunSpec
    state: str  # finished | resume | new
    record: Optional[RunRecord]

    def as_dict(self) -> dict:
        d = self.spec.summary()
        d["state"] = self.state
        d["finished"] = self.state == "finished"
        d["mlflow_run_id"] = self.record.run_id if self.record else None
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


def _with_runtime(spec: RunSpec, device: str) -> RunSpec:
    """Runtime fields (not hashed): where synthetic data is cached, the device."""
    cfg = spec.config

    def fix(c):
        c = dataclasses.replace(c, device=device)
        if c.data.synthetic is not None and c.data.root is None:
            c.data = dataclasses.replace(c.data, root=str(data_cache_dir()))
        if c.distill is not None and c.distill.teacher is not None:
            c.distill = dataclasses.replace(c.distill, teacher=fix(c.distill.teacher))
        return c

    return dataclasses.replace(spec, config=fix(cfg))


def teacher_weights(spec: RunSpec, tracker: Tracker) -> Path:
    """The teacher's final.pt: from its working folder, else from its MLflow run."""
    t = spec.teacher
    local = run_dir(t.hash) / "final.pt"
    if local.exists():
        return local
    rec = tracker.find([t.hash]).get(t.hash)
    if rec is None or rec.status != "FINISHED":
        raise UserError(f"{spec.label}: its teacher run {t.hash} ({t.label}) has not finished")
    return tracker.download(rec.run_id, "final.pt", run_dir(t.hash) / "downloaded")


def execute(
    runs: list[PlannedRun],
    tracker: Tracker,
    *,
    device: str = "auto",
    progress: bool = True,
    on_done: Optional[Callable[[PlannedRun, dict], None]] = None,
) -> dict:
    """Run every planned spec that is not finished. Returns counts and timings."""
    from benchmark.train import train

    todo = [r for r in runs if r.state != "finished"]
    summary = {"planned": len(runs), "reused": len(runs) - len(todo), "made": 0, "resumed": 0, "seconds": 0.0}
    bar = tqdm(total=len(todo), desc="runs", unit="run", disable=not progress or not todo, position=0)
    t0 = time.time()
    for r in todo:
        spec = _with_runtime(r.spec, device)
        bar.set_postfix_str(spec.label[:60], refresh=True)
        run_id = tracker.start(spec, r.record)
        workdir = run_dir(spec.hash)
        workdir.mkdir(parents=True, exist_ok=True)
        logger = MlflowLogger(tracker, run_id)
        if r.record is None:
            cfg_path = workdir / "config.json"
            cfg_path.write_text(json.dumps({"spec": spec.summary(), "config": to_dict(spec.config)}, indent=2))
            logger.log_artifact(cfg_path)
        try:
            inputs = {"teacher": teacher_weights(spec, tracker)} if spec.teacher is not None else {}
            result = train(spec.config, logger, workdir, inputs, progress=progress, desc=spec.label)
        except KeyboardInterrupt:
            tracker.finish(run_id, "KILLED")
            raise
        except BaseException:
            tracker.finish(run_id, "FAILED")
            raise
        logger.log_artifact(result.checkpoint)
        tracker.finish(run_id, "FINISHED")
        summary["made"] += 1
        summary["resumed"] += int(r.state == "resume")
        r.state = "finished"
        if on_done is not None:
            on_done(r, result.final_metrics)
        bar.update(1)
    bar.close()
    summary["seconds"] = round(time.time() - t0, 1)
    return summary
