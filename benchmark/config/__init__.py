"""Typed configuration of one training job: the training core's only input.

- :mod:`~benchmark.config.schema`: the sections (dataclasses), ``runtime`` fields,
  ``DATASETS`` and ``CROPPABLE``;
- :mod:`~benchmark.config.convert`: plain data <-> config (``from_dict``,
  ``to_dict``, ``semantic_dict``, ``digest``);
- :mod:`~benchmark.config.checks`: cross-field checks, normalisation, ``load_config``;
- :mod:`~benchmark.config.keys`: dotted keys (``field_at``, ``values_at``, the
  recipe sugar).

Standard library only, so the core runs where just torch is installed.
"""

from benchmark.config.checks import check, load_config, normalize
from benchmark.config.convert import convert, digest, from_dict, semantic_dict, to_dict, type_name
from benchmark.config.keys import SUGAR, FieldInfo, KeyNotFound, field_at, is_key, values_at
from benchmark.config.schema import (
    CROPPABLE,
    DATASETS,
    OWN_LOSSES,
    OWN_MINERS,
    ABEConfig,
    ArtifactsConfig,
    CohortConfig,
    DataConfig,
    Dataset,
    DistillConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    SyntheticConfig,
    TemporalConfig,
    TrainConfig,
    runtime,
)

__all__ = [
    "ABEConfig", "ArtifactsConfig", "CROPPABLE", "CohortConfig", "DATASETS", "DataConfig", "Dataset",
    "DistillConfig", "EvalConfig", "FieldInfo", "KeyNotFound", "LossConfig", "ModelConfig", "OptimConfig", "OWN_LOSSES", "OWN_MINERS",
    "SUGAR", "ScheduleConfig", "SyntheticConfig", "TemporalConfig", "TrainConfig", "check", "convert",
    "digest", "field_at", "from_dict", "is_key", "load_config", "normalize", "runtime", "semantic_dict",
    "to_dict", "type_name", "values_at",
]
