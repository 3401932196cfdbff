"""BVLC GoogLeNet (Caffe's bvlc_googlenet, the network ABE was built on): its layout
against the Caffe definition, loading a converted weights file, ABE / M-heads /
embedding models on it, and ABE Table 1's #params and FLOPs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.config import ABEConfig, ModelConfig
from benchmark.errors import ConfigError, UserError, WeightsNotFoundError
from benchmark.models import build_abe_model, build_embedding_model
from benchmark.models import pretrained as P
from benchmark.models.bvlc_googlenet import bvlc_googlenet_stages
from benchmark.stats import model_stats

# Every convolution of models/bvlc_googlenet/deploy.prototxt (Caffe's model zoo),
# in the file's order: name -> (num_output, input channels, kernel_size, stride, pad).
# Input channels follow the prototxt's bottoms (a Concat adds its inputs).
PROTOTXT_CONVS = {
    "conv1/7x7_s2": (64, 3, 7, 2, 3),
    "conv2/3x3_reduce": (64, 64, 1, 1, 0),
    "conv2/3x3": (192, 64, 3, 1, 1),
    "inception_3a/1x1": (64, 192, 1, 1, 0),
    "inception_3a/3x3_reduce": (96, 192, 1, 1, 0),
    "inception_3a/3x3": (128, 96, 3, 1, 1),
    "inception_3a/5x5_reduce": (16, 192, 1, 1, 0),
    "inception_3a/5x5": (32, 16, 5, 1, 2),
    "inception_3a/pool_proj": (32, 192, 1, 1, 0),
    "inception_3b/1x1": (128, 256, 1, 1, 0),
    "inception_3b/3x3_reduce": (128, 256, 1, 1, 0),
    "inception_3b/3x3": (192, 128, 3, 1, 1),
    "inception_3b/5x5_reduce": (32, 256, 1, 1, 0),
    "inception_3b/5x5": (96, 32, 5, 1, 2),
    "inception_3b/pool_proj": (64, 256, 1, 1, 0),
    "inception_4a/1x1": (192, 480, 1, 1, 0),
    "inception_4a/3x3_reduce": (96, 480, 1, 1, 0),
    "inception_4a/3x3": (208, 96, 3, 1, 1),
    "inception_4a/5x5_reduce": (16, 480, 1, 1, 0),
    "inception_4a/5x5": (48, 16, 5, 1, 2),
    "inception_4a/pool_proj": (64, 480, 1, 1, 0),
    "inception_4b/1x1": (160, 512, 1, 1, 0),
    "inception_4b/3x3_reduce": (112, 512, 1, 1, 0),
    "inception_4b/3x3": (224, 112, 3, 1, 1),
    "inception_4b/5x5_reduce": (24, 512, 1, 1, 0),
    "inception_4b/5x5": (64, 24, 5, 1, 2),
    "inception_4b/pool_proj": (64, 512, 1, 1, 0),
    "inception_4c/1x1": (128, 512, 1, 1, 0),
    "inception_4c/3x3_reduce": (128, 512, 1, 1, 0),
    "inception_4c/3x3": (256, 128, 3, 1, 1),
    "inception_4c/5x5_reduce": (24, 512, 1, 1, 0),
    "inception_4c/5x5": (64, 24, 5, 1, 2),
    "inception_4c/pool_proj": (64, 512, 1, 1, 0),
    "inception_4d/1x1": (112, 512, 1, 1, 0),
    "inception_4d/3x3_reduce": (144, 512, 1, 1, 0),
    "inception_4d/3x3": (288, 144, 3, 1, 1),
    "inception_4d/5x5_reduce": (32, 512, 1, 1, 0),
    "inception_4d/5x5": (64, 32, 5, 1, 2),
    "inception_4d/pool_proj": (64, 512, 1, 1, 0),
    "inception_4e/1x1": (256, 528, 1, 1, 0),
    "inception_4e/3x3_reduce": (160, 528, 1, 1, 0),
    "inception_4e/3x3": (320, 160, 3, 1, 1),
    "inception_4e/5x5_reduce": (32, 528, 1, 1, 0),
    "inception_4e/5x5": (128, 32, 5, 1, 2),
    "inception_4e/pool_proj": (128, 528, 1, 1, 0),
    "inception_5a/1x1": (256, 832, 1, 1, 0),
    "inception_5a/3x3_reduce": (160, 832, 1, 1, 0),
    "inception_5a/3x3": (320, 160, 3, 1, 1),
    "inception_5a/5x5_reduce": (32, 832, 1, 1, 0),
    "inception_5a/5x5": (128, 32, 5, 1, 2),
    "inception_5a/pool_proj": (128, 832, 1, 1, 0),
    "inception_5b/1x1": (384, 832, 1, 1, 0),
    "inception_5b/3x3_reduce": (192, 832, 1, 1, 0),
    "inception_5b/3x3": (384, 192, 3, 1, 1),
    "inception_5b/5x5_reduce": (48, 832, 1, 1, 0),
    "inception_5b/5x5": (128, 48, 5, 1, 2),
    "inception_5b/pool_proj": (128, 832, 1, 1, 0),
}
STAGES = [
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
    "inception5a", "inception5b",
]  # fmt: skip
# Feature map [C, H, W] after each stage for a 224 x 224 image (Caffe's ceil-mode pools).
SIZES_224 = {
    "conv1": (64, 112, 112), "maxpool1": (64, 56, 56), "conv2": (64, 56, 56), "conv3": (192, 56, 56),
    "maxpool2": (192, 28, 28), "inception3a": (256, 28, 28), "inception3b": (480, 28, 28),
    "maxpool3": (480, 14, 14), "inception4a": (512, 14, 14), "inception4b": (512, 14, 14),
    "inception4c": (512, 14, 14), "inception4d": (528, 14, 14), "inception4e": (832, 14, 14),
    "maxpool4": (832, 7, 7), "inception5a": (832, 7, 7), "inception5b": (1024, 7, 7),
}  # fmt: skip


def _stage(layer: str) -> str:
    """The torchvision-named stage holding a Caffe layer (conv2/3x3 is torchvision's conv3)."""
    if layer.startswith("inception_"):
        return "inception" + layer.split("/")[0].split("_")[1]
    return {"conv1/7x7_s2": "conv1", "conv2/3x3_reduce": "conv2", "conv2/3x3": "conv3"}[layer]


def _file_key(layer: str, blob: str) -> str:
    return layer.replace("/", "_") + "." + blob


def _module_key(layer: str, blob: str) -> str:
    return f"{_stage(layer)}.{_file_key(layer, blob)}"


def _expected_shapes(divisor: int = 1) -> dict[str, tuple[int, ...]]:
    out = {}
    for layer, (cout, cin, k, _, _) in PROTOTXT_CONVS.items():
        cin = cin if cin == 3 else cin // divisor
        out[_module_key(layer, "weight")] = (cout // divisor, cin, k, k)
        out[_module_key(layer, "bias")] = (cout // divisor,)
    return out


# -- layout -------------------------------------------------------------------


def test_layout_matches_the_caffe_definition():
    net = bvlc_googlenet_stages()
    assert list(net._modules) == STAGES
    state = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert state == _expected_shapes()  # 57 convolutions, weight + bias, nothing else (no BN)
    convs = {name: m for name, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    assert len(convs) == len(PROTOTXT_CONVS)
    for layer, (_, _, k, stride, pad) in PROTOTXT_CONVS.items():
        conv = convs[_module_key(layer, "weight")[: -len(".weight")]]
        assert (conv.kernel_size, conv.stride, conv.padding) == ((k, k), (stride, stride), (pad, pad)), layer
    assert sum(v.numel() for v in net.parameters()) == sum(
        cout * cin * k * k + cout for cout, cin, k, _, _ in PROTOTXT_CONVS.values()
    )


def test_pools_lrn_and_no_batch_norm_as_in_caffe():
    net = bvlc_googlenet_stages()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 4 + 9 and all(p.ceil_mode for p in pools)  # pool1-4 + one per inception block
    for name in ("maxpool1", "maxpool2", "maxpool3", "maxpool4"):  # pool4 too is 3x3/2 (torchvision: 2x2)
        pool = net.get_submodule(name)[0]
        assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 0), name
    block_pool = net.inception4c.get_submodule("inception_4c_pool")
    assert (block_pool.kernel_size, block_pool.stride, block_pool.padding) == (3, 1, 1)
    lrns = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.LocalResponseNorm)]
    assert [n for n, _ in lrns] == ["maxpool1.pool1_norm1", "conv3.conv2_norm2"]
    assert all((m.size, m.alpha, m.beta, m.k) == (5, 1e-4, 0.75, 1.0) for _, m in lrns)
    # LRN after pool1 and after conv2/3x3's ReLU (Caffe: pool1 -> norm1; conv2/3x3 -> relu -> norm2)
    assert isinstance(net.maxpool1[-1], nn.LocalResponseNorm) and isinstance(net.conv3[-2], nn.ReLU)


def test_lrn_is_caffes_across_channel_formula():
    x = torch.randn(2, 7, 3, 3) * 30
    lrn = bvlc_googlenet_stages(8).conv3[-1]
    sq = nn.functional.pad(x.pow(2), (0, 0, 0, 0, 2, 2))  # zero channels beyond the edges
    window = sum(sq[:, i : i + 7] for i in range(5))
    assert torch.allclose(lrn(x), x / (1 + 1e-4 / 5 * window).pow(0.75), rtol=1e-5)


def test_feature_map_sizes_at_224():
    net = bvlc_googlenet_stages().eval()
    x = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        for name, stage in net.named_children():
            x = stage(x)
            assert tuple(x.shape[1:]) == SIZES_224[name], name


def test_tiny_is_the_same_network_at_one_eighth_width():
    tiny = {k: tuple(v.shape) for k, v in bvlc_googlenet_stages(8).state_dict().items()}
    assert tiny == _expected_shapes(8)


def test_random_init_tells_images_apart():
    """From-scratch init: the tiny model's embeddings of different (noise) images
    differ by a fair share of their norm: 0.12 here, tiny_googlenet's 0.13; the
    prototxt's fillers (0.2 biases) give 0.014, and stall a smoke ABE run."""
    model = build_abe_model(ABEConfig(arch="tiny_bvlc_googlenet", pretrained=False, learners=2, embedding_dim=32), seed=0)
    emb = model.eval()(_images(b=6, size=48))[:, 0]
    spread = torch.pdist(emb).mean() / emb.norm(dim=1).mean()
    assert spread > 0.05


# -- weights files --------------------------------------------------------------


def _images(b=3, size=32):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g)


def _converted_file(path, divisor=1, aux=True):
    """A converted-caffemodel-style file: Caffe layer names with '/' -> '_', random
    float32 values, and (like the real model) the auxiliary and final classifiers."""
    g = torch.Generator().manual_seed(1)
    state = {}
    for key, shape in _expected_shapes(divisor).items():
        state[key.split(".", 1)[1]] = torch.randn(shape, generator=g)
    if aux:
        state.update({
            "loss1_conv.weight": torch.zeros(128, 512, 1, 1), "loss1_fc.weight": torch.zeros(1024, 2048),
            "loss1_classifier.bias": torch.zeros(1000), "loss2_fc.bias": torch.zeros(1024),
            "loss3_classifier.weight": torch.zeros(1000, 1024), "loss3_classifier.bias": torch.zeros(1000),
        })  # fmt: skip
    torch.save(state, path)
    return state


def test_converted_file_loads_into_an_embedding_model(tmp_path):
    path = tmp_path / "bvlc.pth"
    state = _converted_file(path)
    cfg = ModelConfig(arch="bvlc_googlenet", embedding_dim=16, pretrained=True, weights=str(path))
    got = build_embedding_model(cfg, backbone_seed=0, head_seed=0).backbone.state_dict()
    assert len(got) == 2 * len(PROTOTXT_CONVS)
    for layer in PROTOTXT_CONVS:
        for blob in ("weight", "bias"):
            assert torch.equal(got[_module_key(layer, blob)], state[_file_key(layer, blob)]), layer


def test_abe_loads_bvlc_from_hub_cache_into_s_c_and_g(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    path = P.hub_cache_path("bvlc_googlenet")
    assert path == tmp_path / "hub" / "checkpoints" / "bvlc_googlenet.pth"
    path.parent.mkdir(parents=True)
    state = _converted_file(path)
    model = build_abe_model(ABEConfig(arch="bvlc_googlenet", learners=2, embedding_dim=64))
    assert torch.equal(model.spatial.conv1.conv1_7x7_s2.weight, state["conv1_7x7_s2.weight"])
    assert torch.equal(model.spatial.inception3b.inception_3b_5x5.bias, state["inception_3b_5x5.bias"])
    c = model.attention_trunk.inception4a.inception_4a_5x5.weight
    g = model.global_embedding.stages.inception4a.inception_4a_5x5.weight
    assert torch.equal(c, state["inception_4a_5x5.weight"]) and torch.equal(g, c)
    assert c.data_ptr() != g.data_ptr()  # C is its own copy
    assert torch.equal(model.global_embedding.stages.inception5b.inception_5b_pool_proj.weight,
                       state["inception_5b_pool_proj.weight"])
    # the M-heads trunk loads the same file
    heads = build_abe_model(ABEConfig(arch="bvlc_googlenet", variant="heads", learners=2, embedding_dim=64))
    for head in heads.global_embeddings:
        assert torch.equal(head.stages.inception4e.inception_4e_1x1.weight, state["inception_4e_1x1.weight"])


def test_missing_file_is_one_line_naming_place_and_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv(P.OFFLINE_ENV, raising=False)  # not downloadable at all: no network attempt
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    expected = tmp_path / "hub" / "checkpoints" / "bvlc_googlenet.pth"
    for build in (
        lambda: build_abe_model(ABEConfig(arch="bvlc_googlenet", learners=2, embedding_dim=64)),
        lambda: build_embedding_model(ModelConfig(arch="bvlc_googlenet"), backbone_seed=0, head_seed=0),
        lambda: P.check_weights("bvlc_googlenet"),
    ):
        with pytest.raises(WeightsNotFoundError) as info:
            build()
        msg = str(info.value)
        assert "\n" not in msg and str(expected) in msg and "pretrained: false" in msg
        assert "bvlc_googlenet.caffemodel" in msg and "conv1_7x7_s2.weight" in msg


def _load_tiny(path):
    net = bvlc_googlenet_stages(8)
    P.load_pretrained(net, "bvlc_googlenet", str(path))
    return net


def test_small_file_loads_and_bad_ones_are_one_line_errors(tmp_path):
    path = tmp_path / "tiny.pth"
    state = _converted_file(path, divisor=8)
    net = _load_tiny(path)
    assert torch.equal(net.inception4d.inception_4d_3x3.weight, state["inception_4d_3x3.weight"])

    def error(broken):
        torch.save(broken, path)
        with pytest.raises(UserError) as info:
            _load_tiny(path)
        msg = str(info.value)
        assert "\n" not in msg and str(path) in msg
        return msg

    # torchvision's 3x3 where Caffe has 5x5: named in the file's terms, with both shapes
    msg = error({**state, "inception_3a_5x5.weight": torch.zeros(4, 2, 3, 3)})
    assert "wrong shape 1: inception_3a_5x5.weight (4, 2, 3, 3) != (4, 2, 5, 5)" in msg
    no_pool_proj = {k: v for k, v in state.items() if k != "inception_5b_pool_proj.bias"}
    assert "missing 1: inception_5b_pool_proj.bias" in error(no_pool_proj)
    # raw Caffe names ('/') are not the documented layout
    raw = {k.replace("_7x7_s2", "/7x7_s2"): v for k, v in state.items()}
    msg = error(raw)
    assert "missing 2: conv1_7x7_s2.weight" in msg and "unexpected 2: conv1/7x7_s2.weight" in msg


def test_tiny_has_no_pretrained_weights_and_input_conventions():
    with pytest.raises(ConfigError, match="tiny_bvlc_googlenet"):
        build_embedding_model(ModelConfig(arch="tiny_bvlc_googlenet", pretrained=True), backbone_seed=0, head_seed=0)
    with pytest.raises(ConfigError, match="abe.pretrained"):
        build_abe_model(ABEConfig(arch="tiny_bvlc_googlenet", pretrained=True))
    full = build_embedding_model(ModelConfig(arch="bvlc_googlenet", pretrained=False, embedding_dim=8),
                                 backbone_seed=0, head_seed=0)
    norm = full.normalization  # BVLC's BGR 0-255 minus train_val.prototxt's mean_value
    assert norm.bgr and norm.scale == 1.0 and norm.mean.flatten().tolist() == [104.0, 117.0, 123.0]
    assert norm.std.flatten().tolist() == [1.0, 1.0, 1.0] and full.embedding.in_features == 1024
    tiny = build_embedding_model(ModelConfig(arch="tiny_bvlc_googlenet", pretrained=False, embedding_dim=8),
                                 backbone_seed=0, head_seed=0)
    assert tiny.normalization.scale == 255.0 and not tiny.normalization.bgr  # from scratch: ImageNet scaling


# -- models on the BVLC trunk -----------------------------------------------------


def _abe(**kw):
    base = {"arch": "tiny_bvlc_googlenet", "pretrained": False, "learners": 2, "embedding_dim": 16}
    base.update(kw)
    return build_abe_model(ABEConfig(**base), seed=0)


@pytest.mark.parametrize("size", [32, 48, 64])
def test_embedding_model_on_tiny_bvlc(size):
    cfg = ModelConfig(arch="tiny_bvlc_googlenet", embedding_dim=24, pretrained=False)
    model = build_embedding_model(cfg, backbone_seed=0, head_seed=0)
    out = model(_images(b=4, size=size))
    assert out.shape == (4, 24) and torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)
    assert model.embedding.in_features == 128


def test_abe_on_bvlc_has_the_papers_s_c_g_cuts():
    model = _abe(learners=3, embedding_dim=12)
    assert list(model.spatial._modules) == STAGES[:8]  # S: up to pool3
    assert list(model.attention_trunk._modules) == ["inception4a", "inception4b", "inception4c", "inception4d", "inception4e"]
    assert list(model.global_embedding.stages._modules) == STAGES[8:]  # G: 4a .. 5b, pool4 included
    conv = model.attention_convs[0]  # C's 832 channels -> S's 480 (/ 8)
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (104, 60, (1, 1))
    assert not {p.data_ptr() for p in model.attention_trunk.parameters()} & {
        p.data_ptr() for p in model.global_embedding.parameters()
    }
    x = _images()
    out = model(x)
    assert out.shape == (3, 3, 4)
    masks = model.attention_masks(x)
    assert masks.shape == (3, 3, 2, 2) and ((masks > 0) & (masks < 1)).all()
    # B_m(x) = G(S(x) * sigmoid(A'_m(C(S(x))))), learner by learner
    model.eval()
    with torch.no_grad():
        out = model(x)
        s = model.spatial(model.normalization(x))
        c = model.attention_trunk(s)
        for m, conv in enumerate(model.attention_convs):
            assert torch.allclose(out[:, m], model.global_embedding(s * torch.sigmoid(conv(c))), atol=1e-5)


def test_heads_on_bvlc_have_one_g_per_head():
    model = _abe(variant="heads", learners=4, embedding_dim=16)
    out = model(_images())
    assert out.shape == (3, 4, 4)
    g0, g1 = model.global_embeddings[0], model.global_embeddings[1]
    w0, w1 = g0.stages.inception5b.inception_5b_5x5.weight, g1.stages.inception5b.inception_5b_5x5.weight
    assert torch.equal(w0, w1) and w0.data_ptr() != w1.data_ptr()
    assert not torch.equal(g0.embedding.weight, g1.embedding.weight)
    total = sum(p.numel() for p in model.parameters())
    assert total == sum(p.numel() for p in model.spatial.parameters()) + 4 * sum(p.numel() for p in g0.parameters())


@pytest.mark.parametrize("branch", ["pool2", "inception3a", "pool3", "inception4b"])
def test_bvlc_branch_points_and_depths(branch):
    for depth in (1, 5):
        model = _abe(branch_point=branch, attention_depth=depth)
        assert len(model.attention_trunk) == depth
        assert model(_images()).shape == (3, 2, 8)


def test_gradients_reach_every_part_of_abe_on_bvlc():
    model = _abe().train()
    model(_images()).pow(2).sum().backward()
    params = dict(model.named_parameters())
    for name in ("spatial.conv1.conv1_7x7_s2.weight", "attention_trunk.inception4a.inception_4a_5x5.weight",
                 "attention_convs.1.weight", "global_embedding.stages.inception5b.inception_5b_1x1.bias",
                 "global_embedding.embedding.weight"):
        assert params[name].grad.abs().sum() > 0, name


# -- ABE Table 1 ------------------------------------------------------------------

# Rows of ABE Table 1 (tables/abe/table1.yaml): variant, M, ensemble dim, printed
# #params (x1e7) and FLOPs (multiply-accumulates, x1e9).
TABLE1 = {
    "1-head-512": ("heads", 1, 512, 0.65, 1.58),
    "2-heads-512": ("heads", 2, 512, 1.18, 2.25),
    "4-heads-512": ("heads", 4, 512, 2.24, 3.60),
    "8-heads-512": ("heads", 8, 512, 4.36, 6.28),
    "ABE-1-512": ("abe", 1, 512, 0.97, 2.21),
    "ABE-2-512": ("abe", 2, 512, 0.98, 2.96),
    "ABE-4-512": ("abe", 4, 512, 1.05, 4.46),
    "ABE-8-512": ("abe", 8, 512, 1.20, 7.46),
    "ABE-1-64": ("abe", 1, 64, 0.92, 2.21),
    "ABE-2-128": ("abe", 2, 128, 0.96, 2.96),
    "ABE-4-256": ("abe", 4, 256, 1.04, 4.46),
}


@pytest.mark.slow
@pytest.mark.parametrize("row", list(TABLE1))
def test_table1_params_and_flops_on_bvlc_match_the_paper(row):
    variant, m, dim, params, gflops = TABLE1[row]
    cfg = ABEConfig(arch="bvlc_googlenet", pretrained=False, variant=variant, learners=m, embedding_dim=dim)
    stats = model_stats(build_abe_model(cfg, seed=0), 224)
    # within 1%, and equal to the paper's two printed decimals
    assert stats["params"] / 1e7 == pytest.approx(params, rel=0.01)
    assert stats["macs"] / 1e9 == pytest.approx(gflops, rel=0.01)
    assert round(stats["params"] / 1e7, 2) == params and round(stats["macs"] / 1e9, 2) == gflops
