"""Command line: ``python -m benchmark <command> --help``.

Every user mistake (a bad recipe, an unknown key, a missing dataset) ends as one
line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from benchmark.config import DATASETS
from benchmark.errors import ConfigError, UserError
from benchmark.recipes.select import SELECTOR_HELP

DESCRIPTION = """\
Reproducibility harness for two deep-metric-learning papers: DM² (Diversified
Mutual Metric Learning) and ABE (Attention-based Ensemble). Every table row of
both papers is a recipe (recipes/), every printed number is in tables/; runs are
tracked in MLflow and compared with the paper by `report`.

Selectors name recipes or tables: 'dm2/table1', 'dm2' (all DM² tables), 'abe',
'table1' (Table 1 of every paper), globs ('dm2/table*', '*/figure5'), 'all', or a
comma list. Profiles: 'paper' (the papers' settings, real data, a GPU) and
'smoke' (bundled synthetic data, tiny models, minutes on a CPU).

State lives in $BENCHMARK_HOME (default ./.benchmark); MLflow tracks to
$MLFLOW_TRACKING_URI or sqlite:///$BENCHMARK_HOME/mlflow.db.
"""


# ---------------------------------------------------------------------------
# shared options
# ---------------------------------------------------------------------------


def _add_selection(p: argparse.ArgumentParser, *, seeds: bool = True) -> None:
    p.add_argument("selector", help=f"recipes to use: {SELECTOR_HELP}")
    p.add_argument("--profile", default="paper", help="paper (default: the papers' settings) or smoke (synthetic data, CPU)")
    if seeds:
        p.add_argument("--seeds", type=int, default=1, metavar="N", help="repeat every run with seeds 0..N-1 (default 1)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field for every run, e.g. --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--overrides", action="append", default=[], metavar="FILE",
                   help="YAML file of config overrides, applied before --set: a mapping of config keys to values "
                        "(every selected run), or `scope: {recipe, row, where, dataset}` + `set: {...}` "
                        "(only that run; what `tune` writes)")
    p.add_argument("--data-root", metavar="DIR",
                   help="folder with the official datasets (CUB_200_2011/, cars196/, Stanford_Online_Products/, InShop/)")
    p.add_argument("--row", dest="rows", action="append", metavar="NAME", help="only this table row (repeatable)")
    p.add_argument("--dataset", dest="datasets", action="append", metavar="NAME",
                   choices=list(DATASETS), help="only this dataset (repeatable)")


def _add_executor(p: argparse.ArgumentParser, run_options: bool = True) -> None:
    g = p.add_argument_group("where runs train", "local: one after the other in this process (default); "
                             "pool: N at once on this machine; slurm: one Slurm job per run (submitit)")
    g.add_argument("--executor", choices=["local", "pool", "slurm"], default="local")
    if run_options:
        g.add_argument("--workers", type=int, default=None, metavar="N",
                       help="pool: runs at once, each in its own process (default 1, or one per --gpus)")
        g.add_argument("--gpus", metavar="0,1,...", help="pool: one run per listed GPU at a time")
        g.add_argument("--skip-claimed", action="store_true",
                       help="skip runs another command is training now (default: wait for them, then exit 0)")
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


def _executor(args: argparse.Namespace):
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
    opts = ExecutorOptions(executor=args.executor, workers=args.workers or (len(gpus) or 1), gpus=gpus,
                           threads=getattr(args, "threads", None), slurm=slurm, skip_claimed=args.skip_claimed,
                           progress=not args.no_progress)
    opts.check()
    return opts


def _selection(args: argparse.Namespace):
    """(catalog, recipes, context) of a command's selection options."""
    from benchmark.recipes import Catalog, Context, parse_overrides, select

    catalog = Catalog()
    recipes = select(catalog, args.selector, args.profile)
    n = getattr(args, "seeds", 1)
    if not 1 <= n <= MAX_SEEDS:
        raise ConfigError(f"--seeds {n}: must be between 1 and {MAX_SEEDS}")
    seeds = list(range(n))
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise UserError(f"--data-root {args.data_root}: no such folder")
    ctx = Context(profile=args.profile, seeds=seeds, overrides=parse_overrides(args.overrides, args.sets),
                  rows=args.rows, datasets=args.datasets)
    return catalog, recipes, ctx


MAX_SEEDS = 1000  # more is a typo, not an experiment (and would take minutes to plan)


def _specs(args: argparse.Namespace, device: str = "auto"):
    """(catalog, the selected runs resolved, deduplicated and bound to this machine)."""
    from benchmark.recipes import expand
    from benchmark.runner.binding import bind

    catalog, recipes, ctx = _selection(args)
    return catalog, [bind(s, data_root=args.data_root, device=device) for s in expand(catalog, recipes, ctx)]


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.runner.execute import make_runs
    from benchmark.runner.local import check_data, plan, register_cells
    from benchmark.runner.preflight import preflight
    from benchmark.runner.schedule import describe
    from benchmark.runner.tracking import Tracker

    opts = _executor(args)
    catalog, specs = _specs(args, device=args.device)
    facts = preflight(specs, sizes=catalog.dataset_sizes())
    data_tags = {h: f.tag() for h, f in facts.items()}
    tracker = Tracker()
    planned = plan(specs, tracker)
    for warning in check_data(planned, data_tags, args.recheck_data):
        print(f"warning: {warning}", file=sys.stderr)
    todo = sum(r.state != "finished" for r in planned)
    print(f"{len(planned)} runs: {len(planned) - todo} finished already, {todo} to run "
          f"(profile {args.profile}, tracking {tracker.uri})", file=sys.stderr)
    if args.dry_run:
        return 0
    register_cells(planned, tracker)
    summary = make_runs(planned, tracker, opts, data_tags)
    for line in describe(summary):
        print(line, file=sys.stderr)
    print(f"done: {summary.made} made ({summary.resumed} resumed), {summary.reused} reused, "
          f"{len(summary.skipped)} skipped, {len(summary.failed)} failed, {summary.seconds} s "
          f"(executor {opts.executor})", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(summary.as_dict()))
    if summary.failed:
        raise UserError(f"{len(summary.failed)} run(s) failed (listed above); repeat the command to resume them")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from benchmark.runner.local import plan
    from benchmark.runner.tracking import Tracker

    planned = plan(_specs(args)[1], Tracker())
    if args.format == "json":
        print(json.dumps([r.as_dict() for r in planned], indent=1))
        return 0
    from tabulate import tabulate

    from benchmark.runner.claims import holder

    def state(r) -> str:
        owner = (holder(r.spec.hash) or {}).get("owner") if r.state != "finished" else None
        return f"{r.state} (training: {owner})" if owner else r.state

    rows = [[r.spec.hash, state(r), r.spec.label, len(r.spec.cells), r.spec.teacher.hash if r.spec.teacher else ""]
            for r in planned]
    print(tabulate(rows, headers=["hash", "state", "run", "cells", "needs"]))
    todo = sum(r.state != "finished" for r in planned)
    print(f"\n{len(planned)} runs, {todo} to run")
    return 0


def cmd_paper(args: argparse.Namespace) -> int:
    from benchmark.recipes import Catalog
    from benchmark.report import paper_cells

    cells = paper_cells(Catalog(), args.selector)
    if args.format == "json":
        print(json.dumps(cells, indent=1))
    else:
        from tabulate import tabulate

        print(tabulate([[c["paper"], c["table"], c["row"], c["column"], c["value"]] for c in cells],
                       headers=["paper", "table", "row", "column", "value"]))
    return 0


def _report_profile(args: argparse.Namespace, store) -> str:
    if args.profile != "auto":
        return args.profile
    # read-only: the report never creates a tracking store
    return "paper" if store.finished_runs("paper") else "smoke"


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark.recipes import Catalog
    from benchmark.report import report_cells, write_report
    from benchmark.runner.store import RunStore

    store = RunStore()
    profile = _report_profile(args, store)
    catalog = Catalog()
    if args.format == "json":
        print(json.dumps(report_cells(catalog, args.selector, profile, store.uri), indent=1))
        return 0
    out = Path(args.out)
    paths, left = write_report(catalog, args.selector, profile, store=store, out_dir=out,
                               extra_index=_tuning_entries(args), render_all=args.all)
    pages = len(paths) - 2  # the manifest and the index
    kept = (f"; left {len(left)} page(s) without runs of profile {profile} as they are (--all renders them)"
            if left else "")
    print(f"profile {profile}: wrote {pages} page file(s) under {out}/ (index {out / 'README.md'}){kept}",
          file=sys.stderr)
    return 0


def _tuning_entries(args) -> list:
    try:
        from benchmark.tune import report_entries
    except ImportError:
        return []
    return report_entries(Path(args.out))


def cmd_stats(args: argparse.Namespace) -> int:
    from benchmark.recipes import Catalog, Context, Resolver, row_runs, select
    from benchmark.stats import config_model_stats

    catalog = Catalog()
    ctx = Context(profile=args.profile)
    resolver = Resolver(catalog, ctx)
    out = []
    for recipe in select(catalog, args.selector, args.profile):
        seen = set()
        for rr in row_runs(catalog, recipe, ctx):
            if rr.row in seen:
                continue
            seen.add(rr.row)
            cfg = resolver.resolve(recipe, rr.binding, rr.dataset, rr.cropped, 0)
            stats = config_model_stats(cfg)
            paper = {}
            row = next(r for r in rr.table.rows if r.name == rr.row)
            for col, value in zip(rr.table.columns, row.values):
                if col.metric in ("params_1e7", "gflops") and value is not None:
                    paper[col.metric] = value
            out.append({"table": recipe.name, "row": rr.row, **stats,
                        **{f"paper_{k}": v for k, v in paper.items()}})
    if args.format == "json":
        print(json.dumps([{k: v for k, v in o.items()} for o in out], indent=1))
    else:
        from tabulate import tabulate

        print(tabulate(out, headers="keys", floatfmt=".3f"))
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    from benchmark.perf import run_perf

    result = run_perf(quick=args.quick)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    """Layout, sizes against the papers, missing and damaged images, singleton classes."""
    from tqdm.auto import tqdm

    from benchmark.data import read_dataset
    from benchmark.data.check import ERRORS, check_splits
    from benchmark.data.roots import MARKER_FILES, dataset_root
    from benchmark.recipes import Catalog

    root = Path(args.data_root)
    if not root.is_dir():
        raise UserError(f"--data-root {root}: no such folder")
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be at least 1")
    names = args.datasets or [d for d in DATASETS if (dataset_root(d, root) / MARKER_FILES[d]).exists()]
    if not names:
        raise UserError(f"--data-root {root}: holds none of the datasets' official files "
                        f"({', '.join(f'{d}: {m}' for d, m in MARKER_FILES.items())})")
    stated = Catalog().dataset_sizes()
    report, errors = [], 0
    for name in names:
        folder = dataset_root(name, root)
        splits = read_dataset(name, folder, args.cropped)  # one-line errors for a broken layout
        total = sum(len(getattr(splits, s)) for s in ("train", "test", "query", "gallery") if getattr(splits, s))
        with tqdm(total=total, desc=f"{name}: decoding" if not args.no_decode else f"{name}: listing",
                  unit="img", disable=args.no_progress, file=sys.stderr) as bar:
            checks = check_splits(splits, decode=not args.no_decode, workers=args.workers, progress=bar.update)
        for c in checks:
            errors += c.errors
            paper = stated.get(name, {}).get(c.name, {})
            report.append({"dataset": name, "root": str(folder), **c.as_dict(),
                           "papers": {p: v for p, v in paper.items()}})
    if args.format == "json":
        print(json.dumps(report, indent=1))
    else:
        from tabulate import tabulate

        def said(rec, key):
            return ", ".join(f"{p} {v[key]:,}" for p, v in sorted(rec["papers"].items()) if v.get(key) is not None) or "—"

        rows = [[r["dataset"], r["split"], f"{r['images']:,}", said(r, "images"), f"{r['classes']:,}",
                 said(r, "classes"), r["singleton_classes"],
                 ", ".join(f"{k} {n}" for k, n in sorted(r["faults"].items())) or "none"] for r in report]
        print(tabulate(rows, headers=["dataset", "split", "images", "papers state", "classes", "papers state",
                                      "1-image classes", "faults"], disable_numparse=True))
        for r in report:
            for kind, paths in sorted(r["examples"].items()):
                more = r["faults"][kind] - len(paths)
                print(f"{r['dataset']} {r['split']} {kind}: {', '.join(paths)}" + (f" (+{more} more)" if more else ""))
        print(f"\n{errors} image(s) missing or damaged ({', '.join(ERRORS)}); grayscale/CMYK files are converted "
              f"to RGB by the loader; a class with one test image has no positive for its query")
    return 1 if errors else 0


def cmd_list(args: argparse.Namespace) -> int:
    from benchmark.recipes import Catalog

    catalog = Catalog()
    for name in catalog.runnable_names():
        t = catalog.table(catalog.recipe(name).table_key)
        print(f"{name:18s} {t.kind:6s} {t.title}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from benchmark.tune import cmd_tune as tune

    return tune(args, *_selection(args))


# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="train every run a selection needs (skips finished runs, resumes killed ones)",
                       description="Train every run the selected recipes need, teachers first. Finished runs "
                                   "(same config hash in MLflow) are skipped; an interrupted run (Ctrl-C, SIGTERM, "
                                   "a kill) resumes from its last checkpoint when the command is repeated. Before "
                                   "anything trains, every run is checked: its dataset's files, its weights files, "
                                   "and its networks built without weights. Files: a run trains in "
                                   "$BENCHMARK_HOME/runs/<hash>/ (checkpoint.pt each epoch); when it finishes, its "
                                   "weights (final.pt) are an artifact of its MLflow run and the folder keeps only "
                                   "config.json.")
    _add_selection(p)
    p.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch per run (default: torch's choice locally, cores/workers in a pool, "
                        "the job's CPUs on Slurm); a run's numbers depend on it, so compare runs at equal threads")
    _add_executor(p)
    p.add_argument("--dry-run", action="store_true", help="check and plan, train nothing")
    p.add_argument("--recheck-data", action="store_true",
                   help="train again a finished run whose data (its fingerprint: the annotation files and each "
                        "image's size) differs from the data under --data-root now; without it such a run is "
                        "reused with a warning")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--format", choices=["text", "json"], default="text", help="json: print a summary object at the end")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="list the runs a selection needs, their hashes, cells and state",
                       description="Resolve the selected recipes into runs without training: each run's config "
                                   "hash, the table cells it fills, what it needs (a teacher) and whether it finished.")
    _add_selection(p)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("report", help="write paper-vs-reproduced tables (Markdown, LaTeX) and figures",
                       description="Collect finished runs from MLflow and write reports/<paper>/<table>.md and .tex, "
                                   "figures as PNG and PDF, and the index reports/README.md. Each cell: the paper's "
                                   "number, the reproduced mean ± std over seeds (n), and the difference. A run whose "
                                   "config differs from its recipe row (--set, --overrides, a tuned best.yaml) is shown "
                                   "as a labelled variant line under the row, never averaged into it. Only the pages "
                                   "that finished runs of the profile fill are rewritten; reports/pages.json records "
                                   "the store, profile and date of every page.")
    p.add_argument("selector", nargs="?", default="all", help=f"tables to report (default all): {SELECTOR_HELP}")
    p.add_argument("--profile", default="auto",
                   help="whose runs to report: paper | smoke | auto (default: paper if any paper run finished, else smoke)")
    p.add_argument("--out", default="reports", help="output folder (default reports)")
    p.add_argument("--all", action="store_true",
                   help="render every selected page, also those no finished run fills (by default they are left "
                        "as they are)")
    p.add_argument("--format", choices=["files", "json"], default="files",
                   help="json: print every cell instead of writing files")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("paper", help="print every number the papers print, as the project holds them")
    p.add_argument("selector", nargs="?", default="all", help=f"tables (default all): {SELECTOR_HELP}")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_paper)

    p = sub.add_parser("stats", help="#params and GFLOPs of the models of a selection (no data, no training)")
    p.add_argument("selector", help=f"recipes: {SELECTOR_HELP}")
    p.add_argument("--profile", default="paper")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("perf", help="speed/memory benchmarks as ratios against baselines measured in the same run",
                       description="Measures in one process: eval_speedup_vs_pml (our Recall@1 vs "
                                   "pytorch-metric-learning's AccuracyCalculator on 20,000 512-d embeddings), "
                                   "cohort_step_ratio_vs_independent (a 4-member DM² step with temporal diversity vs "
                                   "four single-model steps) and multiview_data_ratio (4 views vs 1 view per image, DM²'s "
                                   "augmentation on 500-px JPEGs; with the decode and per-view times that bound it).")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--quick", action="store_true", help="smaller problems (for tests), same ratios")
    p.set_defaults(func=cmd_perf)

    p = sub.add_parser("data", help="check a copy of the datasets: `data check --data-root DIR`")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data_sub.required = True
    q = data_sub.add_parser(
        "check", help="verify layout, sizes, images (decoded) and singleton classes of the datasets under DIR",
        description="For each dataset under --data-root (or each --dataset): reads its official annotation files, "
                    "counts classes and images per split beside what DM² (Sec. 4.1) and ABE (Sec. 5) state, "
                    "decodes every image (missing, unreadable, truncated and corrupt JPEGs are errors; grayscale, "
                    "CMYK and other modes are listed) and counts classes with a single image. Exit status 1 when "
                    "an image is missing or damaged. `run` does the cheap part (layout, files present) itself.")
    q.add_argument("--data-root", required=True, metavar="DIR", help="the folder holding the datasets")
    q.add_argument("--dataset", dest="datasets", action="append", metavar="NAME", choices=list(DATASETS),
                   help="only this dataset (repeatable; default: every dataset found under DIR)")
    q.add_argument("--cropped", action="store_true", help="also read the bounding boxes (CUB, Cars)")
    q.add_argument("--no-decode", action="store_true", help="only check that every listed image exists")
    q.add_argument("--workers", type=int, default=4, metavar="N", help="decoding threads (default 4)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.add_argument("--format", choices=["text", "json"], default="text")
    q.set_defaults(func=cmd_data_check)

    p = sub.add_parser("list", help="list the recipes and the tables they reproduce")
    p.set_defaults(func=cmd_list)

    try:
        from benchmark.tune import add_parser as add_tune
    except ImportError:
        add_tune = None
    if add_tune is not None:
        add_tune(sub, _add_selection, _add_executor).set_defaults(func=cmd_tune)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm, systemd and `kill` send), handled as Ctrl-C is: the
    checkpoint is on disk, the MLflow run is marked KILLED, one line is printed."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: Optional[Sequence[str]] = None) -> int:
    import signal
    import threading

    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"{what}: repeat the command to resume from the last checkpoint", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
