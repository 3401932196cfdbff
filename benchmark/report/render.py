"""Paper-vs-reproduced table pages: Markdown (tabulate, pipe format) and LaTeX (booktabs).

Each table keeps the paper's layout: its rows, row-label columns and column group
headers. Every non-cited row prints up to five lines: the paper's number, the
reproduced mean ± sample std (n seeds), the difference reproduced − paper, and,
when runs logged the clean fixed-budget protocol beside the paper's best-on-test
selection, the clean numbers and their difference. Cited rows print the paper's
numbers only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tabulate import tabulate

from benchmark.config import to_dict
from benchmark.recipes import Recipe
from benchmark.tables import Table

from .cells import SELECTION_TEXT, dataset_title

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


def _lookup(node: Any, parts: list[str]) -> list[Any]:
    if not parts:
        return [node]
    if not isinstance(node, dict):
        return []
    head, rest = parts[0], parts[1:]
    if head in node:
        return _lookup(node[head], rest)
    if head == "member" and isinstance(node.get("members"), list):  # recipe sugar cohort.member
        out: list[Any] = []
        for m in node["members"]:
            out += _lookup(m, rest)
        return out
    return []


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
            found += _lookup(d, key.split("."))
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


# ---------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------


def decimals(v: Optional[float]) -> Optional[int]:
    if v is None:
        return None
    text = repr(float(v))
    if "e" in text or "." not in text:
        return 0
    return len(text.split(".")[1])


def column_decimals(table: Table, stds: bool = False) -> list[int]:
    """Decimals printed in each column (YAML drops trailing zeros: 69.60 is stored as 69.6)."""
    out = []
    for i in range(len(table.columns)):
        if stds:
            ds = [decimals(r.stds[i]) for r in table.rows if r.stds is not None and r.stds[i] is not None]
        else:
            ds = [decimals(r.values[i]) for r in table.rows if r.values[i] is not None]
        out.append(max(ds) if ds else 2)
    return out


@dataclass
class CellText:
    paper: str
    reproduced: str
    diff: str
    clean: str
    clean_diff: str


def _mean_text(mean, std, n, d: int, tex: bool, spread=None) -> str:
    """``mean ± std (n=N)``; with ``spread`` (std over an ensemble's learners, the
    paper's ± for such cells): ``mean ± spread (n=N; seeds ± std)``."""
    if mean is None:
        return DASH if not tex else "--"
    sd = max(d, 2)
    pm = r" \pm " if tex else " ± "
    if spread is not None:
        body = f"{mean:.{d}f}{pm}{spread:.{sd}f}"
        if tex:
            seeds = f"; seeds ${pm.strip()} {std:.{sd}f}$" if std is not None else ""
            return f"${body}$ ({n}{seeds})"
        seeds = f"; seeds{pm}{std:.{sd}f}" if std is not None else ""
        return f"{body} (n={n}{seeds})"
    body = f"{mean:.{d}f}" + (f"{pm}{std:.{sd}f}" if std is not None else "")
    if tex:
        return f"${body}$ ({n})" if n else f"${body}$"
    return f"{body} (n={n})" if n else body


def _diff_text(mean, paper, d: int, tex: bool) -> str:
    if mean is None or paper is None:
        return DASH if not tex else "--"
    text = f"{mean - paper:+.{d}f}"
    return f"${text}$" if tex else text


def cell_text(cell: dict, d: int, tex: bool = False, sd: int = 2) -> CellText:
    """Texts of one cell; d / sd: decimals of the column's printed values / printed stds."""
    pv, ps = cell["paper_value"], cell["paper_std"]
    if pv is None:
        paper = DASH if not tex else "--"
    else:
        pm = r" \pm " if tex else " ± "
        paper = f"{pv:.{d}f}" + (f"{pm}{ps:.{sd}f}" if ps is not None else "")
        if tex:
            paper = f"${paper}$"
    n = cell["n"] if cell["kind"] != "stat" else 0  # a computed statistic has no seeds
    return CellText(
        paper=paper,
        reproduced=_mean_text(cell["reproduced"], cell["std"], n, d, tex, cell.get("spread")),
        diff=_diff_text(cell["reproduced"], pv, d, tex),
        clean=_mean_text(cell["clean"], cell["clean_std"], cell["clean_n"], d, tex, cell.get("clean_spread")),
        clean_diff=_diff_text(cell["clean"], pv, d, tex),
    )


# ---------------------------------------------------------------------------
# Layout shared by Markdown and LaTeX
# ---------------------------------------------------------------------------


@dataclass
class Line:
    row: str  # row name on the first line of a row, "" after
    labels: list[str]
    kind: str  # paper | reproduced | diff | clean | clean_diff
    label: str  # text of the line-kind column
    values: list[str]
    cited: bool = False
    first: bool = False


def table_lines(table: Table, cells: list[dict], *, tex: bool = False, with_paper: bool = True,
                has_recipe: bool = True) -> list[Line]:
    by_key = {(c["row"], c["column"]): c for c in cells}
    decs = column_decimals(table)
    sdecs = column_decimals(table, stds=True)
    out: list[Line] = []
    for row in table.rows:
        row_cells = [by_key.get((row.name, col.id)) for col in table.columns]
        texts = [cell_text(c, decs[i], tex, sdecs[i]) if c is not None else None for i, c in enumerate(row_cells)]
        labels = [str(row.labels.get(name, "")) for name in table.row_labels]
        empty = [""] * len(labels)
        name = row.name + (f" {CITED_MARK}" if row.cited else "")

        def vals(attr: str) -> list[str]:
            return [getattr(t, attr) if t is not None else DASH for t in texts]

        kinds: list[tuple[str, str]] = []
        if with_paper:
            kinds.append(("paper", "paper"))
        if not row.cited and has_recipe:
            run_sel = sorted({c["selection"] for c in row_cells
                              if c is not None and c["kind"] == "run" and c["selection"]})
            sel = selection_label(run_sel[0]) if len(run_sel) == 1 else ""
            kinds.append(("reproduced", f"reproduced ({sel})" if sel and "best" in run_sel[0] else "reproduced"))
            if with_paper:
                kinds.append(("diff", r"$\Delta$" if tex else "Δ"))
            if any(c is not None and c["clean"] is not None for c in row_cells):
                kinds.append(("clean", "clean (last eval.)"))
                if with_paper:
                    kinds.append(("clean_diff", r"$\Delta$ clean" if tex else "Δ clean"))
        for j, (kind, label) in enumerate(kinds):
            out.append(Line(row=name if j == 0 else "", labels=labels if j == 0 else empty, kind=kind,
                            label=label, values=vals(kind), cited=row.cited, first=j == 0))
    return out


def column_headers(table: Table) -> list[str]:
    return [f"{c.group} · {c.header}" if c.group else c.header for c in table.columns]


def legend_markdown(table: Table, cells: list[dict]) -> list[str]:
    lines = ["Each row: the paper's number; the reproduced mean ± sample standard deviation over "
             "seeds (n = number of seeds); Δ = reproduced − paper. "
             f"{DASH}: not printed by the paper, or nothing ran."]
    if any(r.cited for r in table.rows):
        lines.append(f"{CITED_MARK} cited: another paper's number, printed as is and never reproduced.")
    if any(c.is_stat for c in table.columns):
        lines.append("#params and FLOPs are computed from the paper-profile model (no training); "
                     "FLOPs count multiply-accumulates.")
    if any(c.get("spread") is not None for c in cells):
        lines.append("Individual-learner cells: ± is the standard deviation over the ensemble's learners, "
                     "as the paper prints it (averaged over seeds); \"seeds ±\" is the one over seeds.")
    if any(c["clean"] is not None for c in cells):
        lines.append("reproduced (best on test): the evaluation with the best test Recall@1 (the paper's "
                     "protocol); clean (last eval.): the last evaluation of the same runs.")
    return [" ".join(lines), ""]


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
    parts += [f"LaTeX: [{t.id}.tex]({t.id}.tex)", ""]
    parts += footer_markdown(ctx)
    return "\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------------------
# LaTeX
# ---------------------------------------------------------------------------

_TEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_TEX_UNICODE = {
    "²": r"\textsuperscript{2}", "³": r"\textsuperscript{3}", "×": r"$\times$", "→": r"$\rightarrow$",
    "†": r"\textsuperscript{\dag}", "‡": r"\textsuperscript{\ddag}", "±": r"$\pm$", "λ": r"$\lambda$",
    "Δ": r"$\Delta$", "·": r"$\cdot$", "—": "---", "–": "--", "−": "$-$", "’": "'", "“": "``", "”": "''",
}


_POWER = re.compile(r"(\d+)\^(-?\d+)")  # "10^7" as printed in headers -> $10^{7}$


def _escape_chars(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch) or _TEX_UNICODE.get(ch) or ch for ch in text)


def tex_escape(text: str) -> str:
    """Escape LaTeX specials (% & _ # $ { } ~ ^ \\) and spell the papers' Unicode symbols."""
    text, out, pos = str(text), [], 0
    for m in _POWER.finditer(text):
        out.append(_escape_chars(text[pos:m.start()]))
        out.append(f"${m.group(1)}^{{{m.group(2)}}}$")
        pos = m.end()
    out.append(_escape_chars(text[pos:]))
    return "".join(out)


def _groups(table: Table) -> list[tuple[Optional[str], int]]:
    spans: list[tuple[Optional[str], int]] = []
    for c in table.columns:
        if spans and spans[-1][0] == c.group and c.group is not None:
            spans[-1] = (c.group, spans[-1][1] + 1)
        else:
            spans.append((c.group, 1))
    return spans


def latex_table(ctx: PageContext, cells: list[dict]) -> str:
    t = ctx.table
    nlab = 2 + len(t.row_labels)
    lines = table_lines(t, cells, tex=True, has_recipe=ctx.recipe is not None)
    out = [
        f"% {display_name(t)}: paper vs reproduced (profile {ctx.profile}). Needs \\usepackage{{booktabs}}.",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
    ]
    cap = f"{tex_escape(display_name(t))}: {tex_escape(t.title)}. Profile \\texttt{{{tex_escape(ctx.profile)}}}"
    if ctx.selections:
        cap += "; model selection: " + ", ".join(f"\\texttt{{{tex_escape(s)}}}" for s in ctx.selections)
    cap += "."
    if ctx.not_a_reproduction:
        cap += " \\textbf{" + tex_escape(SMOKE_TEXT.format(profile=ctx.profile)) + "}"
    out.append(f"\\caption{{{cap}}}")
    out.append(f"\\label{{tab:{t.paper}-{t.id}}}")
    out.append(r"\begin{tabular}{" + "l" * nlab + "c" * len(t.columns) + "}")
    out.append(r"\toprule")
    spans = _groups(t)
    if any(g for g, _ in spans):
        head = [""] * nlab
        rules = []
        col = nlab + 1
        for g, width in spans:
            if g:
                head.append(f"\\multicolumn{{{width}}}{{c}}{{{tex_escape(g)}}}")
                rules.append(f"\\cmidrule(lr){{{col}-{col + width - 1}}}")
            else:
                head += [""] * width
            col += width
        out.append(" & ".join(head) + r" \\")
        out.append(" ".join(rules))
    head = ["Method", *[tex_escape(x) for x in t.row_labels], "", *[tex_escape(c.header) for c in t.columns]]
    out.append(" & ".join(head) + r" \\")
    out.append(r"\midrule")
    for i, ln in enumerate(lines):
        if ln.first and i > 0:
            out.append(r"\addlinespace")
        label = ln.label if ln.kind in ("diff", "clean_diff") else tex_escape(ln.label)
        row = [tex_escape(ln.row), *[tex_escape(x) for x in ln.labels], label, *ln.values]
        out.append(" & ".join(row) + r" \\")
    out.append(r"\bottomrule")
    out.append(r"\end{tabular}")
    notes = [
        "Per row: the paper's number, the reproduced mean $\\pm$ sample std (number of seeds), "
        "$\\Delta$ = reproduced $-$ paper; -- : not printed or nothing ran."
    ]
    if any(r.cited for r in t.rows):
        notes.append("\\textsuperscript{\\ddag} cited: another paper's number, not reproduced.")
    if any(c.is_stat for c in t.columns):
        notes.append("\\#params and FLOPs computed from the paper-profile model.")
    if ctx.assumed:
        notes.append("Assumed settings: " + "; ".join(
            f"\\texttt{{{tex_escape(k)}}}" + (f" = {tex_escape(v)}" if v is not None else "") + f" ({tex_escape(why)})"
            for k, v, why in ctx.assumed) + ".")
    out.append(r"\par\smallskip{\footnotesize " + " ".join(notes) + "}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def write_table_page(ctx: PageContext, cells: list[dict], out_dir: Path) -> list[Path]:
    folder = out_dir / ctx.table.paper
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / f"{ctx.table.id}.md"
    tex = folder / f"{ctx.table.id}.tex"
    md.write_text(render_markdown(ctx, cells), encoding="utf-8")
    tex.write_text(latex_table(ctx, cells), encoding="utf-8")
    return [md, tex]


__all__ = ["PageContext", "markdown_table", "latex_table", "render_markdown", "write_table_page",
           "display_name", "tex_escape", "assumed_values", "dataset_title"]
