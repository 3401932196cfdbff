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
    from benchmark.cli import estimate as est
    from benchmark.runner.local import plan
    from benchmark.runner.tracking import Tracker

    est.check_options(args)
    catalog, specs = selected_specs(args)
    planned = plan(specs, Tracker())
    device = est.device_of(args)
    costs = est.run_estimates(catalog, planned, device, args.efficiency) if args.estimate else None
    if args.format == "json":
        runs = [{**r.as_dict(), **({"estimate": costs[r.spec.hash]} if costs else {})} for r in planned]
        print(json.dumps({"runs": runs, "totals": est.totals(planned, costs)} if costs else runs, indent=1))
        return 0
    from tabulate import tabulate

    from benchmark.runner.claims import holder

    def state(r) -> str:
        owner = (holder(r.spec.hash) or {}).get("owner") if r.state != "finished" else None
        return f"{r.state} (training: {owner})" if owner else r.state

    rows = [[r.spec.hash, state(r), r.spec.label, len(r.spec.cells), r.spec.teacher.hash if r.spec.teacher else ""]
            for r in planned]
    headers = ["hash", "state", "run", "cells", "needs"]
    if costs:
        rows = [row + [est.figure(costs[r.spec.hash]["flops"] / est.PETA), est.figure(costs[r.spec.hash]["gpu_hours"])]
                for row, r in zip(rows, planned)]
        headers += ["PFLOP", f"GPU-h {device}"]
    print(tabulate(rows, headers=headers, disable_numparse=True,
                   colalign=["left"] * 3 + ["right", "left"] + ["right"] * (len(headers) - 5)))
    todo = sum(r.state != "finished" for r in planned)
    print(f"\n{len(planned)} runs, {todo} to run")
    if costs:
        lines = est.summary_lines(planned, costs, device)
        lines += est.rehearsal_lines(device, args.efficiency, catalog.dataset_sizes())
        print("\n".join(lines))
    return 0
