"""``python -m benchmark tune``: Optuna over the λ weights (or any numeric field) of one run.

Flow: resolve the selection to exactly one run (the row's DM²/ABE/distillation
run, :mod:`~benchmark.tune.target`); hold out a quarter of its training classes
as a validation split; open (or continue) the study; one MLflow parent run per
study; trials in this process or in ``--workers`` spawned processes
(:mod:`~benchmark.tune.trials`); at the end the best values as an overrides file
that ``run --overrides`` accepts (:mod:`~benchmark.tune.results`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Callable

from benchmark.errors import ConfigError
from benchmark.tune.results import (
    close_parent, open_parent, print_summary, scope, selection_command, summarize, write_overrides,
)
from benchmark.tune.space import config_value, default_space, parse_params, primary_source
from benchmark.tune.study import METRICS, default_storage, finished_states, make_pruner, open_storage, quiet_optuna
from benchmark.tune.target import check_teacher_fixed, find_target, fix_rows, study_name, train_classes
from benchmark.tune.trials import TuneJob, run_trials, trial_config, trial_spec

DESCRIPTION = """\
Tune the weights the papers set by hand (λ_DM² per metric loss, ABE's λ_div, the
distillation weights) with Optuna, for one run: the selection, --row and --dataset
must leave exactly one run (a row's λ-0 Independent run beside its DM² run is
left out). The objective is Recall@1 (or MAP@R) of the ensemble (the student for
distillation) at the last epoch, on a validation split of held-out TRAINING
classes (data.val_classes; default a quarter of them); the test classes are never
looked at. The default search space is each λ the row uses, log-uniform over one
decade either side of its value; --param KEY=LOW:HIGH[:log] tunes any numeric
config field instead. The first trial of a new study runs the row's own values.

The study persists ($BENCHMARK_HOME/optuna/<study>.log, or --storage URL):
repeating the command adds --trials more trials to it. Every trial is an MLflow
run (experiment 'tune') nested under one parent run per study. At the end the best
values are written as an overrides file for `run --overrides FILE`, and `report`
adds a page per study (reports/tuning/<study>.md).
"""

_NAME_OK = re.compile(r"^[A-Za-z0-9._+-]+$")


def add_parser(sub, add_selection: Callable, add_executor: Callable) -> argparse.ArgumentParser:
    p = sub.add_parser("tune", help="Optuna over the λ weights of one table row, on held-out training classes",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_selection(p, seeds=False)
    p.add_argument("--run", dest="pick", type=int, metavar="N",
                   help="when a row has several runs per dataset (e.g. a 2x and a 4x teacher), tune the N-th "
                        "(the error listing them gives the numbers)")
    p.add_argument("--trials", type=int, default=20, metavar="N", help="trials to add to the study (default 20)")
    p.add_argument("--param", dest="params", action="append", default=[], metavar="KEY=LOW:HIGH[:log]",
                   help="tune this numeric config field over [LOW, HIGH] (log scale with :log) instead of the "
                        "row's λ weights (repeatable)")
    p.add_argument("--metric", choices=sorted(METRICS), default="recall@1",
                   help="objective on the validation classes (default recall@1)")
    p.add_argument("--val-classes", type=int, metavar="N",
                   help="training classes held out for validation (default: the recipe's, else a quarter)")
    p.add_argument("--study", metavar="NAME", help="study name (default: derived from the run, profile and space)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage: an RDB URL (sqlite:///x.db, postgresql://...) or a journal file path "
                        "(default $BENCHMARK_HOME/optuna/<study>.log)")
    add_executor(p, run_options=False)
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="parallel trial workers sharing the study: processes on this machine (executor local or "
                        "pool), or Slurm jobs (executor slurm); default 1: in this process")
    p.add_argument("--pruner", default="median", metavar="median|none|below:X",
                   help="median (default): stop a trial below the median of earlier trials at the same epoch; "
                        "below:X: stop a trial whose metric is below X")
    p.add_argument("--prune-warmup", type=int, metavar="EPOCHS",
                   help="epochs a trial trains before it may be pruned (default: a quarter of the epochs, >= 1)")
    p.add_argument("--prune-startup", type=int, default=5, metavar="N",
                   help="median pruner: trials that finish before any is pruned (default 5)")
    p.add_argument("--sampler-seed", type=int, default=0, metavar="N", help="seed of the TPE sampler (default 0)")
    p.add_argument("--no-baseline", action="store_true",
                   help="do not start a new study with the row's own values as its first trial")
    p.add_argument("--out", metavar="FILE",
                   help="where to write the best values as overrides (default $BENCHMARK_HOME/tune/<study>/best.yaml)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda | cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="json: print {study, n_trials, best_params, best_value, ...} at the end")
    return p


def cmd_tune(args: argparse.Namespace, catalog, recipes, ctx) -> int:
    """The command, on the selection the CLI resolved (catalog, recipes, context)."""
    import optuna

    from benchmark.recipes import Context, Resolver, config_hash, override_layer
    from benchmark.runner.home import benchmark_home, tracking_uri
    from benchmark.runner.preflight import preflight
    from benchmark.runner.tracking import Tracker

    quiet_optuna()
    if args.trials < 0:
        raise ConfigError(f"--trials {args.trials}: must be >= 0")
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be at least 1")
    if args.ranks < 1:
        raise ConfigError(f"--ranks {args.ranks}: must be at least 1")
    if args.study is not None and not _NAME_OK.match(args.study):
        raise ConfigError(f"--study {args.study}: use letters, digits and . _ + - only")
    if args.prune_startup < 0:
        raise ConfigError(f"--prune-startup {args.prune_startup}: must be >= 0")
    if args.prune_warmup is not None and args.prune_warmup < 0:
        raise ConfigError(f"--prune-warmup {args.prune_warmup}: must be >= 0")
    make_pruner(args.pruner, 0, 1)  # checks the spelling before anything trains

    args.rows = fix_rows(catalog, recipes, args.rows)
    ctx = dataclasses.replace(ctx, rows=args.rows)
    target = find_target(catalog, recipes, ctx, args.selector, args.pick)
    cfg = target.config

    space = parse_params(args.params, cfg) if args.params else default_space(cfg)
    if not space:
        raise ConfigError(f"{target.label}: the run uses no λ weight to tune (method {cfg.method}); "
                          f"name fields with --param KEY=LOW:HIGH[:log]")
    if args.metric == "map@r" and not cfg.eval.map_at_r:
        raise ConfigError(f"--metric map@r: eval.map_at_r is off for {target.label}")
    if args.metric == "recall@1" and 1 not in cfg.eval.recall_ks:
        raise ConfigError(f"--metric recall@1: eval.recall_ks of {target.label} has no 1")
    source = primary_source(cfg)

    # The validation split: held-out training classes, never the test classes.
    probe = TuneJob(study="", storage="", catalog_root="", recipe="", row="", binding=0, dataset="", cropped=False,
                    ctx=ctx, space=[], metric="", source="", label=target.label, paper=target.recipe.paper,
                    profile=args.profile, home="", tracking_uri="", parent_run_id="", data_root=args.data_root,
                    device=args.device)
    preflight([trial_spec(probe, cfg)])
    n_train = train_classes(cfg, args.data_root, args.device)
    if args.val_classes is not None:
        val = args.val_classes
        if not 1 <= val < n_train:
            raise ConfigError(f"--val-classes {val}: must be between 1 and {n_train - 1} "
                              f"({target.dataset} has {n_train} training classes)")
    else:
        val = cfg.data.val_classes or max(1, n_train // 4)
    ctx = dataclasses.replace(ctx, seeds=[0], overrides=list(ctx.overrides) + [
        override_layer("data.val_classes", val, "--val-classes")])

    paper_cfg = Resolver(catalog, Context(profile="paper")).resolve(
        target.recipe, target.recipe.rows[target.row].bindings[target.binding], target.dataset, target.cropped, 0)
    home = benchmark_home()
    job = TuneJob(
        study="", storage="", catalog_root=str(catalog.root), recipe=target.recipe.name, row=target.row,
        binding=target.binding, dataset=target.dataset, cropped=target.cropped, ctx=ctx, space=space,
        metric=args.metric, source=source, label=target.label, paper=target.recipe.paper, profile=args.profile,
        home=str(home), tracking_uri=tracking_uri(), parent_run_id="", data_root=args.data_root, device=args.device,
        pruner=args.pruner, prune_startup=args.prune_startup, sampler_seed=args.sampler_seed, workers=args.workers,
        ranks=args.ranks,
    )
    base_cfg = trial_config(job, {}, catalog)
    check_teacher_fixed(job, base_cfg, catalog)
    epochs = base_cfg.schedule.epochs
    job.prune_warmup = args.prune_warmup if args.prune_warmup is not None else max(1, epochs // 4)
    signature = hashlib.sha256(json.dumps(
        {"config": config_hash(base_cfg), "space": [p.as_dict() for p in space], "metric": args.metric},
        sort_keys=True).encode()).hexdigest()[:8]
    job.study = args.study or study_name(target, args.profile, signature)
    job.storage = args.storage or default_storage(job.study)
    if "://" not in job.storage:  # a journal file: absolute, so the MLflow parent run names it from anywhere
        job.storage = str(Path(job.storage).expanduser().resolve())

    attrs = {
        "label": target.label, "recipe": target.recipe.name, "row": target.row, "dataset": target.dataset,
        "profile": args.profile, "metric": args.metric, "source": source, "val_classes": val,
        "train_classes": n_train, "space": [p.as_dict() for p in space], "signature": signature,
        "paper_values": {p.key: config_value(paper_cfg, p.key) for p in space},
        "row_values": {p.key: config_value(cfg, p.key) for p in space},
        "other_runs": target.others, "command": selection_command(args),
        "tune_command": selection_command(args, tune=True), "epochs": epochs, "scope": scope(target),
    }
    storage = open_storage(job.storage)
    study = optuna.create_study(storage=storage, study_name=job.study, direction="maximize", load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"--study {job.study}: an existing study that minimises; choose another name")
    old = study.user_attrs.get("signature")
    if old is not None and old != signature:
        raise ConfigError(f"--study {job.study}: exists for another run, space or metric "
                          f"({study.user_attrs.get('label')}, {study.user_attrs.get('metric')}); choose another --study")
    new_study = not study.get_trials(deepcopy=False)
    if old is None:
        for k, v in attrs.items():
            study.set_user_attr(k, v)
    if new_study and not args.no_baseline:
        values = {p.key: config_value(cfg, p.key) for p in space}
        if all(p.contains(values[p.key]) for p in space):
            study.enqueue_trial(values, user_attrs={"baseline": True})

    tracker = Tracker(job.tracking_uri)
    job.parent_run_id = open_parent(tracker, job, attrs)
    if base_cfg.distill is not None:
        _train_teacher(job, base_cfg, tracker, progress=not args.no_progress)

    already = len(study.get_trials(deepcopy=False))
    n_done = len(study.get_trials(deepcopy=False, states=finished_states()))
    print(f"study {job.study}: {n_done} finished trial(s) so far, adding {args.trials} "
          f"({', '.join(f'{p.key} {p.describe()}' for p in space)}; {args.metric} of {source} on {val} of "
          f"{n_train} training classes; storage {job.storage})", file=sys.stderr)
    status = "FAILED"
    try:
        seed0 = args.sampler_seed * 100_003 + already * 101
        slurm = _executor_settings(args)
        run_trials(job, study, args.trials, progress=not args.no_progress, seed0=seed0, slurm=slurm,
                   slurm_folder=home / "slurm" / f"tune-{job.study}" if slurm is not None else None)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        summary = summarize(study)
        close_parent(tracker, job.parent_run_id, summary, status)

    out_path = None
    if summary["best_params"] is not None:
        out_path = Path(args.out) if args.out else home / "tune" / job.study / "best.yaml"
        write_overrides(out_path, summary, study.user_attrs)
    summary.update(metric=args.metric, source=source, val_classes=val, storage=job.storage,
                   override_file=str(out_path) if out_path else None,
                   paper_values=attrs["paper_values"], parent_run_id=job.parent_run_id)
    print_summary(summary, args)
    return 0


def _executor_settings(args):
    """Slurm settings when the trials run as Slurm jobs, else None (this machine)."""
    if args.executor != "slurm":
        if args.slurm_config or args.slurm_partition or args.slurm_extra:
            raise ConfigError("--slurm-*: only with --executor slurm")
        return None
    from benchmark.runner.slurm import load_settings

    extra = dict(item.split("=", 1) for item in args.slurm_extra if "=" in item)
    return load_settings(args.slurm_config, {"partition": args.slurm_partition, "gpus": args.slurm_gpus,
                                             "cpus": args.slurm_cpus, "mem_gb": args.slurm_mem,
                                             "time_min": args.slurm_time, "extra": extra})


def _train_teacher(job: TuneJob, base_cfg, tracker, progress: bool) -> None:
    """Train (once, as an ordinary tracked run) the teacher of a distillation study, on the
    same reduced training classes; every trial distils from its weights."""
    from benchmark.runner.execute import ExecutorOptions, make_runs
    from benchmark.runner.local import plan

    teacher = trial_spec(job, base_cfg).teacher
    planned = plan([teacher], tracker)
    if planned[0].state != "finished":
        print(f"training the teacher first: {teacher.label}", file=sys.stderr)
        make_runs(planned, tracker, ExecutorOptions(progress=progress))
