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

from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from benchmark.config import CohortConfig, ModelConfig, TemporalConfig, TrainConfig
from benchmark.errors import ConfigError
from benchmark.train.common import build_optimizer, build_scheduler, derive_seed, param_groups, step_scheduler
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
        self.models = [m.to(device) for m in build_members(cfg, self.owned)]
        self.losses = [
            build_metric_loss(cfg.loss, num_classes, self.cohort.members[l].embedding_dim).to(device)
            for l in self.owned
        ]
        self.optimizers = [
            build_optimizer(cfg.optim, param_groups(cfg.optim, model.parameters(), loss.parameters()))
            for model, loss in zip(self.models, self.losses)
        ]
        self.schedulers = [build_scheduler(cfg.optim, o, cfg.schedule.epochs) for o in self.optimizers]
        self.probabilities = update_probabilities(self.cohort.members, self.cohort.temporal)
        self.views = L if (self.cohort.view_diversity and L > 1) else 1
        # the views this rank makes: its members' own (all of them in one process)
        self.view_ids = self.owned if self.views > 1 else [0]
        self.mutual = self.cohort.lambda_mutual > 0 and L > 1

    # -- training -----------------------------------------------------------
    def train_step(self, images: torch.Tensor, labels: torch.Tensor, progress: float, gen: torch.Generator) -> dict[str, float]:
        """``images`` holds this rank's views (``view_ids``) of the batch."""
        from benchmark.losses import dm2_mutual_loss, relation_matrix

        L = len(self.cohort.members)
        draws = torch.rand(L, generator=gen).tolist()  # drawn for every member, always, on every rank
        update = [d < p for d, p in zip(draws, self.probabilities)]
        streams = (torch.randint(0, 2**62, (L,), generator=gen).tolist() if self.cohort.member_streams
                   else None)  # each member's loss (its miner) draws from its own stream
        lam = lambda_at(self.cohort, progress) if self.mutual else 0.0
        embeddings = []
        for i, (l, model) in enumerate(zip(self.owned, self.models)):
            model.train()
            x = images[:, i if self.views > 1 else 0]
            if update[l]:
                embeddings.append(model(x))
            else:
                with torch.no_grad():
                    embeddings.append(model(x))
        psis = None
        if lam > 0:
            own = [relation_matrix(e) for e in embeddings]
            if self.ranks.world > 1:  # every member's Ψ, in member order (ranks own contiguous blocks)
                gathered = self.ranks.all_gather(torch.stack([p.detach() for p in own]))
                psis = [p for block in gathered for p in block]
                for i, l in enumerate(self.owned):
                    psis[l] = own[i]  # this rank's own keep their graph
            else:
                psis = own
        values = torch.zeros(L, 3, dtype=torch.float64)  # per member: loss, metric loss, mutual loss
        for i, l in enumerate(self.owned):
            if not update[l]:
                continue
            if streams is None:
                loss = metric = self.losses[i](embeddings[i], labels)
            else:
                devices = [self.device] if self.device.type == "cuda" else []
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(streams[l])
                    loss = metric = self.losses[i](embeddings[i], labels)
            if lam > 0:
                mutual = dm2_mutual_loss(psis[l], [psis[k] for k in range(L) if k != l])  # detaches the targets
                loss = loss + lam * mutual
                values[l, 2] = float(mutual.detach())
            opt = self.optimizers[i]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            values[l, 0], values[l, 1] = float(loss.detach()), float(metric.detach())
        if self.ranks.world > 1:  # each member's numbers from the rank that owns it
            blocks = self.ranks.all_gather(values[self.owned])
            values = torch.cat(blocks)
        total = metric_sum = mutual_sum = 0.0
        n = 0
        for l in range(L):  # summed in member order, as in one process
            if update[l]:
                total += float(values[l, 0])
                metric_sum += float(values[l, 1])
                mutual_sum += float(values[l, 2])
                n += 1
        out = {"updated_members": float(n), "lambda": lam}
        if n:
            out.update(loss=total / n, metric_loss=metric_sum / n)
            if lam > 0:
                out["mutual_loss"] = mutual_sum / n
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
            own = torch.stack([model(images) for model in self.models])
            for l, e in enumerate(e for block in self.ranks.all_gather(own) for e in block):
                out[names[l]] = e
        else:
            for name, model in zip(names, self.models):
                if want_ensemble or name not in skip:
                    model.eval()
                    out[name] = model(images)
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
        return self._full({
            "models": [m.state_dict() for m in self.models],
            "losses": [m.state_dict() for m in self.losses],
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        })

    def load_state_dict(self, state: dict) -> None:
        mine = self._mine(state)
        for objs, key in ((self.models, "models"), (self.losses, "losses"), (self.optimizers, "optimizers"), (self.schedulers, "schedulers")):
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
