"""LaTeX table pages (booktabs)."""

from __future__ import annotations

import re
from typing import Optional

from benchmark.recipes import Table

from .page import PageContext, backbones_text, display_name
from .text import table_lines

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
    """The table as a ``table*`` float scaled to the text width (it fits a one- or
    two-column page), a short caption, and the notes; the assumed settings stay on
    the Markdown page, which the caption points to. Needs booktabs and graphicx."""
    t = ctx.table
    nlab = 2 + len(t.row_labels)
    lines = table_lines(t, cells, tex=True, has_recipe=ctx.recipe is not None)
    out = [
        f"% {display_name(t)}: paper vs reproduced (profile {ctx.profile}). "
        "Needs \\usepackage{booktabs} and \\usepackage{graphicx}.",
        r"\begin{table*}[t]",
        r"\centering",
        r"\small",
    ]
    cap = f"{tex_escape(display_name(t))}: {tex_escape(t.title)}. Profile \\texttt{{{tex_escape(ctx.profile)}}}"
    if ctx.selections:
        cap += "; model selection: " + ", ".join(f"\\texttt{{{tex_escape(s)}}}" for s in ctx.selections)
    cap += "."
    if ctx.not_a_reproduction:
        cap += " \\textbf{Not a reproduction: smoke profile (synthetic data, tiny models).}"
    out.append(f"\\caption{{{cap}}}")
    out.append(f"\\label{{tab:{t.paper}-{t.id}}}")
    out.append(r"\resizebox{\textwidth}{!}{%")
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
    out.append(r"\end{tabular}}")
    notes = [
        "Per row: the paper's number, the reproduced mean $\\pm$ sample std (number of seeds), "
        "$\\Delta$ = reproduced $-$ paper; -- : not printed or nothing ran."
    ]
    if any(r.cited for r in t.rows):
        notes.append("\\textsuperscript{\\ddag} cited: another paper's number, not reproduced.")
    if any(c.is_stat for c in t.columns):
        notes.append(f"\\#params and FLOPs computed from the paper-profile model{tex_escape(backbones_text(cells))}.")
    if ctx.assumed:
        notes.append(f"Settings the paper leaves open: {len(ctx.assumed)}, listed with their reasons on the "
                     f"Markdown page ({tex_escape(t.paper)}/{tex_escape(t.id)}.md).")
    out.append(r"\par\smallskip{\footnotesize " + " ".join(notes) + "}")
    out.append(r"\end{table*}")
    return "\n".join(out) + "\n"
