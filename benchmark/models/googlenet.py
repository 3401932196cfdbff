"""GoogLeNet as a named sequence of stages (torchvision's blocks and names).

ABE splits GoogLeNet at a named stage (``pool3`` = torchvision's ``maxpool3``),
so the network is kept as an ``nn.Sequential`` whose children carry
torchvision's stage names:

    conv1 maxpool1 conv2 conv3 maxpool2 inception3a inception3b maxpool3
    inception4a inception4b inception4c inception4d inception4e maxpool4
    inception5a inception5b

``googlenet`` takes these stages out of ``torchvision.models.GoogLeNet`` (and so
loads torchvision's weights unchanged); ``tiny_googlenet`` builds the same
topology from torchvision's ``Inception`` and ``BasicConv2d`` blocks with the
channels divided by 8, for CPU smoke runs.

Note: torchvision's GoogLeNet (a TensorFlow port) has BatchNorm after every
convolution and a 3x3 convolution where the Caffe original has 5x5; ABE used
the Caffe model, so parameter and FLOP counts differ slightly (5-6%) from its
Table 1. The Caffe model itself is :mod:`benchmark.models.bvlc_googlenet`
(arch ``bvlc_googlenet``): it has the same stage names, so :data:`STAGE_NAMES`,
:func:`is_inception` and :func:`stage_out_channels` serve both networks.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision.models.googlenet import BasicConv2d, GoogLeNet, Inception

STAGE_NAMES: tuple[str, ...] = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2",
    "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
    "inception5a", "inception5b",
)  # fmt: skip

# torchvision's Inception arguments after in_channels:
# (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj); in_channels follows the chain.
INCEPTION_CHANNELS: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


def is_inception(name: str) -> bool:
    return name.startswith("inception")


def inception_out_channels(block: Inception) -> int:
    last_convs = (block.branch1, block.branch2[-1], block.branch3[-1], block.branch4[-1])
    return sum(conv.conv.out_channels for conv in last_convs)


def stage_out_channels(stages: nn.Sequential, in_channels: int = 3) -> dict[str, int]:
    """Channels leaving each named stage, of either GoogLeNet.

    torchvision's blocks are read from their convolutions; the BVLC network's
    stages (:mod:`benchmark.models.bvlc_googlenet`) that have a convolution
    carry an ``out_channels`` attribute.
    """
    out, channels = {}, in_channels
    for name, stage in stages.named_children():
        if isinstance(stage, BasicConv2d):
            channels = stage.conv.out_channels
        elif isinstance(stage, Inception):
            channels = inception_out_channels(stage)
        elif hasattr(stage, "out_channels"):
            channels = stage.out_channels
        out[name] = channels  # pools keep the channel count
    return out


def stages_of(model: GoogLeNet) -> nn.Sequential:
    """torchvision GoogLeNet's feature stages (no aux heads, pooling head or fc)."""
    return nn.Sequential(OrderedDict((name, getattr(model, name)) for name in STAGE_NAMES))


def googlenet_stages(width_divisor: int = 1) -> nn.Sequential:
    """GoogLeNet's stages with channels / ``width_divisor``.

    Full width: the stages of torchvision's own ``GoogLeNet``. Narrower (the
    smoke model): the same topology from torchvision's blocks, with the widths
    of the table above divided (every GoogLeNet width is divisible by 8).
    """
    d = width_divisor
    if d == 1:
        return stages_of(GoogLeNet(aux_logits=False, init_weights=False))

    def w(c: int) -> int:
        if c % d:
            raise ValueError(f"GoogLeNet width {c} is not divisible by {d}")
        return c // d

    stages: "OrderedDict[str, nn.Module]" = OrderedDict()
    stages["conv1"] = BasicConv2d(3, w(64), kernel_size=7, stride=2, padding=3)
    stages["maxpool1"] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
    stages["conv2"] = BasicConv2d(w(64), w(64), kernel_size=1)
    stages["conv3"] = BasicConv2d(w(64), w(192), kernel_size=3, padding=1)
    stages["maxpool2"] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
    channels = w(192)
    for name in STAGE_NAMES[5:]:
        if name in ("maxpool3",):
            stages[name] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        elif name == "maxpool4":
            stages[name] = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        else:
            block = Inception(channels, *(w(c) for c in INCEPTION_CHANNELS[name]))
            stages[name] = block
            channels = inception_out_channels(block)
    return nn.Sequential(stages)
