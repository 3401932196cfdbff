"""Dotted keys: what ``cohort.member.embedding_dim`` or ``loss.params.margin`` names in
the schema, and the values it names in a config. The one place that walks the
schema by key; recipes, overrides, tuning and the report all ask here.

Recipe sugar is declared here once (:data:`SUGAR`): ``cohort.size``,
``cohort.member`` and ``cohort.architectures`` are keys a layer may give, which
:func:`benchmark.recipes.layers.expand_sugar` turns into ``cohort.members``; when
reading values, ``cohort.member.<field>`` names that field of every member.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Optional, Union

from benchmark.config.schema import CohortConfig, ModelConfig, TrainConfig
from benchmark.errors import ConfigError

# Keys a layer may give that are not fields: cohort.size / member / architectures.
SUGAR: dict[type, dict[str, Any]] = {
    CohortConfig: {"size": int, "member": ModelConfig, "architectures": list[str]},
}
# What a sugar key reads in a resolved cohort (which holds only `members`).
_SUGAR_VALUES = {
    "member": lambda cohort: cohort["members"],
    "size": lambda cohort: len(cohort["members"]),
    "architectures": lambda cohort: [m.get("arch") for m in cohort["members"]],
}


class KeyNotFound(ConfigError):
    """A dotted key that names no field. ``prefix`` is the part that failed,
    ``known`` the keys that would have been accepted there."""

    def __init__(self, key: str, prefix: str, known: list[str], reason: str = ""):
        self.key, self.prefix, self.known = key, prefix, known
        super().__init__(reason or f"{prefix}: unknown key (known keys: {', '.join(known)})")


@dataclass(frozen=True)
class FieldInfo:
    """What a dotted key names."""

    key: str
    owner: Optional[type]  # the dataclass declaring the last part (None inside a free-form mapping)
    name: str
    annotation: Any  # as declared (Optional kept): what :func:`benchmark.config.convert` takes
    runtime: bool = False  # changes how a job runs, not what it computes
    nullable: bool = False  # a section that null switches off (data.synthetic: real data)
    sugar: bool = False  # recipe sugar, not a field (cohort.size, cohort.member, ...)
    free_form: str = ""  # set inside a free-form mapping: that mapping's key ('loss.params')

    @property
    def base(self) -> Any:
        """The annotation without Optional: a dataclass, a scalar type, list[...], dict[...]."""
        return unwrap_optional(self.annotation)

    @property
    def is_section(self) -> bool:
        return dataclasses.is_dataclass(self.base) or _list_item_dataclass(self.base) is not None

    @property
    def is_mapping(self) -> bool:
        """A free-form mapping (loss.params): its keys are the chosen loss's parameters."""
        return typing.get_origin(self.base) is dict


def unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _list_item_dataclass(tp: Any) -> Optional[type]:
    if typing.get_origin(tp) is list:
        args = typing.get_args(tp)
        if args and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


def section_class(tp: Any) -> Optional[type]:
    """The dataclass a field's values are (or hold, for a list of sections)."""
    base = unwrap_optional(tp)
    if dataclasses.is_dataclass(base):
        return base
    return _list_item_dataclass(base)


def field_names(cls: type, *, sugar: bool = True) -> list[str]:
    names = [f.name for f in dataclasses.fields(cls)]
    return names + (list(SUGAR.get(cls, {})) if sugar else [])


def child(cls: type, name: str, prefix: str, key: str) -> FieldInfo:
    """The field ``name`` of section ``cls`` (``prefix`` is its dotted path, for errors)."""
    sugar = SUGAR.get(cls, {})
    if name in sugar:
        return FieldInfo(key=key, owner=cls, name=name, annotation=sugar[name], sugar=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise KeyNotFound(key, prefix, field_names(cls))
    f = fields[name]
    return FieldInfo(key=key, owner=cls, name=name, annotation=typing.get_type_hints(cls)[name],
                     runtime=bool(f.metadata.get("runtime")), nullable=bool(f.metadata.get("nullable")))


def field_at(dotted: str, cls: type = TrainConfig) -> FieldInfo:
    """The field a dotted key names below section ``cls``.

    Sections nest (``optim.lr``), optional sections and lists of sections are
    walked into (``distill.teacher.cohort.lambda_mutual``, ``cohort.members.arch``),
    the cohort sugar is accepted, and anything below a free-form mapping
    (``loss.params.margin``) is a free-form key. Raises :class:`KeyNotFound`.
    """
    parts = dotted.split(".")
    if not dotted or any(not p for p in parts):
        raise KeyNotFound(dotted, dotted, field_names(cls), f"{dotted!r}: not a config key")
    section: Optional[type] = cls
    info: Optional[FieldInfo] = None
    for i, part in enumerate(parts):
        prefix = ".".join(parts[: i + 1])
        if info is not None and info.is_mapping:
            return FieldInfo(key=dotted, owner=None, name=parts[-1], annotation=Any,
                             free_form=".".join(parts[:i]))
        if section is None:
            raise KeyNotFound(dotted, prefix, [], f"{prefix}: not a config key "
                              f"({'.'.join(parts[:i])} is a value, it has no fields)")
        info = child(section, part, prefix, dotted)
        section = section_class(info.annotation)
    return info


def is_key(dotted: str, cls: type = TrainConfig) -> bool:
    try:
        field_at(dotted, cls)
    except KeyNotFound:
        return False
    return True


def values_at(data: Any, dotted: str) -> list[Any]:
    """Every value ``dotted`` names in a config's plain form (:func:`to_dict`):
    one value for a plain key, one per member for ``cohort.member.<field>`` (and
    for any key that walks into a list of sections), none where the config has
    no such section."""
    return _values(data, dotted.split("."))


def _values(node: Any, parts: list[str]) -> list[Any]:
    if not parts:
        return [node]
    if isinstance(node, list):
        return [v for item in node for v in _values(item, parts)]
    if not isinstance(node, dict):
        return []
    head, rest = parts[0], parts[1:]
    if head in node:
        return _values(node[head], rest)
    if head in _SUGAR_VALUES and isinstance(node.get("members"), list):
        value = _SUGAR_VALUES[head](node)
        return _values(value, rest) if head == "member" else ([value] if not rest else [])
    return []
