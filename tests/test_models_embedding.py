"""Embedding models: output, input conventions, frozen BN, seeding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.config import ModelConfig
from benchmark.errors import ConfigError
from benchmark.models import build_embedding_model, trainable_parameters
from benchmark.models.normalize import caffe_bgr, googlenet_tf, imagenet

TINY = ("tiny_inception", "tiny_resnet", "tiny_googlenet")


def _tiny(arch="tiny_resnet", dim=16, freeze_bn=False, backbone_seed=0, head_seed=0):
    cfg = ModelConfig(arch=arch, embedding_dim=dim, pretrained=False, freeze_bn=freeze_bn)
    return build_embedding_model(cfg, backbone_seed=backbone_seed, head_seed=head_seed)


def _images(b=4, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("arch", TINY)
@pytest.mark.parametrize("size", [48, 56, 64])
def test_tiny_embeddings_have_shape_and_unit_norm(arch, size):
    model = _tiny(arch, dim=24)
    out = model(_images(size=size))
    assert out.shape == (4, 24)
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)
    # uint8 and float 0-255 inputs are the same input
    model.eval()
    x = _images(size=size)
    assert torch.allclose(model(x), model(x.float()), atol=1e-6)


def test_normalisations_follow_each_convention():
    rgb = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
    assert caffe_bgr()(rgb).flatten().tolist() == [30 - 104, 20 - 117, 10 - 128]
    assert torch.allclose(googlenet_tf()(torch.tensor([0.0, 127.5, 255.0]).view(1, 3, 1, 1)).flatten(),
                          torch.tensor([-1.0, 0.0, 1.0]))
    out = imagenet()(torch.full((1, 3, 1, 1), 255.0)).flatten()
    assert torch.allclose(out, (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


@pytest.mark.parametrize("norm", [caffe_bgr, imagenet, googlenet_tf])
def test_normalisation_gives_planar_float_whatever_the_input_layout(norm):
    # Training batches are channels-last uint8 views of a [B,V,H,W,3] storage;
    # the network must see exactly the tensor a planar batch gives.
    planar = _images(b=3, size=16)
    storage = torch.empty(3, 2, 16, 16, 3, dtype=torch.uint8)
    storage[:, 1] = planar.permute(0, 2, 3, 1)
    view = storage.permute(0, 1, 4, 2, 3)[:, 1]
    assert not view.is_contiguous() and torch.equal(view, planar)
    out = norm()(view)
    assert out.is_contiguous() and torch.equal(out, norm()(planar))


def test_bn_inception_uses_caffe_input_convention():
    cfg = ModelConfig(arch="bn_inception", embedding_dim=8, pretrained=False)
    model = build_embedding_model(cfg, backbone_seed=0, head_seed=0)
    assert model.normalization.bgr and model.normalization.mean.flatten().tolist() == [104.0, 117.0, 128.0]
    assert model.embedding.in_features == 1024


@pytest.mark.parametrize("arch", TINY)
def test_freeze_bn_keeps_running_stats_and_affine_fixed(arch):
    model = _tiny(arch, freeze_bn=True)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model.train()
    assert model.training and all(not bn.training for bn in bns)
    model(_images()).sum().backward()
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert all(not p.requires_grad for bn in bns for p in bn.parameters())
    trainable = {id(p) for p in trainable_parameters(model)}
    assert id(model.embedding.weight) in trainable
    assert not any(id(p) in trainable for bn in bns for p in bn.parameters())


def test_without_freeze_bn_running_stats_move():
    model = _tiny(freeze_bn=False).train()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model(_images())
    assert bn.training and not torch.equal(before, bn.running_mean)


def test_seeds_fix_backbone_and_head_independently_of_global_rng():
    torch.manual_seed(1)
    a = _tiny(backbone_seed=3, head_seed=1)
    state = torch.random.get_rng_state()
    b = _tiny(backbone_seed=3, head_seed=2)  # different global state, different head
    assert torch.equal(state, torch.random.get_rng_state())  # construction leaves the global RNG alone
    for (k, va), vb in zip(a.backbone.state_dict().items(), b.backbone.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.embedding.weight, b.embedding.weight)
    torch.manual_seed(99)
    c = _tiny(backbone_seed=3, head_seed=1)
    assert torch.equal(a.embedding.weight, c.embedding.weight)
    d = _tiny(backbone_seed=4, head_seed=1)
    assert not torch.equal(a.backbone.conv1.weight, d.backbone.conv1.weight)
    assert torch.equal(a.embedding.weight, d.embedding.weight)


def test_unknown_arch_is_config_error():
    with pytest.raises(ConfigError, match="model.arch"):
        build_embedding_model(ModelConfig(arch="vgg16", pretrained=False), backbone_seed=0, head_seed=0)


def test_odd_feature_maps_work_in_bn_inception_style_blocks():
    # 48 px leaves a 3x3 map at the second stride-2 block (see bn_inception._block).
    model = _tiny("tiny_inception")
    assert model(_images(size=40)).shape == (4, 16)
