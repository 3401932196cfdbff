"""Finding, fetching and loading pretrained ImageNet weights.

Search order for an architecture's weights file:

1. an explicit path (``ModelConfig.weights``); when given it must exist;
2. the torch hub cache: ``torch.hub.get_dir()/checkpoints/<filename>``
   (``$TORCH_HOME/hub/checkpoints`` when TORCH_HOME is set);
3. a download from the file's usual URL into that cache, unless the environment
   variable ``BENCHMARK_OFFLINE=1`` forbids the network, or the file has no URL
   (``bvlc_googlenet``: nobody publishes a PyTorch conversion of the Caffe
   model, so it is converted by the user; see
   :mod:`benchmark.models.bvlc_googlenet`).

When none of these gives a file, :class:`~benchmark.errors.WeightsNotFoundError`
says in one line which file to put where, where it comes from, and that
``pretrained: false`` avoids the need.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

import torch
from torch import nn

from benchmark.errors import ConfigError, UserError, WeightsNotFoundError
from benchmark.models.bvlc_googlenet import file_key as bvlc_file_key

OFFLINE_ENV = "BENCHMARK_OFFLINE"


@dataclass(frozen=True)
class WeightsSource:
    filename: str
    url: str | None  # None: not downloadable, ``origin`` says how to make the file
    origin: str  # in words, for error messages
    check_hash: bool  # the filename carries a SHA-256 prefix (torchvision's convention)
    # Keys of the file that our backbones do not have (classifier, aux heads).
    drop_prefixes: tuple[str, ...] = ()
    # The file's key for a backbone state-dict key, where the two differ
    # (None: the file's keys are the backbone's).
    file_key: Callable[[str], str] | None = None


def _sources() -> dict[str, WeightsSource]:
    from torchvision.models import GoogLeNet_Weights, ResNet50_Weights

    def torchvision_source(enum_value, name: str, drop: tuple[str, ...]) -> WeightsSource:
        url = enum_value.url
        return WeightsSource(url.rsplit("/", 1)[-1], url, f"torchvision {name}", check_hash=True, drop_prefixes=drop)

    bni_url = "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth"
    return {
        "bn_inception": WeightsSource(
            "bn_inception-52deb4733.pth",
            bni_url,
            "Cadene's pretrained-models, Caffe BN-Inception",
            check_hash=False,
            drop_prefixes=("last_linear.",),
        ),
        "resnet50": torchvision_source(ResNet50_Weights.IMAGENET1K_V1, "ResNet50_Weights.IMAGENET1K_V1", ("fc.",)),
        # The file holds the auxiliary classifiers too (torchvision builds the
        # model with aux_logits=True to load it).
        "googlenet": torchvision_source(
            GoogLeNet_Weights.IMAGENET1K_V1, "GoogLeNet_Weights.IMAGENET1K_V1", ("aux1.", "aux2.", "fc.")
        ),
        "bvlc_googlenet": WeightsSource(
            "bvlc_googlenet.pth",
            None,
            "converted by you from Caffe's model zoo file "
            "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel: a torch.save'd state dict of "
            "float32 tensors keyed by Caffe layer name with '/' and '-' as '_' plus .weight (out, in, kh, kw) "
            "or .bias, e.g. conv1_7x7_s2.weight (64, 3, 7, 7), inception_3a_5x5.bias (32,); "
            "see benchmark/models/bvlc_googlenet.py",
            check_hash=False,
            # The auxiliary classifiers and the classifier (loss3/classifier).
            drop_prefixes=("loss1_", "loss2_", "loss3_"),
            file_key=bvlc_file_key,
        ),
    }


def weights_source(arch: str) -> WeightsSource:
    sources = _sources()
    if arch not in sources:
        raise ConfigError(
            f"pretrained: architecture '{arch}' has no pretrained weights "
            f"(available for {', '.join(sorted(sources))}); set pretrained: false"
        )
    return sources[arch]


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def hub_cache_path(arch: str) -> Path:
    """Where torch hub keeps (or would keep) this architecture's weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights_source(arch).filename


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _missing(arch: str, path: Path, reason: str) -> WeightsNotFoundError:
    src = weights_source(arch)
    where = f"download it from {src.url}, {src.origin}" if src.url else src.origin
    return WeightsNotFoundError(
        _one_line(
            f"pretrained weights for '{arch}' not found ({reason}): put {src.filename} at {path} "
            f"({where}), or set pretrained: false to start from random weights"
        )
    )


def locate_weights(arch: str, weights: Optional[str] = None) -> Path:
    """The path of ``arch``'s weights file, downloading it into the hub cache if allowed."""
    src = weights_source(arch)
    if weights:
        path = Path(weights).expanduser()
        if path.is_file():
            return path
        raise _missing(arch, path, "the explicit weights path does not exist")
    cached = hub_cache_path(arch)
    if cached.is_file():
        return cached
    if src.url is None:
        raise _missing(arch, cached, "it cannot be downloaded")
    if offline():
        raise _missing(arch, cached, f"{OFFLINE_ENV}=1 forbids downloading")
    cached.parent.mkdir(parents=True, exist_ok=True)
    hash_prefix = src.filename.rsplit("-", 1)[-1].split(".")[0] if src.check_hash else None
    try:
        torch.hub.download_url_to_file(src.url, str(cached), hash_prefix=hash_prefix, progress=True)
    except Exception as exc:  # network, HTTP, hash: all end the same way for the user
        raise _missing(arch, cached, f"download failed: {_one_line(exc)[:200]}") from exc
    return cached


def check_weights(arch: str, weights: Optional[str] = None) -> None:
    """Pre-flight: make sure ``arch``'s weights are on disk without loading them.

    Downloads them into the hub cache when that is allowed and needed; raises
    WeightsNotFoundError (or ConfigError for an architecture without weights).
    """
    locate_weights(arch, weights)


def read_weights_file(path: Path, arch: str) -> dict[str, torch.Tensor]:
    """The state dict stored in a weights file (on the CPU); UserError if unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(_one_line(f"cannot read weights file {path} for '{arch}': {exc}")[:400]) from exc
    if not isinstance(state, Mapping):
        raise UserError(f"weights file {path} for '{arch}' does not hold a state dict")
    return dict(state)


def load_weights(arch: str, weights: Optional[str] = None) -> dict[str, torch.Tensor]:
    """The state dict stored in ``arch``'s weights file (on the CPU)."""
    return read_weights_file(locate_weights(arch, weights), arch)


def conform_shapes(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop leading singleton dimensions where that makes a tensor fit the module.

    The Caffe-converted BN-Inception file stores BatchNorm vectors as [1, C]
    (its users squeeze them on load); a tensor is reshaped only when its shape
    is exactly ``(1, *expected)``, so nothing else can be silently bent to fit.
    """
    expected = module.state_dict()
    out = {}
    for key, value in state_dict.items():
        want = expected.get(key)
        if want is not None and value.dim() == want.dim() + 1 and tuple(value.shape) == (1, *want.shape):
            value = value.squeeze(0)
        out[key] = value
    return out


def load_matching(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    where: str = "weights",
    optional_suffixes: tuple[str, ...] = ("num_batches_tracked",),
    shown: Callable[[str], str] = str,
) -> None:
    """Load strictly, except that keys ending in ``optional_suffixes`` may be missing.

    Converted Caffe files (BN-Inception) have no ``num_batches_tracked``
    buffers; any other missing or unexpected key, or any shape mismatch, is an
    error naming the keys (a module key as ``shown`` gives it: the file's name).
    """
    expected = module.state_dict()
    missing = [shown(k) for k in expected if k not in state_dict and not k.endswith(optional_suffixes)]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{shown(k)} {tuple(v.shape)} != {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if keys:
                parts.append(f"{label} {len(keys)}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}")
        raise UserError(f"{where} do not fit the model: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=False)


def load_pretrained(module: nn.Module, arch: str, weights: Optional[str] = None) -> Path:
    """Load ``arch``'s ImageNet weights into the backbone ``module``; return the file used.

    The classifier (and auxiliary heads) of the file are dropped; every other
    key must fit (see :func:`load_matching`).
    """
    src = weights_source(arch)
    path = locate_weights(arch, weights)
    state = read_weights_file(path, arch)
    state = {k: v for k, v in state.items() if not k.startswith(src.drop_prefixes)}
    shown = str
    if src.file_key is not None:  # the file names the module's tensors its own way
        to_module = {src.file_key(k): k for k in module.state_dict()}
        state = {to_module.get(k, k): v for k, v in state.items()}  # unknown keys stay as the file has them
        shown = src.file_key
    load_matching(module, conform_shapes(module, state), where=f"weights file {path} for '{arch}'", shown=shown)
    return path
