"""Stat cells of a row's variants: when runs of a variant changed the model (e.g.
``--set abe.arch=bvlc_googlenet``), its #params and FLOPs are those of the
paper-profile model with the variant's model changes, the profile's arch_map
undone (tiny_bvlc_googlenet -> bvlc_googlenet), printed on the variant's line."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from benchmark.config.models import reported_model, with_reported_model
from benchmark.recipes import Recipe


def arch_map(recipe: Recipe, profile: str) -> dict[str, str]:
    """The architecture renames a profile applies to every model of a recipe's jobs."""
    out: dict[str, str] = {}
    for prof in recipe.profile_layers(profile):
        out.update(prof.arch_map)
    return out


def variant_model_config(paper_cfg, own_cfg, variant_cfg, renames: dict[str, str]):
    """The paper-profile config of a row with a variant's model changes (its
    fields that differ from the row's own model under the same profile; an arch
    the profile renamed is named back), or None when the variant kept the model."""
    own, var = reported_model(own_cfg), reported_model(variant_cfg)
    if type(own) is not type(var):
        return None
    changes = {f.name: getattr(var, f.name) for f in dataclasses.fields(var)
               if getattr(var, f.name) != getattr(own, f.name)}
    changes.pop("pretrained", None)  # counts do not depend on the weights
    if not changes:
        return None
    if "arch" in changes:
        back = {small: big for big, small in renames.items()}
        changes["arch"] = back.get(changes["arch"], changes["arch"])
    return with_reported_model(paper_cfg, dataclasses.replace(reported_model(paper_cfg), **changes))


def stat_variants(stat_cells: list[tuple[dict, Any, Any]], run_variants: dict[tuple, dict],
                  renames: Callable[[Recipe], dict[str, str]], own_cfg: Callable[[Any], Any],
                  model_stats: Callable[[Any], tuple[dict | None, str]]) -> list[dict]:
    """One stat record per (stat cell, variant of its row whose runs changed the network).

    ``stat_cells``: (the row's own stat record, its binding, its paper-profile config);
    ``run_variants``: (paper, table, row) -> variant label -> the variant's config;
    ``model_stats``: config -> (stats with ``arch``, or None; a note)."""
    out = []
    for cell, cb, paper_cfg in stat_cells:
        variants = run_variants.get((cell["paper"], cell["table"], cell["row"]), {})
        for label, cfg in sorted(variants.items()):
            if cfg is None:
                continue
            vcfg = variant_model_config(paper_cfg, own_cfg(cb), cfg, renames(cb.recipe))
            if vcfg is None:
                continue
            stats, note = model_stats(vcfg)
            if stats is not None and (stats["arch"], stats.get(cell["metric"])) == (cell["backbone"],
                                                                                  cell["reproduced"]):
                continue  # a change that leaves the network as it is (e.g. freeze_bn)
            rec = dict(cell, variant=label, note=note, reproduced=None, n=0, backbone=None)
            if stats is not None:
                rec["backbone"] = stats["arch"]
                if stats.get(cell["metric"]) is not None:
                    rec["reproduced"], rec["n"] = float(stats[cell["metric"]]), 1
            out.append(rec)
    return out
