"""The Slurm executor, through submitit: one job per run, a job array per wave.

Each job runs :func:`benchmark.runner.work.work` (claim, train, release) inside
a ``submitit.helpers.Checkpointable``: when Slurm preempts the job or its time
limit comes (submitit's USR2), the job is requeued and the training resumes
from the run's last checkpoint, ending with the numbers an uninterrupted run
ends with. Teachers run in an earlier wave than their students (the scheduler
dispatches a student when its teacher has finished). Settings come from
``--slurm-*`` flags over a YAML file (``--slurm-config``); job logs go to
``$BENCHMARK_HOME/slurm/<date>/``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from benchmark.errors import ConfigError, UserError
from benchmark.runner.work import Outcome, Work, work

import submitit


@dataclass
class SlurmSettings:
    partition: Optional[str] = None
    gpus: int = 0  # per job (one run)
    cpus: int = 2  # per job
    mem_gb: Optional[float] = None
    time_min: int = 24 * 60
    array_parallelism: int = 256
    extra: dict[str, Any] = field(default_factory=dict)  # further sbatch options, e.g. {qos: high, account: x}

    FIELDS = ("partition", "gpus", "cpus", "mem_gb", "time_min", "array_parallelism", "extra")


def load_settings(path: Optional[str], flags: dict[str, Any]) -> SlurmSettings:
    """A YAML file of SlurmSettings fields, then the flags that were given."""
    from benchmark.recipes.yamlio import load_yaml

    data: dict[str, Any] = {}
    if path:
        raw = load_yaml(Path(path)) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of Slurm settings ({', '.join(SlurmSettings.FIELDS)})")
        for key, value in raw.items():
            if key not in SlurmSettings.FIELDS:
                raise ConfigError(f"{path}: {key}: unknown Slurm setting (known: {', '.join(SlurmSettings.FIELDS)})")
        data.update(raw)
    extra = dict(data.get("extra") or {})
    extra.update(flags.pop("extra", None) or {})
    data.update({k: v for k, v in flags.items() if v is not None})
    data["extra"] = extra
    s = SlurmSettings(**data)
    for key in ("gpus", "cpus", "time_min", "array_parallelism"):
        value = getattr(s, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "gpus" else 1):
            raise ConfigError(f"--slurm-{key.replace('_', '-')}: expected a {'non-negative' if key == 'gpus' else 'positive'} "
                              f"integer, got {value!r}")
    return s


def check_reachable() -> None:
    """One line when this machine cannot reach a Slurm controller."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        raise UserError("--executor slurm: sbatch/sinfo are not installed on this machine (not a Slurm login node?)")
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        raise UserError("--executor slurm: the Slurm controller does not answer (sinfo timed out after 20 s)") from None
    if proc.returncode != 0:
        reason = " ".join((proc.stderr or proc.stdout).split())[:200]
        raise UserError(f"--executor slurm: Slurm is not reachable (sinfo: {reason})")


class RunJob(submitit.helpers.Checkpointable):
    """A run as a Slurm job; requeued (same arguments) on preemption or time-out:
    the run's checkpoints are on disk, so the new attempt resumes from the last one."""

    def __call__(self, w: Work) -> Outcome:
        import os

        if w.threads is None:
            cpus = os.environ.get("SLURM_CPUS_PER_TASK")
            w.threads = int(cpus) if cpus and cpus.isdigit() else None
        outcome = work(w)
        while outcome.status == "held":  # another process trains it: this job waits for it
            import time

            time.sleep(10)
            outcome = work(w)
        return outcome


class SlurmDispatch:
    name = "slurm"

    def __init__(self, settings: SlurmSettings, folder: Path, label: str = "benchmark"):
        check_reachable()
        self.settings = settings
        self.folder = folder
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        params: dict[str, Any] = dict(timeout_min=settings.time_min, cpus_per_task=settings.cpus,
                                      slurm_array_parallelism=settings.array_parallelism, name=label)
        if settings.partition:
            params["slurm_partition"] = settings.partition
        if settings.gpus:
            params["gpus_per_node"] = settings.gpus
        if settings.mem_gb:
            params["mem_gb"] = settings.mem_gb
        if settings.extra:
            params["slurm_additional_parameters"] = dict(settings.extra)
        self.executor.update_parameters(**params)
        self.jobs: dict[str, tuple[Any, Any]] = {}  # job id -> (planned run, job)

    def capacity(self) -> int:
        return 1 << 30  # Slurm queues what it cannot start yet

    def submit(self, items) -> None:
        fn = RunJob()
        try:
            with self.executor.batch():
                jobs = [self.executor.submit(fn, w) for _, w in items]
        except Exception as exc:  # sbatch refused (partition, limits, ...): the user's to fix
            raise UserError(f"--executor slurm: sbatch refused the jobs ({' '.join(str(exc).split())[:300]})") from None
        for (r, _), job in zip(items, jobs):
            self.jobs[job.job_id] = (r, job)

    def collect(self, timeout: float):
        import time

        if not self.jobs:
            return []
        deadline = time.time() + timeout
        while True:
            out = []
            for job_id, (r, job) in list(self.jobs.items()):
                if job.done():
                    del self.jobs[job_id]
                    try:
                        out.append((r, job.result(), None))
                    except Exception as exc:  # the job failed: its error, and where its log is
                        err = UserError(f"Slurm job {job_id} failed: {_last_error(exc)} (log: {job.paths.stderr})")
                        out.append((r, None, err))
            if out or time.time() >= deadline:
                return out
            time.sleep(min(2.0, max(0.0, deadline - time.time())))

    def running(self) -> int:
        return len(self.jobs)

    def close(self) -> None:
        for job_id, (_, job) in list(self.jobs.items()):  # interrupted: leave nothing queued
            try:
                job.cancel(check=False)
            except Exception:
                pass


def _last_error(exc: BaseException) -> str:
    text = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return " ".join(text[-1].split())[:300] if text else type(exc).__name__


def job_folder(home: Path) -> Path:
    return home / "slurm" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def describe(settings: SlurmSettings) -> str:
    return ", ".join(f"{k}={v}" for k, v in asdict(settings).items() if v not in (None, {}, 0))
