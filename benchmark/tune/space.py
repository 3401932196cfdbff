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


def _free_form_registry(owner_key: str, cfg: C.TrainConfig, where: str) -> tuple[str, dict]:
    """The parameter table of a free-form mapping (loss.params, loss.miner_params, distill.params)."""
    if owner_key == "loss.params":
        from benchmark.losses.metric import LOSS_PARAMS

        return f"loss '{cfg.loss.name}'", LOSS_PARAMS.get(cfg.loss.name, {})
    if owner_key == "loss.miner_params":
        from benchmark.losses.metric import MINER_PARAMS

        if cfg.loss.miner is None:
            raise ConfigError(f"{where}: this run uses no miner (loss.miner is null)")
        return f"miner '{cfg.loss.miner}'", MINER_PARAMS.get(cfg.loss.miner, {})
    if owner_key == "distill.params" and cfg.distill is not None:
        from benchmark.losses.distill import DISTILL_PARAMS

        return f"distillation loss '{cfg.distill.loss}'", DISTILL_PARAMS.get(cfg.distill.loss, {})
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
    try:
        info = C.field_at(key)
    except C.KeyNotFound as exc:
        raise ConfigError(f"{where}: not a config field ({exc.prefix} is unknown)") from None
    if info.runtime:
        raise ConfigError(f"{where}: a runtime setting that does not change what is computed, nothing to tune")
    parts = key.split(".")
    plain = C.to_dict(cfg)
    for i in range(1, len(parts)):  # every section on the way must exist in this run
        prefix = ".".join(parts[:i])
        if C.values_at(plain, prefix) in ([], [None]):
            raise ConfigError(f"{where}: this run has no {prefix} section (method '{cfg.method}')")
    values = C.values_at(plain, key)
    if info.free_form:
        owner_key = info.free_form  # loss.params, loss.miner_params, distill.params
        if len(parts) != len(owner_key.split(".")) + 1:
            raise ConfigError(f"{where}: not a config field (give {owner_key}.<name>)")
        owner, registry = _free_form_registry(owner_key, cfg, where)
        if info.name not in registry:
            known = ", ".join(registry) or "none"
            raise ConfigError(f"{where}: {owner} has no parameter '{info.name}' (known: {known})")
        default = registry[info.name][0]
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise ConfigError(f"{where}: not a numeric config field ({owner} takes {type(default).__name__})")
        return ("int" if isinstance(default, int) else "float"), (values[0] if values else default)
    if info.is_mapping:
        raise ConfigError(f"{where}: not a config field (give {key}.<name>)")
    if info.is_section:
        raise ConfigError(f"{where}: not a numeric config field ({key} is a section)")
    base = info.base
    if base is bool or base not in (int, float):
        raise ConfigError(f"{where}: not a numeric config field ({C.type_name(info.annotation)})")
    return ("int" if base is int else "float"), (values[0] if values else None)


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
