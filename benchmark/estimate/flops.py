"""FLOPs of one run: its training steps and its evaluations.

Per image, a network's forward FLOPs are what :func:`benchmark.stats.model_stats`
counts (convolutions and matrix products, 2 per multiply-add; element-wise work
ignored), on one ``data.crop_size`` image, the size of training crops and test
crops alike. Networks are built on the meta device (shapes only) and counted once
per distinct network. Then:

- a training step of a network that is updated costs 3 forwards (the backward
  about twice the forward). DM² cohort: every member forwards the batch (its own
  view with view diversity, the shared one without: the same FLOPs), and a member
  temporal diversity does not update at a step runs only its forward, so member
  l costs 1 + 2 p^l forwards per step in expectation (1 + 3 p^l with
  ``cohort.lean_memory``, which repeats an updated member's forward). ABE: one
  network holding its M learners. Distillation: the frozen teacher's forward and
  the student's training step (the teacher's own training is its own run);
- an evaluation embeds the whole test set (In-Shop: query and gallery) with every
  network and scores every source: 2 N² d FLOPs per source of d dimensions (its
  distance matrix); a frozen teacher is embedded and scored once. With held-out
  validation classes, their images are evaluated too;
- the losses (relation matrices of a batch: B² d) are left out, thousands of
  times smaller than the networks' cost.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Union

from benchmark.config import ABEConfig, ModelConfig, TrainConfig
from benchmark.estimate.sizes import Sizes

Network = Union[ModelConfig, ABEConfig]
# The fields that shape a network's layers; the others (weights, frozen BN, loss
# terms) leave its FLOPs as they are, so networks differing only there share a count.
_SHAPE = {ModelConfig: ("arch", "embedding_dim"),
          ABEConfig: ("variant", "arch", "learners", "embedding_dim", "branch_point", "attention_depth")}
_FORWARD: dict[tuple, int] = {}


def forward_flops(net: Network, crop_size: int) -> int:
    """Forward FLOPs of one ``crop_size`` image through ``net``; each distinct
    network shape is built (on the meta device) and counted once per process."""
    key = (type(net).__name__, *(getattr(net, f) for f in _SHAPE[type(net)]), crop_size)
    if key not in _FORWARD:
        _FORWARD[key] = _count(dataclasses.replace(net, pretrained=False), crop_size)
    return _FORWARD[key]


def _count(net: Network, crop_size: int) -> int:
    import torch

    from benchmark.models import build_abe_model, build_embedding_model
    from benchmark.stats import model_stats

    with torch.device("meta"):
        model = (build_abe_model(net, seed=0) if isinstance(net, ABEConfig)
                 else build_embedding_model(net, backbone_seed=0, head_seed=0))
    return 2 * model_stats(_without_batch_norm(model), crop_size)["macs"]


def _without_batch_norm(module):
    """``module`` with its BN layers replaced by identities: the count is the same
    (BN keeps shapes, and FlopCounterMode does not count it), in a quarter of the
    time (on the meta device BN is most of a forward's cost)."""
    from torch import nn

    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _without_batch_norm(child)
    return module


@dataclass(frozen=True)
class Workload:
    """A method's FLOPs per image: a training step, an evaluation (forwards of its
    networks, and the embedding dimensions scored over all its sources), and a
    frozen source embedded and scored at the first evaluation only."""

    train: float
    embed: float
    scored_dims: int
    fixed_embed: float = 0.0
    fixed_dims: int = 0


def _teacher_forward(cfg: TrainConfig) -> tuple[float, int]:
    """(forward FLOPs per image, dimensions) of a distillation's teacher embedding."""
    from benchmark.train.distill import teacher_dimension

    teacher, crop = cfg.distill.teacher, cfg.data.crop_size
    if teacher.method == "abe":
        return forward_flops(teacher.abe, crop), teacher_dimension(cfg)
    chosen = cfg.distill.teacher_members or range(1, len(teacher.cohort.members) + 1)  # 1-based
    forward = sum(forward_flops(teacher.cohort.members[i - 1], crop) for i in chosen)
    return forward, teacher_dimension(cfg)


def workload(cfg: TrainConfig) -> Workload:
    """The FLOPs per image of the config's method."""
    from benchmark.train.cohort import update_probabilities

    crop = cfg.data.crop_size
    if cfg.method == "cohort":
        members = cfg.cohort.members
        forwards = [forward_flops(m, crop) for m in members]
        probs = update_probabilities(members, cfg.cohort.temporal)
        # lean_memory makes an updated member's graph again after its target forward
        mutual = cfg.cohort.lambda_mutual > 0 and len(members) > 1
        per_update = 3 if mutual and getattr(cfg.cohort, "lean_memory", False) else 2
        dims = sum(m.embedding_dim for m in members)
        return Workload(train=sum(f * (1 + per_update * p) for f, p in zip(forwards, probs)), embed=sum(forwards),
                        scored_dims=2 * dims)  # each member, and the ensemble
    if cfg.method == "abe":
        forward = forward_flops(cfg.abe, crop)
        return Workload(train=3 * forward, embed=forward, scored_dims=2 * cfg.abe.embedding_dim)  # learners, ensemble
    if cfg.method == "distill":
        student = forward_flops(cfg.distill.student, crop)
        teacher, teacher_dims = _teacher_forward(cfg)
        return Workload(train=teacher + 3 * student, embed=student, scored_dims=cfg.distill.student.embedding_dim,
                        fixed_embed=teacher, fixed_dims=teacher_dims)
    raise ValueError(f"unknown method {cfg.method!r}")


@dataclass(frozen=True)
class Cost:
    """A run's schedule and FLOPs."""

    iterations: int
    evaluations: int
    flops_per_iteration: float
    train_flops: float
    eval_flops: float
    eval_images: int  # images embedded over all evaluations

    @property
    def flops(self) -> float:
        return self.train_flops + self.eval_flops

    @property
    def eval_flops_per_image(self) -> float:
        return self.eval_flops / self.eval_images if self.eval_images else 0.0


def evaluations(cfg: TrainConfig) -> int:
    """Evaluations of a run: every ``eval_every`` epochs, and after the last."""
    epochs, every = cfg.schedule.epochs, cfg.schedule.eval_every
    return epochs // every + (1 if epochs % every else 0)


def run_cost(cfg: TrainConfig, sizes: Sizes) -> Cost:
    """The FLOPs of training and evaluating the run ``cfg`` on data of ``sizes``."""
    work = workload(cfg)
    held_out = min(cfg.data.val_classes, sizes.train_classes)
    val = sizes.train * held_out // sizes.train_classes if sizes.train_classes else 0
    per_epoch = cfg.schedule.iterations_per_epoch or max(1, (sizes.train - val) // cfg.data.batch_size)
    iterations = cfg.schedule.epochs * per_epoch
    per_iteration = cfg.data.batch_size * work.train

    n_eval = evaluations(cfg)
    images = sizes.embedded() + val
    distances = sizes.distances() + val * val
    each = images * work.embed + 2 * distances * work.scored_dims
    once = images * work.fixed_embed + 2 * distances * work.fixed_dims
    return Cost(iterations=iterations, evaluations=n_eval, flops_per_iteration=per_iteration,
                train_flops=iterations * per_iteration, eval_flops=n_eval * each + once,
                eval_images=n_eval * images)
