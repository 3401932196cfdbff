"""Resolution: a recipe row's binding, for one dataset, seed and context, into a
validated :class:`~benchmark.config.TrainConfig`.

Layers, in the order they are merged (later wins):
  1. `config` of every file in the `extends` chain, root first
  2. `datasets.<dataset>` of every file in the chain
  3. the row's (or run binding's) `set`
  4. for a teacher reference, the reference's `set`
  5. the profile's `set`, then its `datasets.<dataset>` block (every file in the
     chain that defines the profile, root first), then its `arch_set.<arch>`
     blocks for the architectures the job's models name once the overrides are
     on (before arch_map: `--set abe.arch=bvlc_googlenet` picks the block of
     bvlc_googlenet), so that a flag choosing the backbone brings the profile's
     settings for it while a flag setting one of those keys still wins
  6. overrides: `--overrides FILE`, then `--set key=value`
  7. data.dataset / data.cropped from the table columns, and the seed
Then recipe sugar is expanded, the result validated, and the profile's
`arch_map` / `models` applied to every model in the job.

Layers merge key by key (:func:`benchmark.recipes.layers.merge_layer`), except
that a layer switching `loss.name`, `loss.miner` or `distill.loss` to another
value starts that choice's free-form parameters afresh. Runtime fields (data
root, device) are not set here: the runner binds them (benchmark.runner.binding).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from benchmark import config as C
from benchmark.errors import ConfigError
from benchmark.recipes.files import Binding, Catalog, Profile, Recipe
from benchmark.recipes.layers import expand_dotted, expand_sugar, get_path, merge, merge_layer
from benchmark.recipes.overrides import Context, Scope


def _apply_models(cfg: C.TrainConfig, profiles: list[Profile]) -> C.TrainConfig:
    arch_map: dict[str, str] = {}
    models: dict[str, Any] = {}
    for p in profiles:
        arch_map.update(p.arch_map)
        models.update(p.models)

    def fix(obj: Any) -> Any:
        updates = {}
        if obj.arch in arch_map:
            updates["arch"] = arch_map[obj.arch]
        for k, v in models.items():
            if hasattr(obj, k):
                updates[k] = v
        return dataclasses.replace(obj, **updates) if updates else obj

    def walk(c: C.TrainConfig) -> C.TrainConfig:
        c = dataclasses.replace(c)
        if c.cohort is not None:
            c.cohort = dataclasses.replace(c.cohort, members=[fix(m) for m in c.cohort.members])
        if c.abe is not None:
            c.abe = fix(c.abe)
        if c.distill is not None:
            c.distill = dataclasses.replace(
                c.distill, student=fix(c.distill.student),
                teacher=walk(c.distill.teacher) if c.distill.teacher is not None else None,
            )
        return c

    if not arch_map and not models:
        return cfg
    return walk(cfg)


def _named_archs(data: Any) -> set[str]:
    """Every architecture a merged (not yet expanded) config names: the values of
    its ``arch`` keys and the items of its ``architectures`` lists, at any depth."""
    out: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "arch" and isinstance(value, str):
                out.add(value)
            elif key == "architectures" and isinstance(value, list):
                out.update(v for v in value if isinstance(v, str))
            else:
                out |= _named_archs(value)
    elif isinstance(data, list):
        for item in data:
            out |= _named_archs(item)
    return out


def _check_losses(cfg: C.TrainConfig, label: str) -> None:
    """A pytorch-metric-learning loss or miner (any name outside the papers' own) and
    its parameters against the class's constructor, now rather than at preflight
    (`plan` too); the papers' own losses are checked when preflight builds them, so
    resolving them never imports the library."""
    while cfg is not None:
        loss = cfg.loss
        if loss.name not in C.OWN_LOSSES or (loss.miner is not None and loss.miner not in C.OWN_MINERS):
            from benchmark.losses.metric import check_loss_config

            try:
                check_loss_config(loss)
            except ConfigError as exc:
                raise ConfigError(f"{label}: {exc}") from None
        cfg = cfg.distill.teacher if cfg.distill is not None else None


class Resolver:
    """Resolves recipe rows into validated configs for one context."""

    def __init__(self, catalog: Catalog, ctx: Context):
        self.catalog = catalog
        self.ctx = ctx
        self.scopes_used: set[Scope] = set()  # scoped overrides that matched a run

    def merged(self, recipe: Recipe, binding: Binding, dataset: str, cropped: bool, seed: int,
               extra: Iterable[dict] = (), depth: int = 0, overrides: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {}
        chain = recipe.chain()
        for r in chain:
            data = merge_layer(data, r.config)
        for r in chain:
            data = merge_layer(data, r.datasets.get(dataset, {}))
        data = merge_layer(data, binding.set)
        for layer in extra:
            data = merge_layer(data, layer)
        profiles = recipe.profile_layers(self.ctx.profile)
        for prof in profiles:
            data = merge_layer(data, prof.set)
            data = merge_layer(data, prof.datasets.get(dataset, {}))
        layers = []
        for entry in (self.ctx.overrides if overrides else []):
            scope = entry[2] if len(entry) > 2 else None
            if scope is not None:
                if not scope.matches(recipe.name, binding, dataset, cropped):
                    continue
                self.scopes_used.add(scope)
            layers.append(entry[1])
        if any(prof.arch_set for prof in profiles):
            probe = data
            for layer in layers:
                probe = merge_layer(probe, layer)
            named = _named_archs(probe)
            for prof in profiles:
                for arch, layer in prof.arch_set.items():
                    if arch in named:
                        data = merge_layer(data, layer)
        for layer in layers:
            data = merge_layer(data, layer)
        data = merge(data, {"seed": seed, "data": {"dataset": dataset}})
        if cropped:
            data = merge(data, {"data": {"cropped": True}})
        label = self._label(binding, dataset, cropped, seed)
        data = expand_sugar(data, label)
        teacher = get_path(data, "distill.teacher")
        if isinstance(teacher, dict) and "ref" in teacher:
            if depth > 3:
                raise ConfigError(f"{label}: distill.teacher: references nest too deep")
            tcfg = self.resolve_ref(teacher["ref"], teacher.get("set") or {}, dataset, cropped, seed,
                                    f"{label}: distill.teacher.ref", depth + 1, overrides)
            data["distill"]["teacher"] = C.to_dict(tcfg)
        return data

    def _label(self, binding: Binding, dataset: str, cropped: bool, seed: int) -> str:
        """Where a merged config came from, for its errors: the recipe's run, and the
        command-line overrides on top of it (a mistake may be in either)."""
        extra = sorted({entry[0] for entry in self.ctx.overrides})
        over = f", with {', '.join(extra)}" if extra else ""
        return (f"{binding.label} ({dataset}{', cropped' if cropped else ''}, seed {seed}, "
                f"profile {self.ctx.profile}{over})")

    def resolve(self, recipe: Recipe, binding: Binding, dataset: str, cropped: bool, seed: int,
                extra: Iterable[dict] = (), depth: int = 0, overrides: bool = True) -> C.TrainConfig:
        """The validated config of one run; ``overrides=False``: the recipe row's own
        config under the profile, without the command's --set/--overrides."""
        data = self.merged(recipe, binding, dataset, cropped, seed, extra, depth, overrides)
        label = self._label(binding, dataset, cropped, seed)
        cfg = C.load_config(data, label)
        _check_losses(cfg, label)
        cfg = _apply_models(cfg, recipe.profile_layers(self.ctx.profile))
        return C.normalize(cfg)

    def resolve_ref(self, ref: str, set_layer: dict, dataset: str, cropped: bool, seed: int,
                    where: str, depth: int, overrides: bool = True) -> C.TrainConfig:
        name, _, row = ref.partition("#")
        if name not in self.catalog.recipe_names():
            raise ConfigError(f"{where}: no recipe '{name}'")
        recipe = self.catalog.recipe(name)
        if row not in recipe.rows:
            raise ConfigError(f"{where}: recipe '{name}' has no row '{row}'")
        bindings = recipe.rows[row].bindings
        binding = bindings[0]
        if len(bindings) > 1:
            table = self.catalog.table(recipe.table_key)
            matching = [b for b in bindings
                        if any(c.dataset == dataset for c in table.select_columns(b.where, b.label))]
            if len(matching) != 1:
                raise ConfigError(f"{where}: row '{row}' of '{name}' has several runs; cannot pick one")
            binding = matching[0]
        extra = [expand_dotted(set_layer)]
        return self.resolve(recipe, binding, dataset, cropped, seed, extra, depth, overrides)
