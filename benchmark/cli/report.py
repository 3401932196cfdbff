"""`report`, `claims` and `paper`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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


def cmd_claims(args: argparse.Namespace) -> int:
    from benchmark.recipes import Catalog, select_tables
    from benchmark.report.claims import FIELDS, evaluate
    from benchmark.report.ledger import MARK, effect_text
    from benchmark.runner.store import RunStore

    catalog = Catalog()
    store = RunStore()
    profile = _report_profile(args, store)
    tables = {t.key for t, _ in select_tables(catalog, args.selector)}
    claims = [c for c in catalog.claims() if c.table in tables]
    results = evaluate(catalog, claims, profile, store)
    if args.format == "json":
        print(json.dumps([{k: r.as_dict()[k] for k in FIELDS} for r in results], indent=1))
        return 0
    from tabulate import tabulate

    rows = [[r.claim.paper, r.claim.id, MARK[r.paper_verdict].strip("*"), MARK[r.verdict].strip("*"),
             effect_text(r.effect, r.ci_low, r.ci_high, r.n, r.claim.relation), r.protocol or "—",
             MARK[r.clean["verdict"]].strip("*") if r.clean else "—"] for r in results]
    print(tabulate(rows, headers=["paper", "claim", "paper says", "verdict", "effect [95% CI]", "protocol",
                                  "clean"], disable_numparse=True))
    from benchmark.report.ledger import summary_text

    note = " (smoke: says nothing about the method)" if profile == "smoke" else ""
    print(f"\n{len(results)} claims, profile {profile}{note}: {summary_text(results)}")
    return 0


def _tuning_entries(args) -> list:
    try:
        from benchmark.tune import report_entries
    except ImportError:
        return []
    return report_entries(Path(args.out))
