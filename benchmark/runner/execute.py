"""Making planned runs on the executor a command chose (``--executor``).

:class:`ExecutorOptions` is what the command line says (executor, workers,
GPUs, Slurm settings, threads); :func:`make_runs` creates the MLflow
experiments once (before any worker starts: two first uses at once race),
builds the dispatcher and schedules the runs on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from benchmark.errors import ConfigError
from benchmark.runner.home import benchmark_home
from benchmark.runner.local import PlannedRun
from benchmark.runner.schedule import LocalDispatch, PoolDispatch, Summary, schedule
from benchmark.runner.work import Work

EXECUTORS = ("local", "pool", "slurm")


@dataclass
class ExecutorOptions:
    executor: str = "local"
    workers: int = 1
    gpus: list[str] = field(default_factory=list)
    threads: Optional[int] = None
    slurm: Optional[object] = None  # benchmark.runner.slurm.SlurmSettings
    skip_claimed: bool = False
    progress: bool = True
    ranks: int = 1  # processes per run (a cohort's members over torch.distributed)

    def check(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor {self.executor}: expected one of {', '.join(EXECUTORS)}")
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads {self.threads}: must be at least 1")
        if self.gpus and self.executor != "pool":
            raise ConfigError("--gpus: only the pool executor places runs on GPUs itself (Slurm: --slurm-gpus)")
        if any(not g.strip().isdigit() for g in self.gpus):
            raise ConfigError(f"--gpus {','.join(self.gpus)}: expected GPU numbers, e.g. --gpus 0,1,2,3")
        if self.ranks < 1:
            raise ConfigError(f"--ranks {self.ranks}: must be at least 1")
        if self.gpus and len(self.gpus) < self.workers * self.ranks:
            raise ConfigError(f"--gpus {','.join(self.gpus)}: {self.workers} worker(s) x {self.ranks} rank(s) need "
                              f"{self.workers * self.ranks} GPUs")


def dispatcher(opts: ExecutorOptions, tracker):
    if opts.executor == "pool":
        return PoolDispatch(opts.workers, opts.gpus, opts.threads, opts.ranks)
    if opts.executor == "slurm":
        import dataclasses

        from benchmark.runner.slurm import SlurmDispatch, SlurmSettings, job_folder

        settings = opts.slurm or SlurmSettings()
        if opts.ranks > 1:  # a job holds its run's ranks: a GPU each where it asks for GPUs, a CPU each
            settings = dataclasses.replace(settings, gpus=settings.gpus and max(settings.gpus, opts.ranks),
                                           cpus=max(settings.cpus, opts.ranks))
        return SlurmDispatch(settings, job_folder(benchmark_home()))
    return LocalDispatch(tracker)


def make_runs(planned: list[PlannedRun], tracker, opts: ExecutorOptions,
              data_tags: Mapping[str, str] = ()) -> Summary:
    """Make every planned run that is not finished; returns what happened."""
    opts.check()
    data_tags = dict(data_tags)
    for paper in sorted({r.spec.paper for r in planned}):
        tracker.experiment_id(paper)  # created once, here, before any worker
    home = str(benchmark_home())
    inner_progress = opts.progress and opts.executor == "local"

    def make_work(r: PlannedRun) -> Work:
        ranks = opts.ranks if r.spec.config.method == "cohort" else 1  # only cohorts split over ranks
        return Work(spec=r.spec, home=home, tracking_uri=tracker.uri, data_tag=data_tags.get(r.spec.hash),
                    retrain=r.state == "retrain", threads=opts.threads, progress=inner_progress, ranks=ranks)

    if opts.executor == "local" and opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    return schedule(planned, dispatcher(opts, tracker), make_work, tracker, skip_claimed=opts.skip_claimed,
                    progress=opts.progress)
