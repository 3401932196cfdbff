"""`run` and `plan`."""

from __future__ import annotations

import argparse
import json
import sys

from benchmark.errors import UserError
from benchmark.cli.options import executor_options, specs as selected_specs

def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.runner.execute import make_runs
    from benchmark.runner.local import check_data, plan, register_cells
    from benchmark.runner.preflight import preflight
    from benchmark.runner.schedule import describe
    from benchmark.runner.tracking import Tracker

    opts = executor_options(args)
    catalog, specs = selected_specs(args, device=args.device)
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

    planned = plan(selected_specs(args)[1], Tracker())
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
