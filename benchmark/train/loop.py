"""The epoch loop every method shares: data, evaluation, model selection,
checkpoints and resumption, logging.

A *method* (cohort, ABE, distillation) supplies the models and one training
step; this loop owns everything around it. Files in ``workdir``:

- ``checkpoint.pt``: the full training state after the last finished epoch
  (models, optimisers, schedulers, selection state), and the one before it
  (``checkpoint.prev.pt``). A killed run restarts from it and loses at most the
  epoch in progress; an unreadable one is moved aside and the previous one used
  (:mod:`benchmark.train.checkpoints`).
- ``best.pt``: the weights of the best evaluation so far (selection best_*).
- ``final.pt``: the weights of the selected evaluation, with the config.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol

import torch
from tqdm.auto import tqdm

from benchmark.config import TrainConfig, to_dict
from benchmark.errors import UserError
from benchmark.names import metric_key
from benchmark.train import checkpoints
from benchmark.train.api import NullLogger, TrainLogger, TrainResult
from benchmark.train.common import config_fingerprint, generator, seed_globals
from benchmark.train.ranks import SINGLE, Ranks

CHECKPOINT_FORMAT = 1
# Steps between reads of the running losses (progress bar, divergence check): a
# read waits for the device, so it is not done at every step.
READ_EVERY = 20


class TrainingDiverged(UserError, FloatingPointError):
    """A loss became NaN or infinite: a one-line error naming the epoch (a
    FloatingPointError too, so a tuning study fails that trial and goes on)."""


class Method(Protocol):
    """What a training method gives the loop."""

    views: int  # augmented views per image in a training batch
    primary_source: str  # the embedding model selection looks at

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, progress: float, gen: torch.Generator) -> dict[str, Any]:
        """One optimisation step; ``progress`` = epochs done so far (fractional).
        Values are floats or 0-d tensors left on the device (read by the loop in bulk)."""

    def embed(self, images: torch.Tensor, skip: frozenset = frozenset()) -> dict[str, torch.Tensor]:
        """Eval-mode embeddings per source for a batch (no grad); sources in
        ``skip`` (fixed ones already scored) need not be computed."""

    def fixed_sources(self) -> list[str]:
        """Sources whose embeddings never change (a frozen teacher): evaluated once."""

    def aggregate(self, metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Derived sources (e.g. mean/std over ABE learners) from per-source metrics."""

    def end_epoch(self) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def weights(self) -> dict: ...

    def load_weights(self, weights: dict) -> None: ...

    def artifacts(self, splits: Any, data_cfg: Any, workdir: Path) -> list[tuple[Path, str]]: ...


@dataclass
class Selection:
    """Which evaluation the run reports (TrainConfig.selection)."""

    mode: str
    best_value: float = -math.inf
    best_epoch: int = -1
    best_metrics: dict[str, float] = field(default_factory=dict)
    last_metrics: dict[str, float] = field(default_factory=dict)
    last_epoch: int = -1

    def key(self, primary: str) -> Optional[str]:
        if self.mode == "best_test":
            return metric_key("test", primary, "recall@1")
        if self.mode == "best_val":
            return metric_key("val", primary, "recall@1")
        return None

    def update(self, epoch: int, metrics: dict[str, float], primary: str) -> bool:
        """Record an evaluation; True when it becomes the selected one."""
        self.last_metrics, self.last_epoch = dict(metrics), epoch
        key = self.key(primary)
        if key is None:
            self.best_metrics, self.best_epoch = dict(metrics), epoch
            return True
        value = metrics.get(key, -math.inf)
        if value > self.best_value:
            self.best_value, self.best_epoch, self.best_metrics = value, epoch, dict(metrics)
            return True
        return False


class RunningMeans:
    """Per-key sums of one epoch's step values, kept where they are computed (on the
    device) and read only on demand; a read checks that none became NaN or infinite."""

    def __init__(self, what: str, epoch: int):
        self.what, self.epoch = what, epoch
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}  # per key: e.g. mutual_loss is absent while lambda is 0

    def add(self, values: Mapping[str, Any]) -> None:
        for k, v in values.items():
            v = v.detach().double() if isinstance(v, torch.Tensor) else float(v)
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def read(self, step: int) -> dict[str, float]:
        """Means so far (one wait for the device); TrainingDiverged if one is not finite."""
        means = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        for k, v in means.items():
            if not math.isfinite(v):
                raise TrainingDiverged(f"{self.what}: training diverged: {k} is {v} by iteration {step} of epoch "
                                       f"{self.epoch + 1} (lower optim.lr, or check the data)")
        return means


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: allocated on a CUDA device, resident (RSS) on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _flatten(prefix: str, per_source: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {metric_key(prefix, src, k): float(v) for src, ms in per_source.items() for k, v in ms.items()}


class Evaluator:
    """Embeds a split with every source of a method and scores retrieval."""

    def __init__(self, cfg: TrainConfig, splits: Any, device: torch.device, ranks: Ranks = SINGLE):
        from benchmark.data import eval_batches

        self.cfg = cfg
        self.splits = splits
        self.device = device
        self.ranks = ranks  # every rank embeds (the method gathers); rank 0 scores and shares the numbers
        self._eval_batches = eval_batches
        self._fixed: dict[str, dict[str, dict[str, float]]] = {}
        self.images = 0  # embedded so far, and the seconds it took (data included)
        self.seconds = 0.0

    def _embed(self, method: Method, split, skip: frozenset) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        chunks: dict[str, list[torch.Tensor]] = {}
        labels = []
        t0 = time.perf_counter()
        pinned = self.device.type == "cuda"  # for the asynchronous copies below
        for images, y in self._eval_batches(self.cfg.data, split, self.cfg.eval.batch_size, pin_memory=pinned):
            out = method.embed(images.to(self.device, non_blocking=True), skip)
            for src, e in out.items():
                chunks.setdefault(src, []).append(e.float().cpu())
            labels.append(y)
        self.images += sum(len(y) for y in labels)
        self.seconds += time.perf_counter() - t0
        return {s: torch.cat(c) for s, c in chunks.items()}, torch.cat(labels)

    def _score(self, method: Method, split_name: str, skip: frozenset) -> dict[str, dict[str, float]]:
        from benchmark.evaluate import query_gallery_metrics, retrieval_metrics

        ks = list(self.cfg.eval.recall_ks)
        map_r = self.cfg.eval.map_at_r
        if split_name == "test" and self.splits.test is None:
            q, ql = self._embed(method, self.splits.query, skip)
            g, gl = self._embed(method, self.splits.gallery, skip)
            if not self.ranks.main:
                return {}
            return {s: query_gallery_metrics(self._on(q[s]), self._on(ql), self._on(g[s]), self._on(gl), ks, map_r=map_r)
                    for s in q}
        split = self.splits.test if split_name == "test" else self.splits.val
        emb, labels = self._embed(method, split, skip)
        if not self.ranks.main:
            return {}
        return {s: retrieval_metrics(self._on(e), self._on(labels), ks, map_r=map_r) for s, e in emb.items()}

    def _on(self, t: torch.Tensor) -> torch.Tensor:
        """Scored on the training device (the tiled distance products are the cost);
        embeddings are gathered on the CPU so a split never has to fit on it twice."""
        return t.to(self.device)

    def evaluate(self, method: Method, split_name: str) -> dict[str, dict[str, float]]:
        done = frozenset(self._fixed.get(split_name, {}))
        per_source = self.ranks.broadcast(self._score(method, split_name, done))
        fixed = set(method.fixed_sources())
        if fixed:
            if split_name not in self._fixed:
                self._fixed[split_name] = {s: m for s, m in per_source.items() if s in fixed}
            per_source.update(self._fixed[split_name])
        return method.aggregate(per_source)


def run_loop(
    cfg: TrainConfig,
    method: Method,
    splits: Any,
    device: torch.device,
    logger: TrainLogger,
    workdir: Path,
    *,
    progress: bool = True,
    desc: str = "",
) -> TrainResult:
    from benchmark.data import TrainBatches

    workdir = Path(workdir)
    ranks: Ranks = getattr(method, "ranks", SINGLE)
    if not ranks.main:  # rank 0 logs, shows progress and writes the files
        logger, progress = NullLogger(), False
    workdir.mkdir(parents=True, exist_ok=True)
    best_path, final_path = workdir / "best.pt", workdir / "final.pt"
    fingerprint = config_fingerprint(cfg)
    selection = Selection(cfg.selection)
    start_epoch = 0
    # rank 0 picks the checkpoint (moving damaged ones aside); the others read the same file
    chosen = ranks.broadcast(checkpoints.newest_resume(workdir) if ranks.main else None)
    state = checkpoints.load(chosen) if chosen is not None else None
    if state is not None:
        if state.get("fingerprint") != fingerprint:
            raise UserError(f"{workdir / checkpoints.CHECKPOINT}: checkpoint belongs to a different configuration; "
                            f"delete {workdir} to start over")
        method.load_state_dict(state["method"])
        selection = Selection(**state["selection"])
        start_epoch = state["epoch"] + 1

    batches = TrainBatches(cfg.data, splits.train, views=method.views, seed=cfg.seed,
                           view_ids=getattr(method, "view_ids", None), device=device)
    evaluator = Evaluator(cfg, splits, device, ranks)
    epochs = cfg.schedule.epochs
    iters = cfg.schedule.iterations_per_epoch
    epochs_run = 0
    for epoch in range(start_epoch, epochs):
        seed_globals(cfg.seed, epoch, "global")
        gen = generator(cfg.seed, epoch, "method")
        stream = batches.epoch(epoch, iters)
        n_iters = batches.num_batches(iters)
        bar = tqdm(stream, total=n_iters, desc=f"{desc} epoch {epoch + 1}/{epochs}".strip(), leave=False, disable=not progress, unit="it")
        running = RunningMeans(f"{desc or 'run'}", epoch)
        t_epoch, steps = time.perf_counter(), 0
        for i, (images, labels) in enumerate(bar):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            running.add(method.train_step(images, labels, epoch + i / max(n_iters, 1), gen))
            steps += 1
            if steps % READ_EVERY == 0:
                means = running.read(steps)
                if progress and "loss" in means:
                    bar.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)
        bar.close()
        method.end_epoch()
        logged = {f"train/{k}": v for k, v in running.read(steps).items()}
        if steps:  # wall time per iteration, data loading included (DM² Sec. 3.3's training-time claim)
            logged["train/seconds_per_iteration"] = (time.perf_counter() - t_epoch) / steps
        last = epoch == epochs - 1
        if (epoch + 1) % cfg.schedule.eval_every == 0 or last:
            metrics = _flatten("test", evaluator.evaluate(method, "test"))
            if splits.val is not None:
                metrics.update(_flatten("val", evaluator.evaluate(method, "val")))
            logged.update(metrics)
            if evaluator.images:  # embedding only (data included), not the ranking
                logged["eval/seconds_per_image"] = evaluator.seconds / evaluator.images
            if selection.update(epoch, metrics, method.primary_source) and selection.mode != "last":
                weights = method.weights()
                if ranks.main:
                    checkpoints.save(weights, best_path)
        logged["sys/peak_memory_mb"] = peak_memory_mb(device)
        logger.log_metrics(logged, step=epoch + 1)
        epochs_run += 1
        if (epoch + 1) % max(cfg.checkpoint_every, 1) == 0 or last:
            state = method.state_dict()  # the whole cohort's, gathered on rank 0
            if ranks.main:
                checkpoints.save_resume(
                    {
                        "format": CHECKPOINT_FORMAT,
                        "fingerprint": fingerprint,
                        "epoch": epoch,
                        "method": state,
                        "selection": selection.__dict__,
                    },
                    workdir,
                )
                # Offered to the logger, which may keep a copy where another machine can
                # resume from it (a tracking server); it may also ignore it.
                logger.log_artifact(workdir / checkpoints.CHECKPOINT, checkpoints.ARTIFACT_DIR)
            state = None

    # The selected weights: the last evaluation, or the best one.
    ranks.barrier()  # rank 0's best.pt is on disk
    if selection.mode != "last" and best_path.exists():
        method.load_weights(checkpoints.load(best_path))
    weights = method.weights()
    if ranks.main:
        checkpoints.save({"format": CHECKPOINT_FORMAT, "config": to_dict(cfg, semantic=True), "method": cfg.method,
                          "weights": weights}, final_path)
    final = {k.replace("test/", "final/", 1): v for k, v in selection.best_metrics.items() if k.startswith("test/")}
    final.update({k.replace("val/", "final_val/", 1): v for k, v in selection.best_metrics.items() if k.startswith("val/")})
    # The fixed-budget numbers of the same run, beside whatever selection reported.
    final.update({k.replace("test/", "final_last/", 1): v for k, v in selection.last_metrics.items() if k.startswith("test/")})
    final["final/epoch"] = float(selection.best_epoch + 1)
    logger.log_metrics(final, step=epochs)
    if ranks.main:
        for path, subdir in method.artifacts(splits, cfg.data, workdir):
            logger.log_artifact(path, subdir)
    return TrainResult(final_metrics=final, checkpoint=final_path, epochs_run=epochs_run)
