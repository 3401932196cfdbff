"""ABE training: M attention-based learners (or M heads) trained jointly.

Loss (ABE eqs. 9-10): Σ_m L_metric(B_m) + λ_div · L_div, where L_metric is the
recipe's metric loss (the paper: contrastive on squared Euclidean distances)
applied to each learner's embedding, and L_div pushes the embeddings of the
same image by different learners at least a margin apart. ``abe.divergence``
switches L_div off (Table 2) or on for M-heads (Table 3).

For retrieval each learner's embedding is L2-normalised and the ensemble is
their concatenation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.config import TrainConfig
from benchmark.train.common import build_optimizer, build_scheduler, step_scheduler, derive_seed, param_groups
from benchmark.train.precision import Precision, prepare_model


class ABEMethod:
    primary_source = "ensemble"
    views = 1

    def __init__(self, cfg: TrainConfig, num_classes: int, device: torch.device):
        from benchmark.losses import build_metric_loss
        from benchmark.models import build_abe_model

        self.cfg = cfg
        self.abe = cfg.abe
        self.device = device
        self.precision = Precision(cfg.precision, device)
        self.model = prepare_model(build_abe_model(cfg.abe, seed=derive_seed(cfg.seed, "abe_model")), device)
        self.M = cfg.abe.learners
        self.loss = build_metric_loss(cfg.loss, num_classes, cfg.abe.embedding_dim // self.M).to(device)
        self.optimizer = build_optimizer(cfg.optim, param_groups(cfg.optim, self.model.parameters(), self.loss.parameters()))
        self.scheduler = build_scheduler(cfg.optim, self.optimizer, cfg.schedule.epochs)
        self.scaler = self.precision.scaler()  # fp16 only

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(images).float()

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, progress: float, gen: torch.Generator) -> dict[str, Any]:
        """One step; the numbers returned stay on the device (0-d tensors)."""
        from benchmark.losses import divergence_loss

        self.model.train()
        emb = self._forward(images[:, 0])  # [B, M, d]
        metric = sum(self.loss(emb[:, m], labels) for m in range(self.M))
        loss = metric
        out = {}
        if self.abe.divergence and self.M > 1:
            div = divergence_loss(emb, self.abe.div_margin)
            loss = loss + self.abe.lambda_div * div
            out["divergence_loss"] = div.detach().double()
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward_step(loss, self.optimizer, self.scaler)
        out.update(loss=loss.detach().double(), metric_loss=metric.detach().double() / self.M)
        return out

    def end_epoch(self) -> None:
        step_scheduler(self.scheduler)

    @torch.no_grad()
    def learner_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return F.normalize(self._forward(images), dim=-1)  # [B, M, d]

    @torch.no_grad()
    def embed(self, images: torch.Tensor, skip: frozenset = frozenset()) -> dict[str, torch.Tensor]:
        emb = self.learner_embeddings(images)
        out = {f"learner{m + 1}": emb[:, m] for m in range(self.M)}
        out["ensemble"] = emb.flatten(1)
        return out

    def fixed_sources(self) -> list[str]:
        return []

    def aggregate(self, metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        learners = [metrics[f"learner{m + 1}"] for m in range(self.M) if f"learner{m + 1}" in metrics]
        if learners:
            keys = learners[0].keys()
            values = {k: np.array([l[k] for l in learners]) for k in keys}
            metrics["learners_mean"] = {k: float(v.mean()) for k, v in values.items()}
            if len(learners) > 1:  # a spread over one learner means nothing (the paper prints "-")
                metrics["learners_std"] = {k: float(v.std(ddof=0)) for k, v in values.items()}
        return metrics

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def weights(self) -> dict:
        return {"model": self.model.state_dict(), "loss": self.loss.state_dict()}

    def load_weights(self, weights: dict) -> None:
        self.model.load_state_dict(weights["model"])
        if "loss" in weights:
            self.loss.load_state_dict(weights["loss"])

    # -- figures' raw data --------------------------------------------------
    def artifacts(self, splits: Any, data_cfg: Any, workdir: Path) -> list[tuple[Path, str]]:
        from benchmark.data import eval_batches

        out = []
        art = self.cfg.artifacts
        split = splits.test if splits.test is not None else splits.query
        if art.pair_similarity_histograms:
            embs, labels = [], []
            for images, y in eval_batches(data_cfg, split, self.cfg.eval.batch_size):
                embs.append(self.learner_embeddings(images.to(self.device)).cpu())
                labels.append(y)
            path = workdir / "pair_cosine.npz"
            np.savez_compressed(path, **pair_cosines(torch.cat(embs), torch.cat(labels)))
            out.append((path, "figures"))
        if art.attention_masks > 0 and self.abe.variant == "abe":
            images = next(iter(eval_batches(data_cfg, split, art.attention_masks)))[0][: art.attention_masks]
            self.model.eval()
            with torch.no_grad():
                masks = self.model.attention_masks(images.to(self.device)).float().cpu()
            path = workdir / "attention_masks.npz"
            np.savez_compressed(path, images=images.numpy(), masks=masks.numpy())
            out.append((path, "figures"))
        return out


def pair_cosines(emb: torch.Tensor, labels: torch.Tensor, max_pairs: int = 200_000, seed: int = 0) -> dict[str, np.ndarray]:
    """Cosine similarities for ABE Fig. 5, pooled over learners.

    emb: [N, M, d] L2-normalised learner embeddings. positive / negative: pairs of
    different images with the same / a different label, embedded by the same
    learner; self: the same image embedded by two different learners.
    Pairs are sampled (at most ``max_pairs`` per kind), never enumerated over
    all N² image pairs: a Cars test set has 33M of them.
    """
    N, M, _ = emb.shape
    g = torch.Generator().manual_seed(seed)

    def sims(i: torch.Tensor, j: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> np.ndarray:
        return (emb[i, p] * emb[j, q]).sum(-1).numpy().astype(np.float32)

    # positives: every ordered pair within a class is i + offset within its class
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    _, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    cls = torch.repeat_interleave(torch.arange(len(counts)), counts)  # class index of each sorted item
    eligible = counts[cls] > 1
    anchors = torch.nonzero(eligible).flatten()
    pos = np.zeros(0, dtype=np.float32)
    if len(anchors):
        a = anchors[torch.randint(len(anchors), (max_pairs,), generator=g)]
        size = counts[cls[a]]
        shift = 1 + (torch.rand(max_pairs, generator=g) * (size - 1)).long()  # never 0: not the anchor itself
        b = starts[cls[a]] + (a - starts[cls[a]] + shift) % size
        m = torch.randint(M, (max_pairs,), generator=g)
        pos = sims(order[a], order[b], m, m)
    i = torch.randint(N, (max_pairs,), generator=g)
    j = torch.randint(N, (max_pairs,), generator=g)
    keep = labels[i] != labels[j]
    m = torch.randint(M, (int(keep.sum()),), generator=g)
    neg = sims(i[keep], j[keep], m, m)
    selfs = np.zeros(0, dtype=np.float32)
    if M > 1:
        k = torch.randint(N, (max_pairs,), generator=g)
        p = torch.randint(M, (max_pairs,), generator=g)
        q = (p + 1 + torch.randint(M - 1, (max_pairs,), generator=g)) % M  # a different learner
        selfs = sims(k, k, p, q)
    return {"positive": pos, "negative": neg, "self": selfs}
