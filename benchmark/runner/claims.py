"""Claims: each run is trained by one process at a time, whoever starts it.

MLflow has no compare-and-set, so the claim is taken where atomicity exists: a
POSIX record lock (``fcntl.lockf``) on ``$BENCHMARK_HOME/claims/<hash>.lock``,
taken without blocking. What holds where:

- one machine (any local filesystem): the kernel grants the lock to one process;
  it is released the moment that process ends, however it ends (kill -9, OOM,
  preemption), so the next command takes the run over and resumes it from its
  checkpoint;
- several machines sharing ``BENCHMARK_HOME`` over NFS (v4, or v3 with lockd),
  Lustre mounted with ``flock``, GPFS, BeeGFS: the file server grants the lock
  to one client; a crashed node's locks are released when its lease expires
  (NFSv4: about 90 s), then the run is taken over;
- a filesystem without working locks (NFS mounted ``nolock``, some FUSE and
  object-store mounts): the lock succeeds everywhere and claims guarantee
  nothing. Put ``BENCHMARK_HOME`` on a filesystem with locks.

The holder writes who it is and a heartbeat (every :data:`HEARTBEAT_S` seconds)
into the lock file and into its MLflow run (tags ``bench.owner``,
``bench.heartbeat``), so ``plan`` and the MLflow UI show who trains what. A lock
whose holder is alive but no longer heartbeats (stopped, hung) is never broken:
a second trainer could corrupt the run; the waiting command names it instead.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import threading
from pathlib import Path
from typing import Callable, Optional

from benchmark.runner.home import benchmark_home

HEARTBEAT_S = 30.0
# POSIX record locks belong to a process, and closing ANY descriptor of the file
# releases them: so this process never opens a lock file it holds a second time.
_HELD: dict[str, "Claim"] = {}


def claims_dir() -> Path:
    return benchmark_home() / "claims"


def owner_id() -> str:
    """This process as a claim names it: host and pid, and the Slurm job when in one."""
    job = os.environ.get("SLURM_JOB_ID")
    array = os.environ.get("SLURM_ARRAY_TASK_ID")
    slurm = f" slurm {job}{'_' + array if array else ''}" if job else ""
    return f"{socket.gethostname()}:{os.getpid()}{slurm}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Claim:
    """A held claim on one run; release() (or the end of the process) frees it."""

    def __init__(self, run_hash: str, fd: int, path: Path):
        self.hash, self.fd, self.path = run_hash, fd, path
        self.owner = owner_id()
        self.started = _now()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.on_beat: Optional[Callable[[str], None]] = None  # e.g. the MLflow heartbeat tag
        self._write()
        _HELD[run_hash] = self

    def _write(self) -> None:
        data = json.dumps({"owner": self.owner, "started": self.started, "heartbeat": _now()}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def beat(self) -> None:
        self._write()
        if self.on_beat is not None:
            try:
                self.on_beat(_now())
            except Exception:  # a tracking server hiccup must not stop training
                pass

    def start_heartbeat(self, on_beat: Optional[Callable[[str], None]] = None, every: float = HEARTBEAT_S) -> None:
        self.on_beat = on_beat
        self.beat()

        def loop() -> None:
            while not self._stop.wait(every):
                self.beat()

        self._thread = threading.Thread(target=loop, name=f"heartbeat-{self.hash}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        _HELD.pop(self.hash, None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def try_claim(run_hash: str) -> Optional[Claim]:
    """The claim on ``run_hash`` if nobody holds it, else None (never blocks)."""
    if run_hash in _HELD:
        return None
    folder = claims_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_hash}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return Claim(run_hash, fd, path)


def holder(run_hash: str) -> Optional[dict]:
    """Who holds the claim on ``run_hash`` (owner, started, heartbeat), None when
    nobody does. Probes the lock without keeping it."""
    if run_hash in _HELD:
        c = _HELD[run_hash]
        return {"owner": c.owner, "started": c.started, "heartbeat": _now()}
    path = claims_dir() / f"{run_hash}.lock"
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                return json.loads(os.pread(fd, 4096, 0).decode() or "{}") or {"owner": "?"}
            except ValueError:
                return {"owner": "?"}
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def heartbeat_age(info: dict) -> Optional[float]:
    """Seconds since a holder's last heartbeat (None when unknown)."""
    try:
        beat = dt.datetime.strptime(info["heartbeat"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except (KeyError, ValueError):
        return None
    return (dt.datetime.now(dt.timezone.utc) - beat).total_seconds()
