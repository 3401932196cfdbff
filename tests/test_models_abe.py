"""ABE-M and M-heads: which modules are shared, shapes, variants, equations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.config import ABEConfig
from benchmark.errors import ConfigError
from benchmark.models import build_abe_model

SIZE = 32  # tiny GoogLeNet: S at pool3 is 2x2 here


def _abe(**kw):
    base = dict(arch="tiny_googlenet", pretrained=False, learners=2, embedding_dim=16)
    base.update(kw)
    return build_abe_model(ABEConfig(**base))


def _images(b=3, size=SIZE):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g)


def _param_names(model, prefix):
    return [n for n, _ in model.named_parameters() if n.startswith(prefix)]


def test_abe_has_one_s_one_c_one_g_and_m_attention_convs():
    m2, m8 = _abe(learners=2, embedding_dim=16), _abe(learners=8, embedding_dim=16)
    for model, M in ((m2, 2), (m8, 8)):
        assert len(model.attention_convs) == M
        assert not hasattr(model, "global_embeddings")
        names = [n for n, _ in model.named_parameters()]
        assert set(n.split(".")[0] for n in names) == {"spatial", "attention_trunk", "attention_convs", "global_embedding"}
        assert len(_param_names(model, "attention_convs.")) == 2 * M  # weight + bias per learner
        conv = model.attention_convs[0]
        # C's output (inception 4e: 832/8) -> S's output (pool3: 480/8)
        assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (104, 60, (1, 1))
        assert model.global_embedding.embedding.out_features == 16 // M
    # Everything but the attention convs exists once, whatever M is.
    for prefix in ("spatial.", "attention_trunk.", "global_embedding.stages."):
        assert len(_param_names(m2, prefix)) == len(_param_names(m8, prefix)) > 0
    # C is its own copy of inception 4a-4e: no parameter shared with G
    c_ptrs = {p.data_ptr() for p in m2.attention_trunk.parameters()}
    assert not c_ptrs & {p.data_ptr() for p in m2.global_embedding.parameters()}
    assert list(m2.attention_trunk._modules) == ["inception4a", "inception4b", "inception4c", "inception4d", "inception4e"]
    assert not any(isinstance(m, nn.MaxPool2d) for m in m2.attention_trunk.children())


def test_heads_have_shared_s_and_one_g_per_head():
    model = _abe(variant="heads", learners=4, embedding_dim=16)
    assert not hasattr(model, "attention_convs") and not hasattr(model, "attention_trunk")
    assert len(model.global_embeddings) == 4
    per_head = len(_param_names(model, "global_embeddings.0."))
    assert per_head > 2
    for m in range(4):
        assert len(_param_names(model, f"global_embeddings.{m}.")) == per_head
        assert model.global_embeddings[m].embedding.out_features == 4
    ptrs = [{p.data_ptr() for p in g.parameters()} for g in model.global_embeddings]
    assert all(not (ptrs[i] & ptrs[j]) for i in range(4) for j in range(i + 1, 4))
    # same backbone start, different embedding-layer init
    g0, g1 = model.global_embeddings[0], model.global_embeddings[1]
    assert torch.equal(g0.stages.inception5b.branch1.conv.weight, g1.stages.inception5b.branch1.conv.weight)
    assert not torch.equal(g0.embedding.weight, g1.embedding.weight)
    total = sum(p.numel() for p in model.parameters())
    s = sum(p.numel() for p in model.spatial.parameters())
    assert total == s + 4 * sum(p.numel() for p in g0.parameters())


@pytest.mark.parametrize("variant", ["abe", "heads"])
@pytest.mark.parametrize("M", [1, 2, 8])
def test_output_shapes(variant, M):
    model = _abe(variant=variant, learners=M, embedding_dim=64)
    out = model(_images())
    assert out.shape == (3, M, 64 // M)
    if variant == "abe":
        masks = model.attention_masks(_images())
        assert masks.shape == (3, M, 2, 2)
        assert ((masks > 0) & (masks < 1)).all()


def test_batched_forward_equals_equation_7():
    """B_m(x) = G(S(x) * sigmoid(A'_m(C(S(x))))), computed learner by learner."""
    model = _abe(learners=3, embedding_dim=12).eval()
    x = _images()
    with torch.no_grad():
        out = model(x)
        s = model.spatial(model.normalization(x))
        c = model.attention_trunk(s)
        for m, conv in enumerate(model.attention_convs):
            expected = model.global_embedding(s * torch.sigmoid(conv(c)))
            assert torch.allclose(out[:, m], expected, atol=1e-5)


def test_normalize_embeddings_option():
    out = _abe(normalize_embeddings=True)(_images())
    assert torch.allclose(out.norm(dim=-1), torch.ones(3, 2), atol=1e-5)
    raw = _abe(normalize_embeddings=False)(_images())
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(3, 2), atol=1e-3)


@pytest.mark.parametrize("depth", range(1, 8))
def test_attention_depths_build_and_run(depth):
    model = _abe(attention_depth=depth)
    assert len(model.attention_trunk) == depth
    assert model(_images()).shape == (3, 2, 8)
    assert model.attention_masks(_images()).shape == (3, 2, 2, 2)


@pytest.mark.parametrize(
    "branch, first_block, spatial",
    [("pool2", "inception3a", 4), ("inception3a", "inception3b", 4), ("inception3b", "inception4a", 4),
     ("pool3", "inception4a", 2), ("inception4a", "inception4b", 2), ("inception4b", "inception4c", 2)],
)
def test_branch_points_build_and_run(branch, first_block, spatial):
    model = _abe(branch_point=branch, attention_depth=5)
    trunk = list(model.attention_trunk._modules)
    assert trunk[0] == first_block and len(trunk) == 5
    assert model(_images()).shape == (3, 2, 8)
    assert model.attention_masks(_images()).shape == (3, 2, spatial, spatial)


def test_impossible_settings_are_config_errors():
    with pytest.raises(ConfigError, match="abe.attention_depth"):
        _abe(branch_point="inception4b", attention_depth=6)  # only 4c..5b follow
    with pytest.raises(ConfigError, match="abe.branch_point"):
        _abe(branch_point="pool9")
    with pytest.raises(ConfigError, match="abe.arch"):
        _abe(arch="tiny_resnet")
    with pytest.raises(ConfigError, match="abe.embedding_dim"):
        _abe(learners=3, embedding_dim=16)
    with pytest.raises(ConfigError, match="abe.variant"):
        _abe(variant="heads").attention_masks(_images())


def test_freeze_bn():
    model = _abe(freeze_bn=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not bn.training for bn in bns)
    assert all(not p.requires_grad for bn in bns for p in bn.parameters())
    assert model.attention_convs[0].weight.requires_grad


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_seed_fixes_the_model():
    cfg = ABEConfig(arch="tiny_googlenet", pretrained=False, learners=2, embedding_dim=16)
    torch.manual_seed(0)
    a = build_abe_model(cfg, seed=5)
    torch.manual_seed(1)
    assert _same(a, build_abe_model(cfg, seed=5))
    assert not _same(a, build_abe_model(cfg, seed=6))
    # seed=None: drawn from the global RNG, so a seeded caller is deterministic too
    torch.manual_seed(7)
    c = build_abe_model(cfg)
    torch.manual_seed(7)
    assert _same(c, build_abe_model(cfg))


def test_gradients_reach_every_learner_part():
    model = _abe(learners=2).train()
    model(_images()).pow(2).sum().backward()
    for name in ("spatial.conv1.conv.weight", "attention_trunk.inception4a.branch1.conv.weight",
                 "attention_convs.1.weight", "global_embedding.embedding.weight"):
        assert dict(model.named_parameters())[name].grad.abs().sum() > 0, name
