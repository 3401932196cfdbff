"""Typed configuration of one training job: the training core's only input.

The recipe layer (``benchmark.recipes``) builds a :class:`TrainConfig` from YAML;
the training core reads nothing else. This module depends on the standard
library only, so the core runs on a machine that has just torch, torchvision and
pytorch-metric-learning.

Fields marked ``runtime`` (paths, worker counts, devices) do not change what is
computed and are left out of :func:`semantic_dict`, and so out of a run's hash.

Validation (``from_dict``) is written by hand on purpose: the core may not depend
on pydantic or YAML, and the checks we need (unknown keys, types, choices, each
error naming its key path) fit in a few lines over ``dataclasses``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from benchmark.errors import ConfigError


def runtime(default: Any = None, *, default_factory: Any = None):
    """A field that changes how a job runs but not what it computes (not hashed)."""
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"runtime": True})
    return field(default=default, metadata={"runtime": True})


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------

Dataset = Literal["cub200", "cars196", "sop", "inshop"]


@dataclass
class SyntheticConfig:
    """Parameters of the generated stand-in dataset (smoke profile, tests)."""

    classes: int = 24  # total; the first half trains, the second half tests
    images_per_class: int = 12
    image_size: int = 64  # longer side in pixels
    difficulty: float = 1.0  # nuisance strength; higher is harder
    seed: int = 0
    # Version of the image generator (benchmark.data.synthetic.GENERATOR_VERSION).
    # Part of a run's identity, so runs made on other synthetic images are never reused.
    generator: int = 2


@dataclass
class DataConfig:
    dataset: Dataset = "cub200"
    # Where the official files lie (or the synthetic cache). Not hashed.
    root: Optional[str] = runtime(None)
    # When set, the dataset is generated in the official layout of `dataset`
    # and read back through the official reader.
    synthetic: Optional[SyntheticConfig] = None
    cropped: bool = False  # use bounding-box crops (CUB, Cars)
    sampler: Literal["class_balanced", "abe_pairs"] = "class_balanced"
    batch_size: int = 120
    images_per_class: int = 5  # K of the P x K class-balanced sampler
    # Training augmentation.
    #   random_resized_crop: RandomResizedCrop(crop_size, rrc_scale, rrc_ratio) + flip
    #   resize_pad_random_crop: longer side -> resize_size, pad to square, random crop + flip
    #   multi_resolution_crop: longer side -> uniform in multires_range x crop_size (aspect
    #     kept), random crop_size crop (centred on black where the image is smaller) + flip
    train_transform: Literal["random_resized_crop", "resize_pad_random_crop", "multi_resolution_crop"] = (
        "random_resized_crop"
    )
    resize_size: int = 256
    crop_size: int = 256
    rrc_scale: tuple[float, float] = (0.16, 1.0)
    rrc_ratio: tuple[float, float] = (0.75, 1.3333333333333333)
    # Only used by multi_resolution_crop (None otherwise, and then not part of a
    # run's identity, so runs made before the field existed keep their hash).
    multires_range: Optional[tuple[float, float]] = field(default=(0.8, 1.8), metadata={"omit_none": True})
    hflip: bool = True
    #   resize_center_crop: shorter side -> resize_size, centre crop_size
    #   resize_pad_center_crop: longer side -> resize_size, pad to square, centre crop_size
    #   resize_square_center_crop: both sides -> resize_size (aspect not kept), centre crop_size
    test_transform: Literal["resize_center_crop", "resize_pad_center_crop", "resize_square_center_crop"] = (
        "resize_center_crop"
    )
    # Training classes held out as a validation split (clean model selection,
    # tuning). 0 = none. These classes are removed from training.
    val_classes: int = 0
    num_workers: int = runtime(2)


@dataclass
class ModelConfig:
    """One embedding network: backbone -> global pool -> Linear(embedding_dim) -> L2."""

    arch: str = "bn_inception"  # bn_inception | resnet50 | googlenet | tiny_* (smoke)
    embedding_dim: int = 512
    pretrained: bool = True
    freeze_bn: bool = True  # BN layers in eval mode, affine parameters not trained
    weights: Optional[str] = runtime(None)  # explicit weights file; default: torch hub cache


@dataclass
class LossConfig:
    """The metric-learning loss L_DML (pytorch-metric-learning where it has it)."""

    name: Literal[
        "triplet", "contrastive", "binomial_deviance", "proxy_nca", "arcface", "abe_contrastive"
    ] = "triplet"
    params: dict[str, Any] = field(default_factory=dict)
    miner: Optional[Literal["distance_weighted"]] = None
    miner_params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TemporalConfig:
    """Temporal diversity: member l updates with probability base**r(l).

    r(l) is l's index among the members of its own architecture when
    ``per_architecture`` (DM2 Sec. 4.7), else its index in the cohort.
    """

    enabled: bool = True
    base: float = 0.5
    per_architecture: bool = True


@dataclass
class CohortConfig:
    """DM2 mutual learning of a cohort (Algorithm 1). Independent = lambda 0."""

    members: list[ModelConfig] = field(default_factory=lambda: [ModelConfig()])
    lambda_mutual: float = 20.0
    lambda_warmup_epochs: float = 3.0  # linear 0 -> lambda over this many epochs
    model_diversity: bool = True  # False: every member's head starts from the same init
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    view_diversity: bool = True


@dataclass
class ABEConfig:
    """Attention-based ensemble (ABE-M) or the M-heads baseline."""

    variant: Literal["abe", "heads"] = "abe"
    arch: str = "googlenet"
    pretrained: bool = True
    freeze_bn: bool = False
    learners: int = 8  # M
    embedding_dim: int = 512  # ensemble size; each learner gets embedding_dim / M
    branch_point: str = "pool3"  # end of S(.)
    attention_depth: int = 5  # inception blocks in C(.)
    divergence: bool = True  # add lambda_div * L_div (eq. 9)
    lambda_div: float = 1.0
    div_margin: float = 1.0
    normalize_embeddings: bool = False  # L2-normalise learner embeddings before the loss


@dataclass
class DistillConfig:
    """One student distilled from a teacher run's (ensemble) embeddings."""

    teacher: Optional["TrainConfig"] = None  # the teacher job; its run is made first
    teacher_members: Optional[list[int]] = None  # 1-based members forming T; None = all
    student: ModelConfig = field(default_factory=ModelConfig)
    loss: Literal["rkd_da", "darkrank", "compact"] = "rkd_da"
    params: dict[str, Any] = field(default_factory=dict)
    metric_weight: float = 0.0  # weight of L_DML (the `loss` section) beside distillation


@dataclass
class OptimConfig:
    name: Literal["adam", "sgd"] = "adam"
    lr: float = 3e-5
    weight_decay: float = 5e-4
    momentum: float = 0.9  # sgd only
    loss_lr: Optional[float] = None  # lr of loss parameters (proxies, ArcFace W); None = lr
    lr_schedule: Literal["constant", "step", "cosine"] = "constant"
    lr_step_epochs: Optional[list[int]] = None  # for "step"
    lr_gamma: float = 0.1


@dataclass
class ScheduleConfig:
    epochs: int = 60
    # Iterations per epoch; None = one pass over the training images.
    iterations_per_epoch: Optional[int] = None
    eval_every: int = 1  # evaluate every this many epochs (and always after the last)


@dataclass
class EvalConfig:
    recall_ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    map_at_r: bool = True
    batch_size: int = runtime(256)


@dataclass
class ArtifactsConfig:
    """Extra outputs for figures (ABE Fig. 5 and 6)."""

    pair_similarity_histograms: bool = False
    attention_masks: int = 0  # number of test images whose masks are saved


@dataclass
class TrainConfig:
    method: Literal["cohort", "abe", "distill"] = "cohort"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Which evaluation is reported as `final/...`:
    #   last:      the last evaluation (a fixed budget)
    #   best_test: the evaluation with the best test Recall@1 (selection on test: ABE's protocol)
    #   best_val:  the evaluation with the best Recall@1 on held-out training classes
    selection: Literal["last", "best_test", "best_val"] = "last"
    cohort: Optional[CohortConfig] = None
    abe: Optional[ABEConfig] = None
    distill: Optional[DistillConfig] = None
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    device: str = runtime("auto")  # auto | cpu | cuda | cuda:N
    checkpoint_every: int = runtime(1)  # epochs between checkpoints


# ---------------------------------------------------------------------------
# Validation from plain data
# ---------------------------------------------------------------------------

_NoneType = type(None)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is _NoneType:
        return "null"
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true/false"
    if tp is str:
        return "a string"
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and _NoneType in args:
            return None
        errors = []
        for alt in args:
            if alt is _NoneType:
                continue
            try:
                return _convert(value, alt, where)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {_type_name(tp)}, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = args
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, where)
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from plain data; errors name ``where`` and the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints or key not in names:
            raise ConfigError(
                f"{where}.{key}: unknown key (known keys: {', '.join(names)})"
            )
        kwargs[key] = _convert(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def to_dict(obj: Any, *, semantic: bool = False) -> Any:
    """Plain-data form of a config; ``semantic`` drops runtime fields."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            if semantic and f.metadata.get("runtime"):
                continue
            if semantic and f.metadata.get("omit_none") and getattr(obj, f.name) is None:
                continue
            out[f.name] = to_dict(getattr(obj, f.name), semantic=semantic)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v, semantic=semantic) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v, semantic=semantic) for k, v in obj.items()}
    return obj


def load_config(data: Any, where: str = "config") -> TrainConfig:
    """Validate plain data into a checked, normalised :class:`TrainConfig`."""
    cfg = from_dict(TrainConfig, data, where)
    check(cfg, where)
    return normalize(cfg)


# ---------------------------------------------------------------------------
# Cross-field checks and semantic normalisation
# ---------------------------------------------------------------------------


def check(cfg: TrainConfig, where: str = "config") -> None:
    """Checks that span several fields. Raises ConfigError naming the key."""
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
    if d.cropped and d.dataset not in ("cub200", "cars196"):
        raise ConfigError(f"{where}.data.cropped: only cub200 and cars196 have bounding boxes")
    if d.val_classes < 0:
        raise ConfigError(f"{where}.data.val_classes: must be >= 0")
    if cfg.selection == "best_val" and d.val_classes == 0:
        raise ConfigError(f"{where}.selection: best_val needs data.val_classes > 0")
    if cfg.schedule.epochs <= 0:
        raise ConfigError(f"{where}.schedule.epochs: must be positive")
    if any(k <= 0 for k in cfg.eval.recall_ks):
        raise ConfigError(f"{where}.eval.recall_ks: every K must be positive")
    if cfg.optim.lr_schedule == "step" and not cfg.optim.lr_step_epochs:
        raise ConfigError(f"{where}.optim.lr_step_epochs: required by lr_schedule 'step'")
    if cfg.method == "cohort":
        c = cfg.cohort
        if not c.members:
            raise ConfigError(f"{where}.cohort.members: a cohort needs at least one member")
        if not 0 < c.temporal.base <= 1:
            raise ConfigError(f"{where}.cohort.temporal.base: must be in (0, 1]")
        if c.lambda_mutual < 0:
            raise ConfigError(f"{where}.cohort.lambda_mutual: must be >= 0")
    if cfg.method == "abe":
        a = cfg.abe
        if a.learners < 1:
            raise ConfigError(f"{where}.abe.learners: must be >= 1")
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
        cfg.cohort = c
    if cfg.distill is not None:
        cfg.distill = dataclasses.replace(cfg.distill, teacher=normalize(cfg.distill.teacher))
    return cfg


def semantic_dict(cfg: TrainConfig) -> dict:
    """What the job computes: the input of its hash."""
    return to_dict(cfg, semantic=True)


def digest(data: Any) -> str:
    """SHA-256 of plain data in canonical JSON: the basis of run hashes and of
    the check that a checkpoint or teacher file belongs to a config."""
    import hashlib
    import json

    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
