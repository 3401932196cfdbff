"""One job over several processes (DM² Sec. 3.3): the ranks of a cohort trained
with torch.distributed, and their launcher.

:class:`Ranks` is what a method and the loop need: which members this rank owns
(contiguous blocks, one member per rank when R = L) and three collectives over
gloo (CPU) or NCCL (CUDA): all-gather of tensors (relation matrices, eval
embeddings), gather of objects to rank 0 (state dicts for one cohort
checkpoint), and broadcast of objects from rank 0 (evaluation metrics). ``SINGLE``
is the one-process case, where every collective is the identity.

:func:`run_ranks` runs ``fn(ranks)`` on R ranks: rank 0 in this process (so its
logger needs no pickling), ranks 1..R-1 in spawned processes, a process group on
127.0.0.1. A rank that dies takes the job down: the others' next collective
fails on the closed connection, and rank 0 says which rank stopped.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from benchmark.errors import UserError

COLLECTIVE_TIMEOUT = dt.timedelta(minutes=30)  # a rank that hangs (not dies) is found at the latest after this


class RankFailed(UserError):
    """Another rank of the job stopped: the run is interrupted, its checkpoint stays."""


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    group: Any = field(default=None, repr=False)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def owned(self, n: int) -> list[int]:
        """The members (0-based) this rank trains: the r-th of R equal blocks of n."""
        per = n // self.world
        return list(range(self.rank * per, (self.rank + 1) * per))

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """``t`` of every rank, in rank order (equal shapes)."""
        if self.world == 1:
            return [t]
        out = [torch.empty_like(t) for _ in range(self.world)]
        self._call(torch.distributed.all_gather, out, t.contiguous())
        return out

    def gather_objects(self, obj: Any) -> Optional[list]:
        """Every rank's ``obj`` on rank 0 (None elsewhere)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world if self.main else None
        self._call(torch.distributed.gather_object, obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        self._call(torch.distributed.broadcast_object_list, box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            self._call(torch.distributed.barrier)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RuntimeError as exc:  # a peer died: its socket closed under the collective
            raise RankFailed(f"rank {self.rank}: another rank of this job stopped "
                             f"({' '.join(str(exc).split())[:160]}); repeat the command to resume the run "
                             f"from its last checkpoint") from None


SINGLE = Ranks()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init(rank: int, world: int, port: int, backend: str) -> Ranks:
    torch.distributed.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world, timeout=COLLECTIVE_TIMEOUT)
    return Ranks(rank, world, torch.distributed.group.WORLD)


def _worker(fn: Callable, rank: int, world: int, port: int, backend: str, threads: Optional[int],
            env: dict) -> None:
    os.environ.update(env)
    if threads:
        torch.set_num_threads(threads)
    try:
        fn(_init(rank, world, port, backend))
    except RankFailed:
        raise SystemExit(3)
    except BaseException:
        print(f"rank {rank} failed:\n{traceback.format_exc()}", file=sys.stderr)
        raise SystemExit(1)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def run_ranks(fn: Callable[[Ranks], Any], world: int, *, backend: str = "gloo", threads: Optional[int] = None,
              worker_fn: Optional[Callable[[Ranks], Any]] = None) -> Any:
    """``fn(ranks)`` on ``world`` ranks; returns rank 0's result. Ranks 1..R-1 run
    ``worker_fn`` (default ``fn``), which must be picklable (a module-level
    function or a partial of one); rank 0 runs ``fn`` here."""
    if world == 1:
        return fn(SINGLE)
    worker_fn = worker_fn or fn
    import multiprocessing as mp

    port = _free_port()
    ctx = mp.get_context("spawn")
    env = {k: v for k, v in os.environ.items() if k.startswith(("BENCHMARK_", "OMP_", "MKL_"))}
    procs = [ctx.Process(target=_worker, args=(worker_fn, r, world, port, backend, threads, env), daemon=False,
                         name=f"rank-{r}") for r in range(1, world)]
    for p in procs:
        p.start()
    if threads:
        torch.set_num_threads(threads)
    try:
        result = fn(_init(0, world, port, backend))
    except RankFailed:
        dead = [(p.name, p.exitcode) for p in procs if p.exitcode not in (None, 0)]
        who = ", ".join(f"{n} (exit code {c})" for n, c in dead) or "a rank"
        raise RankFailed(f"{who} stopped while training; repeat the command to resume the run from its last "
                         f"checkpoint") from None
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    return result
