"""Numeric precision of a job's networks (``TrainConfig.precision``) and the
settings that keep a GPU busy.

- ``fp32``: what the papers trained with; no autocast, every number as before.
- ``bf16`` / ``fp16``: the networks' forward passes (training and evaluation)
  run under :func:`torch.autocast` with that dtype. Their outputs are cast to
  float32 before anything else sees them, so the L2 normalisation, the losses,
  the relation matrices Ψ of DM²'s mutual loss and every distance matrix are
  float32. ``fp16`` also scales the loss (:class:`torch.amp.GradScaler`, one per
  optimiser) so small gradients do not underflow; its state is checkpointed.

On CUDA the networks are also kept channels-last and cuDNN picks its fastest
kernels (``cudnn.benchmark``); both change only how a GPU computes, which is in
any case not bit-reproducible run to run. On the CPU nothing changes.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
from torch import nn

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast and loss scaling for one job on one device."""

    def __init__(self, name: str, device: torch.device):
        if name not in DTYPES:
            raise ValueError(f"precision: expected one of {', '.join(DTYPES)}, got {name!r}")
        self.name = name
        self.dtype = DTYPES[name]
        self.device = torch.device(device)

    def autocast(self):
        """Context for a network's forward pass."""
        # 'meta' (the shape-only dry build before a run) has no autocast; shapes are the same
        if self.dtype is None or self.device.type == "meta":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> Optional[torch.amp.GradScaler]:
        """A loss scaler for one optimiser (fp16 only; None otherwise)."""
        return torch.amp.GradScaler(self.device.type) if self.name == "fp16" else None

    @staticmethod
    def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                      scaler: Optional[torch.amp.GradScaler]) -> None:
        """``loss.backward()`` and ``optimizer.step()``, through the scaler if there is one
        (which skips a step whose gradients overflowed and lowers the scale)."""
        if scaler is None:
            loss.backward()
            optimizer.step()
            return
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on ``device``; channels-last on CUDA, where convolutions run faster so."""
    model = model.to(device)
    if torch.device(device).type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def configure_device(device: torch.device) -> None:
    """Process-wide settings for training on ``device`` (cuDNN autotuning on CUDA)."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
