"""Attention-based ensemble (ABE-M, Kim et al. 2018) and its M-heads baseline.

GoogLeNet (torchvision's port, :mod:`benchmark.models.googlenet`, or the Caffe
BVLC model the paper used, :mod:`benchmark.models.bvlc_googlenet`; both are
sequences of the same named stages) is cut at ``branch_point`` into

- S: the stages up to and including the branch point (shared by all learners);
- G: every stage after it (pools included), global average pooling and the
  embedding layer Linear(1024, d/M).

variant ``abe`` (Fig. 1b, Fig. 3): B_m(x) = G(S(x) * A_m(S(x))) with
  A_m = A'_m(C(.)): C is its own copy of the ``attention_depth`` inception
  blocks that follow the branch point, *without* the pooling layers between
  them (Sec. 6.3: the mask must keep S's spatial size), shared by all learners;
  A'_m is a 1x1 convolution from C's to S's channels followed by a sigmoid, one
  per learner. G, embedding layer included, is shared: there is ONE G.
variant ``heads`` (Fig. 1a): B_m(x) = G_m(S(x)), one full copy of G (and of the
  embedding layer) per learner; no attention.

Each learner embeds into ``embedding_dim / M`` dimensions. With the paper's
settings (pool3, depth 5) these choices reproduce the parameter and FLOP
differences between the rows of ABE Table 1 (see ``benchmark.stats``): C is a
copy of inception(4a)-(4e) (ABE-1 minus 1-head = C + one 832->480 attention
conv), the embedding layer is shared in ABE (ABE-M-512 vs ABE-M-64M) and each
extra head costs one G. On ``bvlc_googlenet`` they give every row's absolute
#params and FLOPs to the paper's printed two decimals (torchvision's port: 4-6%
lower, its 3x3-for-5x5 branches).

Implementation: S and C run once per image; the M 1x1 attention convolutions
run as one convolution with their weights concatenated; the M attended inputs
go through G as one batch of B*M (with BN trained, G's batch statistics are
therefore taken over all learners' inputs together).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config import ABEConfig
from benchmark.errors import ConfigError
from benchmark.models.common import FrozenBNMixin, freeze_batchnorm_parameters, seeded
from benchmark.models.embedding import backbone_spec, build_backbone
from benchmark.models.googlenet import STAGE_NAMES, is_inception, stage_out_channels

# torchvision's GoogLeNet and the Caffe one ABE used (benchmark.models.bvlc_googlenet):
# both have the same stage names, so the cuts below apply to either.
ABE_ARCHS = ("googlenet", "tiny_googlenet", "bvlc_googlenet", "tiny_bvlc_googlenet")
# The paper's names of the pooling stages (Fig. 7b: pool2, in(3a), in(3b), pool3, in(4a), in(4b)).
BRANCH_ALIASES = {"pool1": "maxpool1", "pool2": "maxpool2", "pool3": "maxpool3", "pool4": "maxpool4"}


def resolve_branch_point(name: str) -> str:
    stage = BRANCH_ALIASES.get(name, name)
    if stage not in STAGE_NAMES:
        known = ", ".join(["pool2", "pool3", "pool4"] + [n for n in STAGE_NAMES if is_inception(n)])
        raise ConfigError(f"abe.branch_point: unknown stage '{name}' (GoogLeNet stages: {known})")
    return stage


class GlobalEmbedding(nn.Module):
    """G: stages after the branch point -> global average pool -> Linear(d/M)."""

    def __init__(self, stages: nn.Sequential, in_features: int, dim: int) -> None:
        super().__init__()
        self.stages = stages
        self.embedding = nn.Linear(in_features, dim)
        glorot(self.embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x)
        return self.embedding(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def glorot(layer: nn.Module) -> None:
    """Glorot (Xavier) weights and zero bias: ABE Sec. 4 for new layers."""
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class ABEModel(FrozenBNMixin, nn.Module):
    """``forward(images [B,3,H,W] RGB 0-255) -> [B, M, d/M]`` per-learner embeddings.

    Submodules: ``normalization``, ``spatial`` (S); variant abe:
    ``attention_trunk`` (C), ``attention_convs`` (M x A'_m), ``global_embedding``
    (G); variant heads: ``global_embeddings`` (M x G_m).
    """

    def __init__(
        self,
        *,
        variant: str,
        normalization: nn.Module,
        spatial: nn.Sequential,
        global_stages: nn.Sequential,
        attention_trunk: nn.Sequential | None,
        spatial_channels: int,
        attention_channels: int,
        global_channels: int,
        learners: int,
        embedding_dim: int,
        normalize_embeddings: bool,
        freeze_bn: bool,
    ) -> None:
        super().__init__()
        if embedding_dim % learners:
            raise ConfigError(f"abe.embedding_dim: {embedding_dim} is not divisible by abe.learners={learners}")
        self.variant = variant
        self.learners = learners
        self.embedding_dim = embedding_dim
        self.learner_dim = embedding_dim // learners
        self.normalize_embeddings = normalize_embeddings
        self.spatial_channels = spatial_channels
        self.normalization = normalization
        self.spatial = spatial
        if variant == "abe":
            self.attention_trunk = attention_trunk
            self.attention_convs = nn.ModuleList(
                nn.Conv2d(attention_channels, spatial_channels, kernel_size=1) for _ in range(learners)
            )
            for conv in self.attention_convs:
                glorot(conv)
            self.global_embedding = GlobalEmbedding(global_stages, global_channels, self.learner_dim)
        elif variant == "heads":
            # Learner m's G_m starts from the same (pretrained) weights; its
            # embedding layer gets its own random initialisation.
            self.global_embeddings = nn.ModuleList(
                GlobalEmbedding(copy.deepcopy(global_stages), global_channels, self.learner_dim)
                for _ in range(learners)
            )
        else:
            raise ConfigError(f"abe.variant: expected 'abe' or 'heads', got {variant!r}")
        self.freeze_bn = bool(freeze_bn)
        if self.freeze_bn:
            freeze_batchnorm_parameters(self)
            self.train(self.training)

    # -- attention -------------------------------------------------------------
    def _sigmoid_masks(self, s: torch.Tensor) -> torch.Tensor:
        """A_m(S(x)) for all m: [B, M, C_s, h, w] in (0, 1)."""
        a = self.attention_trunk(s)
        weight = torch.cat([conv.weight for conv in self.attention_convs], dim=0)
        bias = torch.cat([conv.bias for conv in self.attention_convs], dim=0)
        masks = torch.sigmoid(F.conv2d(a, weight, bias))
        b, _, h, w = masks.shape
        return masks.view(b, self.learners, self.spatial_channels, h, w)

    def attention_masks(self, images: torch.Tensor) -> torch.Tensor:
        """Mean over channels of each learner's sigmoid mask: [B, M, h, w] (ABE Fig. 6)."""
        if self.variant != "abe":
            raise ConfigError("abe.variant: attention masks exist only for variant 'abe', not 'heads'")
        s = self.spatial(self.normalization(images))
        return self._sigmoid_masks(s).mean(dim=2)

    # -- embeddings ------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        s = self.spatial(self.normalization(images))
        if self.variant == "heads":
            emb = torch.stack([g(s) for g in self.global_embeddings], dim=1)
        else:
            masks = self._sigmoid_masks(s)
            attended = (s.unsqueeze(1) * masks).flatten(0, 1)  # [B*M, C_s, h, w], learner-minor
            emb = self.global_embedding(attended).view(s.shape[0], self.learners, self.learner_dim)
        if self.normalize_embeddings:
            emb = F.normalize(emb.float(), dim=-1)  # float32 under autocast too
        return emb


def build_abe_model(cfg: ABEConfig, *, seed: Optional[int] = None) -> ABEModel:
    """The ABE-M (variant ``abe``) or M-heads (variant ``heads``) network of ``cfg``.

    ``seed`` fixes every random initialisation (the backbone when not
    pretrained, attention convolutions, embedding layers), independently of the
    global RNG state. ``seed=None`` draws the seed from the global CPU RNG, so
    a caller that seeds that RNG (e.g. inside ``fork_rng``) gets a deterministic
    model too. Raises ConfigError for impossible settings and
    WeightsNotFoundError when pretrained GoogLeNet weights are missing.
    """
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64).item())
    if cfg.arch not in ABE_ARCHS:
        raise ConfigError(
            f"abe.arch: ABE is built on GoogLeNet: expected one of {', '.join(ABE_ARCHS)}, got '{cfg.arch}'"
        )
    if cfg.learners < 1:
        raise ConfigError(f"abe.learners: must be >= 1, got {cfg.learners}")
    if cfg.embedding_dim % cfg.learners:
        raise ConfigError(f"abe.embedding_dim: {cfg.embedding_dim} is not divisible by abe.learners={cfg.learners}")
    if cfg.pretrained and not backbone_spec(cfg.arch).pretrained:
        raise ConfigError(f"abe.pretrained: architecture '{cfg.arch}' has no pretrained weights; set pretrained: false")
    branch = resolve_branch_point(cfg.branch_point)

    # ABEConfig has no weights path (yet): pretrained weights come from the torch hub cache.
    weights = getattr(cfg, "weights", None)
    stages = build_backbone(cfg.arch, pretrained=cfg.pretrained, weights=weights, seed=seed)
    channels = stage_out_channels(stages)
    names = list(stages._modules)
    cut = names.index(branch) + 1
    after = names[cut:]
    if not any(is_inception(n) for n in after):
        raise ConfigError(f"abe.branch_point: '{cfg.branch_point}' leaves no inception block for G")

    trunk = None
    attention_channels = 0
    if cfg.variant == "abe":
        blocks = [n for n in after if is_inception(n)]
        if not 1 <= cfg.attention_depth <= len(blocks):
            raise ConfigError(
                f"abe.attention_depth: {cfg.attention_depth} is not possible after branch point "
                f"'{cfg.branch_point}': between 1 and {len(blocks)} inception blocks follow it"
            )
        chosen = blocks[: cfg.attention_depth]
        # C: its own copy of these blocks (same initial weights as G's), pools left out.
        trunk = nn.Sequential(OrderedDict((n, copy.deepcopy(stages[names.index(n)])) for n in chosen))
        attention_channels = channels[chosen[-1]]

    spatial = nn.Sequential(OrderedDict((n, stages[i]) for i, n in enumerate(names[:cut])))
    global_stages = nn.Sequential(OrderedDict((n, stages[cut + i]) for i, n in enumerate(after)))
    with seeded(seed + 1):
        return ABEModel(
            variant=cfg.variant,
            normalization=backbone_spec(cfg.arch).normalization(),
            spatial=spatial,
            global_stages=global_stages,
            attention_trunk=trunk,
            spatial_channels=channels[branch],
            attention_channels=attention_channels,
            global_channels=channels[names[-1]],
            learners=cfg.learners,
            embedding_dim=cfg.embedding_dim,
            normalize_embeddings=cfg.normalize_embeddings,
            freeze_bn=cfg.freeze_bn,
        )
