"""The DM² cohort trainer: temporal diversity, λ warm-up, skipped members, view diversity."""

from __future__ import annotations

import dataclasses

import numpy as np

import pytest
import torch

from benchmark import config as C
from benchmark.train.cohort import CohortMethod, lambda_at, update_probabilities
from benchmark.train.common import generator


def members(*archs):
    return [C.ModelConfig(arch=a, pretrained=False, embedding_dim=16) for a in archs]


def test_temporal_probabilities_halve_per_member():
    probs = update_probabilities(members(*["tiny_inception"] * 4), C.TemporalConfig(enabled=True, base=0.5))
    assert probs == [1.0, 0.5, 0.25, 0.125]


def test_temporal_probabilities_per_architecture_in_mixed_cohorts():
    # DM² Sec. 4.7: 3xBNI + 1xR50 -> (1, .5, .25, 1); 2+2 -> (1, .5, 1, .5)
    t = C.TemporalConfig(enabled=True, base=0.5, per_architecture=True)
    assert update_probabilities(members("bn_inception", "bn_inception", "bn_inception", "resnet50"), t) == [1, 0.5, 0.25, 1]
    assert update_probabilities(members("bn_inception", "bn_inception", "resnet50", "resnet50"), t) == [1, 0.5, 1, 0.5]
    assert update_probabilities(members("bn_inception", "resnet50", "resnet50", "resnet50"), t) == [1, 1, 0.5, 0.25]
    flat = dataclasses.replace(t, per_architecture=False)
    assert update_probabilities(members("bn_inception", "resnet50", "resnet50", "resnet50"), flat) == [1, 0.5, 0.25, 0.125]
    assert update_probabilities(members("a", "b"), C.TemporalConfig(enabled=False)) == [1.0, 1.0]


def test_lambda_warms_up_linearly_then_stays():
    c = C.CohortConfig(lambda_mutual=20.0, lambda_warmup_epochs=3.0)
    assert lambda_at(c, 0.0) == 0.0
    assert lambda_at(c, 1.5) == pytest.approx(10.0)
    assert lambda_at(c, 3.0) == 20.0
    assert lambda_at(c, 7.0) == 20.0
    assert lambda_at(C.CohortConfig(lambda_mutual=5.0, lambda_warmup_epochs=0.0), 0.0) == 5.0


def _cohort(view_diversity=True, temporal=True, lam=20.0):
    cfg = C.TrainConfig(
        method="cohort",
        data=C.DataConfig(batch_size=12, images_per_class=3, crop_size=32, resize_size=32),
        loss=C.LossConfig(name="triplet", params={"margin": 0.2}),
        optim=C.OptimConfig(lr=1e-3),
        cohort=C.CohortConfig(members=members(*["tiny_inception"] * 4), lambda_mutual=lam, lambda_warmup_epochs=0.0,
                              temporal=C.TemporalConfig(enabled=temporal), view_diversity=view_diversity),
        device="cpu",
    )
    return CohortMethod(C.normalize(cfg), num_classes=4, device=torch.device("cpu"))


def _batch(views):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, views, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(4).repeat_interleave(3)
    return images, labels


def test_members_not_drawn_for_update_keep_their_weights():
    method = _cohort()
    assert method.views == 4
    images, labels = _batch(4)
    before = [[p.detach().clone() for p in m.parameters()] for m in method.models]
    gen = generator(0, "test")
    draws = torch.rand(4, generator=generator(0, "test")).tolist()  # what train_step will draw
    expected = [d < p for d, p in zip(draws, method.probabilities)]
    out = method.train_step(images, labels, 5.0, gen)
    assert out["updated_members"] == sum(expected)
    for l, m in enumerate(method.models):
        changed = any(not torch.equal(a, b) for a, b in zip(before[l], m.parameters()))
        assert changed == expected[l], f"member {l + 1}: updated={changed}, drawn={expected[l]}"
        if not expected[l]:
            assert all(p.grad is None for p in m.parameters())
    assert expected[0]  # p^1 = 1: the first member is always updated
    assert not all(expected), "this seed must leave a member out, or the test checks nothing"


def test_mutual_term_is_logged_only_with_lambda_and_views_are_shared_without_view_diversity():
    method = _cohort(view_diversity=False, temporal=False)
    assert method.views == 1
    images, labels = _batch(1)
    out = method.train_step(images, labels, 5.0, generator(0))
    assert out["updated_members"] == 4 and out["mutual_loss"] > 0 and out["lambda"] == 20.0
    independent = _cohort(lam=0.0, temporal=False)
    out = independent.train_step(*_batch(4), 5.0, generator(0))
    assert "mutual_loss" not in out and out["lambda"] == 0.0


def test_ensemble_is_the_concatenation_of_members():
    method = _cohort()
    images, _ = _batch(1)
    out = method.embed(images[:, 0])
    assert set(out) == {"member1", "member2", "member3", "member4", "ensemble"}
    assert torch.allclose(out["ensemble"], torch.cat([out[f"member{i}"] for i in range(1, 5)], dim=1))
    assert torch.allclose(out["member1"].norm(dim=1), torch.ones(12), atol=1e-5)


def test_abe_pair_cosines_sample_the_right_kinds_of_pairs():
    from benchmark.train.abe import pair_cosines

    labels = torch.arange(5).repeat_interleave(4)
    # embedding of (image n, learner m) = one-hot(label) + one-hot(n) + one-hot(m), / sqrt 3:
    # same learner, same label, other image: 2/3 (an image paired with itself would give 1);
    # same learner, other label: 1/3; same image, other learner: 2/3
    N, M = len(labels), 3
    emb = torch.zeros(N, M, 5 + N + M)
    for n in range(N):
        for m in range(M):
            emb[n, m, labels[n]] = emb[n, m, 5 + n] = emb[n, m, 5 + N + m] = 1.0
    emb = emb / 3**0.5
    out = pair_cosines(emb, labels, max_pairs=500)
    assert len(out["positive"]) == 500 and np.allclose(out["positive"], 2 / 3, atol=1e-6)
    assert len(out["negative"]) > 300 and np.allclose(out["negative"], 1 / 3, atol=1e-6)
    assert len(out["self"]) > 0 and np.allclose(out["self"], 2 / 3, atol=1e-6)


def _abe_method(divergence: bool, lam: float = 0.7):
    from benchmark.train.abe import ABEMethod

    cfg = C.normalize(C.TrainConfig(
        method="abe",
        abe=C.ABEConfig(arch="tiny_googlenet", pretrained=False, learners=2, embedding_dim=16,
                        divergence=divergence, lambda_div=lam, div_margin=1e3, attention_depth=2),
        loss=C.LossConfig(name="abe_contrastive", params={"margin": 1.0, "pairs": "all"}),
        data=C.DataConfig(batch_size=8, images_per_class=2, crop_size=48, resize_size=56),
        optim=C.OptimConfig(lr=1e-3),
    ))
    return ABEMethod(cfg, num_classes=4, device=torch.device("cpu"))


def test_abe_step_adds_the_weighted_divergence_only_when_switched_on():
    """Same init and batch: with L_div the step's loss is L_metric + λ_div·L_div of
    the embeddings it starts from; without it, L_metric alone; both update the model.
    (A wide divergence margin keeps the hinge active on an untrained model.)"""
    from benchmark.losses import divergence_loss

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 1, 3, 48, 48), dtype=torch.uint8, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    on, off = _abe_method(True), _abe_method(False)
    on.model.train()
    with torch.no_grad():
        div = float(divergence_loss(on.model(images[:, 0]), on.abe.div_margin))
    before = [p.detach().clone() for p in off.model.parameters()]
    # the step's values stay on the device as 0-d tensors; the loop reads them in bulk
    out_on = {k: float(v) for k, v in on.train_step(images, labels, 0.0, generator(0, 0, "t")).items()}
    out_off = {k: float(v) for k, v in off.train_step(images, labels, 0.0, generator(0, 0, "t")).items()}
    assert "divergence_loss" not in out_off and out_on["divergence_loss"] == pytest.approx(div, rel=1e-4)
    assert out_on["metric_loss"] == pytest.approx(out_off["metric_loss"], rel=1e-5)
    assert out_on["loss"] - out_off["loss"] == pytest.approx(0.7 * div, rel=1e-4, abs=1e-6)
    assert div > 0 and any(not torch.equal(a, b) for a, b in zip(before, off.model.parameters()))


def test_distillation_checks_its_teachers_file_and_runs_only_the_chosen_members(tmp_path):
    from benchmark.errors import UserError
    from benchmark.train.checkpoints import save
    from benchmark.train.distill import DistillMethod

    def teacher_cfg(lam):
        return C.normalize(C.TrainConfig(
            method="cohort", cohort=C.CohortConfig(members=members("tiny_inception", "tiny_inception"), lambda_mutual=lam),
            data=C.DataConfig(batch_size=8, images_per_class=2, crop_size=48, resize_size=56)))

    teacher = CohortMethod(teacher_cfg(20.0), 4, torch.device("cpu"))
    path = tmp_path / "final.pt"
    save({"config": C.semantic_dict(teacher_cfg(20.0)), "weights": teacher.weights()}, path)

    def student(teacher_lam, chosen=None):
        cfg = C.normalize(C.TrainConfig(
            method="distill", data=teacher_cfg(20.0).data,
            distill=C.DistillConfig(teacher=teacher_cfg(teacher_lam), teacher_members=chosen, loss="rkd_da",
                                    student=C.ModelConfig(arch="tiny_inception", pretrained=False, embedding_dim=16))))
        C.check(cfg)
        return DistillMethod(cfg, 4, torch.device("cpu"), path)

    with pytest.raises(UserError, match="not from the teacher job"):
        student(10.0)  # the file belongs to the lambda-20 teacher
    images = torch.randint(0, 256, (4, 3, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    calls = []
    m = student(20.0, chosen=[2])
    for i, model in enumerate(m.teacher.models):
        model.register_forward_hook(lambda *_, i=i: calls.append(i))
    target = m.teacher_embedding(images)
    assert calls == [1] and torch.allclose(target, teacher.embed(images)["member2"])  # member 1 never ran
    calls.clear()
    assert torch.allclose(student(20.0).teacher_embedding(images), teacher.embed(images)["ensemble"])


@pytest.mark.parametrize("lam", [20.0, 0.0])
def test_lean_memory_computes_the_same_numbers(lam):
    """cohort.lean_memory frees each member's graph before the next is made; BN
    trains (its running statistics move once per forward, as without it), the
    miner draws, temporal diversity skips members: weights and statistics stay
    bit-identical to the default step."""
    def run(lean):
        member = C.ModelConfig(arch="tiny_inception", pretrained=False, embedding_dim=16, freeze_bn=False)
        cfg = C.normalize(C.TrainConfig(
            method="cohort",
            data=C.DataConfig(batch_size=12, images_per_class=3, crop_size=32, resize_size=32),
            loss=C.LossConfig(name="triplet", params={"margin": 0.2}, miner="distance_weighted",
                              miner_params={"cutoff": 0.5, "nonzero_loss_cutoff": 1.4}),
            optim=C.OptimConfig(lr=1e-3),
            cohort=C.CohortConfig(members=[member] * 3, lambda_mutual=lam, lambda_warmup_epochs=0.0,
                                  lean_memory=lean),
            device="cpu",
        ))
        torch.manual_seed(0)
        method = CohortMethod(cfg, num_classes=4, device=torch.device("cpu"))
        images, labels = _batch(3)
        gen = generator(0, "lean")
        outs = [{k: float(v) for k, v in method.train_step(images, labels, 1.0, gen).items()} for _ in range(4)]
        return outs, [m.state_dict() for m in method.models]

    (outs_a, states_a), (outs_b, states_b) = run(False), run(True)
    assert outs_a == outs_b
    assert sum(o["updated_members"] for o in outs_a) < 12  # temporal diversity skipped some
    for a, b in zip(states_a, states_b):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
