"""What a tuning command leaves behind: the study's summary, its MLflow parent
run, the best values as an overrides file, and the text it prints."""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmark import names as N
from benchmark.tune.trials import fmt_value


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


def scope(target) -> dict:
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


def selection_command(args, tune: bool = False) -> str:
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


def open_parent(tracker, job, attrs: dict) -> str:
    """The study's MLflow parent run (experiment 'tune'): reopened when the study
    continues, else created with the study's space and metric as params."""
    from benchmark.runner.tracking import git_commit, versions

    runs = [r for r in tracker.search(f"tags.`{N.TAG_TUNE_STUDY}` = '{job.study}' and "
                                      f"tags.`{N.TAG_TUNE_ROLE}` = 'parent'")
            if r.data.tags.get(N.TAG_TUNE_STORAGE) == job.storage]
    if runs:
        run_id = runs[0].info.run_id
        tracker.reopen(run_id)
        return run_id
    tags = {
        N.TAG_TUNE_STUDY: job.study, N.TAG_TUNE_ROLE: "parent", N.TAG_TUNE_STORAGE: job.storage,
        N.TAG_RUN_NAME: f"tune {job.study}"[:250],
        "bench.tune.label": job.label, "bench.tune.metric": job.metric, "bench.tune.paper": job.paper,
        "bench.tune.profile": job.profile, "bench.tune.git_commit": git_commit(), "bench.tune.versions": versions(),
    }
    params = {"tune.space": json.dumps([p.as_dict() for p in job.space]), "tune.metric": job.metric,
              "tune.source": job.source, "tune.val_classes": str(attrs["val_classes"]), "tune.label": job.label}
    return tracker.start_run(N.TUNE_EXPERIMENT, tags, params)


def close_parent(tracker, run_id: str, summary: dict, status: str) -> None:
    tags = {"bench.tune.n_trials": str(summary["n_trials"]), "bench.tune.n_complete": str(summary["n_complete"]),
            "bench.tune.n_pruned": str(summary["n_pruned"])}
    metrics = {"tune/n_trials": float(summary["n_trials"])}
    if summary["best_params"] is not None:
        tags["bench.tune.best_params"] = json.dumps(summary["best_params"])[:5000]
        tags["bench.tune.best_value"] = repr(summary["best_value"])
        tags["bench.tune.best_trial"] = str(summary["best_trial"])
        metrics["tune/best_value"] = float(summary["best_value"])
    tracker.set_tags(run_id, tags)
    tracker.log_metrics(run_id, metrics, step=summary["n_trials"])
    tracker.finish(run_id, status)


def print_summary(summary: dict, args) -> None:
    if args.format == "json":
        print(json.dumps(summary))
        return
    from tabulate import tabulate

    print(f"study {summary['study']}: {summary['n_trials']} trials ({summary['n_complete']} complete, "
          f"{summary['n_pruned']} pruned, {summary['n_failed']} failed)")
    if summary["best_params"] is None:
        print("no completed trial yet: repeat the command to add trials")
        return
    rows = [[k, fmt_value(v), fmt_value(summary["paper_values"].get(k))] for k, v in summary["best_params"].items()]
    print(tabulate(rows, headers=["parameter", "best", "paper"]))
    base = summary.get("baseline_value")
    print(f"best {summary['metric']} {summary['best_value']:.2f} (trial {summary['best_trial']})"
          + (f"; the row's own values: {base:.2f}" if base is not None else ""))
    print(f"overrides: {summary['override_file']}  (run ... --overrides {summary['override_file']})")
