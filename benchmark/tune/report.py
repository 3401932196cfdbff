"""Tuning pages for `report`: one reports/tuning/<study>.md per study, with plots.

Studies are found in the default storage folder ($BENCHMARK_HOME/optuna/*.log)
and through the MLflow parent runs (experiment 'tune'), which name the storage of
studies kept elsewhere (--storage URL). A study that cannot be opened is skipped
with a warning; the report goes on.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Optional

from benchmark import names as N
from benchmark.tune.study import default_storage_dir, open_storage


def _warn(msg: str) -> None:
    print(f"warning: tuning report: {' '.join(msg.split())}", file=sys.stderr)


def discover() -> list[tuple[str, str]]:
    """(storage, study name) of every study the harness knows of."""
    found: list[tuple[str, str]] = []
    folder = default_storage_dir()
    if folder.is_dir():
        for path in sorted(folder.glob("*.log")):
            try:
                for s in open_storage(str(path)).get_all_studies():
                    found.append((str(path), s.study_name))
            except Exception as exc:  # a damaged journal must not stop the report
                _warn(f"{path}: cannot read ({exc})")
    try:
        from benchmark.runner.store import RunStore

        store = RunStore()  # read-only: a report never creates a tracking store
        for run in store.runs_tagged(N.TUNE_EXPERIMENT, N.TAG_TUNE_ROLE, "parent"):
            key = (run.tags.get(N.TAG_TUNE_STORAGE, ""), run.tags.get(N.TAG_TUNE_STUDY, ""))
            if all(key) and key not in found:
                if "://" not in key[0] and not Path(key[0]).exists():
                    continue
                found.append(key)
    except Exception as exc:
        _warn(f"MLflow parent runs not read ({exc})")
    return found


def report_entries(out_dir: Path) -> list[tuple[str, Path]]:
    """Write reports/tuning/<study>.md (+ PNGs) for every study; (title, page) for the index."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    entries = []
    used: set[str] = set()
    for storage, name in discover():
        try:
            study = optuna.load_study(study_name=name, storage=open_storage(storage))
        except Exception as exc:
            _warn(f"study {name} in {storage}: cannot load ({exc})")
            continue
        stem, i = name, 1
        while stem in used:  # the same study name in two storages
            i += 1
            stem = f"{name}-{i}"
        used.add(stem)
        try:
            page, title = write_study_page(study, Path(out_dir) / "tuning", storage, stem)
        except Exception as exc:  # a broken page must not stop the report
            _warn(f"study {name}: page not written ({type(exc).__name__}: {exc})")
            continue
        entries.append((title, page.resolve()))
    return entries


# ---------------------------------------------------------------------------
# one study
# ---------------------------------------------------------------------------


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.{digits}g}"
    return str(v)


def _last_intermediate(t) -> Optional[float]:
    if not t.intermediate_values:
        return None
    return t.intermediate_values[max(t.intermediate_values)]


def _plot_history(study, path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and _last_intermediate(t) is not None]
    ax.scatter([t.number for t in done], [t.value for t in done], color="tab:blue", label="complete", zorder=3)
    if pruned:
        ax.scatter([t.number for t in pruned], [_last_intermediate(t) for t in pruned], marker="x",
                   color="tab:gray", label="pruned (last reported)", zorder=3)
    base = [t for t in done if t.user_attrs.get("baseline")]
    if base:
        ax.scatter([base[0].number], [base[0].value], marker="*", s=160, color="tab:orange",
                   label="row's own values", zorder=4)
    best, xs, ys = -math.inf, [], []
    for t in sorted(done, key=lambda t: t.number):
        best = max(best, t.value)
        xs.append(t.number)
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric} (%)")
    ax.set_title("Optimisation history")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_curves(study, path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    from optuna.trial import TrialState

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for t in study.get_trials(deepcopy=False):
        if not t.intermediate_values:
            continue
        steps = sorted(t.intermediate_values)
        style = "--" if t.state == TrialState.PRUNED else "-"
        ax.plot(steps, [t.intermediate_values[s] for s in steps], style, marker=".", alpha=0.7,
                label=f"{t.number}" if len(study.trials) <= 12 else None)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric} (%)")
    ax.set_title("Per-epoch values (dashed: pruned)")
    if len(study.trials) <= 12:
        ax.legend(title="trial", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_slices(study, path: Path, metric: str, space: list[dict], paper: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    n = len(space)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, p in zip(axes[0], space):
        pts = [(t.params[p["key"]], t.value) for t in done if p["key"] in t.params]
        if pts:
            ax.scatter(*zip(*pts), color="tab:blue")
        if p.get("log"):
            ax.set_xscale("log")
        pv = paper.get(p["key"])
        if isinstance(pv, (int, float)) and pv > 0:
            ax.axvline(pv, color="tab:orange", linestyle=":", label=f"paper {pv:g}")
            ax.legend(fontsize=8)
        ax.set_xlabel(p["key"])
        ax.set_ylabel(f"validation {metric} (%)")
    fig.suptitle("Objective against each parameter (complete trials)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_importance(importances: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.5 * len(names)))
    ax.barh(names, [importances[n] for n in names], color="tab:green")
    ax.set_xlabel("importance (fANOVA, normalised)")
    ax.set_title("Parameter importance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_study_page(study, folder: Path, storage: str, stem: Optional[str] = None) -> tuple[Path, str]:
    import optuna
    from optuna.trial import TrialState
    from tabulate import tabulate

    folder.mkdir(parents=True, exist_ok=True)
    name = study.study_name
    stem = stem or name
    attrs = study.user_attrs
    metric = attrs.get("metric", "objective")
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    space = attrs.get("space") or [{"key": k, "low": None, "high": None, "log": False}
                                   for k in sorted({k for t in trials for k in t.params})]
    paper = attrs.get("paper_values") or {}
    best = study.best_trial if done else None

    lines = [f"# Tuning: {attrs.get('label', name)}", ""]
    if attrs.get("profile") and attrs.get("profile") != "paper":
        from benchmark.report.page import SMOKE_TEXT

        lines += [f"**{SMOKE_TEXT.format(profile=attrs['profile'])}**", ""]
    lines += [
        f"- Study: `{name}` (storage `{storage}`)",
        f"- Run: {attrs.get('label', '—')}, profile `{attrs.get('profile', '—')}`",
        f"- Objective: validation {metric} of `{attrs.get('source', '—')}` at the last epoch, on "
        f"{attrs.get('val_classes', '—')} held-out training classes (of {attrs.get('train_classes', '—')}); "
        f"the test classes are not used",
        f"- Trials: {len(trials)} ({len(done)} complete, {len(pruned)} pruned, {len(failed)} failed)",
    ]
    if attrs.get("tune_command"):
        lines.append(f"- Add trials: `python -m benchmark tune {attrs['tune_command']} --trials N`")
    lines.append("")

    # best vs paper
    rows = []
    for p in space:
        key = p["key"]
        pv = paper.get(key)
        bv = best.params.get(key) if best is not None else None
        ratio = (bv / pv) if isinstance(bv, (int, float)) and isinstance(pv, (int, float)) and pv else None
        rng = f"[{_fmt(p.get('low'))}, {_fmt(p.get('high'))}]" + (" log" if p.get("log") else "") \
            if p.get("low") is not None else "—"
        rows.append([f"`{key}`", rng, _fmt(pv), _fmt(bv), _fmt(ratio, 3)])
    lines += ["## Best values beside the paper's", "",
              tabulate(rows, headers=["Parameter", "Search range", "Paper", "Best", "Best / paper"],
                       tablefmt="pipe", disable_numparse=True), ""]
    base = [t for t in done if t.user_attrs.get("baseline")]
    if best is not None:
        lines.append(f"Best validation {metric}: **{best.value:.2f}** (trial {best.number})"
                     + (f"; with the row's own values (trial {base[0].number}): {base[0].value:.2f}" if base else "")
                     + ".")
    else:
        lines.append("No trial has completed yet.")
    lines.append("")

    # plots
    images = []
    hist = folder / f"{stem}-history.png"
    _plot_history(study, hist, metric)
    images.append(("Optimisation history", hist))
    if any(t.intermediate_values for t in trials):
        curves = folder / f"{stem}-curves.png"
        _plot_curves(study, curves, metric)
        images.append(("Per-epoch validation values", curves))
    if done and space:
        slices = folder / f"{stem}-params.png"
        _plot_slices(study, slices, metric, space, paper)
        images.append(("Objective against each parameter", slices))
    lines += ["## Plots", ""]
    for title, img in images:
        lines += [f"![{title}]({img.name})", ""]
    n_params = len({k for t in done for k in t.params})
    if n_params >= 2 and len(done) >= 2:
        try:
            imp = optuna.importance.get_param_importances(study)
            path = folder / f"{stem}-importance.png"
            _plot_importance(imp, path)
            lines += ["![Parameter importance](" + path.name + ")", "",
                      tabulate([[f"`{k}`", f"{v:.3f}"] for k, v in imp.items()], headers=["Parameter", "Importance"],
                               tablefmt="pipe", disable_numparse=True), ""]
        except Exception as exc:  # e.g. all values equal
            lines += [f"Parameter importance not computed ({type(exc).__name__}: {exc}).", ""]
    else:
        lines += [f"Parameter importance needs at least two tuned parameters and two complete trials "
                  f"(here {n_params} and {len(done)}).", ""]

    # trials
    keys = [p["key"] for p in space]
    rows = []
    for t in trials[:500]:
        value = t.value if t.value is not None else _last_intermediate(t)
        rows.append([str(t.number), t.state.name.lower() + (" (row's values)" if t.user_attrs.get("baseline") else ""),
                     _fmt(value), _fmt(max(t.intermediate_values) if t.intermediate_values else None)]
                    + [_fmt(t.params.get(k)) for k in keys])
    lines += ["## Trials", "", tabulate(rows, headers=["Trial", "State", metric, "Epochs"] + [f"`{k}`" for k in keys],
                                        tablefmt="pipe", disable_numparse=True), ""]
    if len(trials) > 500:
        lines += [f"(first 500 of {len(trials)} trials)", ""]
    page = folder / f"{stem}.md"
    page.write_text("\n".join(lines), encoding="utf-8")
    title = f"{attrs.get('label', name)}: " + ", ".join(keys)
    if best is not None:
        title += f" (best {metric} {best.value:.2f}, {len(trials)} trials)"
    return page, title
