"""Which model of a job its size is reported for (ABE Table 1's #params and FLOPs,
the FLOP estimates): cohort member 1, the ABE model, or the distillation student.
Standard library only, like the rest of the package."""

from __future__ import annotations

import dataclasses

from benchmark.config.schema import TrainConfig


def reported_model(config: TrainConfig):
    """The model config whose network a job reports (ModelConfig or ABEConfig)."""
    if config.method == "cohort":
        return config.cohort.members[0]
    if config.method == "abe":
        return config.abe
    if config.method == "distill":
        return config.distill.student
    raise ValueError(f"unknown method {config.method!r}")


def with_reported_model(config: TrainConfig, model_cfg) -> TrainConfig:
    """``config`` with its reported model (:func:`reported_model`) replaced."""
    if config.method == "cohort":
        members = [model_cfg, *config.cohort.members[1:]]
        return dataclasses.replace(config, cohort=dataclasses.replace(config.cohort, members=members))
    if config.method == "abe":
        return dataclasses.replace(config, abe=model_cfg)
    if config.method == "distill":
        return dataclasses.replace(config, distill=dataclasses.replace(config.distill, student=model_cfg))
    raise ValueError(f"unknown method {config.method!r}")


def reported_arch(config: TrainConfig) -> str:
    """The backbone of the reported model (e.g. ``googlenet``, ``bvlc_googlenet``)."""
    return reported_model(config).arch
