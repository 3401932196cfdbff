"""Mechanism tests (`pytest -m mechanism`): the effects the methods are built to
produce, shown on tiny runs where they must appear, each one deterministic and
failing when its mechanism is switched off.

- DM²'s mutual loss pulls the members' relation matrices together;
- temporal diversity updates member l on about p^l of the steps;
- view diversity gives members different pixels; without it, identical ones;
- ABE's divergence loss lowers the similarity of an image's embeddings by two
  learners (Fig. 5's self pairs).
"""

from __future__ import annotations


import pytest
import torch

from benchmark import config as C
from benchmark.train.common import generator

pytestmark = pytest.mark.mechanism


def _members(n: int, dim: int = 8) -> list:
    return [C.ModelConfig(arch="tiny_inception", pretrained=False, embedding_dim=dim) for _ in range(n)]


def _cohort(lam: float, members: int = 2, temporal: bool = False, view_diversity: bool = False):
    from benchmark.train.cohort import CohortMethod

    cfg = C.normalize(C.TrainConfig(
        method="cohort", seed=3,
        data=C.DataConfig(batch_size=16, images_per_class=4, crop_size=16, resize_size=16),
        loss=C.LossConfig(name="triplet", params={"margin": 0.2}), optim=C.OptimConfig(lr=3e-3, weight_decay=0.0),
        cohort=C.CohortConfig(members=_members(members), lambda_mutual=lam, lambda_warmup_epochs=0.0,
                              temporal=C.TemporalConfig(enabled=temporal), view_diversity=view_diversity)))
    return CohortMethod(cfg, num_classes=4, device=torch.device("cpu"))


def _data(views: int = 1, n: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, views, 3, 16, 16), dtype=torch.uint8, generator=g)
    return images, torch.arange(4).repeat_interleave(n // 4)


def _psi_gap(method, images) -> float:
    from benchmark.losses import relation_matrix

    out = method.embed(images)
    psis = [relation_matrix(out[f"member{l + 1}"]) for l in range(len(method.models))]
    return float(((psis[0] - psis[1]) ** 2).mean())


def test_mutual_loss_pulls_the_relation_matrices_together():
    images, labels = _data()
    held, _ = _data(seed=1)
    gaps = {}
    for lam in (0.0, 50.0):
        m = _cohort(lam)
        start = _psi_gap(m, held[:, 0])
        for step in range(40):
            m.train_step(images, labels, 10.0, generator(3, step))
        gaps[lam] = (start, _psi_gap(m, held[:, 0]))
    # the members start equally far apart (same initialisation seeds); only λ > 0 brings them together
    assert gaps[0.0][0] == pytest.approx(gaps[50.0][0])
    assert gaps[50.0][1] < 0.5 * gaps[0.0][1], gaps


def test_temporal_diversity_updates_member_l_on_about_p_l_of_the_steps():
    m = _cohort(20.0, members=4, temporal=True)
    counts = [0] * 4
    for l, opt in enumerate(m.optimizers):
        real = opt.step

        def step(*a, l=l, real=real, **k):
            counts[l] += 1
            return real(*a, **k)

        opt.step = step
    images, labels = _data()
    steps = 240
    for s in range(steps):
        m.train_step(images, labels, 10.0, generator(3, s))
    freq = [c / steps for c in counts]
    assert freq[0] == 1.0
    for f, p in zip(freq[1:], (0.5, 0.25, 0.125)):
        assert abs(f - p) < 0.07, freq
    off = _cohort(20.0, members=4, temporal=False)
    assert off.probabilities == [1.0, 1.0, 1.0, 1.0]


def test_view_diversity_gives_members_different_pixels_and_none_the_same(tmp_path):
    from benchmark.data import TrainBatches, ensure_synthetic, read_dataset

    root = ensure_synthetic("cub200", C.SyntheticConfig(classes=8, images_per_class=4, image_size=48), tmp_path)
    split = read_dataset("cub200", root).train
    data = C.DataConfig(dataset="cub200", batch_size=8, images_per_class=2, crop_size=32, resize_size=36,
                        train_transform="multi_resolution_crop", num_workers=0)
    for vd in (True, False):
        m = _cohort(20.0, members=2, view_diversity=vd)
        seen: list[list[torch.Tensor]] = [[], []]
        for l, model in enumerate(m.models):
            model.register_forward_hook(lambda mod, inp, out, l=l: seen[l].append(inp[0].detach().clone()))
        images, labels = next(iter(TrainBatches(data, split, views=m.views, seed=0).epoch(0, 1)))
        m.train_step(images, labels, 10.0, generator(3, 0))
        same = torch.equal(seen[0][0], seen[1][0])
        assert same is (not vd), f"view_diversity={vd}: members saw {'the same' if same else 'different'} pixels"


def _abe(divergence: bool):
    from benchmark.train.abe import ABEMethod

    cfg = C.normalize(C.TrainConfig(
        method="abe", seed=1,
        abe=C.ABEConfig(arch="tiny_googlenet", pretrained=False, learners=4, embedding_dim=32,
                        divergence=divergence, lambda_div=1.0, div_margin=4.0, attention_depth=2),
        loss=C.LossConfig(name="abe_contrastive", params={"margin": 1.0, "pairs": "all"}),
        data=C.DataConfig(batch_size=16, images_per_class=4, crop_size=48, resize_size=48),
        optim=C.OptimConfig(lr=1e-3, weight_decay=0.0)))
    return ABEMethod(cfg, num_classes=4, device=torch.device("cpu"))


def _self_cosine(method, images) -> float:
    emb = method.learner_embeddings(images)  # [B, M, d], L2-normalised
    sims = torch.einsum("bmd,bnd->bmn", emb, emb)
    M = emb.shape[1]
    off = ~torch.eye(M, dtype=torch.bool)
    return float(sims[:, off].mean())


def test_divergence_loss_lowers_the_self_pair_similarity_of_abe_learners():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 1, 3, 48, 48), dtype=torch.uint8, generator=g)
    labels = torch.arange(4).repeat_interleave(4)
    held = torch.randint(0, 256, (16, 3, 48, 48), dtype=torch.uint8, generator=g)
    out = {}
    for div in (False, True):
        m = _abe(div)
        for step in range(60):
            m.train_step(images, labels, 0.0, generator(1, step))
        out[div] = _self_cosine(m, held)
    # seen here: 0.78 without, 0.27 with (a wide hinge margin keeps L_div active on a tiny net)
    assert out[True] < out[False] - 0.2, out
