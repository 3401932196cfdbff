"""Embedding networks: backbone -> global average pool -> Linear(d) -> L2-normalise.

``build_embedding_model(cfg, backbone_seed=..., head_seed=...)`` is what the
trainer calls for every cohort member and distillation student. Members of a
DM2 cohort share their backbone initialisation (the same pretrained weights, or
the same ``backbone_seed``) and differ in the embedding layer's initialisation
(``head_seed``): DM2's model diversity.

Architectures (:data:`ARCHS`):

=================== ============================== ================= ========
arch                backbone                       input convention  features
=================== ============================== ================= ========
bn_inception        Caffe BN-Inception (Cadene)    BGR 0-255 - mean  1024
resnet50            torchvision ResNet-50          ImageNet mean/std 2048
googlenet           torchvision GoogLeNet          RGB to [-1, 1]    1024
bvlc_googlenet      Caffe BVLC GoogLeNet (ABE's)   BGR 0-255 - mean  1024
tiny_inception      BN-Inception, 1/8 width        ImageNet mean/std 128
tiny_resnet         4 torchvision BasicBlocks      ImageNet mean/std 128
tiny_googlenet      GoogLeNet, 1/8 width           ImageNet mean/std 128
tiny_bvlc_googlenet BVLC GoogLeNet, 1/8 width      ImageNet mean/std 128
=================== ============================== ================= ========

The ``tiny_*`` networks exist for CPU smoke runs on 48-64 px images; they have no
pretrained weights (so they take the ImageNet mean/std scaling, which suits
training from scratch better than Caffe's unscaled 0-255 input).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config import ModelConfig
from benchmark.errors import ConfigError
from benchmark.models import normalize
from benchmark.models.bn_inception import bn_inception, tiny_inception
from benchmark.models.bvlc_googlenet import bvlc_googlenet_stages
from benchmark.models.common import FrozenBNMixin, freeze_batchnorm_parameters, seeded
from benchmark.models.googlenet import googlenet_stages, stage_out_channels
from benchmark.models.pretrained import load_pretrained
from benchmark.models.resnet import resnet50_backbone, tiny_resnet


@dataclass(frozen=True)
class Backbone:
    """How to build one architecture's feature extractor."""

    build: Callable[[], nn.Module]  # -> module mapping normalised images to [B, C, h, w]
    normalization: Callable[[], normalize.InputNormalization]
    pretrained: bool  # has ImageNet weights (benchmark.models.pretrained)


def _bn_inception() -> nn.Module:
    return bn_inception(num_classes=None)  # no last_linear: its weights are dropped on load


def _googlenet(width_divisor: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        stages = googlenet_stages(width_divisor)
        stages.out_channels = stage_out_channels(stages)["inception5b"]
        return stages

    return build


BACKBONES: dict[str, Backbone] = {
    "bn_inception": Backbone(_bn_inception, normalize.caffe_bgr, pretrained=True),
    "resnet50": Backbone(resnet50_backbone, normalize.imagenet, pretrained=True),
    "googlenet": Backbone(_googlenet(1), normalize.googlenet_tf, pretrained=True),
    "tiny_inception": Backbone(tiny_inception, normalize.imagenet, pretrained=False),
    "tiny_resnet": Backbone(tiny_resnet, normalize.imagenet, pretrained=False),
    "tiny_googlenet": Backbone(_googlenet(8), normalize.imagenet, pretrained=False),
    "bvlc_googlenet": Backbone(lambda: bvlc_googlenet_stages(1), normalize.caffe_bvlc, pretrained=True),
    "tiny_bvlc_googlenet": Backbone(lambda: bvlc_googlenet_stages(8), normalize.imagenet, pretrained=False),
}
ARCHS: tuple[str, ...] = tuple(BACKBONES)


def backbone_spec(arch: str, where: str = "model.arch") -> Backbone:
    if arch not in BACKBONES:
        raise ConfigError(f"{where}: unknown architecture '{arch}' (known: {', '.join(ARCHS)})")
    return BACKBONES[arch]


def check_pretrained_arch(arch: str, where: str = "model.pretrained") -> None:
    if not backbone_spec(arch).pretrained:
        raise ConfigError(
            f"{where}: architecture '{arch}' has no pretrained weights (it is a smoke-test network); "
            "set pretrained: false"
        )


def build_backbone(arch: str, *, pretrained: bool, weights: str | None, seed: int) -> nn.Module:
    """The feature extractor of ``arch``: random (from ``seed``) or pretrained weights."""
    spec = backbone_spec(arch)
    if pretrained:
        check_pretrained_arch(arch)
    with seeded(seed):
        net = spec.build()
    if pretrained:
        load_pretrained(net, arch, weights)
    return net


class EmbeddingModel(FrozenBNMixin, nn.Module):
    """``forward(images [B,3,H,W] uint8/float RGB 0-255) -> [B, d]``, unit L2 norm.

    Submodules: ``normalization`` (the backbone's input convention),
    ``backbone`` (feature maps), ``embedding`` (the Linear head). ``features``
    gives the pooled backbone features before the head.
    """

    def __init__(
        self,
        arch: str,
        normalization: nn.Module,
        backbone: nn.Module,
        feature_dim: int,
        embedding_dim: int,
        freeze_bn: bool,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.normalization = normalization
        self.backbone = backbone
        self.embedding = nn.Linear(feature_dim, embedding_dim)
        self.embedding_dim = embedding_dim
        self.freeze_bn = bool(freeze_bn)
        if self.freeze_bn:
            freeze_batchnorm_parameters(self.backbone)
            self.train(self.training)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.backbone(self.normalization(images))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embedding(self.features(images)).float(), dim=1)  # float32 under autocast too


def build_embedding_model(cfg: ModelConfig, *, backbone_seed: int, head_seed: int) -> EmbeddingModel:
    """The embedding network ``cfg`` describes (see the module docstring).

    ``backbone_seed`` fixes the backbone's random initialisation (irrelevant when
    pretrained weights are loaded), ``head_seed`` the embedding layer's. The
    global RNG state neither influences nor is changed by construction.
    Raises ConfigError (unknown arch, pretrained tiny arch, bad dimension) or
    WeightsNotFoundError (pretrained weights missing and not downloadable).
    """
    spec = backbone_spec(cfg.arch)
    if cfg.embedding_dim <= 0:
        raise ConfigError(f"model.embedding_dim: must be positive, got {cfg.embedding_dim}")
    backbone = build_backbone(cfg.arch, pretrained=cfg.pretrained, weights=cfg.weights, seed=backbone_seed)
    if cfg.bn_momentum is not None:  # otherwise each architecture's own (BN-Inception's port: 0.9)
        for module in backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = cfg.bn_momentum
    with seeded(head_seed):
        model = EmbeddingModel(
            cfg.arch,
            spec.normalization(),
            backbone,
            feature_dim=backbone.out_channels,
            embedding_dim=cfg.embedding_dim,
            freeze_bn=cfg.freeze_bn,
        )
    return model
