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
from typing import Any

import torch
from torch import nn

from benchmark.config import CohortConfig, ModelConfig, TemporalConfig, TrainConfig
from benchmark.train.common import build_optimizer, build_scheduler, step_scheduler, derive_seed, param_groups


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


def build_members(cfg: TrainConfig) -> list[nn.Module]:
    """The cohort's models. Same backbone init per architecture; heads differ by member
    (model diversity) or are all alike (no model diversity)."""
    from benchmark.models import build_embedding_model

    cohort = cfg.cohort
    models = []
    for l, m in enumerate(cohort.members):
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
    primary_source = "ensemble"

    def __init__(self, cfg: TrainConfig, num_classes: int, device: torch.device):
        from benchmark.losses import build_metric_loss

        self.cfg = cfg
        self.cohort = cfg.cohort
        self.device = device
        self.models = [m.to(device) for m in build_members(cfg)]
        self.losses = [
            build_metric_loss(cfg.loss, num_classes, m.embedding_dim).to(device) for m in self.cohort.members
        ]
        self.optimizers = [
            build_optimizer(cfg.optim, param_groups(cfg.optim, model.parameters(), loss.parameters()))
            for model, loss in zip(self.models, self.losses)
        ]
        self.schedulers = [build_scheduler(cfg.optim, o, cfg.schedule.epochs) for o in self.optimizers]
        self.probabilities = update_probabilities(self.cohort.members, self.cohort.temporal)
        L = len(self.models)
        self.views = L if (self.cohort.view_diversity and L > 1) else 1
        self.mutual = self.cohort.lambda_mutual > 0 and L > 1

    # -- training -----------------------------------------------------------
    def train_step(self, images: torch.Tensor, labels: torch.Tensor, progress: float, gen: torch.Generator) -> dict[str, float]:
        from benchmark.losses import dm2_mutual_loss, relation_matrix

        L = len(self.models)
        draws = torch.rand(L, generator=gen).tolist()  # drawn for every member, always
        update = [d < p for d, p in zip(draws, self.probabilities)]
        lam = lambda_at(self.cohort, progress) if self.mutual else 0.0
        embeddings = []
        for l, model in enumerate(self.models):
            model.train()
            x = images[:, l if self.views > 1 else 0]
            if update[l]:
                embeddings.append(model(x))
            else:
                with torch.no_grad():
                    embeddings.append(model(x))
        psis = [relation_matrix(e) for e in embeddings] if lam > 0 else None
        total, metric_sum, mutual_sum, n = 0.0, 0.0, 0.0, 0
        for l in range(L):
            if not update[l]:
                continue
            loss = metric = self.losses[l](embeddings[l], labels)
            if lam > 0:
                mutual = dm2_mutual_loss(psis[l], [psis[k] for k in range(L) if k != l])  # detaches the targets
                loss = loss + lam * mutual
                mutual_sum += float(mutual.detach())
            opt = self.optimizers[l]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            metric_sum += float(metric.detach())
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
        ``skip`` are not returned, and a member is not run unless something needs it."""
        names = [f"member{l + 1}" for l in range(len(self.models))]
        want_ensemble = "ensemble" not in skip
        out = {}
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

    # -- state --------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "models": [m.state_dict() for m in self.models],
            "losses": [m.state_dict() for m in self.losses],
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state: dict) -> None:
        for objs, key in ((self.models, "models"), (self.losses, "losses"), (self.optimizers, "optimizers"), (self.schedulers, "schedulers")):
            for obj, sd in zip(objs, state[key]):
                obj.load_state_dict(sd)

    def weights(self) -> dict:
        return {"models": [m.state_dict() for m in self.models], "losses": [m.state_dict() for m in self.losses]}

    def load_weights(self, weights: dict) -> None:
        for m, sd in zip(self.models, weights["models"]):
            m.load_state_dict(sd)
        for m, sd in zip(self.losses, weights.get("losses", [])):
            m.load_state_dict(sd)

    def artifacts(self, splits: Any, data_cfg: Any, workdir: Path) -> list[tuple[Path, str]]:
        return []
