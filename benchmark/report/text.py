"""The texts of a table's cells and the lines of a paper-vs-reproduced table,
shared by the Markdown and LaTeX pages.

Every non-cited row prints up to five lines: the paper's number, the reproduced
mean ± sample std (n seeds), the difference reproduced − paper, and, when runs
logged the clean fixed-budget protocol beside the paper's best-on-test
selection, the clean numbers and their difference. Then one line per variant
of the row (a config that differs from the recipe's, e.g. made with --set),
labelled by what it changed. Cited rows print the paper's numbers only, unless
the recipe re-runs them under the paper's protocol (``rerun: true``): then the
cited number, the re-run and their difference, each line labelled as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from benchmark.recipes import Table

from .page import CITED_MARK, DASH, selection_label

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
    kind: str  # paper | reproduced | diff | clean | clean_diff | variant
    label: str  # text of the line-kind column
    values: list[str]
    cited: bool = False
    first: bool = False


def table_lines(table: Table, cells: list[dict], *, tex: bool = False, with_paper: bool = True,
                has_recipe: bool = True) -> list[Line]:
    protocol = {"dm2": "DM²", "abe": "ABE"}.get(table.paper, table.paper.upper())
    if tex:
        protocol = protocol.replace("²", "$^2$")
    by_key = {(c["row"], c["column"]): c for c in cells if c.get("variant") is None}
    variants: dict[str, dict[str, dict[str, dict]]] = {}  # row -> variant -> column -> cell
    for c in cells:
        if c.get("variant") is not None:
            variants.setdefault(c["row"], {}).setdefault(c["variant"], {})[c["column"]] = c
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
        rerun = row.cited and has_recipe and any(c is not None and c.get("series") for c in row_cells)
        if rerun:  # a cited row re-run under this paper's protocol: both numbers, marked
            if with_paper:
                kinds.append(("paper", "cited (its own protocol)"))
            kinds.append(("reproduced", f"re-run ({protocol} protocol)"))
            if with_paper:
                kinds.append(("diff", r"$\Delta$ re-run $-$ cited" if tex else "Δ re-run − cited"))
        elif with_paper:
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
        if has_recipe and (not row.cited or rerun):
            for variant, by_col in sorted(variants.get(row.name, {}).items()):
                values = [cell_text(by_col[col.id], decs[i], tex, sdecs[i]).reproduced if col.id in by_col else DASH
                          for i, col in enumerate(table.columns)]
                out.append(Line(row="", labels=empty, kind="variant", label=f"variant: {variant}",
                                values=values, cited=False, first=False))
    return out


def column_headers(table: Table) -> list[str]:
    return [f"{c.group} · {c.header}" if c.group else c.header for c in table.columns]
