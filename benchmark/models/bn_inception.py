"""BN-Inception (Ioffe & Szegedy, 2015), written by hand.

No library ships this network, and the metric-learning community uses one
particular set of weights for it: the Caffe model converted to PyTorch in
Cadene's *pretrained-models* (file ``bn_inception-52deb4733.pth``). This module
builds a network whose ``state_dict()`` has exactly that file's key names and
shapes, so the file loads with no renaming:

    conv1_7x7_s2, conv1_7x7_s2_bn, conv2_3x3_reduce(_bn), conv2_3x3(_bn),
    inception_<block>_<branch>(_bn) for blocks 3a 3b 3c 4a 4b 4c 4d 4e 5a 5b,
    last_linear (1024 -> 1000)

Every convolution is followed by BatchNorm (eps 1e-5) and ReLU. Each block has
up to four branches, concatenated in this order:

    1x1                     (absent in the stride-2 blocks 3c and 4e)
    3x3_reduce -> 3x3
    double_3x3_reduce -> double_3x3_1 -> double_3x3_2
    pool -> pool_proj       (stride-2 blocks: max pool only, no projection)

Pools use ``ceil_mode=True`` as in Caffe (the stride-2 blocks' max pool is padded
on odd-sized maps, which the reference never meets; see ``_block``). Inputs are BGR in 0-255 minus the mean
(104, 117, 128): see :mod:`benchmark.models.normalize`; this module expects
already normalised input.

The converted file has no ``num_batches_tracked`` buffers; see
:func:`benchmark.models.pretrained.load_matching`.

The same class builds the narrow ``tiny_inception`` of the smoke profile from a
smaller table (:data:`TINY_STEM`, :data:`TINY_BLOCKS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

PoolKind = Literal["avg", "max", "max_stride2"]


@dataclass(frozen=True)
class StemSpec:
    """conv1 7x7/2 -> pool -> conv2 1x1 -> conv2 3x3 -> pool."""

    conv1: int = 64
    conv2_reduce: int = 64
    conv2: int = 192


@dataclass(frozen=True)
class BlockSpec:
    """One inception block; ``None`` marks an absent branch.

    ``pool`` is the pooling branch: "avg" (3x3/1, padded, then pool_proj),
    "max" (3x3/1, padded, then pool_proj; block 5b) or "max_stride2" (3x3/2, no
    projection; the stride-2 blocks, whose 3x3 convolutions also have stride 2).
    """

    name: str
    conv1x1: Optional[int]
    reduce3x3: int
    conv3x3: int
    double_reduce: int
    double3x3: int
    pool: PoolKind
    pool_proj: Optional[int]

    @property
    def stride(self) -> int:
        return 2 if self.pool == "max_stride2" else 1

    def out_channels(self, in_channels: int) -> int:
        if self.pool == "max_stride2":
            return self.conv3x3 + self.double3x3 + in_channels
        return self.conv1x1 + self.conv3x3 + self.double3x3 + self.pool_proj


# Channel table of the reference network (checked against Cadene's bninception).
BN_INCEPTION_STEM = StemSpec(64, 64, 192)
BN_INCEPTION_BLOCKS: tuple[BlockSpec, ...] = (
    #         name   1x1  3x3r 3x3 dblr dbl  pool           proj
    BlockSpec("3a", 64, 64, 64, 64, 96, "avg", 32),
    BlockSpec("3b", 64, 64, 96, 64, 96, "avg", 64),
    BlockSpec("3c", None, 128, 160, 64, 96, "max_stride2", None),
    BlockSpec("4a", 224, 64, 96, 96, 128, "avg", 128),
    BlockSpec("4b", 192, 96, 128, 96, 128, "avg", 128),
    BlockSpec("4c", 160, 128, 160, 128, 160, "avg", 128),
    BlockSpec("4d", 96, 128, 192, 160, 192, "avg", 128),
    BlockSpec("4e", None, 128, 192, 192, 256, "max_stride2", None),
    BlockSpec("5a", 352, 192, 320, 160, 224, "avg", 128),
    BlockSpec("5b", 352, 192, 320, 192, 224, "max", 128),
)

# Smoke-profile network: the same block kinds, 1/8 of the channels, five blocks.
TINY_STEM = StemSpec(8, 8, 24)
TINY_BLOCKS: tuple[BlockSpec, ...] = (
    BlockSpec("3a", 8, 8, 8, 8, 12, "avg", 4),
    BlockSpec("3c", None, 16, 20, 8, 12, "max_stride2", None),
    BlockSpec("4a", 28, 8, 12, 12, 16, "avg", 16),
    BlockSpec("4e", None, 16, 24, 24, 32, "max_stride2", None),
    BlockSpec("5b", 44, 24, 40, 24, 28, "max", 16),
)

BN_EPS = 1e-5
# The reference sets momentum=0.9 on every BatchNorm (PyTorch's meaning: weight
# of the new batch in the running statistics). It matters only when BN is
# trained (SOP, In-Shop); we keep the reference's value by default.
REFERENCE_BN_MOMENTUM = 0.9


class BNInception(nn.Module):
    """BN-Inception with the reference's flat parameter names.

    ``forward(x)`` returns the last feature map [B, C, h, w] (1024 channels for
    the full network; ``features`` is an alias). ``classify(x)`` adds global
    average pooling and ``last_linear`` (present when ``num_classes`` is set).
    """

    def __init__(
        self,
        num_classes: Optional[int] = 1000,
        stem: StemSpec = BN_INCEPTION_STEM,
        blocks: Sequence[BlockSpec] = BN_INCEPTION_BLOCKS,
        bn_momentum: float = REFERENCE_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        self._bn_momentum = bn_momentum
        self.blocks = tuple(blocks)
        self._add_conv("conv1_7x7_s2", 3, stem.conv1, 7, stride=2)
        self._add_conv("conv2_3x3_reduce", stem.conv1, stem.conv2_reduce, 1)
        self._add_conv("conv2_3x3", stem.conv2_reduce, stem.conv2, 3)
        channels = stem.conv2
        for spec in self.blocks:
            self._add_block(spec, channels)
            channels = spec.out_channels(channels)
        self.out_channels = channels
        self.last_linear = nn.Linear(channels, num_classes) if num_classes else None

    # -- construction --------------------------------------------------------
    def _add_conv(self, name: str, cin: int, cout: int, k: int, stride: int = 1) -> None:
        self.add_module(name, nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2))
        self.add_module(name + "_bn", nn.BatchNorm2d(cout, eps=BN_EPS, momentum=self._bn_momentum))

    def _add_block(self, spec: BlockSpec, cin: int) -> None:
        p = f"inception_{spec.name}_"
        s = spec.stride
        if spec.conv1x1 is not None:
            self._add_conv(p + "1x1", cin, spec.conv1x1, 1)
        self._add_conv(p + "3x3_reduce", cin, spec.reduce3x3, 1)
        self._add_conv(p + "3x3", spec.reduce3x3, spec.conv3x3, 3, stride=s)
        self._add_conv(p + "double_3x3_reduce", cin, spec.double_reduce, 1)
        self._add_conv(p + "double_3x3_1", spec.double_reduce, spec.double3x3, 3)
        self._add_conv(p + "double_3x3_2", spec.double3x3, spec.double3x3, 3, stride=s)
        if spec.pool_proj is not None:
            self._add_conv(p + "pool_proj", cin, spec.pool_proj, 1)

    # -- computation ---------------------------------------------------------
    def _cbr(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """conv -> BN -> ReLU of the layer called ``name``."""
        x = getattr(self, name)(x)
        return F.relu(getattr(self, name + "_bn")(x), inplace=True)

    def _block(self, spec: BlockSpec, x: torch.Tensor) -> torch.Tensor:
        p = f"inception_{spec.name}_"
        out = []
        if spec.conv1x1 is not None:
            out.append(self._cbr(p + "1x1", x))
        out.append(self._cbr(p + "3x3", self._cbr(p + "3x3_reduce", x)))
        d = self._cbr(p + "double_3x3_reduce", x)
        out.append(self._cbr(p + "double_3x3_2", self._cbr(p + "double_3x3_1", d)))
        if spec.pool == "max_stride2":
            # On an even-sized map (every size the reference meets at 224 or
            # 256 px) this is the reference's pool. On an odd size the reference
            # cannot concatenate (pool gives (n-1)/2, the stride-2 convs (n+1)/2);
            # one pixel of padding on that axis makes the sizes agree, so small
            # smoke images (e.g. 48 px) work too.
            pad = (x.shape[-2] % 2, x.shape[-1] % 2)
            out.append(F.max_pool2d(x, 3, stride=2, padding=pad, ceil_mode=True))
        else:
            if spec.pool == "avg":
                pooled = F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
            else:
                pooled = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
            out.append(self._cbr(p + "pool_proj", pooled))
        return torch.cat(out, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._cbr("conv1_7x7_s2", x)
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        x = self._cbr("conv2_3x3", self._cbr("conv2_3x3_reduce", x))
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        for spec in self.blocks:
            x = self._block(spec, x)
        return x

    features = forward

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        if self.last_linear is None:
            raise RuntimeError("this BNInception was built without last_linear (num_classes=None)")
        return self.last_linear(torch.flatten(F.adaptive_avg_pool2d(self(x), 1), 1))


def bn_inception(num_classes: Optional[int] = 1000) -> BNInception:
    return BNInception(num_classes)


def tiny_inception() -> BNInception:
    """Narrow BN-Inception-style network for CPU smoke runs (128 output channels)."""
    return BNInception(num_classes=None, stem=TINY_STEM, blocks=TINY_BLOCKS, bn_momentum=0.1)
