"""Options several commands share: the selection (selector, profile, seeds,
overrides, filters) and the executor (local, pool, slurm), and what they resolve to."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.config import DATASETS
from benchmark.errors import ConfigError, UserError
from benchmark.recipes.select import SELECTOR_HELP

def add_selection(p: argparse.ArgumentParser, *, seeds: bool = True) -> None:
    p.add_argument("selector", help=f"recipes to use: {SELECTOR_HELP}")
    p.add_argument("--profile", default="paper", help="paper (default: the papers' settings) or smoke (synthetic data, CPU)")
    if seeds:
        p.add_argument("--seeds", type=int, default=1, metavar="N", help="repeat every run with seeds 0..N-1 (default 1)")
    add_overrides(p)
    p.add_argument("--data-root", metavar="DIR",
                   help="folder with the official datasets (CUB_200_2011/, cars196/, Stanford_Online_Products/, InShop/)")
    p.add_argument("--row", dest="rows", action="append", metavar="NAME", help="only this table row (repeatable)")
    p.add_argument("--dataset", dest="datasets", action="append", metavar="NAME",
                   choices=list(DATASETS), help="only this dataset (repeatable)")


def add_overrides(p: argparse.ArgumentParser) -> None:
    """--set and --overrides (read by :func:`overrides`): run, plan, tune, stats."""
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field for every run, e.g. --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--overrides", action="append", default=[], metavar="FILE",
                   help="YAML file of config overrides, applied before --set: a mapping of config keys to values "
                        "(every selected run), or `scope: {recipe, row, where, dataset}` + `set: {...}` "
                        "(only that run; what `tune` writes)")


def overrides(args: argparse.Namespace) -> list[tuple]:
    """The checked override layers of a command's --overrides files and --set flags, in order."""
    from benchmark.recipes import parse_overrides

    return parse_overrides(args.overrides, args.sets)


def add_executor(p: argparse.ArgumentParser, run_options: bool = True) -> None:
    g = p.add_argument_group("where runs train", "local: one after the other in this process (default); "
                             "pool: N at once on this machine; slurm: one Slurm job per run (submitit)")
    g.add_argument("--executor", choices=["local", "pool", "slurm"], default="local")
    if run_options:
        g.add_argument("--workers", type=int, default=None, metavar="N",
                       help="pool: runs at once, each in its own process (default 1, or one per --gpus)")
        g.add_argument("--gpus", metavar="0,1,...", help="pool: one run per listed GPU at a time")
        g.add_argument("--skip-claimed", action="store_true",
                       help="skip runs another command is training now (default: wait for them, then exit 0)")
    g.add_argument("--ranks", type=int, default=1, metavar="R",
                   help="train each cohort over R processes (torch.distributed: gloo on CPU, NCCL with a GPU per "
                        "rank), its members split among them (R divides the cohort size), as DM² Sec. 3.3 does; "
                        "not part of a run's identity: the same numbers at equal --threads, and a run may resume "
                        "with another R")
    g.add_argument("--slurm-config", metavar="FILE",
                   help="YAML of Slurm settings: partition, gpus, cpus, mem_gb, time_min, array_parallelism, extra")
    g.add_argument("--slurm-partition", metavar="NAME")
    g.add_argument("--slurm-gpus", type=int, metavar="N", help="GPUs per job (one run)")
    g.add_argument("--slurm-cpus", type=int, metavar="N", help="CPUs per job (default 2)")
    g.add_argument("--slurm-mem", type=float, metavar="GB", help="memory per job")
    g.add_argument("--slurm-time", type=int, metavar="MIN", help="time limit per job in minutes (default 1440); "
                   "a job that reaches it is requeued and resumes from its last checkpoint")
    g.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                   help="another sbatch option, e.g. --slurm-extra qos=high --slurm-extra account=lab (repeatable)")


def executor_options(args: argparse.Namespace):
    """The executor options of a command line (run, tune)."""
    from benchmark.runner.execute import ExecutorOptions

    slurm = None
    if args.executor == "slurm":
        from benchmark.runner.slurm import load_settings

        extra = {}
        for item in args.slurm_extra:
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"--slurm-extra {item}: expected KEY=VALUE, e.g. --slurm-extra qos=high")
            extra[key.strip()] = value
        slurm = load_settings(args.slurm_config, {"partition": args.slurm_partition, "gpus": args.slurm_gpus,
                                                  "cpus": args.slurm_cpus, "mem_gb": args.slurm_mem,
                                                  "time_min": args.slurm_time, "extra": extra})
    elif args.slurm_config or args.slurm_partition or args.slurm_extra:
        raise ConfigError("--slurm-*: only with --executor slurm")
    if args.workers is not None and args.executor not in ("pool",) and getattr(args, "command", "") == "run":
        raise ConfigError("--workers: only with --executor pool (slurm runs every run as its own job)")
    gpus = [g.strip() for g in args.gpus.split(",")] if args.gpus else []
    ranks = args.ranks
    opts = ExecutorOptions(executor=args.executor, workers=args.workers or (len(gpus) // ranks or 1), gpus=gpus,
                           threads=getattr(args, "threads", None), slurm=slurm, skip_claimed=args.skip_claimed,
                           progress=not args.no_progress, ranks=ranks)
    opts.check()
    return opts


def selection(args: argparse.Namespace):
    """(catalog, recipes, context) of a command's selection options."""
    from benchmark.recipes import Catalog, Context, select

    catalog = Catalog()
    recipes = select(catalog, args.selector, args.profile)
    n = getattr(args, "seeds", 1)
    if not 1 <= n <= MAX_SEEDS:
        raise ConfigError(f"--seeds {n}: must be between 1 and {MAX_SEEDS}")
    seeds = list(range(n))
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise UserError(f"--data-root {args.data_root}: no such folder")
    ctx = Context(profile=args.profile, seeds=seeds, overrides=overrides(args),
                  rows=args.rows, datasets=args.datasets)
    return catalog, recipes, ctx


MAX_SEEDS = 1000  # more is a typo, not an experiment (and would take minutes to plan)


def specs(args: argparse.Namespace, device: str = "auto"):
    """(catalog, the selected runs resolved, deduplicated and bound to this machine)."""
    from benchmark.recipes import expand
    from benchmark.runner.binding import bind

    catalog, recipes, ctx = selection(args)
    return catalog, [bind(s, data_root=args.data_root, device=device) for s in expand(catalog, recipes, ctx)]


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------
