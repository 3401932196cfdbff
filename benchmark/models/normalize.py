"""Per-model input normalisation.

Images reach every model as RGB tensors [B, 3, H, W], uint8 or float in 0-255.
Each backbone carries the normalisation its (pretrained) weights expect, so the
members of a cohort that mixes architectures can share the same augmented views.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class InputNormalization(nn.Module):
    """x (RGB, 0-255) -> optional RGB->BGR -> x / scale -> (x - mean) / std.

    mean and std are given in the output channel order. They are buffers that
    are not saved in the state dict (they are part of the architecture, not of
    the weights).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], scale: float = 1.0, bgr: bool = False):
        super().__init__()
        self.scale = float(scale)
        self.bgr = bool(bgr)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(x.shape)}")
        # Planar float whatever the input layout (training batches are
        # channels-last uint8): the conversion pass transposes for free, and the
        # network then sees the same tensor either way.
        x = x.to(self.mean.dtype, memory_format=torch.contiguous_format)
        if self.bgr:
            x = x.flip(1)
        if self.scale != 1.0:
            x = x / self.scale
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"bgr={self.bgr}, scale={self.scale}, mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def caffe_bgr() -> InputNormalization:
    """BN-Inception (Caffe conversion): BGR, 0-255, minus (104, 117, 128)."""
    return InputNormalization(mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0), scale=1.0, bgr=True)


def caffe_bvlc() -> InputNormalization:
    """BVLC GoogLeNet (Caffe model zoo): BGR, 0-255, minus (104, 117, 123).

    The mean is bvlc_googlenet's train_val.prototxt ``mean_value`` (B, G, R);
    note its red mean differs from BN-Inception's 128.
    """
    return InputNormalization(mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0), scale=1.0, bgr=True)


def imagenet() -> InputNormalization:
    """torchvision ResNet and the small models: RGB / 255, ImageNet mean and std."""
    return InputNormalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=255.0)


def googlenet_tf() -> InputNormalization:
    """torchvision GoogLeNet weights: RGB / 255 mapped to [-1, 1].

    torchvision's pretrained GoogLeNet was ported from TensorFlow and expects
    ImageNet-normalised input that ``transform_input=True`` re-maps to
    (x - 0.5) / 0.5. We build the model with ``transform_input=False`` and apply
    that same map here in one step, which is exactly equivalent.
    """
    return InputNormalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), scale=255.0)
