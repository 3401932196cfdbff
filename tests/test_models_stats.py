"""#params and MACs (ABE Table 1's units)."""

from __future__ import annotations

import pytest
from torch import nn

from benchmark.config import ABEConfig, CohortConfig, DataConfig, ModelConfig, TrainConfig
from benchmark.models import build_embedding_model
from benchmark.stats import config_model_stats, model_stats


def test_model_stats_equals_hand_count():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # 8*8 outputs x 4 channels x 27 MACs
        nn.ReLU(),
        nn.Conv2d(4, 2, 1, bias=False),  # 8*8 x 2 x 4
        nn.Flatten(),
        nn.Linear(2 * 8 * 8, 5),  # 128 x 5
    )
    stats = model_stats(model, 8)
    assert stats["macs"] == 8 * 8 * 4 * 27 + 8 * 8 * 2 * 4 + 128 * 5
    assert stats["params"] == (4 * 27 + 4) + 4 * 2 + (128 * 5 + 5)


def test_model_stats_restores_training_mode():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)).train()
    model_stats(model, 4)
    assert model.training


def test_config_model_stats_of_a_cohort_is_member_one():
    member = ModelConfig(arch="tiny_resnet", embedding_dim=32, pretrained=True)  # pretrained is ignored
    cfg = TrainConfig(method="cohort", cohort=CohortConfig(members=[member]), data=DataConfig(crop_size=48))
    stats = config_model_stats(cfg)
    direct = model_stats(
        build_embedding_model(ModelConfig(arch="tiny_resnet", embedding_dim=32, pretrained=False),
                              backbone_seed=0, head_seed=0), 48)
    assert stats == {"params_1e7": direct["params"] / 1e7, "gflops": direct["macs"] / 1e9}


def _abe_stats(variant, M, d):
    cfg = TrainConfig(
        method="abe",
        abe=ABEConfig(variant=variant, learners=M, embedding_dim=d, pretrained=False),
        data=DataConfig(crop_size=224),
    )
    return config_model_stats(cfg)


@pytest.mark.slow
def test_abe_table1_differences_between_rows():
    """Differences between ABE Table 1 rows (#params x1e7, GMACs), which do not depend on
    torchvision's 3x3-for-5x5 substitution as much as the absolute numbers do."""
    head1, heads2 = _abe_stats("heads", 1, 512), _abe_stats("heads", 2, 512)
    abe1, abe8, abe1_64 = _abe_stats("abe", 1, 512), _abe_stats("abe", 8, 512), _abe_stats("abe", 1, 64)
    assert head1["params_1e7"] == pytest.approx(0.65, abs=0.05)
    assert head1["gflops"] == pytest.approx(1.58, abs=0.1)
    # paper: ABE-1 - 1-head = 0.32 / 0.63; ABE-8 - ABE-1 = 0.23 / 5.25; ABE-1-64 - ABE-1-512 = -0.05 / 0
    assert abe1["params_1e7"] - head1["params_1e7"] == pytest.approx(0.32, abs=0.03)
    assert abe1["gflops"] - head1["gflops"] == pytest.approx(0.63, abs=0.06)
    assert abe8["params_1e7"] - abe1["params_1e7"] == pytest.approx(0.23, abs=0.01)
    assert abe8["gflops"] - abe1["gflops"] == pytest.approx(5.25, rel=0.07)
    assert abe1_64["params_1e7"] - abe1["params_1e7"] == pytest.approx(-0.05, abs=0.005)
    # paper: one extra head = 0.53 / 0.67
    assert heads2["params_1e7"] - head1["params_1e7"] == pytest.approx(0.53, rel=0.07)
    assert heads2["gflops"] - head1["gflops"] == pytest.approx(0.67, rel=0.07)
