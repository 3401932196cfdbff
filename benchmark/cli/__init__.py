"""Command line: ``python -m benchmark <command> --help``.

Every user mistake (a bad recipe, an unknown key, a missing dataset) ends as one
line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from benchmark.errors import UserError

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

from benchmark.cli.options import add_executor, add_overrides, add_selection  # noqa: E402
from benchmark.cli.report import cmd_claims, cmd_paper, cmd_report  # noqa: E402
from benchmark.cli.run import cmd_plan, cmd_run  # noqa: E402
from benchmark.cli.tools import cmd_data_check, cmd_list, cmd_perf, cmd_stats, cmd_tune  # noqa: E402
from benchmark.config import DATASETS  # noqa: E402
from benchmark.estimate.devices import DEFAULT_DEVICE, DEVICES  # noqa: E402
from benchmark.recipes.select import SELECTOR_HELP  # noqa: E402


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
    add_selection(p)
    p.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch per run (default: torch's choice locally, cores/workers in a pool, "
                        "the job's CPUs on Slurm); a run's numbers depend on it, so compare runs at equal threads")
    add_executor(p)
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
                                   "hash, the table cells it fills, what it needs (a teacher) and whether it finished. "
                                   "--estimate adds each run's FLOPs and GPU-hours (training, evaluation, both) and "
                                   "totals per table; json then prints {runs, totals}.")
    add_selection(p)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--estimate", action="store_true",
                   help="each run's cost from its models' FLOPs, schedule and dataset sizes, in GPU-hours on --device")
    p.add_argument("--device", choices=list(DEVICES), default=None,
                   help=f"with --estimate: the GPU (default {DEFAULT_DEVICE}; peaks in benchmark/estimate/devices.py)")
    p.add_argument("--efficiency", type=float, default=None, metavar="F",
                   help="with --estimate: the share of the GPU's peak FLOP/s reached (default: the device's own, "
                        + ", ".join(f"{name} {d.efficiency:g}" for name, d in DEVICES.items()) + ")")
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

    p = sub.add_parser("claims", help="the papers' claims tested on the runs: verdict, effect and 95%% CI of each",
                       description="Every claim the papers' text makes about their tables and figures "
                                   "(tables/<paper>/claims.yaml), tested on the finished runs: the effect (mean over "
                                   "seeds of the paired difference), its 95%% t-interval, n, and a verdict: holds, "
                                   "contradicted, inconclusive or not_run; paper_verdict: the same relation on the "
                                   "paper's printed numbers. report writes the same as reports/claims.md with a "
                                   "forest plot per paper.")
    p.add_argument("selector", nargs="?", default="all", help=f"tables whose claims to test (default all): {SELECTOR_HELP}")
    p.add_argument("--profile", default="auto", help="whose runs: paper | smoke | auto (default: paper if any paper "
                                                     "run finished, else smoke)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_claims)

    p = sub.add_parser("paper", help="print every number the papers print, as the project holds them")
    p.add_argument("selector", nargs="?", default="all", help=f"tables (default all): {SELECTOR_HELP}")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_paper)

    p = sub.add_parser("stats", help="#params and GFLOPs of the models of a selection (no data, no training)",
                       description="Build each selected row's network (random weights, nothing downloaded) and "
                                   "count its parameters and multiply-accumulates on one crop_size image, beside "
                                   "the paper's numbers where the table prints them. --set/--overrides change "
                                   "the configs as they do for run, e.g. --set abe.arch=bvlc_googlenet for ABE "
                                   "on the paper's Caffe GoogLeNet.")
    p.add_argument("selector", help=f"recipes: {SELECTOR_HELP}")
    p.add_argument("--profile", default="paper")
    add_overrides(p)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("perf", help="speed/memory benchmarks as ratios against baselines measured in the same run",
                       description="Measures, each against a baseline timed in the same run: our Recall@1 vs "
                                   "pytorch-metric-learning with faiss (eval_speedup_vs_pml), every K and MAP@R "
                                   "vs Recall@1 at SOP size and its peak memory, a 4-member DM² step vs four "
                                   "single-model steps, 4 views vs 1 per image, a 2-rank cohort step vs one "
                                   "model, an epoch from the decoded-image cache vs decoding; the goals and "
                                   "whether each is met (benchmark/perf.py lists them).")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--quick", action="store_true", help="smaller problems (for tests), same ratios")
    p.add_argument("--device", default="cpu",
                   help="cpu (default: the ratios above), or a CUDA device (cuda, cuda:1): the paper cohort's "
                        "training and evaluation images/s in fp32 and bf16, model FLOP utilisation, and the data "
                        "pipeline's images/s beside the training's (benchmark/perf_gpu.py)")
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
        add_tune(sub, add_selection, add_executor).set_defaults(func=cmd_tune)
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
