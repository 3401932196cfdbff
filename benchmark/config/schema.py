"""The schema of one training job: typed sections, the training core's only input.

The recipe layer (``benchmark.recipes``) builds a :class:`TrainConfig` from YAML;
the training core reads nothing else. The package depends on the standard
library only, so the core runs on a machine that has just torch, torchvision and
pytorch-metric-learning.

Fields marked ``runtime`` (paths, worker counts, devices) do not change what is
computed and are left out of the semantic form (:func:`benchmark.config.semantic_dict`),
and so out of a run's hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, get_args

def runtime(default: Any = None, *, default_factory: Any = None, **bounds: Any):
    """A field that changes how a job runs but not what it computes (not hashed)."""
    return bounded(default, default_factory=default_factory, runtime=True, **bounds)


def bounded(default: Any = None, *, default_factory: Any = None, ge: Any = None, gt: Any = None,
            le: Any = None, lt: Any = None, **metadata: Any):
    """A field with a range: every number it holds (each element of a list or tuple)
    must satisfy the bounds given; :func:`benchmark.config.checks.check` says which
    key breaks which, in one line, before anything trains."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    meta = {**metadata, **({"bounds": bounds} if bounds else {})}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


MAX_DIM = 1 << 16  # embedding sizes beyond this are a typo, not an experiment
MAX_PIXELS = 8192  # image sides likewise


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------

Dataset = Literal["cub200", "cars196", "sop", "inshop"]
DATASETS: tuple[str, ...] = get_args(Dataset)  # every dataset the harness reads, in the papers' order
CROPPABLE: tuple[str, ...] = ("cub200", "cars196")  # datasets with bounding boxes (cropped variants)


@dataclass
class SyntheticConfig:
    """Parameters of the generated stand-in dataset (smoke profile, tests)."""

    classes: int = bounded(24, ge=2, le=1_000_000)  # total; the first half trains, the second half tests
    images_per_class: int = bounded(12, ge=2, le=100_000)
    image_size: int = bounded(64, ge=16, le=MAX_PIXELS)  # longer side in pixels
    difficulty: float = bounded(1.0, ge=0)  # nuisance strength; higher is harder
    seed: int = bounded(0, ge=0)
    # Version of the image generator (benchmark.data.synthetic.GENERATOR_VERSION).
    # Part of a run's identity, so runs made on other synthetic images are never reused.
    generator: int = bounded(2, ge=1)


@dataclass
class DataConfig:
    dataset: Dataset = "cub200"
    # Where the official files lie (or the synthetic cache). Not hashed.
    root: Optional[str] = runtime(None)
    # When set, the dataset is generated in the official layout of `dataset`
    # and read back through the official reader.
    synthetic: Optional[SyntheticConfig] = field(default=None, metadata={"nullable": True})  # null: real data
    cropped: bool = False  # use bounding-box crops (CUB, Cars)
    sampler: Literal["class_balanced", "abe_pairs"] = "class_balanced"
    batch_size: int = bounded(120, ge=2, le=1_000_000)
    images_per_class: int = bounded(5, ge=1, le=100_000)  # K of the P x K class-balanced sampler
    # Training augmentation.
    #   random_resized_crop: RandomResizedCrop(crop_size, rrc_scale, rrc_ratio) + flip
    #   resize_pad_random_crop: longer side -> resize_size, pad to square, random crop + flip
    #   multi_resolution_crop: longer side -> uniform in multires_range x crop_size (aspect
    #     kept), random crop_size crop (centred on black where the image is smaller) + flip
    train_transform: Literal["random_resized_crop", "resize_pad_random_crop", "multi_resolution_crop"] = (
        "random_resized_crop"
    )
    resize_size: int = bounded(256, ge=8, le=MAX_PIXELS)
    crop_size: int = bounded(256, ge=8, le=MAX_PIXELS)
    rrc_scale: tuple[float, float] = bounded((0.16, 1.0), gt=0, le=1)
    rrc_ratio: tuple[float, float] = bounded((0.75, 1.3333333333333333), gt=0, le=100)
    # Only used by multi_resolution_crop (None otherwise, and then not part of a
    # run's identity, so runs made before the field existed keep their hash).
    multires_range: Optional[tuple[float, float]] = bounded((0.8, 1.8), gt=0, le=100, omit_none=True)
    hflip: bool = True
    #   resize_center_crop: shorter side -> resize_size, centre crop_size
    #   resize_pad_center_crop: longer side -> resize_size, pad to square, centre crop_size
    #   resize_square_center_crop: both sides -> resize_size (aspect not kept), centre crop_size
    test_transform: Literal["resize_center_crop", "resize_pad_center_crop", "resize_square_center_crop"] = (
        "resize_center_crop"
    )
    # Training classes held out as a validation split (clean model selection,
    # tuning). 0 = none. These classes are removed from training.
    val_classes: int = bounded(0, ge=0)
    num_workers: int = runtime(2, ge=0, le=256)
    # MiB of shared memory (per training process) keeping the decoded training images
    # from their first epoch on, shared by the loader workers; 0 = off, decode every
    # epoch. Images beyond it are decoded every epoch, with a warning saying what all
    # would need (benchmark.data.cache). The same batches either way.
    decoded_cache_mb: int = runtime(0, ge=0)
    # Where the per-view augmentation runs: in the loader workers, or on the training
    # device (workers only decode; one upload per batch). The same bytes on the CPU;
    # on a GPU the resizes run in float32, a level or two apart at some pixels.
    augment_on: Literal["loader", "device"] = runtime("loader")


@dataclass
class ModelConfig:
    """One embedding network: backbone -> global pool -> Linear(embedding_dim) -> L2."""

    arch: str = "bn_inception"  # bn_inception | resnet50 | googlenet | tiny_* (smoke)
    embedding_dim: int = bounded(512, ge=1, le=MAX_DIM)
    pretrained: bool = True
    freeze_bn: bool = True  # BN layers in eval mode, affine parameters not trained
    # Weight of a new batch in BN's running statistics (PyTorch's momentum) where BN
    # trains; None: the architecture's own (BN-Inception's Caffe port: 0.9,
    # torchvision's networks: 0.1). Not part of a run's identity while None.
    bn_momentum: Optional[float] = bounded(None, gt=0, le=1, omit_none=True)
    weights: Optional[str] = runtime(None)  # explicit weights file; default: torch hub cache


@dataclass
class LossConfig:
    """The metric-learning loss L_DML (pytorch-metric-learning where it has it).

    ``name``: one of the papers' six losses (OWN_LOSSES) or any loss class
    pytorch-metric-learning exports, by its derived snake_case name
    (benchmark.losses.registry: ``multi_similarity``, ``soft_triple``, ...);
    ``miner`` likewise. Both are checked, with ``params`` / ``miner_params``
    against the class's constructor, when the recipe is resolved and again before
    anything trains (benchmark.losses.metric.check_loss_config): this package
    depends on the standard library only, so the library's names are not read here.
    """

    name: str = "triplet"
    params: dict[str, Any] = field(default_factory=dict)
    miner: Optional[str] = None
    miner_params: dict[str, Any] = field(default_factory=dict)


# The losses of the two papers, defined by the harness (benchmark.losses.metric).
OWN_LOSSES: tuple[str, ...] = (
    "triplet", "contrastive", "binomial_deviance", "proxy_nca", "arcface", "abe_contrastive",
)
OWN_MINERS: tuple[str, ...] = ("distance_weighted",)


@dataclass
class TemporalConfig:
    """Temporal diversity: member l updates with probability base**r(l).

    r(l) is l's index among the members of its own architecture when
    ``per_architecture`` (DM2 Sec. 4.7), else its index in the cohort.
    """

    enabled: bool = True
    base: float = bounded(0.5, gt=0, le=1)
    per_architecture: bool = True


@dataclass
class CohortConfig:
    """DM2 mutual learning of a cohort (Algorithm 1). Independent = lambda 0."""

    members: list[ModelConfig] = field(default_factory=lambda: [ModelConfig()])
    lambda_mutual: float = bounded(20.0, ge=0)
    lambda_warmup_epochs: float = bounded(3.0, ge=0)  # linear 0 -> lambda over this many epochs
    model_diversity: bool = True  # False: every member's head starts from the same init
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    view_diversity: bool = True
    # Each member's loss draws its random numbers (a miner's sampling) from its own
    # stream, seeded per step, so a cohort computes the same in one process and split
    # over ranks (--ranks). Before, members drew one after the other from the global
    # stream. Part of a run's identity only where it changes the numbers (a loss
    # with a miner, more than one member); None elsewhere.
    member_streams: Optional[bool] = field(default=True, metadata={"omit_none": True})
    # One member's autograd graph alive at a time instead of the whole cohort's, for one
    # more forward pass per updated member; the same numbers (benchmark.train.cohort).
    lean_memory: bool = runtime(False)


@dataclass
class ABEConfig:
    """Attention-based ensemble (ABE-M) or the M-heads baseline."""

    variant: Literal["abe", "heads"] = "abe"
    arch: str = "googlenet"
    pretrained: bool = True
    freeze_bn: bool = False
    learners: int = bounded(8, ge=1, le=1024)  # M
    embedding_dim: int = bounded(512, ge=1, le=MAX_DIM)  # ensemble size; each learner gets embedding_dim / M
    branch_point: str = "pool3"  # end of S(.)
    attention_depth: int = bounded(5, ge=0, le=64)  # inception blocks in C(.)
    divergence: bool = True  # add lambda_div * L_div (eq. 9)
    lambda_div: float = bounded(1.0, ge=0)
    div_margin: float = bounded(1.0, ge=0)
    normalize_embeddings: bool = False  # L2-normalise learner embeddings before the loss


@dataclass
class DistillConfig:
    """One student distilled from a teacher run's (ensemble) embeddings."""

    teacher: Optional["TrainConfig"] = None  # the teacher job; its run is made first
    teacher_members: Optional[list[int]] = bounded(None, ge=1)  # 1-based members forming T; None = all
    student: ModelConfig = field(default_factory=ModelConfig)
    loss: Literal["rkd_da", "darkrank", "compact"] = "rkd_da"
    params: dict[str, Any] = field(default_factory=dict)
    metric_weight: float = bounded(0.0, ge=0)  # weight of L_DML (the `loss` section) beside distillation


@dataclass
class OptimConfig:
    name: Literal["adam", "sgd"] = "adam"
    lr: float = bounded(3e-5, gt=0, le=100)
    weight_decay: float = bounded(5e-4, ge=0)
    momentum: float = bounded(0.9, ge=0, lt=1)  # sgd only
    loss_lr: Optional[float] = bounded(None, gt=0, le=100_000)  # lr of loss parameters (proxies, ArcFace W); None = lr
    lr_schedule: Literal["constant", "step", "cosine"] = "constant"
    lr_step_epochs: Optional[list[int]] = bounded(None, ge=1)  # for "step"
    lr_gamma: float = bounded(0.1, gt=0)


@dataclass
class ScheduleConfig:
    epochs: int = bounded(60, ge=1, le=1_000_000)
    # Iterations per epoch; None = one pass over the training images.
    iterations_per_epoch: Optional[int] = bounded(None, ge=1)
    eval_every: int = bounded(1, ge=1)  # evaluate every this many epochs (and always after the last)


@dataclass
class EvalConfig:
    recall_ks: list[int] = bounded(default_factory=lambda: [1, 2, 4, 8], ge=1)
    map_at_r: bool = True
    batch_size: int = runtime(256, ge=1, le=1_000_000)


@dataclass
class ArtifactsConfig:
    """Extra outputs for figures (ABE Fig. 5 and 6)."""

    pair_similarity_histograms: bool = False
    attention_masks: int = bounded(0, ge=0, le=10_000)  # number of test images whose masks are saved


@dataclass
class TrainConfig:
    method: Literal["cohort", "abe", "distill"] = "cohort"
    seed: int = bounded(0, ge=0)
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
    # Numeric precision of the networks (benchmark.train.precision): fp32 as the papers
    # trained; bf16 / fp16 run forward passes under autocast, losses and distances
    # stay fp32. Part of a run's identity, except fp32 (omitted, so runs made before
    # the field existed keep their hash).
    precision: Literal["fp32", "bf16", "fp16"] = field(default="fp32", metadata={"omit_default": True})
    device: str = runtime("auto")  # auto | cpu | cuda | cuda:N
    checkpoint_every: int = runtime(1, ge=1)  # epochs between checkpoints
