"""Every loss and miner pytorch-metric-learning (pml) exports, by a snake_case name
derived from its class, with its constructor's parameters read by inspection.

Nothing here is a hand-written list of pml classes: the names, the parameters, their
defaults and which parameters the harness sizes all come from the installed
library, so a pml upgrade that adds a loss makes it available at once.

Names. A class ``FooBarLoss`` (``FooBarMiner``) is named by its stem ``FooBar``:
pml's own spelling of the stem where the module defining the class spells the
same letters (``SupConLoss`` lives in ``supcon_loss`` -> ``supcon``, ``ArcFaceLoss``
in ``arcface_loss`` -> ``arcface``, ``NPairsLoss`` in ``n_pairs_loss`` -> ``n_pairs``),
else the stem split at its capitals (``ProxyNCALoss`` in ``proxy_losses`` ->
``proxy_nca``, ``ThresholdConsistentMarginLoss`` in ``tcm_loss`` ->
``threshold_consistent_margin``).

Which classes. Losses: the concrete subclasses of ``BaseMetricLossFunction`` (one
whose compute hook is a bare ``raise NotImplementedError``, such as
``GenericPairLoss``, is an abstract base and left out; the wrappers that take
another loss, ``CrossBatchMemory`` and ``SelfSupervisedLoss``, are not metric losses
of their own). Miners: the concrete subclasses of ``BaseMiner``.

Parameters. Those of the class's ``__init__`` and, through ``*args``/``**kwargs``,
of its concrete pml parents (``CosFaceLoss`` takes ``LargeMarginSoftmaxLoss``'s
``num_classes``), never those of pml's abstract bases (distance, reducer and
regularizer objects cannot be written in YAML). Parameters that size a loss's
own weights (``SIZED``) are set by the harness from the number of training
classes and the embedding size; the weights they size are parameters of the
loss module, trained with ``optim.loss_lr`` (benchmark.train.common.param_groups).

The six losses of the two papers (triplet, contrastive, proxy_nca, arcface,
binomial_deviance, abe_contrastive: benchmark.losses.metric) keep their own
definitions where a pml name coincides (``contrastive`` is Hadsell's squared form,
``arcface`` takes its margin in radians), so their runs compute what they did.
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from benchmark.errors import ConfigError

# Constructor parameters the harness fills: name -> what sizes it.
SIZED = {
    "num_classes": "classes",  # proxies, class weights (ProxyAnchor, SoftTriple, NormalizedSoftmax, ...)
    "embedding_size": "dim",
    "descriptors_dim": "dim",  # P2SGradLoss's name for the embedding size
    "l": "dim",  # ManifoldLoss's name for the embedding size of its proxies
}

_REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class PmlClass:
    """One pml loss or miner: its derived name, class and plain-data parameters."""

    name: str
    cls: type
    params: dict[str, Any]  # parameter -> default (``inspect.Parameter.empty``: required)
    sized: tuple[str, ...]  # parameters the harness fills (SIZED)

    def build(self, params: Mapping[str, Any], classes: int | None = None, dim: int | None = None):
        sizes = {"classes": classes, "dim": dim}
        kwargs = {p: sizes[SIZED[p]] for p in self.sized}
        return self.cls(**kwargs, **dict(params))


def _split_camel(stem: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", stem).lower()


def derive_name(cls: type, suffix: str) -> str:
    """``MultiSimilarityLoss`` -> ``multi_similarity`` (see the module docstring)."""
    stem = cls.__name__[: -len(suffix)] if cls.__name__.endswith(suffix) and cls.__name__ != suffix else cls.__name__
    module = cls.__module__.rsplit(".", 1)[-1]
    for tail in (f"_{suffix.lower()}es", f"_{suffix.lower()}s", f"_{suffix.lower()}"):
        if module.endswith(tail):
            module = module[: -len(tail)]
            break
    if module.replace("_", "") == stem.lower():
        return module
    return _split_camel(stem)


def _is_stub(fn: Any) -> bool:
    """A method whose body is only ``raise NotImplementedError`` (an abstract hook)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return False
    body = [s for s in tree.body[0].body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _abstract(cls: type, base: type) -> bool:
    if cls is base:
        return True
    for attr in dir(cls):
        fn = getattr(cls, attr, None)
        if inspect.isfunction(fn) and fn.__module__.startswith("pytorch_metric_learning") and _is_stub(fn):
            return True
    return False


def _fixed_by_init(klass: type) -> set[str]:
    """Keywords ``klass.__init__`` passes to ``super().__init__`` itself (BatchHardMiner
    fixes its parent's strategies): the parent's parameters of those names are not settable."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass.__init__)))
    except (OSError, TypeError, SyntaxError):
        return set()
    out = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__init__"
                and isinstance(node.func.value, ast.Call) and getattr(node.func.value.func, "id", "") == "super"):
            out.update(k.arg for k in node.keywords if k.arg)
    return out


def _params(cls: type, base: type) -> dict[str, Any]:
    """Plain parameters of ``cls`` and, through *args/**kwargs, of its concrete pml parents."""
    out: dict[str, Any] = {}
    fixed: set[str] = set()
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, base)) or _abstract(klass, base):
            break
        if "__init__" not in vars(klass):
            continue
        passes_on = False
        for p in list(inspect.signature(klass.__init__).parameters.values())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                passes_on = True
            elif p.name not in out and p.name not in fixed:
                out[p.name] = p.default
        if not passes_on:
            break
        fixed |= _fixed_by_init(klass) - set(out) - set(SIZED)  # sized ones still flow (SubCenterArcFace)
    return out


def _collect(module: Any, base: type, suffix: str) -> dict[str, PmlClass]:
    out: dict[str, PmlClass] = {}
    for attr in sorted(vars(module)):
        cls = getattr(module, attr)
        if not (inspect.isclass(cls) and issubclass(cls, base)) or _abstract(cls, base):
            continue
        name = derive_name(cls, suffix)
        if name in out and out[name].cls is not cls:
            raise AssertionError(f"pml {cls.__name__} and {out[name].cls.__name__} derive the same name {name!r}")
        params = _params(cls, base)
        out[name] = PmlClass(name, cls, params, tuple(p for p in params if p in SIZED))
    return out


@functools.cache
def pml_losses() -> dict[str, PmlClass]:
    """Derived name -> every concrete loss pml exports."""
    from pytorch_metric_learning import losses

    return _collect(losses, losses.BaseMetricLossFunction, "Loss")


@functools.cache
def pml_miners() -> dict[str, PmlClass]:
    """Derived name -> every concrete miner pml exports."""
    from pytorch_metric_learning import miners

    return _collect(miners, miners.BaseMiner, "Miner")


# ---------------------------------------------------------------------------
# checking a loss.params / loss.miner_params mapping against a constructor
# ---------------------------------------------------------------------------


def _check_value(key: str, default: Any, value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}.{key}: expected a finite number, got {value!r}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: expected true/false, got {value!r}")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
    elif value is not None and not isinstance(value, (bool, int, float, str)) and not (
            isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value)):
        raise ConfigError(f"{where}.{key}: expected a number, true/false, a string or a list of numbers, "
                          f"got {value!r}")


def check_params(entry: PmlClass, params: Mapping[str, Any] | None, where: str, what: str) -> dict:
    """``params`` checked against ``entry``'s constructor; one-line ConfigError naming the key."""
    params = dict(params or {})
    settable = [p for p in entry.params if p not in entry.sized]
    for key, value in params.items():
        if key in entry.sized:
            raise ConfigError(f"{where}.{key}: set by the harness for {what} (from the number of training "
                              f"classes or the embedding size); leave it out")
        if key not in entry.params:
            raise ConfigError(f"{where}.{key}: unknown parameter for {what} (known: "
                              f"{', '.join(settable) if settable else 'none'})")
        _check_value(key, entry.params[key], value, where)
    missing = [p for p in settable if entry.params[p] is _REQUIRED and p not in params]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required by {what} (pml {entry.cls.__name__} has no default)")
    return params


def loss_names(own: tuple[str, ...]) -> list[str]:
    """Every valid loss.name: the harness's own, then pml's."""
    return sorted(set(own) | set(pml_losses()))


def miner_names(own: tuple[str, ...]) -> list[str]:
    return sorted(set(own) | set(pml_miners()))
