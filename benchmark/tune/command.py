"""``python -m benchmark tune``: Optuna over the λ weights (or any numeric field) of one run.

Flow: resolve the selection to exactly one run (the row's DM²/ABE/distillation
run); hold out a quarter of its training classes as a validation split; open (or
continue) the study; one MLflow parent run per study; trials in this process or
in ``--workers`` spawned processes; at the end the best values as an overrides
file that ``run --overrides`` accepts.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from benchmark.errors import ConfigError, UserError
from benchmark.tune.space import config_value, default_space, parse_params, primary_source
from benchmark.tune.study import (
    METRIC_KEYS,
    TAG_ROLE,
    TAG_STORAGE,
    TAG_STUDY,
    TUNE_EXPERIMENT,
    TuneJob,
    default_storage,
    finished_states,
    make_pruner,
    open_storage,
    optimize,
    quiet_optuna,
    trial_config,
    worker_main,
)

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


def add_parser(sub, add_selection: Callable) -> argparse.ArgumentParser:
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
    p.add_argument("--metric", choices=sorted(METRIC_KEYS), default="recall@1",
                   help="objective on the validation classes (default recall@1)")
    p.add_argument("--val-classes", type=int, metavar="N",
                   help="training classes held out for validation (default: the recipe's, else a quarter)")
    p.add_argument("--study", metavar="NAME", help="study name (default: derived from the run, profile and space)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage: an RDB URL (sqlite:///x.db, postgresql://...) or a journal file path "
                        "(default $BENCHMARK_HOME/optuna/<study>.log)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="parallel worker processes on this machine sharing the study (default 1: in this process)")
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
    p.set_defaults(func=cmd_tune)
    return p


# ---------------------------------------------------------------------------
# which run
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    recipe: Any
    row: str
    binding: int
    dataset: str
    cropped: bool
    config: Any  # TrainConfig under the user's profile and overrides
    label: str
    others: int = 0  # further runs the same selection makes (the overrides file's scope leaves them alone)


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _fix_rows(catalog, recipes, rows: Optional[list[str]]) -> Optional[list[str]]:
    """Accept a row name up to case and punctuation ('ProxyNCA' for 'Proxy-NCA') when unambiguous."""
    if not rows:
        return rows
    names = [r.name for rec in recipes for r in catalog.table(rec.table_key).rows]
    out = []
    for row in rows:
        if row not in names:
            matches = sorted({n for n in names if _norm(n) == _norm(row)})
            if len(matches) == 1:
                row = matches[0]
        out.append(row)
    return out


def find_target(catalog, recipes, ctx, selector: str, pick: Optional[int] = None) -> Target:
    """The one run a tuning selection names (teachers and a row's λ-0 companion left out);
    ``pick`` (1-based) chooses among several, e.g. a row's runs with a 2× and a 4× teacher."""
    from benchmark.recipes import Resolver, expand, row_runs
    from benchmark.spec import config_hash

    expand(catalog, recipes, ctx)  # checks --row names and every config of the selection
    resolver = Resolver(catalog, ctx)
    found: dict[str, Target] = {}
    for recipe in recipes:
        for rr in row_runs(catalog, recipe, ctx):
            if not [c for c in rr.columns if not c.is_stat]:
                continue
            cfg = resolver.resolve(recipe, rr.binding, rr.dataset, rr.cropped, 0)
            h = config_hash(cfg)
            if h in found:
                continue
            bindings = recipe.rows[rr.row].bindings
            where = f" {json.dumps(rr.binding.where, ensure_ascii=False)}" if len(bindings) > 1 else ""
            label = f"{recipe.name} {rr.row}{where} {rr.dataset}{' cropped' if rr.cropped else ''}"
            found[h] = Target(recipe, rr.row, bindings.index(rr.binding), rr.dataset, rr.cropped, cfg, label)
    targets = list(found.values())
    if len(targets) > 1:
        tunable = [t for t in targets if default_space(t.config)]
        if len(tunable) == 1:  # e.g. Table 6: the row's Independent (λ 0) run beside its DM² run
            targets = tunable
    others = len(found) - 1
    if pick is not None:
        if not 1 <= pick <= len(targets):
            raise ConfigError(f"--run {pick}: the selection has {len(targets)} run(s) to tune")
        return dataclasses.replace(targets[pick - 1], others=others)
    if len(targets) != 1:
        shown = "; ".join(f"{i}: {t.label}" for i, t in enumerate(targets[:6], 1)) + ("; ..." if len(targets) > 6 else "")
        raise ConfigError(f"{selector}: tune needs exactly one run but the selection has {len(targets)} ({shown}); "
                          f"narrow it with --row and --dataset (or pick one with --run N)")
    return dataclasses.replace(targets[0], others=others)


def _train_classes(cfg, device: str) -> int:
    """Training classes of the run's dataset before any are held out."""
    from benchmark.runner.home import benchmark_home
    from benchmark.runner.local import _with_runtime
    from benchmark.spec import RunSpec
    from benchmark.train import prepare

    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val_classes=0))
    cfg = _with_runtime(RunSpec(config=cfg, paper="", profile="", label=""), device).config
    splits = prepare(cfg, benchmark_home() / "tune" / "_data")
    return int(splits.train.num_classes)


def _study_name(target: Target, profile: str, digest: str) -> str:
    base = f"{target.recipe.name}-{target.row}-{target.dataset}{'-cropped' if target.cropped else ''}-{profile}"
    base = re.sub(r"[^A-Za-z0-9._+-]+", "-", base).strip("-")
    return f"{base}-{digest}"


def _check_teacher_fixed(job: TuneJob, base_cfg, catalog) -> None:
    """A distillation study tunes the student's training, never its (pre-trained, shared) teacher."""
    from benchmark.spec import config_hash

    if base_cfg.distill is None:
        return
    want = config_hash(base_cfg.distill.teacher)
    for p in job.space:
        for v in (p.low, p.high):
            cfg = trial_config(job, {p.key: v}, catalog)
            if cfg.distill is None or config_hash(cfg.distill.teacher) != want:
                raise ConfigError(f"--param {p.key}: changes the teacher of this distillation run; "
                                  f"tune the teacher's own row instead")


# ---------------------------------------------------------------------------
# MLflow parent run
# ---------------------------------------------------------------------------


def _parent_run(tracker, exp_id: str, job: TuneJob, attrs: dict) -> str:
    runs = tracker.client.search_runs(
        [exp_id], f"tags.`{TAG_STUDY}` = '{job.study}' and tags.`{TAG_ROLE}` = 'parent'",
        order_by=["attributes.start_time ASC"], max_results=100)
    runs = [r for r in runs if r.data.tags.get(TAG_STORAGE) == job.storage]
    if runs:
        run_id = runs[0].info.run_id
        tracker.client.update_run(run_id, status="RUNNING")
        return run_id
    from mlflow.entities import Param

    from benchmark.runner.tracking import git_commit, versions

    tags = {
        TAG_STUDY: job.study, TAG_ROLE: "parent", TAG_STORAGE: job.storage,
        "mlflow.runName": f"tune {job.study}"[:250],
        "bench.tune.label": job.label, "bench.tune.metric": job.metric, "bench.tune.paper": job.paper,
        "bench.tune.profile": job.profile, "bench.tune.git_commit": git_commit(), "bench.tune.versions": versions(),
    }
    run = tracker.client.create_run(exp_id, tags=tags)
    params = [Param("tune.space", json.dumps([p.as_dict() for p in job.space])[:6000]),
              Param("tune.metric", job.metric), Param("tune.source", job.source),
              Param("tune.val_classes", str(attrs["val_classes"])), Param("tune.label", job.label[:6000])]
    tracker.client.log_batch(run.info.run_id, params=params)
    return run.info.run_id


# ---------------------------------------------------------------------------
# running trials
# ---------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _announce(t, metric: str, write) -> None:
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
    state = t.state.name.lower()
    value = f"{metric} {t.value:.2f}" if t.value is not None else ""
    if state == "pruned" and t.intermediate_values:
        step = max(t.intermediate_values)
        value = f"{metric} {t.intermediate_values[step]:.2f} at epoch {step}"
    base = " (row's own values)" if t.user_attrs.get("baseline") else ""
    write(f"trial {t.number} {state}: {value} [{params}]{base}".replace(" : ", ": "))


def _run_trials(job: TuneJob, study, n: int, progress: bool, seed0: int) -> None:
    from tqdm.auto import tqdm

    if n <= 0:
        return
    bar = tqdm(total=n, desc=f"tune {job.study}"[:60], unit="trial", disable=not progress, file=sys.stderr)
    write = bar.write if progress else (lambda s: print(s, file=sys.stderr))

    def best_postfix():
        try:
            bar.set_postfix_str(f"best {job.metric} {study.best_value:.2f}", refresh=True)
        except ValueError:
            pass

    try:
        if job.workers <= 1:
            def callback(st, t):
                _announce(t, job.metric, write)
                bar.update(1)
                best_postfix()

            optimize(job, n, seed0, callbacks=[callback])
            return
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        shares = [n // job.workers + (1 if i < n % job.workers else 0) for i in range(job.workers)]
        procs = [ctx.Process(target=worker_main, args=(job, share, seed0 + i), name=f"tune-worker-{i}")
                 for i, share in enumerate(shares) if share > 0]
        seen = {t.number for t in study.get_trials(deepcopy=False, states=finished_states())}
        for proc in procs:
            proc.start()
        try:
            while True:
                alive = any(proc.is_alive() for proc in procs)
                for t in study.get_trials(deepcopy=False, states=finished_states()):
                    if t.number not in seen:
                        seen.add(t.number)
                        _announce(t, job.metric, write)
                        bar.update(1)
                        best_postfix()
                if not alive:
                    break
                time.sleep(1.0)
        finally:
            for proc in procs:
                proc.join()
        failed = [proc.name for proc in procs if proc.exitcode != 0]
        if failed:
            raise UserError(f"tuning worker(s) {', '.join(failed)} stopped with an error (see above); "
                            f"repeat the command to continue the study")
    finally:
        bar.close()


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


def summarize(study) -> dict:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    out = {
        "study": study.study_name,
        "n_trials": len(trials),
        "n_complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "n_pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "n_failed": sum(t.state == TrialState.FAIL for t in trials),
        "best_params": None,
        "best_value": None,
        "best_trial": None,
    }
    if out["n_complete"]:
        best = study.best_trial
        out.update(best_params=dict(best.params), best_value=best.value, best_trial=best.number)
    baseline = [t for t in trials if t.user_attrs.get("baseline") and t.state == TrialState.COMPLETE]
    out["baseline_value"] = baseline[0].value if baseline else None
    return out


def _scope(target: Target) -> dict:
    """The `scope:` of the overrides file: exactly the tuned run (see benchmark.recipes.Scope)."""
    bindings = target.recipe.rows[target.row].bindings
    scope = {"recipe": target.recipe.name, "row": target.row, "dataset": target.dataset}
    if len(bindings) > 1:
        scope["where"] = dict(bindings[target.binding].where)
    if target.cropped:
        scope["cropped"] = True
    return scope


def write_overrides(path: Path, summary: dict, attrs: dict) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = attrs.get("command", "")
    header = [
        f"# Best values of Optuna study {summary['study']}: {attrs.get('metric')} {summary['best_value']:.4f}",
        f"# on {attrs.get('val_classes')} held-out training classes (trial {summary['best_trial']} of "
        f"{summary['n_trials']}; {attrs.get('label', '')}, profile {attrs.get('profile', '')}).",
        f"# Apply: python -m benchmark run {cmd} --overrides {path}".rstrip(),
    ]
    if attrs.get("scope"):
        header.append("# The scope limits these values to the tuned run; other runs of the same command are unchanged.")
        data = {"scope": attrs["scope"], "set": summary["best_params"]}
    else:  # a study made before scopes existed
        header.append("# Note: no scope (older study): these values change every run a command selects.")
        data = summary["best_params"]
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(header) + "\n" + body, encoding="utf-8")
    tmp.replace(path)


def _q(text: str) -> str:
    return f"'{text}'" if re.search(r"[^A-Za-z0-9._/+=:@-]", text) else text


def _selection_command(args, tune: bool = False) -> str:
    """The command-line arguments naming the run (and, for tune, the study's space)."""
    parts = [args.selector, "--profile", args.profile]
    for r in args.rows or []:
        parts += ["--row", r]
    for d in args.datasets or []:
        parts += ["--dataset", d]
    if args.data_root:
        parts += ["--data-root", args.data_root]
    for f in args.overrides:
        parts += ["--overrides", f]
    for s in args.sets:
        parts += ["--set", s]
    if tune:
        for p in args.params:
            parts += ["--param", p]
        if args.metric != "recall@1":
            parts += ["--metric", args.metric]
        if args.val_classes is not None:
            parts += ["--val-classes", str(args.val_classes)]
        if args.study:
            parts += ["--study", args.study]
        if args.storage:
            parts += ["--storage", args.storage]
    return " ".join(_q(p) for p in parts)


# ---------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------


def cmd_tune(args: argparse.Namespace) -> int:
    import optuna

    from benchmark.cli import _context
    from benchmark.recipes import Catalog, Context, Resolver, override_layer
    from benchmark.runner.home import benchmark_home, tracking_uri
    from benchmark.runner.preflight import preflight
    from benchmark.runner.tracking import Tracker
    from benchmark.spec import RunSpec, config_hash

    quiet_optuna()
    if args.trials < 0:
        raise ConfigError(f"--trials {args.trials}: must be >= 0")
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be at least 1")
    if args.study is not None and not _NAME_OK.match(args.study):
        raise ConfigError(f"--study {args.study}: use letters, digits and . _ + - only")
    if args.prune_startup < 0:
        raise ConfigError(f"--prune-startup {args.prune_startup}: must be >= 0")
    if args.prune_warmup is not None and args.prune_warmup < 0:
        raise ConfigError(f"--prune-warmup {args.prune_warmup}: must be >= 0")
    make_pruner(args.pruner, 0, 1)  # checks the spelling before anything trains

    catalog = Catalog()
    recipes = catalog.select(args.selector)
    for r in recipes:
        if args.profile not in r.profile_names():
            raise ConfigError(f"--profile {args.profile}: {r.name} has no such profile (known: {', '.join(r.profile_names())})")
    args.rows = _fix_rows(catalog, recipes, args.rows)
    ctx = _context(args)
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
    preflight([RunSpec(config=cfg, paper=target.recipe.paper, profile=args.profile, label=target.label)])
    n_train = _train_classes(cfg, args.device)
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
        home=str(home), tracking_uri=tracking_uri(), experiment_id="", parent_run_id="", device=args.device,
        pruner=args.pruner, prune_startup=args.prune_startup, sampler_seed=args.sampler_seed, workers=args.workers,
    )
    base_cfg = trial_config(job, {}, catalog)
    _check_teacher_fixed(job, base_cfg, catalog)
    epochs = base_cfg.schedule.epochs
    job.prune_warmup = args.prune_warmup if args.prune_warmup is not None else max(1, epochs // 4)
    signature = hashlib.sha256(json.dumps(
        {"config": config_hash(base_cfg), "space": [p.as_dict() for p in space], "metric": args.metric},
        sort_keys=True).encode()).hexdigest()[:8]
    job.study = args.study or _study_name(target, args.profile, signature)
    job.storage = args.storage or default_storage(job.study)
    if "://" not in job.storage:  # a journal file: absolute, so the MLflow parent run names it from anywhere
        job.storage = str(Path(job.storage).expanduser().resolve())

    attrs = {
        "label": target.label, "recipe": target.recipe.name, "row": target.row, "dataset": target.dataset,
        "profile": args.profile, "metric": args.metric, "source": source, "val_classes": val,
        "train_classes": n_train, "space": [p.as_dict() for p in space], "signature": signature,
        "paper_values": {p.key: config_value(paper_cfg, p.key) for p in space},
        "row_values": {p.key: config_value(cfg, p.key) for p in space},
        "other_runs": target.others, "command": _selection_command(args), "tune_command": _selection_command(args, tune=True), "epochs": epochs,
        "scope": _scope(target),
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
    job.experiment_id = tracker.experiment_id(TUNE_EXPERIMENT)
    job.parent_run_id = _parent_run(tracker, job.experiment_id, job, attrs)
    if base_cfg.distill is not None:
        job.teacher_weights = str(_teacher(base_cfg, target, args, tracker))

    already = len(study.get_trials(deepcopy=False))
    n_done = len(study.get_trials(deepcopy=False, states=finished_states()))
    print(f"study {job.study}: {n_done} finished trial(s) so far, adding {args.trials} "
          f"({', '.join(f'{p.key} {p.describe()}' for p in space)}; {args.metric} of {source} on {val} of "
          f"{n_train} training classes; storage {job.storage})", file=sys.stderr)
    status = "FAILED"
    try:
        seed0 = args.sampler_seed * 100_003 + already * 101
        _run_trials(job, study, args.trials, progress=not args.no_progress, seed0=seed0)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        summary = summarize(study)
        _close_parent(tracker, job.parent_run_id, summary, status)

    out_path = None
    if summary["best_params"] is not None:
        out_path = Path(args.out) if args.out else home / "tune" / job.study / "best.yaml"
        write_overrides(out_path, summary, study.user_attrs)
    summary.update(metric=args.metric, source=source, val_classes=val, storage=job.storage,
                   override_file=str(out_path) if out_path else None,
                   paper_values=attrs["paper_values"], parent_run_id=job.parent_run_id)
    _print_summary(summary, args)
    return 0


def _teacher(base_cfg, target: Target, args, tracker) -> Path:
    """Train (once, as an ordinary tracked run) the teacher of a distillation study, on the
    same reduced training classes; every trial distils from its weights."""
    from benchmark.runner.local import execute, plan, teacher_weights
    from benchmark.spec import RunSpec

    label = f"teacher for tuning {target.label}"
    teacher = RunSpec(config=base_cfg.distill.teacher, paper=target.recipe.paper, profile=args.profile,
                      label=label, recipes=[target.recipe.name])
    student = RunSpec(config=base_cfg, paper=target.recipe.paper, profile=args.profile,
                      label=f"tuning {target.label}", teacher=teacher)
    planned = plan([teacher], tracker)
    if planned[0].state != "finished":
        print(f"training the teacher first: {label}", file=sys.stderr)
        execute(planned, tracker, device=args.device, progress=not args.no_progress)
    return teacher_weights(student, tracker)


def _close_parent(tracker, run_id: str, summary: dict, status: str) -> None:
    import time as _t

    from mlflow.entities import Metric

    client = tracker.client
    tags = {"bench.tune.n_trials": str(summary["n_trials"]), "bench.tune.n_complete": str(summary["n_complete"]),
            "bench.tune.n_pruned": str(summary["n_pruned"])}
    metrics = [Metric("tune/n_trials", float(summary["n_trials"]), int(_t.time() * 1000), summary["n_trials"])]
    if summary["best_params"] is not None:
        tags["bench.tune.best_params"] = json.dumps(summary["best_params"])[:5000]
        tags["bench.tune.best_value"] = repr(summary["best_value"])
        tags["bench.tune.best_trial"] = str(summary["best_trial"])
        metrics.append(Metric("tune/best_value", float(summary["best_value"]), int(_t.time() * 1000),
                              summary["n_trials"]))
    for k, v in tags.items():
        client.set_tag(run_id, k, v)
    client.log_batch(run_id, metrics=metrics)
    client.set_terminated(run_id, status=status)


def _print_summary(summary: dict, args) -> None:
    if args.format == "json":
        print(json.dumps(summary))
        return
    from tabulate import tabulate

    print(f"study {summary['study']}: {summary['n_trials']} trials ({summary['n_complete']} complete, "
          f"{summary['n_pruned']} pruned, {summary['n_failed']} failed)")
    if summary["best_params"] is None:
        print("no completed trial yet: repeat the command to add trials")
        return
    rows = [[k, _fmt(v), _fmt(summary["paper_values"].get(k))] for k, v in summary["best_params"].items()]
    print(tabulate(rows, headers=["parameter", "best", "paper"]))
    base = summary.get("baseline_value")
    print(f"best {summary['metric']} {summary['best_value']:.2f} (trial {summary['best_trial']})"
          + (f"; the row's own values: {base:.2f}" if base is not None else ""))
    print(f"overrides: {summary['override_file']}  (run ... --overrides {summary['override_file']})")
