"""`stats`, `perf`, `data check`, `list` and `tune`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmark.config import DATASETS
from benchmark.errors import ConfigError, UserError
from benchmark.cli.options import overrides, selection

def cmd_stats(args: argparse.Namespace) -> int:
    from benchmark.config.models import reported_arch
    from benchmark.recipes import Catalog, Context, Resolver, row_runs, select
    from benchmark.stats import config_model_stats

    catalog = Catalog()
    ctx = Context(profile=args.profile, overrides=overrides(args))
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
            out.append({"table": recipe.name, "row": rr.row, "arch": reported_arch(cfg), **stats,
                        **{f"paper_{k}": v for k, v in paper.items()}})
    if args.format == "json":
        print(json.dumps([{k: v for k, v in o.items()} for o in out], indent=1))
    else:
        from tabulate import tabulate

        print(tabulate(out, headers="keys", floatfmt=".3f"))
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    if args.device != "cpu":
        from benchmark.perf_gpu import run_device_perf

        result = run_device_perf(args.device)
    else:
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

    return tune(args, *selection(args))


# ---------------------------------------------------------------------------
