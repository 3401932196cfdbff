"""build_metric_loss: every loss runs forward/backward; hand cases; one-line config errors."""

import pytest
import torch
import torch.nn.functional as F

from benchmark.config import LossConfig
from benchmark.errors import ConfigError
from benchmark.losses import binomial_deviance_loss, build_metric_loss

NAMES = ["triplet", "contrastive", "binomial_deviance", "proxy_nca", "arcface", "abe_contrastive"]


@pytest.mark.parametrize("name", NAMES)
def test_each_loss_runs_forward_and_backward(name):
    torch.manual_seed(0)
    miner = "distance_weighted" if name == "triplet" else None
    loss_fn = build_metric_loss(LossConfig(name=name, miner=miner), num_classes=4, embedding_dim=8)
    emb = F.normalize(torch.randn(16, 8), dim=1).requires_grad_()
    labels = torch.arange(16) % 4
    loss = loss_fn(emb, labels)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
    params = list(loss_fn.parameters())
    if name in ("proxy_nca", "arcface"):
        assert sum(p.numel() for p in params) == 4 * 8  # one proxy / weight column per class
        assert all(p.grad is not None for p in params)
    else:
        assert params == []


def test_arcface_margin_is_given_in_radians():
    loss_fn = build_metric_loss(LossConfig(name="arcface", params={"margin": 0.5}), 3, 4)
    assert loss_fn.loss.margin == pytest.approx(0.5)  # pml stores radians after converting degrees


def test_contrastive_is_hadsell_with_mean_over_pairs():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    # D: (0,1) sqrt2 positive; (0,2) 2 and (1,2) sqrt2 negative; over ordered pairs:
    # mean_pos D^2 = 2; mean_neg [1.5 - D]_+^2 = (0 + 0 + 2 * (1.5 - sqrt2)^2) / 4 = 0.0036797
    cfg = LossConfig(name="contrastive", params={"margin": 1.5})
    assert build_metric_loss(cfg, 2, 2)(emb, labels).item() == pytest.approx(2.0036797, abs=1e-5)
    # unsquared (pml's form): mean_pos D = sqrt2; mean_neg [1.5 - D]_+ = 2 * (1.5 - sqrt2) / 4
    cfg = LossConfig(name="contrastive", params={"margin": 1.5, "squared": False})
    assert build_metric_loss(cfg, 2, 2)(emb, labels).item() == pytest.approx(1.4571068, abs=1e-5)


def test_binomial_deviance_by_hand():
    emb = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # cosines: S01 = 0, S02 = 1, S12 = 0
    labels = torch.tensor([0, 0, 1])
    # positive (0,1): log(1 + exp(-2 (0 - 0.5))) = log(1 + e) = 1.3132617
    # negatives: (0,2) log(1 + exp(2*25*(1 - 0.5))) = 25.0000000; (1,2) log(1 + exp(-25)) ~ 0
    # 1.3132617 + (25 + 0) / 2 = 13.8132617
    loss = binomial_deviance_loss(emb, labels, alpha=2.0, beta=0.5, c=25.0)
    assert loss.item() == pytest.approx(13.8132617, abs=1e-5)
    via_config = build_metric_loss(LossConfig(name="binomial_deviance"), 2, 2)(emb, labels)
    assert via_config.item() == pytest.approx(13.8132617, abs=1e-5)


def test_proxy_nca_rejects_labels_out_of_range():
    loss_fn = build_metric_loss(LossConfig(name="proxy_nca"), 3, 4)
    with pytest.raises(ValueError, match="class ids"):
        loss_fn(torch.randn(4, 4), torch.tensor([0, 1, 2, 7]))


@pytest.mark.parametrize(
    "cfg, key",
    [
        (LossConfig(name="triplet", params={"margn": 0.1}), "loss.params.margn"),
        (LossConfig(name="arcface", params={"scale": "big"}), "loss.params.scale"),
        (LossConfig(name="binomial_deviance", params={"alpha": -1}), "loss.params.alpha"),
        (LossConfig(name="triplet", miner="distance_weighted", miner_params={"cut": 1}),
         "loss.miner_params.cut"),
        (LossConfig(name="triplet", miner_params={"cutoff": 0.5}), "loss.miner_params.cutoff"),
        (LossConfig(name="binomial_deviance", miner="distance_weighted"), "loss.miner"),
        (LossConfig(name="abe_contrastive", params={"pairs": "some"}), "loss.params.pairs"),
    ],
)
def test_bad_params_give_one_line_config_errors(cfg, key):
    with pytest.raises(ConfigError) as info:
        build_metric_loss(cfg, 4, 8)
    msg = str(info.value)
    assert msg.startswith(key + ":") and "\n" not in msg
