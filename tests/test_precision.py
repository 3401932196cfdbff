"""Mixed precision (TrainConfig.precision): identity, autocast where the networks run,
float32 where losses and distances are computed, loss scaling for fp16, and the
loop reading the step values in bulk."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark import config as C
from benchmark.errors import ConfigError
from benchmark.train.cohort import CohortMethod
from benchmark.train.common import generator
from benchmark.train.loop import RunningMeans, TrainingDiverged


def _cfg(precision="fp32", method="cohort"):
    member = C.ModelConfig(arch="tiny_inception", pretrained=False, embedding_dim=16)
    return C.normalize(C.TrainConfig(
        method=method,
        data=C.DataConfig(batch_size=12, images_per_class=3, crop_size=32, resize_size=32),
        loss=C.LossConfig(name="triplet", params={"margin": 0.2}),
        optim=C.OptimConfig(lr=1e-3),
        cohort=C.CohortConfig(members=[member] * 2, lambda_mutual=20.0, lambda_warmup_epochs=0.0),
        precision=precision, device="cpu",
    ))


def _batch(views=2):
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (12, views, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.arange(4).repeat_interleave(3))


def test_fp32_is_not_part_of_the_identity_and_the_others_are():
    fp32 = C.semantic_dict(_cfg("fp32"))
    assert "precision" not in fp32  # runs made before the field existed keep their hash
    assert C.digest(fp32) == C.digest(C.semantic_dict(dataclasses.replace(_cfg(), precision="fp32")))
    bf16, fp16 = C.semantic_dict(_cfg("bf16")), C.semantic_dict(_cfg("fp16"))
    assert bf16["precision"] == "bf16" and fp16["precision"] == "fp16"
    assert len({C.digest(fp32), C.digest(bf16), C.digest(fp16)}) == 3


def test_unknown_precision_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="precision"):
        C.from_dict(C.TrainConfig, {"precision": "fp8"})


def test_bf16_runs_convolutions_in_bf16_and_losses_in_fp32():
    method = CohortMethod(_cfg("bf16"), num_classes=4, device=torch.device("cpu"))
    conv_dtypes, loss_inputs = set(), []
    for m in method.models[0].modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda mod, inp, out: conv_dtypes.add(out.dtype))
    for loss in method.losses:
        loss.register_forward_pre_hook(lambda mod, args: loss_inputs.append(args[0].dtype))
    images, labels = _batch()
    out = method.train_step(images, labels, 1.0, generator(0, "t"))
    assert conv_dtypes == {torch.bfloat16}
    assert loss_inputs and set(loss_inputs) == {torch.float32}
    assert out["loss"].dtype == torch.float64 and torch.isfinite(out["loss"])
    emb = method.embed(images[:, 0])
    assert all(e.dtype == torch.float32 for e in emb.values())
    torch.testing.assert_close(emb["member1"].norm(dim=1), torch.ones(12))


def test_bf16_changes_the_numbers_fp32_does_not():
    images, labels = _batch()
    def step(precision):
        torch.manual_seed(0)
        method = CohortMethod(_cfg(precision), num_classes=4, device=torch.device("cpu"))
        method.train_step(images, labels, 1.0, generator(0, "t"))
        return method.embed(images[:, 0])["ensemble"]
    a, b, c = step("fp32"), step("fp32"), step("bf16")
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a - c).abs().max() < 0.1  # the same computation, at lower precision


def test_fp16_scales_the_loss_and_checkpoints_the_scale():
    method = CohortMethod(_cfg("fp16"), num_classes=4, device=torch.device("cpu"))
    assert all(s is not None and s.is_enabled() for s in method.scalers)
    images, labels = _batch()
    method.train_step(images, labels, 1.0, generator(0, "t"))
    state = method.state_dict()
    assert len(state["scalers"]) == 2 and state["scalers"][0]["scale"] > 0
    other = CohortMethod(_cfg("fp16"), num_classes=4, device=torch.device("cpu"))
    other.load_state_dict(state)
    assert other.scalers[0].get_scale() == method.scalers[0].get_scale()
    assert "scalers" not in CohortMethod(_cfg("fp32"), 4, torch.device("cpu")).state_dict()


def test_running_means_read_in_bulk_and_catch_divergence():
    r = RunningMeans("run x", epoch=0)
    r.add({"loss": torch.tensor(1.0, dtype=torch.float64), "updated_members": 2.0})
    r.add({"loss": torch.tensor(3.0, dtype=torch.float64), "updated_members": 1.0})
    assert r.read(2) == {"loss": 2.0, "updated_members": 1.5}
    r.add({"loss": torch.tensor(float("nan"))})
    with pytest.raises(TrainingDiverged, match=r"run x: training diverged: loss is nan by iteration 3 of epoch 1"):
        r.read(3)
