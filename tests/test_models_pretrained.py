"""BN-Inception's Caffe-conversion layout and loading weights files through pretrained.py."""

from __future__ import annotations

import pytest
import torch

from benchmark.config import ABEConfig, ModelConfig
from benchmark.errors import ConfigError, UserError, WeightsNotFoundError
from benchmark.models import build_abe_model, build_embedding_model
from benchmark.models import pretrained as P
from benchmark.models.bn_inception import BNInception
from benchmark.models.googlenet import googlenet_stages
from benchmark.models.resnet import resnet50_backbone

# Keys and shapes of Cadene's bn_inception-52deb4733.pth (the Caffe conversion).
KNOWN_BNI_SHAPES = {
    "conv1_7x7_s2.weight": (64, 3, 7, 7),
    "conv1_7x7_s2.bias": (64,),
    "conv1_7x7_s2_bn.running_mean": (64,),
    "conv2_3x3_reduce.weight": (64, 64, 1, 1),
    "conv2_3x3.weight": (192, 64, 3, 3),
    "conv2_3x3_bn.running_var": (192,),
    "inception_3a_1x1.weight": (64, 192, 1, 1),
    "inception_3a_double_3x3_2.weight": (96, 96, 3, 3),
    "inception_3a_pool_proj.weight": (32, 192, 1, 1),
    "inception_3b_pool_proj.weight": (64, 256, 1, 1),
    "inception_3c_3x3.weight": (160, 128, 3, 3),
    "inception_3c_double_3x3_reduce.weight": (64, 320, 1, 1),
    "inception_4a_1x1.weight": (224, 576, 1, 1),
    "inception_4d_1x1_bn.weight": (96,),
    "inception_4e_3x3_reduce.weight": (128, 608, 1, 1),
    "inception_4e_double_3x3_2.weight": (256, 256, 3, 3),
    "inception_5a_1x1.weight": (352, 1056, 1, 1),
    "inception_5b_3x3.weight": (320, 192, 3, 3),
    "inception_5b_pool_proj.weight": (128, 1024, 1, 1),
    "inception_5b_pool_proj_bn.running_mean": (128,),
    "last_linear.weight": (1000, 1024),
    "last_linear.bias": (1000,),
}
# 69 convolutions x (weight, bias) + 69 BN x (weight, bias, mean, var) + last_linear.
BNI_FILE_KEYS = 69 * 6 + 2


def _file_keys(state):
    return [k for k in state if not k.endswith("num_batches_tracked")]


def test_bn_inception_state_dict_matches_caffe_conversion():
    state = BNInception(num_classes=1000).state_dict()
    for key, shape in KNOWN_BNI_SHAPES.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    assert len(_file_keys(state)) == BNI_FILE_KEYS
    assert not [k for k in state if k.startswith("inception_3c_1x1") or k.startswith("inception_4e_pool_proj")]


def test_bn_inception_feature_map_sizes():
    net = BNInception(num_classes=1000).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 224, 224)).shape == (1, 1024, 7, 7)
        assert net.classify(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def _caffe_style_file(path):
    """A BN-Inception file laid out like the converted one: no num_batches_tracked,
    BN vectors stored as [1, C], last_linear included."""
    state = {k: v for k, v in BNInception(num_classes=1000).state_dict().items() if "num_batches" not in k}
    with torch.no_grad():
        state = {k: (torch.randn_like(v) if v.is_floating_point() else v) for k, v in state.items()}
    state = {k: (v.unsqueeze(0) if "_bn." in k else v) for k, v in state.items()}
    torch.save(state, path)
    return state


def test_bn_inception_weights_file_loads_into_embedding_model(tmp_path):
    path = tmp_path / "bni.pth"
    state = _caffe_style_file(path)
    cfg = ModelConfig(arch="bn_inception", embedding_dim=16, pretrained=True, weights=str(path))
    model = build_embedding_model(cfg, backbone_seed=0, head_seed=0)
    got = model.backbone.state_dict()
    assert torch.equal(got["conv1_7x7_s2.weight"], state["conv1_7x7_s2.weight"])
    assert torch.equal(got["inception_4c_3x3_bn.running_var"], state["inception_4c_3x3_bn.running_var"][0])
    assert "last_linear.weight" not in got


def test_missing_weights_file_is_one_line_error_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "bni.pth"
    cfg = ModelConfig(arch="bn_inception", pretrained=True, weights=str(missing))
    with pytest.raises(WeightsNotFoundError) as info:
        build_embedding_model(cfg, backbone_seed=0, head_seed=0)
    msg = str(info.value)
    assert "\n" not in msg and str(missing) in msg and "bn_inception-52deb4733.pth" in msg


def test_offline_without_cache_names_hub_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv(P.OFFLINE_ENV, "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFoundError) as info:
        build_embedding_model(ModelConfig(arch="resnet50"), backbone_seed=0, head_seed=0)
    msg = str(info.value)
    expected = tmp_path / "hub" / "checkpoints" / P.weights_source("resnet50").filename
    assert "\n" not in msg and str(expected) in msg and "pretrained: false" in msg


def test_weights_that_do_not_fit_are_a_one_line_user_error(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"conv1_7x7_s2.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(UserError) as info:
        build_embedding_model(
            ModelConfig(arch="bn_inception", weights=str(path)), backbone_seed=0, head_seed=0
        )
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_tiny_arch_with_pretrained_is_config_error():
    with pytest.raises(ConfigError) as info:
        build_embedding_model(ModelConfig(arch="tiny_resnet", pretrained=True), backbone_seed=0, head_seed=0)
    assert "tiny_resnet" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError):
        build_abe_model(ABEConfig(arch="tiny_googlenet", pretrained=True))


def test_torchvision_layouts_match_their_weights_files():
    """Our GoogLeNet/ResNet-50 backbones have exactly the torchvision keys minus the dropped heads."""
    from torchvision.models import GoogLeNet, resnet50

    tv = GoogLeNet(aux_logits=True, init_weights=False).state_dict()
    drop = P.weights_source("googlenet").drop_prefixes
    ours = googlenet_stages(1).state_dict()
    assert {k: tuple(v.shape) for k, v in tv.items() if not k.startswith(drop)} == {
        k: tuple(v.shape) for k, v in ours.items()
    }
    # the smoke model's hand-kept width table is torchvision's, divided by 8
    tiny = {k: tuple(v.shape) for k, v in googlenet_stages(8).state_dict().items()}
    assert tiny.keys() == ours.keys()
    for k, shape in ((k, tuple(v.shape)) for k, v in ours.items()):
        if len(shape) == 4:  # conv weight: out, in channels divided (not the image's 3), kernel kept
            assert tiny[k] == (shape[0] // 8, shape[1] if k.startswith("conv1.") else shape[1] // 8, *shape[2:]), k
        elif len(shape) == 1:  # BN parameters and buffers
            assert tiny[k] == (shape[0] // 8,), k
    tv = resnet50(weights=None).state_dict()
    drop = P.weights_source("resnet50").drop_prefixes
    ours = resnet50_backbone().state_dict()
    assert {k: tuple(v.shape) for k, v in tv.items() if not k.startswith(drop)} == {
        k: tuple(v.shape) for k, v in ours.items()
    }


def test_abe_loads_googlenet_from_hub_cache_and_copies_it_into_c(tmp_path, monkeypatch):
    from torchvision.models import GoogLeNet

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv(P.OFFLINE_ENV, "1")
    state = GoogLeNet(aux_logits=True, init_weights=False).state_dict()  # torchvision's file layout
    path = P.hub_cache_path("googlenet")
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    model = build_abe_model(ABEConfig(learners=2, embedding_dim=64))
    key = "inception4a.branch1.conv.weight"
    c_weight = model.attention_trunk.state_dict()[key]
    g_weight = model.global_embedding.stages.state_dict()[key]
    assert torch.equal(c_weight, state[key]) and torch.equal(g_weight, state[key])
    assert c_weight.data_ptr() != g_weight.data_ptr()  # C is its own copy
    assert torch.equal(model.spatial.conv1.conv.weight, state["conv1.conv.weight"])
