"""Small pieces shared by the embedding models and ABE: seeding and frozen BatchNorm."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

_BN = nn.modules.batchnorm._BatchNorm


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (module construction) on the CPU generator seeded with ``seed``.

    The global CPU RNG state is saved before and restored after, so what is built
    depends on ``seed`` only, and the caller's random stream is left untouched.
    Only the CPU generator is seeded (``torch.manual_seed`` would also reseed
    CUDA, which ``fork_rng(devices=[])`` does not restore); modules are always
    constructed on the CPU.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        yield


def batchnorm_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, _BN)]


def freeze_batchnorm_parameters(module: nn.Module) -> None:
    """Affine parameters of every BatchNorm in ``module`` stop requiring gradients."""
    for bn in batchnorm_modules(module):
        for p in bn.parameters(recurse=False):
            p.requires_grad_(False)


class FrozenBNMixin:
    """``.train()`` that keeps BatchNorm layers in eval mode when ``self.freeze_bn``.

    Frozen BN uses (and never updates) its running statistics, in training as
    in evaluation; :func:`freeze_batchnorm_parameters` takes its affine
    parameters out of training.
    """

    freeze_bn: bool = False

    def train(self, mode: bool = True):  # type: ignore[override]
        super().train(mode)  # type: ignore[misc]
        if self.freeze_bn:
            for bn in batchnorm_modules(self):  # type: ignore[arg-type]
                bn.eval()
        return self


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters the optimiser should update (frozen BN affine parameters left out)."""
    return [p for p in model.parameters() if p.requires_grad]
