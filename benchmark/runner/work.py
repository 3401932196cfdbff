"""One run, made by whichever process gets it: the unit every executor runs.

:func:`work` claims the run (benchmark.runner.claims), looks it up again in
MLflow under the claim (someone may have finished it meanwhile; an unfinished
MLflow run is resumed, never duplicated), trains it through ``run_spec`` with a
heartbeat, and releases the claim. It returns what happened instead of raising
for a run someone else holds, so an executor can wait for that one and go on
with others. :class:`Work` is plain data: it is pickled into pool processes
and Slurm jobs.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Optional

from benchmark import names as N
from benchmark.recipes.spec import RunSpec

MADE, REUSED, HELD = "made", "reused", "held"


@dataclass
class Work:
    spec: RunSpec  # bound
    home: str
    tracking_uri: str
    data_tag: Optional[str] = None
    retrain: bool = False  # --recheck-data found it finished on other data
    threads: Optional[int] = None  # torch threads in this process (None: leave as it is)
    device: Optional[str] = None  # overrides the bound device (a pool worker's GPU)
    progress: bool = False
    ranks: int = 1  # processes the run trains in (a cohort over torch.distributed)
    env: dict = field(default_factory=dict)  # environment a job process needs


@dataclass
class Outcome:
    hash: str
    label: str
    status: str  # made | reused | held
    resumed: bool = False
    seconds: float = 0.0
    holder: Optional[dict] = None


def _setup(w: Work) -> None:
    os.environ["BENCHMARK_HOME"] = w.home
    os.environ.update(w.env)
    if w.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = w.tracking_uri
    if w.threads:
        import torch

        torch.set_num_threads(w.threads)


def work(w: Work, tracker=None) -> Outcome:
    """Make ``w.spec`` unless someone else holds it (status held) or has finished it
    (status reused)."""
    import dataclasses

    from benchmark.runner.claims import holder, try_claim
    from benchmark.runner.home import run_dir
    from benchmark.runner.local import run_spec
    from benchmark.runner.tracking import Tracker

    _setup(w)
    spec = w.spec
    if w.device is not None:
        spec = dataclasses.replace(spec, config=dataclasses.replace(spec.config, device=w.device))
    claim = try_claim(spec.hash)
    if claim is None:
        return Outcome(spec.hash, spec.label, HELD, holder=holder(spec.hash))
    t0 = time.time()
    with claim:
        tracker = tracker or Tracker(w.tracking_uri or None)
        record = tracker.find([spec.hash]).get(spec.hash)
        if record is not None and record.status == "FINISHED":
            if not w.retrain or (w.data_tag is not None and record.tags.get(N.TAG_DATA) == w.data_tag):
                return Outcome(spec.hash, spec.label, REUSED)
            shutil.rmtree(run_dir(spec.hash), ignore_errors=True)  # trained on other data: afresh
            record = None
        resumed = record is not None

        def on_start(run_id: str) -> None:
            tracker.set_tags(run_id, {N.TAG_OWNER: claim.owner})
            claim.start_heartbeat(lambda now: tracker.set_tags(run_id, {N.TAG_HEARTBEAT: now}))

        tags = {N.TAG_DATA: w.data_tag} if w.data_tag else {}
        run_spec(spec, tracker, record=record, progress=w.progress, extra_tags=tags, on_start=on_start,
                 ranks=w.ranks, threads=w.threads)
    return Outcome(spec.hash, spec.label, MADE, resumed=resumed, seconds=round(time.time() - t0, 1))
