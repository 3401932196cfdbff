"""Distillation of a trained teacher's ensemble into one student (DM² Table 4).

The teacher is another run (its ``final.pt`` arrives as ``inputs['teacher']``);
the runner makes it first. The teacher embedding is the concatenation of the
chosen members' L2-normalised embeddings (all members by default), computed in
eval mode without gradients. The student minimises

    L = L_distill(student, teacher) + metric_weight · L_metric(student)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from benchmark.config import TrainConfig, digest, semantic_dict
from benchmark.errors import UserError
from benchmark.train import checkpoints
from benchmark.train.common import build_optimizer, build_scheduler, derive_seed, param_groups, step_scheduler
from benchmark.train.precision import Precision, prepare_model


def load_teacher(cfg: TrainConfig, path: Path | None, num_classes: int, device: torch.device):
    """The teacher method with its final weights; checks the file is that teacher's."""
    from benchmark.train import build_method

    teacher_cfg = cfg.distill.teacher
    if path is None or not Path(path).exists():
        raise UserError(f"distill.teacher: the teacher's weights file {path} is missing; run the teacher job first")
    final = checkpoints.load(path)
    if not isinstance(final, dict) or "weights" not in final:
        raise UserError(f"{path}: not a final.pt of this harness (no weights)")
    if digest(final.get("config")) != digest(semantic_dict(teacher_cfg)):
        raise UserError(f"{path}: these weights are not from the teacher job this run names (config differs)")
    teacher = build_method(teacher_cfg, num_classes, device, {})
    teacher.load_weights(final["weights"])
    return teacher


def teacher_dimension(cfg: TrainConfig) -> int:
    """Size of the teacher embedding the student is distilled from."""
    t = cfg.distill.teacher
    if t.method == "abe":
        return t.abe.embedding_dim
    members = cfg.distill.teacher_members or list(range(1, len(t.cohort.members) + 1))
    return sum(t.cohort.members[i - 1].embedding_dim for i in members)  # indices checked by config.check


class DistillMethod:
    primary_source = "student"
    views = 1

    def __init__(self, cfg: TrainConfig, num_classes: int, device: torch.device, teacher_path: Path | None,
                 teacher: Any = None):
        """``teacher``: an already built teacher method (the preflight's weightless
        build), instead of loading its weights from ``teacher_path``."""
        from benchmark.losses import build_distill_loss, build_metric_loss
        from benchmark.models import build_embedding_model

        self.cfg = cfg
        self.dc = cfg.distill
        self.device = device
        self.precision = Precision(cfg.precision, device)
        self.teacher = teacher if teacher is not None else load_teacher(cfg, teacher_path, num_classes, device)
        self.student = prepare_model(build_embedding_model(
            self.dc.student,
            backbone_seed=derive_seed(cfg.seed, "backbone", self.dc.student.arch),
            head_seed=derive_seed(cfg.seed, "student_head"),
        ), device)
        student_dim, teacher_dim = self.dc.student.embedding_dim, teacher_dimension(cfg)
        # Compact's absolute loss compares student and teacher embeddings of the
        # same image, so it needs equal sizes; the DM² paper distils a 1024/2048-d
        # ensemble into a 512-d student without saying how. We learn a linear map
        # from the student's embedding to the teacher's space, used only by the
        # loss (an assumption listed in recipes/dm2/table4.yaml).
        self.projection = None
        if self.dc.loss == "compact" and student_dim != teacher_dim:
            g = torch.Generator().manual_seed(derive_seed(cfg.seed, "compact_projection"))
            self.projection = torch.nn.Linear(student_dim, teacher_dim, bias=False)
            with torch.no_grad():
                self.projection.weight.copy_(torch.randn(teacher_dim, student_dim, generator=g) / student_dim**0.5)
            self.projection.to(device)
            student_dim = teacher_dim
        self.distill_loss = build_distill_loss(self.dc.loss, self.dc.params, student_dim=student_dim, teacher_dim=teacher_dim)
        self.metric_loss = build_metric_loss(cfg.loss, num_classes, self.dc.student.embedding_dim).to(device)
        loss_params = list(self.metric_loss.parameters()) if self.dc.metric_weight > 0 else []
        if self.projection is not None:
            loss_params += list(self.projection.parameters())
        self.optimizer = build_optimizer(cfg.optim, param_groups(cfg.optim, self.student.parameters(), loss_params))
        self.scheduler = build_scheduler(cfg.optim, self.optimizer, cfg.schedule.epochs)
        self.scaler = self.precision.scaler()  # fp16 only

    def _student(self, images: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.student(images).float()

    @torch.no_grad()
    def teacher_embedding(self, images: torch.Tensor) -> torch.Tensor:
        t = self.dc.teacher
        if t.method != "cohort":
            return self.teacher.embed(images)["ensemble"]
        names = [f"member{i + 1}" for i in range(len(t.cohort.members))]
        members = self.dc.teacher_members
        if not members:
            return self.teacher.embed(images, frozenset(names))["ensemble"]
        keys = [f"member{i}" for i in members]  # only these members are run
        out = self.teacher.embed(images, frozenset(n for n in names if n not in keys) | {"ensemble"})
        return torch.cat([out[k] for k in keys], dim=1)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, progress: float, gen: torch.Generator) -> dict[str, Any]:
        """One step; the numbers returned stay on the device (0-d tensors)."""
        x = images[:, 0]
        target = self.teacher_embedding(x)  # the teacher's own precision (its job's)
        self.student.train()
        e = self._student(x)
        distill = self.distill_loss(self.projection(e) if self.projection is not None else e, target)
        loss = distill
        out = {"distill_loss": distill.detach().double()}
        if self.dc.metric_weight > 0:
            metric = self.metric_loss(e, labels)
            loss = loss + self.dc.metric_weight * metric
            out["metric_loss"] = metric.detach().double()
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward_step(loss, self.optimizer, self.scaler)
        out["loss"] = loss.detach().double()
        return out

    def end_epoch(self) -> None:
        step_scheduler(self.scheduler)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, skip: frozenset = frozenset()) -> dict[str, torch.Tensor]:
        self.student.eval()
        out = {"student": self._student(images)}
        if "teacher" not in skip:  # the frozen teacher is scored once per split
            out["teacher"] = self.teacher_embedding(images)
        return out

    def fixed_sources(self) -> list[str]:
        return ["teacher"]

    def aggregate(self, metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        return metrics

    def state_dict(self) -> dict:
        return {
            "student": self.student.state_dict(),
            "metric_loss": self.metric_loss.state_dict(),
            "projection": self.projection.state_dict() if self.projection is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.student.load_state_dict(state["student"])
        self.metric_loss.load_state_dict(state["metric_loss"])
        if self.projection is not None:
            self.projection.load_state_dict(state["projection"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def weights(self) -> dict:
        return {"student": self.student.state_dict()}

    def load_weights(self, weights: dict) -> None:
        self.student.load_state_dict(weights["student"])

    def artifacts(self, splits: Any, data_cfg: Any, workdir: Path) -> list[tuple[Path, str]]:
        return []
