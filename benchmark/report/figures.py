"""Figures (`kind: figure` table files) drawn with matplotlib, PNG and PDF.

The plot type follows from the table file's content, never from its name:

  columns with metric attention_masks        -> image grid (images x learners' masks),
                                                from the run artifact figures/attention_masks.npz
  columns with metric pair_cosine_histogram  -> one histogram panel per row (positive,
                                                negative, self pairs), figures/pair_cosine.npz
  rows with attrs.x_axis: training_progress  -> curves over epochs from each run's metric
                                                history test/<source>/<metric>, mean over seeds
  otherwise                                  -> a line plot of the final metric over the row
                                                attribute that varies (numeric preferred;
                                                `plot.x` in the table file names it),
                                                one line per attrs.series x column, one
                                                panel per column group (dataset)
"""

from __future__ import annotations

import json
import tempfile
import textwrap
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmark import names as N
from benchmark.recipes import Column, Table
from benchmark.runner.store import RunStore

from .markdown import markdown_table
from .page import PageContext, dataset_title, display_name, footer_markdown, header_markdown

ARTIFACTS = N.FIGURE_ARTIFACTS

CURVE_AXES = {"training_progress", "epoch", "epochs"}
RESERVED_ATTRS = {"series", "panel", "x_axis", "learners_shown", "channels_shown"}
PAIR_COLORS = {"positive": "tab:blue", "negative": "tab:red", "self": "tab:green"}


def figure_kind(table: Table) -> str:
    metrics = {c.metric for c in table.columns}
    if "attention_masks" in metrics:
        return "image_grid"
    if "pair_cosine_histogram" in metrics:
        return "histograms"
    if table.plot.get("x") in CURVE_AXES or any(r.attrs.get("x_axis") in CURVE_AXES for r in table.rows):
        return "curves"
    return "lines"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def x_attr(table: Table) -> Optional[str]:
    """The row attribute on the x axis: `plot.x`, else the varying attribute (numeric first)."""
    if table.plot.get("x"):
        return str(table.plot["x"])
    rows = [r for r in table.rows if not r.cited]
    if not rows:
        return None
    keys = [k for k in rows[0].attrs if k not in RESERVED_ATTRS and all(k in r.attrs for r in rows)]
    varying = [k for k in keys if len({json.dumps(r.attrs[k], sort_keys=True) for r in rows}) > 1]
    numeric = [k for k in varying if all(_is_number(r.attrs[k]) for r in rows)]
    return (numeric or varying or [None])[0]


def series_attr(table: Table) -> Optional[str]:
    if table.plot.get("series"):
        return str(table.plot["series"])
    return "series" if any("series" in r.attrs for r in table.rows) else None


def _panel_title(col: Column) -> str:
    return col.group or dataset_title(col)


def _panels(table: Table) -> "OrderedDict[str, list[Column]]":
    panels: "OrderedDict[str, list[Column]]" = OrderedDict()
    for c in table.columns:
        panels.setdefault(_panel_title(c), []).append(c)
    return panels


def _metric_label(metric: str) -> str:
    return metric.replace("recall@", "Recall@").replace("map@r", "MAP@R")


def _new_figure(n_panels: int, ncols: Optional[int] = None, size=(4.2, 3.4)):
    from matplotlib.figure import Figure

    ncols = ncols or min(n_panels, 3) or 1
    nrows = max(1, -(-n_panels // ncols))
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")


def draw_lines(table: Table, cells: list[dict]):
    by_key = {(c["row"], c["column"]): c for c in cells}
    xa, sa = x_attr(table), series_attr(table)
    rows = [r for r in table.rows if not r.cited]
    xs = [r.attrs.get(xa) if xa else r.name for r in rows]
    numeric = all(_is_number(x) for x in xs)
    ticks: list[str] = []
    if not numeric:  # categorical axis in the table's row order
        order: list[Any] = []
        for x in xs:
            if x not in order:
                order.append(x)
        names = {}
        for r, x in zip(rows, xs):
            names.setdefault(json.dumps(x), []).append(r.name)
        ticks = [names[json.dumps(x)][0] if len(names[json.dumps(x)]) == 1 else str(x) for x in order]
        xs = [order.index(x) for x in xs]
    series = []
    for r in rows:
        s = r.attrs.get(sa) if sa else None
        if s not in series:
            series.append(s)
    panels = _panels(table)
    fig, axes = _new_figure(len(panels))
    colors = [f"C{i}" for i in range(10)]
    styles = ["-", "--", ":", "-."]
    for ax, (title, cols) in zip(axes, panels.items()):
        drawn = False
        for ci, col in enumerate(cols):
            for si, s in enumerate(series):
                pts = []
                for r, x in zip(rows, xs):
                    if sa and r.attrs.get(sa) != s:
                        continue
                    cell = by_key.get((r.name, col.id))
                    if cell is None:
                        continue
                    pts.append((x, cell["reproduced"], cell["std"], cell["paper_value"]))
                pts.sort(key=lambda p: p[0])
                parts = [str(p) for p in (s if s is not None else None,
                                          col.header if len(cols) > 1 else None) if p]
                label = " · ".join(parts) or _metric_label(col.metric)
                rep = [(p[0], p[1], p[2]) for p in pts if p[1] is not None]
                if rep:
                    ax.errorbar([p[0] for p in rep], [p[1] for p in rep],
                                yerr=[p[2] or 0.0 for p in rep], color=colors[si % 10],
                                linestyle=styles[ci % 4], marker="o", capsize=3, label=label)
                    drawn = True
                paper = [(p[0], p[3]) for p in pts if p[3] is not None]
                if paper:
                    ax.plot([p[0] for p in paper], [p[1] for p in paper], color=colors[si % 10],
                            linestyle="none", marker="x", label=f"{label} (paper)")
                    drawn = True
        ax.set_title(title)
        ax.set_xlabel(xa.replace("_", " ") if xa else "")
        ax.set_ylabel(_metric_label(cols[0].metric))
        if numeric:
            vals = [x for x in xs if x is not None]
            if vals and min(vals) > 0 and max(vals) / min(vals) >= 50:
                ax.set_xscale("log")
            if vals and all(float(v).is_integer() for v in vals):
                ax.set_xticks(sorted(set(vals)))
        else:
            ax.set_xticks(range(len(ticks)), ticks)
        if drawn:
            ax.legend(fontsize=8)
        else:
            _empty(ax, "no finished runs")
        ax.grid(alpha=0.3)
    return fig


def _mean_curve(histories: list[list[tuple[int, float]]]) -> tuple[list[int], list[float]]:
    acc: dict[int, list[float]] = {}
    for hist in histories:
        for step, value in hist:
            acc.setdefault(step, []).append(value)
    steps = sorted(acc)
    return steps, [float(np.mean(acc[s])) for s in steps]


def draw_curves(table: Table, cells: list[dict], store: Optional[RunStore]):
    by_key = {(c["row"], c["column"]): c for c in cells}
    panels = _panels(table)
    fig, axes = _new_figure(len(panels))
    for ax, (title, cols) in zip(axes, panels.items()):
        drawn = False
        for col in cols:
            for i, row in enumerate(r for r in table.rows if not r.cited):
                cell = by_key.get((row.name, col.id))
                if cell is None or not cell["run_ids"] or store is None:
                    continue
                key = N.metric_key("test", cell["source"], col.metric)
                steps, values = _mean_curve([store.history(rid, key) for rid in cell["run_ids"]])
                if steps:
                    n = len(cell["run_ids"])
                    label = row.name + (f" · {col.header}" if len(cols) > 1 else "") + f" (n={n})"
                    ax.plot(steps, values, color=f"C{i % 10}", label=label)
                    drawn = True
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(_metric_label(cols[0].metric) + " (test)")
        if drawn:
            ax.legend(fontsize=8)
        else:
            _empty(ax, "no finished runs with a metric history")
        ax.grid(alpha=0.3)
    return fig


def _load_npz(store: Optional[RunStore], run_ids: list[str], path: str, tmp: Path) -> list[dict]:
    out = []
    if store is None:
        return out
    for i, rid in enumerate(run_ids):
        local = store.artifact(rid, path, tmp / str(i))
        if local is not None:
            with np.load(local) as data:
                out.append({k: data[k] for k in data.files})
    return out


def draw_histograms(table: Table, cells: list[dict], store: Optional[RunStore]):
    by_key = {(c["row"], c["column"]): c for c in cells}
    items = [(r, c) for r in table.rows if not r.cited for c in table.columns if c.metric == "pair_cosine_histogram"]
    fig, axes = _new_figure(len(items), ncols=2 if len(items) == 4 else None)
    bins = np.linspace(-1.0, 1.0, 81)
    with tempfile.TemporaryDirectory() as tmp:
        for k, (ax, (row, col)) in enumerate(zip(axes, items)):
            cell = by_key.get((row.name, col.id))
            data = _load_npz(store, cell["run_ids"] if cell else [], ARTIFACTS[col.metric], Path(tmp) / str(k))
            panel = row.attrs.get("panel")
            ax.set_title((f"({panel}) " if panel else "") + row.name + (f" (n={len(data)})" if data else ""))
            ax.set_xlabel("cosine similarity")
            ax.set_xlim(-1, 1)
            if not data:
                _empty(ax, f"no run with {ARTIFACTS[col.metric]}")
                continue
            for name, color in PAIR_COLORS.items():
                arrays = [np.asarray(d[name], dtype=float).ravel() for d in data if name in d]
                if arrays:
                    ax.hist(np.concatenate(arrays), bins=bins, density=True, color=color, alpha=0.45, label=name)
            ax.legend(fontsize=8)
    return fig


def draw_image_grid(table: Table, cells: list[dict], store: Optional[RunStore], max_images: int = 6):
    from matplotlib.figure import Figure

    by_key = {(c["row"], c["column"]): c for c in cells}
    items = [(r, c) for r in table.rows if not r.cited for c in table.columns if c.metric == "attention_masks"]
    data, row = None, None
    with tempfile.TemporaryDirectory() as tmp:
        for row, col in items:
            cell = by_key.get((row.name, col.id))
            if cell and cell["run_ids"]:
                loaded = _load_npz(store, cell["run_ids"][:1], ARTIFACTS[col.metric], Path(tmp))
                if loaded:
                    data = loaded[0]
                    break
    if data is None:
        fig = Figure(figsize=(6, 2.5), layout="constrained")
        _empty(fig.subplots(), f"no run with {ARTIFACTS['attention_masks']}")
        return fig
    images = np.asarray(data["images"])
    masks = np.asarray(data["masks"], dtype=float)
    n = min(len(images), max_images)
    learners = [int(x) for x in (row.attrs.get("learners_shown") or [1, 2, 3]) if 1 <= int(x) <= masks.shape[1]]
    fig = Figure(figsize=(1.8 * n, 1.8 * (1 + len(learners))), layout="constrained")
    axes = fig.subplots(1 + len(learners), n, squeeze=False)
    for j in range(n):
        img = images[j].transpose(1, 2, 0)
        h, w = img.shape[:2]
        axes[0, j].imshow(img)
        for i, m in enumerate(learners, start=1):
            mask = masks[j, m - 1]
            axes[i, j].imshow(mask, cmap="jet", extent=(0, w, h, 0), interpolation="bilinear")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("image")
    for i, m in enumerate(learners, start=1):
        axes[i, 0].set_ylabel(f"learner {m}")
    return fig


def draw_figure(table: Table, cells: list[dict], store: Optional[RunStore]):
    """The figure of the rows' own runs (variants are listed on the page, not drawn)."""
    cells = [c for c in cells if c.get("variant") is None]
    kind = figure_kind(table)
    if kind == "image_grid":
        fig = draw_image_grid(table, cells, store)
    elif kind == "histograms":
        fig = draw_histograms(table, cells, store)
    elif kind == "curves":
        fig = draw_curves(table, cells, store)
    else:
        fig = draw_lines(table, cells)
    width = fig.get_size_inches()[0]
    fig.suptitle(textwrap.fill(f"{display_name(table)}: {table.title}", width=max(30, int(width * 13))), fontsize=10)
    return fig


def write_figure(ctx: PageContext, cells: list[dict], store: Optional[RunStore], out_dir: Path) -> list[Path]:
    """PNG + PDF of the figure and its Markdown page; returns the written paths."""
    t = ctx.table
    folder = out_dir / t.paper
    folder.mkdir(parents=True, exist_ok=True)
    fig = draw_figure(t, cells, store)
    png, pdf, md = folder / f"{t.id}.png", folder / f"{t.id}.pdf", folder / f"{t.id}.md"
    fig.savefig(png, dpi=120)
    fig.savefig(pdf, metadata={"CreationDate": None})  # no timestamp: an unchanged figure is an unchanged file
    kind = figure_kind(t)
    parts = header_markdown(ctx)
    parts += [f"![{display_name(t)}]({t.id}.png)", "", f"PDF: [{t.id}.pdf]({t.id}.pdf)", ""]
    if kind == "lines" and ctx.recipe is not None:
        has_paper = any(c["paper_value"] is not None for c in cells)
        parts += ["## Plotted values", "", markdown_table(t, cells, with_paper=has_paper), "",
                  "Reproduced: mean ± sample std over seeds (n = number of seeds).", ""]
    elif ctx.recipe is not None:
        parts += ["## Runs", ""]
        for c in cells:
            if c["cited"]:
                continue
            ids = ", ".join(f"`{r[:8]}`" for r in c["run_ids"]) or "none finished"
            variant = f" [variant: {c['variant']}]" if c.get("variant") else ""
            parts.append(f"- {c['row']} ({c['column']}){variant}: {ids}")
        parts.append("")
    parts += footer_markdown(ctx)
    md.write_text("\n".join(parts).rstrip() + "\n", encoding="utf-8")
    return [md, png, pdf]
