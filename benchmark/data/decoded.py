"""A training batch's decoded images in transit to the training device (``data.augment_on: device``).

A loader worker decodes (and ``prepare``s) the batch's distinct images and
packs them into one flat uint8 tensor, which the DataLoader can pin and the
main process copies to the device in one transfer; the views are then drawn
there (:class:`benchmark.data.loaders.TrainBatches`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class DecodedBatch(NamedTuple):
    """A training batch before augmentation."""

    pixels: torch.Tensor  # uint8 [sum of H*W*3]: the distinct prepared images, interleaved RGB (HWC), in order
    shapes: torch.Tensor  # int64 [n, 2]: (H, W) of each distinct image
    slots: torch.Tensor  # int64 [B]: which distinct image each position of the batch shows
    labels: torch.Tensor  # int64 [B]
    epoch: int
    batch_index: int


def distinct(indices: list[int]) -> tuple[list[int], list[int]]:
    """(the distinct indices in order of first appearance, the slot of each position among them)."""
    order: dict[int, int] = {}
    slots = [order.setdefault(i, len(order)) for i in indices]
    return list(order), slots


def pack(images: list[torch.Tensor], slots: list[int], labels: torch.Tensor, epoch: int, batch_index: int) -> DecodedBatch:
    """Prepared images ([1,3,H,W] channels-last, as :meth:`TrainTransform.prepare` gives them) -> a DecodedBatch."""
    pixels = torch.cat([img[0].permute(1, 2, 0).reshape(-1) for img in images])
    shapes = torch.tensor([list(img.shape[-2:]) for img in images], dtype=torch.int64).view(-1, 2)
    return DecodedBatch(pixels, shapes, torch.tensor(slots, dtype=torch.int64), labels, epoch, batch_index)


def unpack(batch: DecodedBatch, device: torch.device) -> list[torch.Tensor]:
    """The prepared images on ``device`` (one copy of the pixels), laid out as ``prepare`` lays them out."""
    pixels = batch.pixels.to(device, non_blocking=True)
    images, start = [], 0
    for h, w in batch.shapes.tolist():
        images.append(pixels[start : start + h * w * 3].view(1, h, w, 3).permute(0, 3, 1, 2))
        start += h * w * 3
    return images
