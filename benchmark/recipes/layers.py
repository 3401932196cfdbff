"""Config layers: partial, nested mappings that are merged into one job config.

A layer comes from a recipe's `config`, a per-dataset block, a row's `set`, a
profile, an override file or `--set key=value`. Each layer is checked against the
:class:`~benchmark.config.TrainConfig` schema on its own, so an error names the
file and key where the mistake is, not just the merged result.

Recipe sugar, expanded before validation:
  cohort.size + cohort.member        -> cohort.members = [member] * size
  cohort.architectures + cohort.member -> one member per listed architecture
                                       (when given, architectures wins over size)
  distill.teacher: {ref: "paper/table#Row", set: {...}} -> the referenced row's config
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from benchmark import config as C
from benchmark.config.keys import SUGAR, KeyNotFound, child, field_names
from benchmark.errors import ConfigError

_COHORT_SUGAR = SUGAR[C.CohortConfig]

# Keys resolution sets itself after every layer, so a layer giving them would be
# silently ignored: refused, with what to use instead.
OWNED = {
    (C.TrainConfig, "seed"): "the seed comes from --seeds (runs use seeds 0..N-1)",
    (C.TrainConfig, "device"): "a runtime setting of the command: use --device",
    (C.DataConfig, "dataset"): "the dataset comes from the table's columns: select it with --dataset",
    (C.DataConfig, "cropped"): "cropping comes from the table's columns (their cropped: true)",
}


def expand_dotted(layer: Any, where: str = "") -> Any:
    """{'a.b': 1, 'a': {'c': 2}} -> {'a': {'b': 1, 'c': 2}} (recursively)."""
    if not isinstance(layer, dict):
        return layer
    out: dict = {}
    for key, value in layer.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}{key!r}: keys must be strings")
        value = expand_dotted(value, f"{where}{key}.")
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
        last = parts[-1]
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            node[last] = merge(node[last], value)
        else:
            node[last] = value
    return out


def merge(base: dict, top: dict) -> dict:
    """Deep merge: mappings merge key by key, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not _is_ref(value):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# (section, selector, parameters): free-form parameters belong to the choice that
# the selector names, so a layer that switches the choice starts them afresh.
_SWITCHES = (("loss", "name", "params"), ("loss", "miner", "miner_params"), ("distill", "loss", "params"))


def merge_layer(base: dict, top: dict) -> dict:
    """Merge a config layer: :func:`merge`, except that a layer switching the loss
    (`loss.name`), the miner (`loss.miner`) or the distillation loss (`distill.loss`)
    to another value drops the parameters given for the previous one, so a
    contrastive row never inherits the triplet's `margin` (and a loss switch that
    names no miner drops the previous loss's miner). A layer that keeps the
    choice (e.g. `--set loss.params.margin=0.3`) still merges key by key."""
    base = copy.deepcopy(base)
    for section, selector, params in _SWITCHES:
        old, new = base.get(section), top.get(section)
        if isinstance(old, dict) and isinstance(new, dict) and selector in new:
            if new[selector] != old.get(selector, _MISSING) and params in old:
                old[params] = {}
    # The miner belongs to the loss it samples for (DM²'s distance-weighted sampling is
    # the triplet's): a layer switching loss.name without naming a miner drops it, so
    # `--set loss.name=multi_similarity` trains that loss alone on the whole batch.
    old, new = base.get("loss"), top.get("loss")
    if (isinstance(old, dict) and isinstance(new, dict) and "name" in new and "miner" not in new
            and new["name"] != old.get("name", _MISSING) and old.get("miner") is not None):
        old["miner"], old["miner_params"] = None, {}
    return merge(base, top)


_MISSING = object()


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and "ref" in value


def set_path(layer: dict, dotted: str, value: Any) -> dict:
    return merge(layer, expand_dotted({dotted: value}))


def get_path(data: dict, dotted: str, default: Any = None) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def check_layer(layer: Any, where: str, cls: type = C.TrainConfig) -> None:
    """Check a partial layer's keys and value types against the schema
    (:func:`benchmark.config.keys.child` per key, recipe sugar included)."""
    if layer is None:
        return
    if not isinstance(layer, dict):
        raise ConfigError(f"{where}: expected a mapping, got {layer!r}")
    for key, value in layer.items():
        kw = f"{where}.{key}" if where else key
        if cls is C.DistillConfig and key == "teacher" and _is_ref(value):
            extra = set(value) - {"ref", "set"}
            if extra:
                raise ConfigError(f"{kw}.{sorted(extra)[0]}: unknown key (a teacher reference has ref and set)")
            if not isinstance(value["ref"], str) or "#" not in value["ref"]:
                raise ConfigError(f"{kw}.ref: expected 'paper/table#Row', got {value['ref']!r}")
            check_layer(value.get("set") or {}, f"{kw}.set")
            continue
        if (cls, key) in OWNED:
            raise ConfigError(f"{kw}: not set by a recipe or override: {OWNED[(cls, key)]}")
        try:
            info = child(cls, str(key), kw, kw)
        except KeyNotFound:
            known = ", ".join(field_names(cls, sugar=False))
            raise ConfigError(f"{kw}: unknown key (known keys: {known})") from None
        if value is None and dataclasses.is_dataclass(info.base) and not info.nullable:
            raise ConfigError(f"{kw}: a section cannot be null (it would silently become another "
                              f"experiment); leave the key out, or set its fields")
        if dataclasses.is_dataclass(info.base) and (info.sugar or isinstance(value, dict)):
            check_layer(value, kw, info.base)
        else:
            C.convert(value, info.annotation, kw)
            if info.owner is C.LossConfig and info.name in ("name", "miner"):
                check_loss_choice(info.name, value, kw)


def check_loss_choice(name: str, value: Any, where: str) -> None:
    """``loss.name`` / ``loss.miner``: one of the papers' own or a pytorch-metric-learning
    class's derived name; the library is read only for a name outside the papers' own."""
    own = C.OWN_LOSSES if name == "name" else C.OWN_MINERS
    if value is None or value in own:
        return
    from benchmark.losses import registry as R

    if name == "name" and value not in R.pml_losses():
        raise ConfigError(f"{where}: unknown loss {value!r} (known: {', '.join(R.loss_names(own))})")
    if name == "miner" and value not in R.pml_miners():
        raise ConfigError(f"{where}: unknown miner {value!r} (known: {', '.join(R.miner_names(own))})")


def expand_sugar(data: dict, where: str) -> dict:
    """Turn cohort.size/member/architectures into cohort.members."""
    data = copy.deepcopy(data)
    cohort = data.get("cohort")
    if isinstance(cohort, dict):
        sugar = {k: cohort.pop(k) for k in list(cohort) if k in _COHORT_SUGAR}
        if sugar:
            if "members" in cohort:
                raise ConfigError(f"{where}.cohort.members: give either members or size/member/architectures")
            member = dict(sugar.get("member") or {})
            archs = sugar.get("architectures")
            if archs is not None:  # an explicit list of architectures wins over size
                if not archs:
                    raise ConfigError(f"{where}.cohort.architectures: the list is empty")
                cohort["members"] = [dict(member, arch=a) for a in archs]
            else:
                size = sugar.get("size", 1)
                if size < 1:
                    raise ConfigError(f"{where}.cohort.size: must be >= 1, got {size}")
                cohort["members"] = [dict(member) for _ in range(size)]
    return data
