"""ResNet backbones: torchvision's ResNet-50 and a narrow ResNet for smoke runs.

Both are ``nn.Sequential`` feature extractors whose children carry torchvision's
names (``conv1 bn1 relu maxpool layer1 ... layer4``), so torchvision's ResNet-50
weights load into :func:`resnet50_backbone` unchanged (minus ``fc``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import nn
from torchvision.models import resnet50
from torchvision.models.resnet import BasicBlock, conv1x1

RESNET_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def resnet50_backbone() -> nn.Sequential:
    """torchvision ResNet-50 without ``avgpool`` and ``fc`` (2048 output channels)."""
    net = resnet50(weights=None)
    stages = nn.Sequential(OrderedDict((name, getattr(net, name)) for name in RESNET_STAGES))
    stages.out_channels = 2048
    return stages


# Widths of the smoke-profile ResNet: one BasicBlock per stage.
TINY_RESNET_WIDTHS: tuple[int, ...] = (16, 32, 64, 128)


def tiny_resnet(widths: Sequence[int] = TINY_RESNET_WIDTHS) -> nn.Sequential:
    """A narrow ResNet-10-style net from torchvision's ``BasicBlock``.

    torchvision's ``ResNet`` class fixes its widths at 64..512, which is an order
    of magnitude too slow for CPU smoke runs, so the stages are assembled here
    from its blocks: a 3x3/2 stem convolution (7x7 is pointless on 48-64 px
    images) and ResNet's 3x3/2 max pool, then one BasicBlock per stage, stages
    2-4 with stride 2 (48 px in -> 2x2 out).
    """
    stages: "OrderedDict[str, nn.Module]" = OrderedDict()
    stages["conv1"] = nn.Conv2d(3, widths[0], kernel_size=3, stride=2, padding=1, bias=False)
    stages["bn1"] = nn.BatchNorm2d(widths[0])
    stages["relu"] = nn.ReLU(inplace=True)
    stages["maxpool"] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    cin = widths[0]
    for i, width in enumerate(widths):
        stride = 1 if i == 0 else 2
        downsample = None
        if stride != 1 or cin != width:
            downsample = nn.Sequential(conv1x1(cin, width, stride), nn.BatchNorm2d(width))
        stages[f"layer{i + 1}"] = nn.Sequential(BasicBlock(cin, width, stride, downsample))
        cin = width
    net = nn.Sequential(stages)
    for m in net.modules():  # torchvision ResNet's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    net.out_channels = cin
    return net
