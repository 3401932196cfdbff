"""Cross-field checks and semantic normalisation of a :class:`TrainConfig`, and
:func:`load_config`: plain data -> a checked, normalised config."""

from __future__ import annotations

import dataclasses
from typing import Any

from benchmark.config.convert import from_dict
from benchmark.config.schema import CROPPABLE, TemporalConfig, TrainConfig
from benchmark.errors import ConfigError


def load_config(data: Any, where: str = "config") -> TrainConfig:
    """Validate plain data into a checked, normalised :class:`TrainConfig`."""
    cfg = from_dict(TrainConfig, data, where)
    check(cfg, where)
    return normalize(cfg)


_OPS = {"ge": (lambda v, b: v >= b, ">="), "gt": (lambda v, b: v > b, ">"),
        "le": (lambda v, b: v <= b, "<="), "lt": (lambda v, b: v < b, "<")}


def check_bounds(obj: Any, where: str = "config") -> None:
    """Every field with bounds (:func:`benchmark.config.schema.bounded`) in range,
    nested sections and lists of sections included; a ConfigError names the key."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{where}.{f.name}"
        if dataclasses.is_dataclass(value):
            check_bounds(value, key)
            continue
        if isinstance(value, list) and value and all(dataclasses.is_dataclass(v) for v in value):
            for i, v in enumerate(value):
                check_bounds(v, f"{key}[{i}]")
            continue
        bounds = f.metadata.get("bounds")
        if not bounds or value is None:
            continue
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        for v in items:
            for op, bound in bounds.items():
                test, sign = _OPS[op]
                if isinstance(v, (int, float)) and not test(v, bound):
                    shown = f"{value!r}" if len(items) == 1 else f"{v!r} in {list(value)!r}"
                    raise ConfigError(f"{key}: must be {sign} {bound:g}, got {shown}")


def check(cfg: TrainConfig, where: str = "config") -> None:
    """Ranges of every field, and the checks that span several fields.
    Raises ConfigError naming the key."""
    check_bounds(cfg, where)
    sections = {"cohort": cfg.cohort, "abe": cfg.abe, "distill": cfg.distill}
    if sections[cfg.method] is None:
        raise ConfigError(f"{where}.{cfg.method}: method is '{cfg.method}' but this section is missing")
    d = cfg.data
    if d.batch_size <= 0:
        raise ConfigError(f"{where}.data.batch_size: must be positive, got {d.batch_size}")
    if d.sampler == "class_balanced":
        if d.images_per_class < 2:
            raise ConfigError(f"{where}.data.images_per_class: needs at least 2 for positives")
        if d.batch_size % d.images_per_class:
            raise ConfigError(
                f"{where}.data.batch_size: {d.batch_size} is not a multiple of "
                f"data.images_per_class={d.images_per_class}"
            )
    if d.sampler == "abe_pairs" and d.batch_size % 4:
        raise ConfigError(f"{where}.data.batch_size: abe_pairs needs a multiple of 4, got {d.batch_size}")
    if d.cropped and d.dataset not in CROPPABLE:
        raise ConfigError(f"{where}.data.cropped: only {' and '.join(CROPPABLE)} have bounding boxes")
    if cfg.selection == "best_val" and d.val_classes == 0:
        raise ConfigError(f"{where}.selection: best_val needs data.val_classes > 0")
    for key, pair in (("rrc_scale", d.rrc_scale), ("rrc_ratio", d.rrc_ratio), ("multires_range", d.multires_range)):
        if pair is not None and pair[0] > pair[1]:
            raise ConfigError(f"{where}.data.{key}: the low end {pair[0]:g} is above the high end {pair[1]:g}")
    if d.crop_size > d.resize_size and (d.train_transform == "resize_pad_random_crop"
                                         or d.test_transform != "resize_center_crop"):
        raise ConfigError(f"{where}.data.crop_size: {d.crop_size} is larger than data.resize_size="
                          f"{d.resize_size}, the image it is cropped from")
    if not cfg.eval.recall_ks:
        raise ConfigError(f"{where}.eval.recall_ks: give at least one K (e.g. [1, 2, 4, 8])")
    if len(set(cfg.eval.recall_ks)) != len(cfg.eval.recall_ks):
        raise ConfigError(f"{where}.eval.recall_ks: a K is given twice in {cfg.eval.recall_ks}")
    if cfg.selection != "last" and 1 not in cfg.eval.recall_ks:
        raise ConfigError(f"{where}.eval.recall_ks: selection {cfg.selection} picks by Recall@1, so K = 1 is needed")
    if cfg.optim.lr_schedule == "step" and not cfg.optim.lr_step_epochs:
        raise ConfigError(f"{where}.optim.lr_step_epochs: required by lr_schedule 'step'")
    if cfg.method == "cohort":
        c = cfg.cohort
        if not c.members:
            raise ConfigError(f"{where}.cohort.members: a cohort needs at least one member")
    if cfg.method == "abe":
        a = cfg.abe
        if a.embedding_dim % a.learners:
            raise ConfigError(
                f"{where}.abe.embedding_dim: {a.embedding_dim} is not divisible by abe.learners={a.learners}"
            )
    if cfg.method == "distill":
        dc = cfg.distill
        if dc.teacher is None:
            raise ConfigError(f"{where}.distill.teacher: a distillation run needs a teacher job")
        check(dc.teacher, f"{where}.distill.teacher")
        if dc.teacher.method == "distill":
            raise ConfigError(f"{where}.distill.teacher.method: a teacher cannot itself be a distillation")
        if dc.teacher_members is not None:
            if dc.teacher.method != "cohort":
                raise ConfigError(f"{where}.distill.teacher_members: only a cohort teacher has members")
            n = len(dc.teacher.cohort.members)
            bad = [i for i in dc.teacher_members if not isinstance(i, int) or not 1 <= i <= n]
            if bad or not dc.teacher_members or len(set(dc.teacher_members)) != len(dc.teacher_members):
                raise ConfigError(f"{where}.distill.teacher_members: expected distinct member numbers 1..{n}, "
                                  f"got {list(dc.teacher_members)}")


def normalize(cfg: TrainConfig) -> TrainConfig:
    """Make semantically equal jobs equal as data (and so equal in hash).

    - sections of other methods are dropped, and so are the parameters of a
      training transform that is not selected (``multires_range``);
    - a cohort of one member has no mutual loss and no diversity to speak of;
    - with lambda 0 the warm-up length is meaningless.
    """
    cfg = dataclasses.replace(cfg)
    if cfg.data.train_transform != "multi_resolution_crop" and cfg.data.multires_range is not None:
        cfg.data = dataclasses.replace(cfg.data, multires_range=None)
    if cfg.method != "cohort":
        cfg.cohort = None
    if cfg.method != "abe":
        cfg.abe = None
    if cfg.method != "distill":
        cfg.distill = None
    if cfg.cohort is not None:
        c = dataclasses.replace(cfg.cohort, temporal=dataclasses.replace(cfg.cohort.temporal))
        if len(c.members) == 1:
            c.lambda_mutual = 0.0
            c.model_diversity = True
            c.view_diversity = False
            c.temporal.enabled = False
        if c.lambda_mutual == 0:
            c.lambda_warmup_epochs = 0.0
        if not c.temporal.enabled:
            c.temporal = TemporalConfig(enabled=False)
        if cfg.loss.miner is None or len(c.members) == 1:
            c.member_streams = None  # nothing random in the step to give streams to
        cfg.cohort = c
    if cfg.distill is not None:
        cfg.distill = dataclasses.replace(cfg.distill, teacher=normalize(cfg.distill.teacher))
    return cfg
