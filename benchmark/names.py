"""Names a run is known by outside the process: logged metric keys, artifact paths
and the MLflow tags the runner writes. One place, standard library only: the
training core builds metric keys with it, the runner writes tags with it, and
the report and tune read both back with it (without importing torch).

The tag names are the public query interface of an MLflow store made by the
harness (``tags.`bench.hash` = '...'``): keep them as they are.
"""

from __future__ import annotations

# -- metrics ------------------------------------------------------------------
# Evaluation keys of a run, per embedding source (member1, ensemble, student, ...):
#   test/<source>/<metric>        every evaluation (step = epoch)
#   val/<source>/<metric>         the same on held-out training classes (data.val_classes)
#   final/<source>/<metric>       the evaluation the run's `selection` reports
#   final_last/<source>/<metric>  the last evaluation (the fixed-budget protocol)
#   final_val/<source>/<metric>   validation numbers of the selected evaluation
#   train/<loss>                  mean training losses of an epoch
SPLITS = ("test", "val")
FINAL, FINAL_LAST, FINAL_VAL = "final", "final_last", "final_val"
FINAL_EPOCH = "final/epoch"


def metric_name(metric: str) -> str:
    """A table metric ('recall@1', 'map@r') as logged ('recall_at_1'): MLflow forbids '@'."""
    return metric.replace("@", "_at_")


def metric_key(prefix: str, source: str, metric: str) -> str:
    """'final', 'ensemble', 'recall@1' -> 'final/ensemble/recall_at_1'."""
    return f"{prefix}/{source}/{metric_name(metric)}"


# -- artifacts ----------------------------------------------------------------
CONFIG_FILE = "config.json"  # {"spec": RunSpec.summary(), "config": the full config}
FINAL_WEIGHTS = "final.pt"  # the selected evaluation's weights (a teacher's students read it)
FIGURES_DIR = "figures"
# Figure-only metrics of a table file -> the artifact (under the run's root) holding their data.
FIGURE_ARTIFACTS = {
    "pair_cosine_histogram": f"{FIGURES_DIR}/pair_cosine.npz",
    "attention_masks": f"{FIGURES_DIR}/attention_masks.npz",
}

# -- tags of a run --------------------------------------------------------------
TAG_HASH = "bench.hash"  # the run's identity (benchmark.recipes.spec.config_hash)
TAG_GROUP = "bench.group"  # the hash without any key named `seed` (kept as first written)
TAG_SERIES = "bench.series"  # the hash without the run's own seeds: runs that repeat each other
TAG_CELLS = "bench.cells"  # JSON: the table cells the run fills (chunked: bench.cells.1, ...)
TAG_PAPER = "bench.paper"
TAG_TABLES = "bench.tables"
TAG_PROFILE = "bench.profile"
TAG_SEED = "bench.seed"
TAG_LABEL = "bench.label"
TAG_METHOD = "bench.method"
TAG_DATASET = "bench.dataset"
TAG_TEACHER = "bench.teacher_hash"
TAG_DATA = "bench.data"  # JSON: the fingerprint of each dataset split the run trained on
TAG_OWNER = "bench.owner"  # the process that holds the run's claim: host:pid [slurm job]
TAG_HEARTBEAT = "bench.heartbeat"  # UTC time of its last heartbeat (every 30 s while it trains)
TAG_THREADS = "bench.threads"  # torch's intra-op threads: a run's numbers depend on them
TAG_DEVICE = "bench.device"  # cpu: <model name> | cuda: <GPU name>
TAG_RANKS = "bench.ranks"  # processes the run trained in (--ranks; a cohort's members split among them)
TAG_GIT = "bench.git_commit"
TAG_VERSIONS = "bench.versions"
TAG_RUN_NAME = "mlflow.runName"
TAG_PARENT = "mlflow.parentRunId"

# -- tuning ---------------------------------------------------------------------
TUNE_EXPERIMENT = "tune"
TAG_TUNE = "bench.tune."  # prefix of every tuning tag
TAG_TUNE_STUDY = "bench.tune.study"
TAG_TUNE_ROLE = "bench.tune.role"  # parent | trial
TAG_TUNE_STATE = "bench.tune.state"  # running | complete | pruned | failed
TAG_TUNE_STORAGE = "bench.tune.storage"
TAG_TUNE_TRIAL = "bench.tune.trial"
TAG_TUNE_NOTE = "bench.tune.note"
