"""Model size and cost: #parameters and multiply-accumulates (ABE Table 1's last columns).

``model_stats`` counts with ``torch.utils.flop_counter.FlopCounterMode``, which
counts the FLOPs of matrix products and convolutions (2 per multiply-add) and
ignores element-wise work (BN, ReLU, pooling, the attention product); ABE's
"FLOPs" are multiply-accumulates, so MACs = FLOPs / 2. Costs are per image.

``config_model_stats`` builds the network a training config describes, with
random weights (no download, no data), and reports it in Table 1's units.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmark.config import TrainConfig
from benchmark.config.models import reported_model


def count_parameters(model: nn.Module) -> int:
    """All parameters (trainable or frozen), each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters())


def model_stats(model: nn.Module, image_size: int) -> dict[str, int]:
    """``{"params": int, "macs": int}`` for ONE image_size x image_size RGB image."""
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    image = torch.full((1, 3, image_size, image_size), 128.0, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(image)
    finally:
        model.train(was_training)
    return {"params": count_parameters(model), "macs": counter.get_total_flops() // 2}


def config_model(config: TrainConfig) -> nn.Module:
    """The network whose size a config reports: cohort member 1, the ABE model, or
    the distillation student; random weights (pretrained is switched off)."""
    from benchmark.models import build_abe_model, build_embedding_model

    model_cfg = dataclasses.replace(reported_model(config), pretrained=False)
    if config.method == "abe":
        return build_abe_model(model_cfg, seed=0)
    return build_embedding_model(model_cfg, backbone_seed=0, head_seed=0)


def config_model_stats(config: TrainConfig) -> dict[str, float]:
    """``{"params_1e7", "gflops"}`` of the config's network on one
    ``data.crop_size`` image (224 in the ABE recipes): ABE Table 1's units."""
    stats = model_stats(config_model(config), config.data.crop_size)
    return {"params_1e7": stats["params"] / 1e7, "gflops": stats["macs"] / 1e9}
