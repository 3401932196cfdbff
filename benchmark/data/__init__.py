"""Datasets: official-layout readers, synthetic stand-ins, samplers, transforms, loaders."""

from .loaders import TrainBatches, eval_batches, prepare_splits, split_off_classes
from .readers import (
    DatasetFormatError,
    DatasetSplits,
    Split,
    check_dataset,
    read_dataset,
)
from .rng import SplitMix64, derive_seed
from .samplers import ABEPairSampler, ClassBalancedSampler
from .synthetic import ensure_synthetic
from .transforms import EvalTransform, TrainTransform, decode_count, load_image

__all__ = [
    "ABEPairSampler",
    "ClassBalancedSampler",
    "DatasetFormatError",
    "DatasetSplits",
    "EvalTransform",
    "Split",
    "SplitMix64",
    "TrainBatches",
    "TrainTransform",
    "check_dataset",
    "decode_count",
    "derive_seed",
    "ensure_synthetic",
    "eval_batches",
    "load_image",
    "prepare_splits",
    "read_dataset",
    "split_off_classes",
]
