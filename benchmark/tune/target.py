"""Which run a tuning command tunes: the one run its selection names (a row's λ-0
companion left out), and what follows from it (training classes, study name)."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Optional

from benchmark.errors import ConfigError
from benchmark.tune.space import default_space
from benchmark.tune.trials import trial_config


@dataclasses.dataclass
class Target:
    recipe: Any
    row: str
    binding: int
    dataset: str
    cropped: bool
    config: Any  # TrainConfig under the user's profile and overrides
    label: str
    others: int = 0  # further runs the same selection makes (the overrides file's scope leaves them alone)


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def fix_rows(catalog, recipes, rows: Optional[list[str]]) -> Optional[list[str]]:
    """Accept a row name up to case and punctuation ('ProxyNCA' for 'Proxy-NCA') when unambiguous."""
    if not rows:
        return rows
    names = [r.name for rec in recipes for r in catalog.table(rec.table_key).rows]
    out = []
    for row in rows:
        if row not in names:
            matches = sorted({n for n in names if _norm(n) == _norm(row)})
            if len(matches) == 1:
                row = matches[0]
        out.append(row)
    return out


def find_target(catalog, recipes, ctx, selector: str, pick: Optional[int] = None) -> Target:
    """The one run a tuning selection names (teachers and a row's λ-0 companion left out);
    ``pick`` (1-based) chooses among several, e.g. a row's runs with a 2× and a 4× teacher."""
    from benchmark.recipes import Resolver, config_hash, expand, row_runs

    expand(catalog, recipes, ctx)  # checks --row names and every config of the selection
    resolver = Resolver(catalog, ctx)
    found: dict[str, Target] = {}
    for recipe in recipes:
        for rr in row_runs(catalog, recipe, ctx):
            if not [c for c in rr.columns if not c.is_stat]:
                continue
            cfg = resolver.resolve(recipe, rr.binding, rr.dataset, rr.cropped, 0)
            h = config_hash(cfg)
            if h in found:
                continue
            bindings = recipe.rows[rr.row].bindings
            where = f" {json.dumps(rr.binding.where, ensure_ascii=False)}" if len(bindings) > 1 else ""
            label = f"{recipe.name} {rr.row}{where} {rr.dataset}{' cropped' if rr.cropped else ''}"
            found[h] = Target(recipe, rr.row, bindings.index(rr.binding), rr.dataset, rr.cropped, cfg, label)
    targets = list(found.values())
    if len(targets) > 1:
        tunable = [t for t in targets if default_space(t.config)]
        if len(tunable) == 1:  # e.g. Table 6: the row's Independent (λ 0) run beside its DM² run
            targets = tunable
    others = len(found) - 1
    if pick is not None:
        if not 1 <= pick <= len(targets):
            raise ConfigError(f"--run {pick}: the selection has {len(targets)} run(s) to tune")
        return dataclasses.replace(targets[pick - 1], others=others)
    if len(targets) != 1:
        shown = "; ".join(f"{i}: {t.label}" for i, t in enumerate(targets[:6], 1)) + ("; ..." if len(targets) > 6 else "")
        raise ConfigError(f"{selector}: tune needs exactly one run but the selection has {len(targets)} ({shown}); "
                          f"narrow it with --row and --dataset (or pick one with --run N)")
    return dataclasses.replace(targets[0], others=others)


def train_classes(cfg, data_root: Optional[str], device: str) -> int:
    """Training classes of the run's dataset before any are held out."""
    from benchmark.runner.binding import bind_config
    from benchmark.runner.home import benchmark_home
    from benchmark.train import prepare

    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val_classes=0))
    cfg = bind_config(cfg, data_root=data_root, device=device)
    splits = prepare(cfg, benchmark_home() / "tune" / "_data")
    return int(splits.train.num_classes)


def study_name(target: Target, profile: str, digest: str) -> str:
    base = f"{target.recipe.name}-{target.row}-{target.dataset}{'-cropped' if target.cropped else ''}-{profile}"
    base = re.sub(r"[^A-Za-z0-9._+-]+", "-", base).strip("-")
    return f"{base}-{digest}"


def check_teacher_fixed(job, base_cfg, catalog) -> None:
    """A distillation study tunes the student's training, never its (pre-trained, shared) teacher."""
    from benchmark.recipes import config_hash

    if base_cfg.distill is None:
        return
    want = config_hash(base_cfg.distill.teacher)
    for p in job.space:
        for v in (p.low, p.high):
            cfg = trial_config(job, {p.key: v}, catalog)
            if cfg.distill is None or config_hash(cfg.distill.teacher) != want:
                raise ConfigError(f"--param {p.key}: changes the teacher of this distillation run; "
                                  f"tune the teacher's own row instead")
