"""Scheduling planned runs onto an executor: teachers before their students,
each run made exactly once, runs that another command holds waited for.

The loop is the same for every executor; only the dispatcher differs:

- :class:`LocalDispatch`: one run at a time in this process (the default);
- :class:`PoolDispatch`: N runs at once on this machine, each in its own
  process, pinned to one GPU each (``--gpus``) or to a share of the CPU threads;
- ``benchmark.runner.slurm.SlurmDispatch``: one Slurm job per run (a job array
  per wave), through submitit.

A run is dispatched when its teacher (if any) has finished. The process that
trains it claims it first (:func:`benchmark.runner.work.work`); a run another
live process holds comes back ``held`` and is waited for (polling MLflow and the
claim), or skipped with ``skip_claimed``. A claim whose holder died is free
again, and the run is dispatched again and resumed from its checkpoint.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from tqdm.auto import tqdm

from benchmark.errors import UserError
from benchmark.runner.local import PlannedRun
from benchmark.runner.work import HELD, MADE, REUSED, Outcome, Work, work

POLL_S = 5.0


class Dispatch(Protocol):
    """An executor: where the runs go."""

    name: str

    def capacity(self) -> int: ...

    def submit(self, items: list[tuple[PlannedRun, Work]]) -> None: ...

    def collect(self, timeout: float) -> list[tuple[PlannedRun, Optional[Outcome], Optional[BaseException]]]:
        """Runs that ended since the last call (an outcome, or the exception that ended them)."""

    def running(self) -> int: ...

    def close(self) -> None: ...


class LocalDispatch:
    """One run at a time, in this process (today's behaviour, the default)."""

    name = "local"

    def __init__(self, tracker=None):
        self.tracker = tracker
        self.done: list = []

    def capacity(self) -> int:
        return 1

    def submit(self, items) -> None:
        for r, w in items:  # an error stops the command here, as it always did
            self.done.append((r, work(w, self.tracker), None))

    def collect(self, timeout: float):
        out, self.done = self.done, []
        return out

    def running(self) -> int:
        return 0

    def close(self) -> None:
        pass


def _pool_init(threads: Optional[int]) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


class PoolDispatch:
    """N worker processes on this machine (spawned: CUDA-safe), each training one run
    at a time. With ``gpus`` each of the N slots owns one GPU (slot i: gpus[i % len]),
    and a run goes to a free slot's GPU; otherwise each process gets cores/N torch
    threads."""

    name = "pool"

    def __init__(self, workers: int, gpus: Optional[list[str]] = None, threads: Optional[int] = None,
                 ranks: int = 1):
        import multiprocessing as mp

        self.workers = workers
        self.gpus = list(gpus or [])
        cpu = os.cpu_count() or 1
        self.threads = threads or max(1, cpu // (workers * ranks))
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                        initializer=_pool_init, initargs=(self.threads,))
        self.futures: dict[Future, tuple[PlannedRun, Optional[str]]] = {}
        # slot i owns GPUs gpus[i*R] .. gpus[i*R + R-1]; a run's rank r trains on its slot's first GPU + r
        self.free_gpus = [self.gpus[i * ranks] for i in range(workers)] if self.gpus else []

    def capacity(self) -> int:
        return self.workers - len(self.futures)

    def submit(self, items) -> None:
        for r, w in items:
            gpu = self.free_gpus.pop(0) if self.free_gpus else None
            if gpu is not None:
                w.device = f"cuda:{gpu}"
            w.threads = w.threads or self.threads
            self.futures[self.pool.submit(work, w)] = (r, gpu)

    def collect(self, timeout: float):
        if not self.futures:
            return []
        done, _ = wait(list(self.futures), timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for f in done:
            r, gpu = self.futures.pop(f)
            if gpu is not None:
                self.free_gpus.append(gpu)
            exc = f.exception()
            out.append((r, None if exc else f.result(), exc))
        return out

    def running(self) -> int:
        return len(self.futures)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Summary:
    planned: int
    reused: int = 0
    made: int = 0
    resumed: int = 0
    waited: int = 0  # made or finished by another command while this one waited
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"planned": self.planned, "reused": self.reused, "made": self.made, "resumed": self.resumed,
                "waited": self.waited, "skipped": len(self.skipped), "failed": len(self.failed),
                "seconds": self.seconds}


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def schedule(planned: list[PlannedRun], dispatch: Dispatch, make_work: Callable[[PlannedRun], Work], tracker, *,
             skip_claimed: bool = False, progress: bool = True, poll: float = POLL_S) -> Summary:
    """Make every planned run that is not finished, on ``dispatch``."""
    t0 = time.time()
    summary = Summary(planned=len(planned), reused=sum(r.state == "finished" for r in planned))
    done = {r.spec.hash for r in planned if r.state == "finished"}
    failed: set[str] = set()
    todo = [r for r in planned if r.state != "finished"]
    waiting: dict[str, PlannedRun] = {}  # held by another live process
    said: set[str] = set()
    inflight: set[str] = set()
    bar = tqdm(total=len(todo), desc=f"runs ({dispatch.name})", unit="run", disable=not progress or not todo,
               file=sys.stderr)

    def finish(r: PlannedRun, status: str) -> None:
        done.add(r.spec.hash)
        r.state = "finished"
        bar.update(1)

    try:
        while todo or inflight:
            ready = [r for r in todo if r.spec.hash not in inflight and r.spec.hash not in waiting
                     and (r.spec.teacher is None or r.spec.teacher.hash in done)]
            blocked = [r for r in todo if r.spec.teacher is not None and r.spec.teacher.hash in failed]
            for r in blocked:
                todo.remove(r)
                failed.add(r.spec.hash)
                summary.failed.append(f"{r.spec.label}: its teacher failed")
                bar.update(1)
            batch = []
            for r in ready[:max(0, dispatch.capacity())]:
                batch.append((r, make_work(r)))
                inflight.add(r.spec.hash)
            if batch:
                dispatch.submit(batch)
            for r, outcome, exc in dispatch.collect(timeout=poll if dispatch.running() else 0):
                inflight.discard(r.spec.hash)
                if exc is not None:
                    todo.remove(r)
                    failed.add(r.spec.hash)
                    if not isinstance(exc, UserError):
                        tqdm.write("".join(traceback.format_exception(exc)).rstrip(), file=sys.stderr)
                    summary.failed.append(f"{r.spec.label}: {_first_line(exc)}")
                    bar.update(1)
                elif outcome.status == HELD:
                    if skip_claimed:
                        todo.remove(r)
                        summary.skipped.append(f"{r.spec.label} (held by {(outcome.holder or {}).get('owner', '?')})")
                        bar.update(1)
                    else:
                        waiting[r.spec.hash] = r
                        if r.spec.hash not in said:
                            said.add(r.spec.hash)
                            tqdm.write(f"waiting: {r.spec.label} is being trained by "
                                       f"{(outcome.holder or {}).get('owner', 'another process')}", file=sys.stderr)
                else:
                    todo.remove(r)
                    summary.made += outcome.status == MADE
                    summary.resumed += outcome.resumed
                    summary.reused += outcome.status == REUSED
                    summary.waited += outcome.status == REUSED and r.spec.hash in said
                    finish(r, outcome.status)
            if waiting and not dispatch.running():
                _poll_waiting(waiting, tracker, poll)
            elif todo and not inflight and not waiting and not batch:
                raise RuntimeError(f"scheduler stuck: {[r.spec.label for r in todo]}")  # pragma: no cover
            bar.set_postfix_str(f"running {len(inflight)}, waiting {len(waiting)}", refresh=True)
    finally:
        bar.close()
        dispatch.close()
    summary.seconds = round(time.time() - t0, 1)
    return summary


def _poll_waiting(waiting: dict[str, PlannedRun], tracker, poll: float) -> None:
    """Sleep one poll period, then release the runs whose holder finished or died:
    they are dispatched again (finished: reused under the claim; died: resumed)."""
    from benchmark.runner.claims import holder

    time.sleep(poll)
    for h in list(waiting):
        if holder(h) is None:
            waiting.pop(h)


def describe(summary: Summary) -> list[str]:
    lines = [f"skipped (held by another process; --skip-claimed): {s}" for s in summary.skipped]
    lines += [f"failed: {s}" for s in summary.failed]
    return lines
