"""Networks of the harness: embedding models (DM2 cohorts, students) and ABE.

Public API:
    build_embedding_model(cfg: ModelConfig, *, backbone_seed, head_seed) -> EmbeddingModel
    build_abe_model(cfg: ABEConfig, *, seed=0) -> ABEModel
    trainable_parameters(model) -> list of parameters with requires_grad
    ARCHS, ABE_ARCHS
Every model normalises its own input: images are RGB uint8 or float in 0-255.
Pretrained weights: :mod:`benchmark.models.pretrained` (check_weights for a pre-flight).
"""

from benchmark.models.abe import ABE_ARCHS, ABEModel, build_abe_model
from benchmark.models.common import trainable_parameters
from benchmark.models.embedding import ARCHS, EmbeddingModel, build_embedding_model

__all__ = [
    "ABE_ARCHS",
    "ARCHS",
    "ABEModel",
    "EmbeddingModel",
    "build_abe_model",
    "build_embedding_model",
    "trainable_parameters",
]
