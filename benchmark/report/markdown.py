"""Markdown table pages (tabulate, pipe format)."""

from __future__ import annotations

from tabulate import tabulate

from benchmark.recipes import Table

from .page import CITED_MARK, DASH, PageContext, backbones_text, footer_markdown, header_markdown
from .text import column_headers, table_lines

def legend_markdown(table: Table, cells: list[dict]) -> list[str]:
    lines = ["Each row: the paper's number; the reproduced mean ± sample standard deviation over "
             "seeds (n = number of seeds); Δ = reproduced − paper. "
             f"{DASH}: not printed by the paper, or nothing ran."]
    if any(r.cited for r in table.rows):
        lines.append(f"{CITED_MARK} cited: another paper's number, printed as is and never reproduced.")
    if any(c["cited"] and c.get("series") for c in cells):
        lines.append(f"A {CITED_MARK} row with a \"re-run\" line: the cited method trained again under this "
                     "paper's protocol (its backbone, augmentation, schedule and optimiser, the method's own "
                     "stated hyperparameters; see \"Re-run rows\" below); \"cited\" is the number its own "
                     "paper printed.")
    if any(c.is_stat for c in table.columns):
        lines.append("#params and FLOPs are computed from the paper-profile model (no training)"
                     f"{backbones_text(cells, '`')}; FLOPs count multiply-accumulates.")
    if any(c.get("spread") is not None for c in cells):
        lines.append("Individual-learner cells: ± is the standard deviation over the ensemble's learners, "
                     "as the paper prints it (averaged over seeds); \"seeds ±\" is the one over seeds.")
    if any(c["clean"] is not None for c in cells):
        lines.append("reproduced (best on test): the evaluation with the best test Recall@1 (the paper's "
                     "protocol); clean (last eval.): the last evaluation of the same runs.")
    return [" ".join(lines), ""]


def rerun_markdown(ctx: PageContext) -> list[str]:
    """The re-run cited rows: what the cited paper states and what is assumed."""
    rows = [r for r in (ctx.recipe.rows.values() if ctx.recipe is not None else []) if r.rerun]
    if not rows:
        return []
    out = ["Re-run rows (cited methods under this paper's protocol):", ""]
    for r in rows:
        out.append(f"- **{r.name}**: {r.note}" if r.note else f"- **{r.name}**")
        out += [f"  - stated: `{k}`: {v}" for k, v in r.stated.items()]
        out += [f"  - assumed: `{k}`: {v}" for k, v in r.assumed.items()]
    return out + [""]


def markdown_table(table: Table, cells: list[dict], *, with_paper: bool = True, has_recipe: bool = True) -> str:
    lines = table_lines(table, cells, with_paper=with_paper, has_recipe=has_recipe)
    headers = ["Method", *table.row_labels, "", *column_headers(table)]
    rows = [[ln.row, *ln.labels, ln.label, *ln.values] for ln in lines]
    rows = [[str(v).replace("|", r"\|") for v in r] for r in rows]
    headers = [h.replace("|", r"\|") for h in headers]
    align = ["left"] * (2 + len(table.row_labels)) + ["right"] * len(table.columns)
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=align)


def render_markdown(ctx: PageContext, cells: list[dict]) -> str:
    t = ctx.table
    parts = header_markdown(ctx)
    parts += [markdown_table(t, cells, has_recipe=ctx.recipe is not None), ""]
    parts += legend_markdown(t, cells)
    parts += rerun_markdown(ctx)
    parts += [f"LaTeX: [{t.id}.tex]({t.id}.tex)", ""]
    parts += footer_markdown(ctx)
    return "\n".join(parts).rstrip() + "\n"
