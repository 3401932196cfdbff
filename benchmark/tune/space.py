"""Search spaces: which numeric config fields a study tunes, and over which range.

``--param KEY=LOW:HIGH[:log]`` names any numeric field of the resolved config
(``cohort.lambda_mutual``, ``optim.lr``, ``cohort.member.embedding_dim``,
``loss.params.margin``, ``distill.params.w_angle``, ...). Without ``--param`` the
space is the λ weights the row itself uses (:func:`default_space`): each one
log-uniform over [value/10, value*10] around the row's own value.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Optional

from benchmark import config as C
from benchmark.errors import ConfigError

# The weights each distillation loss multiplies its terms by (benchmark/losses/distill.py);
# the other parameters (DarkRank's alpha, beta, k) shape the loss, they do not weigh it.
DISTILL_WEIGHTS = {"rkd_da": ("w_distance", "w_angle"), "darkrank": ("lam",), "compact": ("lam",)}

# Fields an override cannot usefully tune: the resolver sets the seed last, and
# tune itself sets the validation split.
_RESERVED = {
    "seed": "the seed is not a hyperparameter (every trial trains seed 0)",
    "data.val_classes": "tune sets the validation split itself (use --val-classes)",
}


@dataclass(frozen=True)
class ParamSpec:
    """One tuned field: Optuna's parameter name is the dotted config key."""

    key: str
    low: float
    high: float
    log: bool = False
    kind: str = "float"  # float | int

    def suggest(self, trial) -> Any:
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def describe(self) -> str:
        return f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "") + (" int" if self.kind == "int" else "")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ParamSpec":
        return cls(**data)


# ---------------------------------------------------------------------------
# Config fields
# ---------------------------------------------------------------------------


def _free_form_registry(cls: type, field_name: str, obj: Any, where: str) -> tuple[str, dict]:
    """The parameter table of a free-form mapping (loss.params, loss.miner_params, distill.params)."""
    if cls is C.LossConfig and field_name == "params":
        from benchmark.losses.metric import LOSS_PARAMS

        name = obj.name if obj is not None else None
        return f"loss '{name}'", LOSS_PARAMS.get(name, {})
    if cls is C.LossConfig and field_name == "miner_params":
        from benchmark.losses.metric import MINER_PARAMS

        if obj is not None and obj.miner is None:
            raise ConfigError(f"{where}: this run uses no miner (loss.miner is null)")
        name = obj.miner if obj is not None else None
        return f"miner '{name}'", MINER_PARAMS.get(name, {})
    if cls is C.DistillConfig and field_name == "params":
        from benchmark.losses.distill import DISTILL_PARAMS

        name = obj.loss if obj is not None else None
        return f"distillation loss '{name}'", DISTILL_PARAMS.get(name, {})
    raise ConfigError(f"{where}: not a numeric config field")


def numeric_field(cfg: C.TrainConfig, key: str, where: Optional[str] = None) -> tuple[str, Any]:
    """(kind, value) of a numeric field of ``cfg``: kind 'int' or 'float', value as resolved.

    Accepts the recipe sugar ``cohort.size`` and ``cohort.member.<field>`` (the
    first member's value). Raises a one-line ConfigError naming ``where`` (default
    the key) when the key is unknown, not numeric, a runtime setting, or belongs
    to a section this run does not have.
    """
    where = where or key
    if key in _RESERVED:
        raise ConfigError(f"{where}: {_RESERVED[key]}")
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"{where}: not a config key")
    cls: Any = C.TrainConfig
    obj: Any = cfg
    i = 0
    while i < len(parts):
        part, last = parts[i], i == len(parts) - 1
        prefix = ".".join(parts[: i + 1])
        if cls is C.CohortConfig and part == "size":
            if not last:
                raise ConfigError(f"{where}: not a config field ({prefix} is a number)")
            return "int", (len(obj.members) if obj is not None else None)
        if cls is C.CohortConfig and part == "member":
            cls, obj = C.ModelConfig, (obj.members[0] if obj is not None and obj.members else None)
            i += 1
            continue
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            raise ConfigError(f"{where}: not a config field ({prefix} is unknown)")
        if fields[part].metadata.get("runtime"):
            raise ConfigError(f"{where}: a runtime setting that does not change what is computed, nothing to tune")
        tp = typing.get_type_hints(cls)[part]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        base = args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 else tp
        value = getattr(obj, part) if obj is not None else None
        if typing.get_origin(base) is dict:
            if i != len(parts) - 2:
                raise ConfigError(f"{where}: not a config field (give {prefix}.<name>)")
            owner, registry = _free_form_registry(cls, part, obj, where)
            name = parts[-1]
            if name not in registry:
                known = ", ".join(registry) or "none"
                raise ConfigError(f"{where}: {owner} has no parameter '{name}' (known: {known})")
            default = registry[name][0]
            current = (value or {}).get(name, default)
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                raise ConfigError(f"{where}: not a numeric config field ({owner} takes {type(default).__name__})")
            return ("int" if isinstance(default, int) else "float"), current
        if dataclasses.is_dataclass(base):
            if last:
                raise ConfigError(f"{where}: not a numeric config field ({prefix} is a section)")
            if obj is not None and value is None:
                raise ConfigError(f"{where}: this run has no {prefix} section (method '{cfg.method}')")
            cls, obj = base, value
            i += 1
            continue
        if not last:
            raise ConfigError(f"{where}: not a config field ({prefix} has no fields)")
        if base is bool or base not in (int, float):
            raise ConfigError(f"{where}: not a numeric config field ({C._type_name(tp)})")
        return ("int" if base is int else "float"), value
    raise ConfigError(f"{where}: not a config key")  # pragma: no cover (loop always returns)


def config_value(cfg: C.TrainConfig, key: str) -> Any:
    """The value of a numeric field in ``cfg`` (None when the run has no such field)."""
    try:
        return numeric_field(cfg, key)[1]
    except ConfigError:
        return None


# ---------------------------------------------------------------------------
# --param and the default space
# ---------------------------------------------------------------------------


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where}: {what} '{text}' is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {what} must be finite")
    return value


def parse_param(text: str, cfg: C.TrainConfig) -> ParamSpec:
    """``KEY=LOW:HIGH[:log]`` checked against ``cfg``: KEY must be a numeric config field."""
    key, eq, rng = text.partition("=")
    key = key.strip()
    where = f"--param {key}" if key else f"--param {text}"
    if not eq or not key:
        raise ConfigError(f"--param {text}: expected KEY=LOW:HIGH[:log], e.g. --param cohort.lambda_mutual=2:200:log")
    bits = [b.strip() for b in rng.split(":")]
    log = False
    if len(bits) == 3:
        if bits[2].lower() != "log":
            raise ConfigError(f"{where}: the third part of LOW:HIGH:log must be 'log', got '{bits[2]}'")
        log = True
        bits = bits[:2]
    if len(bits) != 2:
        raise ConfigError(f"{where}: expected LOW:HIGH or LOW:HIGH:log after '=', got '{rng}'")
    kind, _ = numeric_field(cfg, key, where)
    low, high = _number(bits[0], "LOW", where), _number(bits[1], "HIGH", where)
    if not low < high:
        raise ConfigError(f"{where}: LOW ({bits[0]}) must be below HIGH ({bits[1]})")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs LOW > 0, got {bits[0]}")
    if kind == "int":
        if not (low.is_integer() and high.is_integer()):
            raise ConfigError(f"{where}: an integer field needs integer bounds, got {bits[0]}:{bits[1]}")
        low, high = int(low), int(high)
    return ParamSpec(key=key, low=low, high=high, log=log, kind=kind)


def parse_params(texts: list[str], cfg: C.TrainConfig) -> list[ParamSpec]:
    specs: list[ParamSpec] = []
    for text in texts:
        spec = parse_param(text, cfg)
        if any(s.key == spec.key for s in specs):
            raise ConfigError(f"--param {spec.key}: given twice")
        specs.append(spec)
    return specs


def around(key: str, value: float) -> ParamSpec:
    """Log-uniform over one decade either side of ``value``."""
    return ParamSpec(key=key, low=float(value) / 10.0, high=float(value) * 10.0, log=True, kind="float")


def default_space(cfg: C.TrainConfig) -> list[ParamSpec]:
    """The hand-set λ weights a run uses, each over [value/10, value*10] (log).

    - cohort with λ_DM² > 0 (two or more members): ``cohort.lambda_mutual``;
    - ABE with the divergence loss on (M > 1, λ_div > 0): ``abe.lambda_div``;
    - distillation: the loss's weights with a non-zero value
      (RKD ``w_distance``/``w_angle``, DarkRank ``lam``, Compact ``lam``).
    A weight of 0 switches its term off; it is not a value to search around.
    """
    out: list[ParamSpec] = []
    if cfg.method == "cohort" and cfg.cohort is not None:
        c = cfg.cohort
        if len(c.members) > 1 and c.lambda_mutual > 0:
            out.append(around("cohort.lambda_mutual", c.lambda_mutual))
    if cfg.method == "abe" and cfg.abe is not None:
        a = cfg.abe
        if a.divergence and a.learners > 1 and a.lambda_div > 0:
            out.append(around("abe.lambda_div", a.lambda_div))
    if cfg.method == "distill" and cfg.distill is not None:
        for name in DISTILL_WEIGHTS.get(cfg.distill.loss, ()):
            key = f"distill.params.{name}"
            value = config_value(cfg, key)
            if isinstance(value, (int, float)) and value > 0:
                out.append(around(key, value))
    return out


def primary_source(cfg: C.TrainConfig) -> str:
    """The embedding a study optimises: the ensemble (cohort, ABE) or the student (distillation)."""
    return "student" if cfg.method == "distill" else "ensemble"
