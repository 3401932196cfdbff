"""DM² cohort training (Algorithm 1 of the DM² paper), and independent training.

A cohort of L embedding models is trained side by side. Each model l minimises

    L^l = L^l_DML + λ(t) · mean_{k≠l} (1/N²) Σ_ij (Ψ^l_ij − Ψ^k_ij)²      (eqs. 1-3)

with Ψ^k a fixed target for model l. The three diversities are independent
switches of :class:`benchmark.config.CohortConfig`:

- model diversity: members share the backbone initialisation and differ in the
  random initialisation of their projection heads (off: identical heads too);
- temporal diversity: model l is updated at an iteration with probability
  p^l = base^(l-1) (per architecture: the rank within its architecture);
- view diversity: each member sees its own augmentation of the mini-batch.

λ = 0 is independent training (the mutual term is not even computed).
A member that is not updated at a step runs its forward without autograd and
skips its backward; its relation matrix still serves as the others' target.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from benchmark.config import CohortConfig, ModelConfig, TemporalConfig, TrainConfig
from benchmark.errors import ConfigError
from benchmark.train.common import build_optimizer, build_scheduler, derive_seed, param_groups, step_scheduler
from benchmark.train.precision import Precision, prepare_model
from benchmark.train.ranks import SINGLE, Ranks


def update_probabilities(members: list[ModelConfig], temporal: TemporalConfig) -> list[float]:
    """p^l for each member: base^(l-1), or base^(rank within its architecture)."""
    if not temporal.enabled:
        return [1.0] * len(members)
    probs, seen = [], {}
    for l, m in enumerate(members):
        if temporal.per_architecture:
            rank = seen.get(m.arch, 0)
            seen[m.arch] = rank + 1
        else:
            rank = l
        probs.append(temporal.base**rank)
    return probs


def lambda_at(cohort: CohortConfig, progress: float) -> float:
    """λ after ``progress`` epochs: linear warm-up 0 -> λ over lambda_warmup_epochs."""
    if cohort.lambda_warmup_epochs <= 0:
        return cohort.lambda_mutual
    return cohort.lambda_mutual * min(1.0, progress / cohort.lambda_warmup_epochs)


@contextlib.contextmanager
def buffers_kept(model: nn.Module):
    """Put the model's buffers (BN running statistics, batch counts) back as they
    were on entry: a forward pass made only for its outputs leaves no trace."""
    saved = [b.detach().clone() for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, v in zip(model.buffers(), saved):
                b.copy_(v)


def build_members(cfg: TrainConfig, which: Optional[list[int]] = None) -> list[nn.Module]:
    """The cohort's models (``which``: only these members, 0-based). Same backbone
    init per architecture; heads differ by member (model diversity) or are all alike
    (no model diversity). A member's initialisation depends on its index alone."""
    from benchmark.models import build_embedding_model

    cohort = cfg.cohort
    models = []
    for l in (range(len(cohort.members)) if which is None else which):
        m = cohort.members[l]
        head_index = l if cohort.model_diversity else 0
        models.append(
            build_embedding_model(
                m,
                backbone_seed=derive_seed(cfg.seed, "backbone", m.arch),
                head_seed=derive_seed(cfg.seed, "head", head_index, m.embedding_dim),
            )
        )
    return models


class CohortMethod:
    """A cohort, trained in one process or over several (``ranks``): a rank owns a
    block of members (their models, losses and optimisers) and makes only their
    views; the relation matrices the mutual loss needs and the evaluation
    embeddings are all-gathered, detached, so no gradient crosses ranks, as none
    crosses members in one process. Every rank draws the updates of all members
    from the same stream, so each member sees the same steps whatever the ranks."""

    primary_source = "ensemble"

    def __init__(self, cfg: TrainConfig, num_classes: int, device: torch.device, ranks: Ranks = SINGLE):
        from benchmark.losses import build_metric_loss

        self.cfg = cfg
        self.cohort = cfg.cohort
        self.device = device
        self.ranks = ranks
        L = len(self.cohort.members)
        if L % ranks.world:
            raise ConfigError(f"--ranks {ranks.world}: must divide the cohort's {L} members")
        self.owned = ranks.owned(L)
        self.precision = Precision(cfg.precision, device)
        self.models = [prepare_model(m, device) for m in build_members(cfg, self.owned)]
        self.losses = [
            build_metric_loss(cfg.loss, num_classes, self.cohort.members[l].embedding_dim).to(device)
            for l in self.owned
        ]
        self.optimizers = [
            build_optimizer(cfg.optim, param_groups(cfg.optim, model.parameters(), loss.parameters()))
            for model, loss in zip(self.models, self.losses)
        ]
        self.schedulers = [build_scheduler(cfg.optim, o, cfg.schedule.epochs) for o in self.optimizers]
        self.scalers = [self.precision.scaler() for _ in self.owned]  # fp16 only
        self.probabilities = update_probabilities(self.cohort.members, self.cohort.temporal)
        self.views = L if (self.cohort.view_diversity and L > 1) else 1
        # the views this rank makes: its members' own (all of them in one process)
        self.view_ids = self.owned if self.views > 1 else [0]
        self.mutual = self.cohort.lambda_mutual > 0 and L > 1

    # -- training -----------------------------------------------------------
    def _forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return model(x).float()

    def _metric_loss(self, i: int, l: int, embedding: torch.Tensor, labels: torch.Tensor,
                     streams: Optional[list[int]]) -> torch.Tensor:
        if streams is None:
            return self.losses[i](embedding, labels)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(streams[l])
            return self.losses[i](embedding, labels)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, progress: float, gen: torch.Generator) -> dict[str, Any]:
        """``images`` holds this rank's views (``view_ids``) of the batch. The numbers
        returned stay on the device (0-d tensors): reading them would wait for the GPU.

        By default every member's forward runs first (the updated ones with autograd)
        and all their graphs live until the losses. With ``cohort.lean_memory`` an
        updated member's first forward only gives the others their target (its graph
        dropped at once, its BN buffers put back), and its graph is made again, used
        and freed one member at a time: the same numbers (the networks have no
        dropout, and the same forward with autograd is repeated: without autograd
        CPU kernels may round differently), one graph's memory instead of the
        cohort's, for one more forward per updated member."""
        from benchmark.losses import dm2_mutual_loss, relation_matrix

        L = len(self.cohort.members)
        draws = torch.rand(L, generator=gen).tolist()  # drawn for every member, always, on every rank
        update = [d < p for d, p in zip(draws, self.probabilities)]
        streams = (torch.randint(0, 2**62, (L,), generator=gen).tolist() if self.cohort.member_streams
                   else None)  # each member's loss (its miner) draws from its own stream
        lam = lambda_at(self.cohort, progress) if self.mutual else 0.0
        lean = self.cohort.lean_memory

        def view(i: int) -> torch.Tensor:
            return images[:, i if self.views > 1 else 0]

        embeddings: dict[int, torch.Tensor] = {}  # by position among this rank's members
        for i, (l, model) in enumerate(zip(self.owned, self.models)):
            model.train()
            if not update[l]:  # a target only; its BN statistics move, as at every forward
                with torch.no_grad():
                    embeddings[i] = self._forward(model, view(i))
            elif not lean:
                embeddings[i] = self._forward(model, view(i))
            elif lam > 0:  # the target the others need; its graph is dropped at once
                with buffers_kept(model):
                    embeddings[i] = self._forward(model, view(i)).detach()
        psis = None
        if lam > 0:
            own = [relation_matrix(embeddings[i]) for i in range(len(self.owned))]
            if self.ranks.world > 1:  # every member's Ψ, in member order (ranks own contiguous blocks)
                gathered = self.ranks.all_gather(torch.stack([p.detach() for p in own]))
                psis = [p for block in gathered for p in block]
                for i, l in enumerate(self.owned):
                    psis[l] = own[i]  # this rank's own keep their graph
            else:
                psis = own
        # per member: loss, metric loss, mutual loss (on the device: NCCL gathers CUDA tensors)
        values = torch.zeros(L, 3, dtype=torch.float64, device=self.device)
        for i, l in enumerate(self.owned):
            if not update[l]:
                continue
            embedding = self._forward(self.models[i], view(i)) if lean else embeddings.pop(i)
            # Ψ before the metric loss, as in the default order: autograd sums the
            # gradients reaching the embedding in the order its uses were made
            own_psi = (relation_matrix(embedding) if lean else psis[l]) if lam > 0 else None
            loss = metric = self._metric_loss(i, l, embedding, labels, streams)
            if lam > 0:
                mutual = dm2_mutual_loss(own_psi, [psis[k] for k in range(L) if k != l])  # detaches the targets
                loss = loss + lam * mutual
                values[l, 2] = mutual.detach()
            opt = self.optimizers[i]
            opt.zero_grad(set_to_none=True)
            self.precision.backward_step(loss, opt, self.scalers[i])
            values[l, 0], values[l, 1] = loss.detach(), metric.detach()
            del embedding, loss, metric  # this member's graph is freed before the next one's is made
        if self.ranks.world > 1:  # each member's numbers from the rank that owns it
            blocks = self.ranks.all_gather(values[self.owned])
            values = torch.cat(blocks)
        updated = [l for l in range(L) if update[l]]
        out: dict[str, Any] = {"updated_members": float(len(updated)), "lambda": lam}
        if updated:
            total = values[updated[0]]
            for l in updated[1:]:  # summed in member order, as in one process
                total = total + values[l]
            n = len(updated)
            out.update(loss=total[0] / n, metric_loss=total[1] / n)
            if lam > 0:
                out["mutual_loss"] = total[2] / n
        return out

    def end_epoch(self) -> None:
        for s in self.schedulers:
            step_scheduler(s)

    # -- evaluation ---------------------------------------------------------
    @torch.no_grad()
    def embed(self, images: torch.Tensor, skip: frozenset = frozenset()) -> dict[str, torch.Tensor]:
        """Each member's embedding and their concatenation (the ensemble); sources in
        ``skip`` are not returned, and a member is not run unless something needs it.
        Over ranks, every rank gets every member's embedding."""
        names = [f"member{l + 1}" for l in range(len(self.cohort.members))]
        want_ensemble = "ensemble" not in skip
        out = {}
        if self.ranks.world > 1:
            for model in self.models:
                model.eval()
            own = torch.stack([self._forward(model, images) for model in self.models])
            for l, e in enumerate(e for block in self.ranks.all_gather(own) for e in block):
                out[names[l]] = e
        else:
            for name, model in zip(names, self.models):
                if want_ensemble or name not in skip:
                    model.eval()
                    out[name] = self._forward(model, images)
        if want_ensemble:
            out["ensemble"] = torch.cat([out[n] for n in names], dim=1)
        return {k: v for k, v in out.items() if k not in skip}

    def fixed_sources(self) -> list[str]:
        return []

    def aggregate(self, metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        return metrics

    # -- state: one cohort checkpoint, whatever the ranks --------------------
    def _full(self, part: dict) -> Optional[dict]:
        """Per-member lists of this rank's parts -> the whole cohort's lists (rank 0)."""
        blocks = self.ranks.gather_objects(part)
        if blocks is None:
            return None
        return {k: [x for block in blocks for x in block[k]] for k in part}

    def _mine(self, full: dict) -> dict:
        return {k: [v[l] for l in self.owned] if isinstance(v, list) and v else v for k, v in full.items()}

    def state_dict(self) -> Optional[dict]:
        """The whole cohort's state (on rank 0; None on the other ranks)."""
        part = {
            "models": [m.state_dict() for m in self.models],
            "losses": [m.state_dict() for m in self.losses],
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }
        if self.scalers[0] is not None:  # fp16's loss scales
            part["scalers"] = [s.state_dict() for s in self.scalers]
        return self._full(part)

    def load_state_dict(self, state: dict) -> None:
        mine = self._mine(state)
        parts = [(self.models, "models"), (self.losses, "losses"), (self.optimizers, "optimizers"),
                 (self.schedulers, "schedulers")]
        if self.scalers[0] is not None and "scalers" in mine:
            parts.append((self.scalers, "scalers"))
        for objs, key in parts:
            for obj, sd in zip(objs, mine[key]):
                obj.load_state_dict(sd)

    def weights(self) -> Optional[dict]:
        return self._full({"models": [m.state_dict() for m in self.models],
                           "losses": [m.state_dict() for m in self.losses]})

    def load_weights(self, weights: dict) -> None:
        mine = self._mine({"models": weights["models"], "losses": weights.get("losses", [])})
        for m, sd in zip(self.models, mine["models"]):
            m.load_state_dict(sd)
        for m, sd in zip(self.losses, mine["losses"]):
            m.load_state_dict(sd)

    def artifacts(self, splits: Any, data_cfg: Any, workdir: Path) -> list[tuple[Path, str]]:
        return []
