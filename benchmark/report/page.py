"""What a report page says about how its numbers were made: its context, the
assumed settings with the values the runs used, the header and footer text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from benchmark.config import to_dict, values_at
from benchmark.recipes import DATASET_NAMES, Column, Recipe, Table

from .cells import SELECTION_TEXT

PAPER_NAMES = {"dm2": "DM²", "abe": "ABE"}
DASH = "—"
CITED_MARK = "‡"  # the papers already use † in row names (backbone footnotes)
SMOKE_TEXT = ("NOT A REPRODUCTION: these numbers come from synthetic data and tiny models trained "
              "for a few iterations (profile {profile}); they only show that the pipeline runs.")


# ---------------------------------------------------------------------------
# Context of one table page
# ---------------------------------------------------------------------------


@dataclass
class PageContext:
    """What a page says about how its numbers were made."""

    table: Table
    recipe: Optional[Recipe]
    profile: str
    profile_description: str = ""
    synthetic: bool = False  # any run of the table uses generated data
    selections: list[str] = field(default_factory=list)
    assumed: list[tuple[str, Optional[str], str]] = field(default_factory=list)  # key, value text, why
    row_notes: dict[str, str] = field(default_factory=dict)
    run_count: int = 0
    cells_total: int = 0
    cells_reproduced: int = 0
    generated: str = ""

    @property
    def not_a_reproduction(self) -> bool:
        """The page shows numbers made with synthetic data or the smoke profile."""
        return self.recipe is not None and (self.profile == "smoke" or self.synthetic)


def backbones_text(cells: list[dict], quote: str = "") -> str:
    """Which backbone the stat cells' numbers were counted on, from the cells:
    `` on backbone googlenet`` (every row's own line), then the variant lines that
    counted another network, e.g. ``; variant abe.arch=tiny_bvlc_googlenet: backbone
    bvlc_googlenet at the paper's size``; "" when no stat cell names one."""
    stats = [c for c in cells if c.get("kind") == "stat" and c.get("backbone")]
    own = sorted({c["backbone"] for c in stats if c.get("variant") is None})
    variants = sorted({(c["variant"], c["backbone"]) for c in stats if c.get("variant") is not None})
    text = f" on backbone {', '.join(f'{quote}{b}{quote}' for b in own)}" if own else ""
    for variant, backbone in variants:
        text += f"; variant {variant}: backbone {quote}{backbone}{quote} at the paper's size"
    return text


def value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def assumed_values(recipe: Recipe, configs: list) -> list[tuple[str, Optional[str], str]]:
    """(key, value used in this report's runs, why) for every assumed setting of the recipe."""
    dicts = [to_dict(c) for c in configs]
    out = []
    for key, why in recipe.all_assumed().items():
        found = []
        for d in dicts:
            found += values_at(d, key)
        texts = sorted({value_text(v) for v in found})
        if not texts:
            text = None
        elif len(texts) == 1:
            text = texts[0]
        else:
            text = "varies by row: " + ", ".join(texts)
        out.append((key, text, " ".join(why.split())))
    return out


def display_name(table: Table) -> str:
    paper = PAPER_NAMES.get(table.paper, table.paper.upper())
    m = re.match(r"^(table|figure)(.*)$", table.id)
    what = f"{m.group(1).capitalize()} {m.group(2)}" if m else table.id
    return f"{paper} {what}"


def selection_label(selection: Optional[str]) -> str:
    return {"best_test": "best on test", "best_val": "best on val", "last": "last eval."}.get(selection or "", "")


def header_markdown(ctx: PageContext) -> list[str]:
    t = ctx.table
    lines = [f"# {display_name(t)}: {t.title}", ""]
    if ctx.not_a_reproduction:
        lines += [f"**{SMOKE_TEXT.format(profile=ctx.profile)}**", ""]
    prof = f"- Profile: `{ctx.profile}`"
    if ctx.profile_description:
        prof += f": {' '.join(ctx.profile_description.split())}"
    elif ctx.profile == "paper":
        prof += ": the papers' settings."
    lines.append(prof)
    if ctx.recipe is None:
        lines.append("- No recipe runs this table yet: paper numbers only.")
    else:
        for sel in ctx.selections:
            lines.append(f"- Model selection: `{sel}`: {SELECTION_TEXT.get(sel, sel)}")
        if "best_test" in ctx.selections:
            lines.append("- Clean protocol: where runs logged it, the last evaluation of the same runs "
                         "(`final_last`) is shown beside the paper's best-on-test numbers.")
        lines.append(f"- Runs: {ctx.run_count} finished MLflow run(s); cells reproduced: "
                     f"{ctx.cells_reproduced} of {ctx.cells_total}")
        lines.append(f"- Files: `tables/{t.key}.yaml`, `recipes/{ctx.recipe.name}.yaml`")
    if ctx.generated:
        lines.append(f"- Generated: {ctx.generated}")
    lines.append("")
    if t.caption:
        lines += ["> " + " ".join(t.caption.split()), ""]
    return lines


def footer_markdown(ctx: PageContext) -> list[str]:
    lines = []
    if ctx.assumed:
        lines += ["## Assumed settings", "",
                  "Values the paper leaves open, as chosen by the recipe (value used by these runs):", ""]
        for key, value, why in ctx.assumed:
            v = f" = `{value}`" if value is not None else ""
            lines.append(f"- `{key}`{v}: {why}")
        lines.append("")
    notes = {k: v for k, v in ctx.row_notes.items() if v}
    if notes:
        lines += ["## Row notes", ""]
        for row, note in notes.items():
            lines.append(f"- {row}: {' '.join(note.split())}")
        lines.append("")
    return lines


def dataset_title(col: Column) -> str:
    return DATASET_NAMES.get(col.dataset, col.dataset) + (" (cropped)" if col.cropped else "")
