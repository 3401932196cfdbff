"""`write_report`: every selected table and figure page, and reports/README.md linking them."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence, Union

from tabulate import tabulate

from benchmark.recipes import Catalog

from .cells import RunStore, Selected, _collect, iter_cells, select_tables
from .figures import figure_kind, write_figure
from .render import SMOKE_TEXT, PageContext, assumed_values, display_name, write_table_page

IndexEntry = tuple[str, Union[str, Path]]  # (title, path of the page); a {"title", "path"} dict also works


def page_context(sel: Selected, profile: str, cells: list[dict], configs: list, generated: str) -> PageContext:
    recipe = sel.recipe
    counted = [c for c in cells if c["kind"] in ("run", "stat", "artifact")]
    done = [c for c in counted
            if (c["kind"] == "artifact" and c["n"]) or (c["kind"] != "artifact" and c["reproduced"] is not None)]
    run_ids = {r for c in cells for r in c["run_ids"]}
    return PageContext(
        table=sel.table, recipe=recipe, profile=profile,
        profile_description=recipe.profile_description(profile) if recipe is not None else "",
        synthetic=any(cfg.data.synthetic is not None for cfg in configs),
        selections=sorted({c["selection"] for c in cells if c["kind"] in ("run", "artifact") and c["selection"]}),
        assumed=assumed_values(recipe, configs) if recipe is not None else [],
        row_notes={name: rr.note for name, rr in recipe.rows.items()} if recipe is not None else {},
        run_count=len(run_ids), cells_total=len(counted), cells_reproduced=len(done), generated=generated,
    )


def _link(path: Union[str, Path], out_dir: Path) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            return p.relative_to(out_dir.resolve()).as_posix()
        except ValueError:
            return os.path.relpath(p, out_dir.resolve())
    return p.as_posix()


def render_index(pages: list[tuple[PageContext, list[Path]]], out_dir: Path, profile: str, selection: str,
                 tracking_uri: str, generated: str, total_runs: int,
                 extra_index: Sequence[IndexEntry] = ()) -> str:
    lines = ["# Reproduction report", ""]
    if profile == "smoke" or any(ctx.not_a_reproduction for ctx, _ in pages):
        lines += [f"**{SMOKE_TEXT.format(profile=profile)}**", ""]
    lines += [
        f"- Profile: `{profile}`",
        f"- Selection: `{selection}`",
        f"- Generated: {generated}",
        f"- Tracking store: `{tracking_uri}`",
        f"- Runs: {total_runs} finished MLflow run(s) used",
        "",
    ]

    def assumed(ctx: PageContext) -> str:
        if ctx.recipe is None:
            return "no recipe yet"
        return ", ".join(f"`{k}`" + (f" = {v}" if v is not None else "") for k, v, _ in ctx.assumed) or "none"

    def rel(p: Path) -> str:
        return p.relative_to(out_dir).as_posix()

    tables = [(ctx, paths) for ctx, paths in pages if ctx.table.kind == "table"]
    figures = [(ctx, paths) for ctx, paths in pages if ctx.table.kind == "figure"]
    if tables:
        rows = []
        for ctx, paths in tables:
            md = next(p for p in paths if p.suffix == ".md")
            tex = next(p for p in paths if p.suffix == ".tex")
            rows.append([f"[{display_name(ctx.table)}]({rel(md)}) ([LaTeX]({rel(tex)}))", ctx.table.title,
                         str(ctx.run_count), f"{ctx.cells_reproduced} / {ctx.cells_total}",
                         ", ".join(ctx.selections) or "—", assumed(ctx)])
        lines += ["## Tables", "", tabulate(rows, headers=["Table", "Title", "Runs", "Cells reproduced",
                                                            "Model selection", "Assumed settings"],
                                            tablefmt="pipe", disable_numparse=True), ""]
    if figures:
        rows = []
        for ctx, paths in figures:
            md = next(p for p in paths if p.suffix == ".md")
            png = next(p for p in paths if p.suffix == ".png")
            pdf = next(p for p in paths if p.suffix == ".pdf")
            rows.append([f"[{display_name(ctx.table)}]({rel(md)}) ([PNG]({rel(png)}), [PDF]({rel(pdf)}))",
                         ctx.table.title, str(ctx.run_count), figure_kind(ctx.table).replace("_", " "),
                         ", ".join(ctx.selections) or "—", assumed(ctx)])
        lines += ["## Figures", "", tabulate(rows, headers=["Figure", "Title", "Runs", "Plot", "Model selection",
                                                             "Assumed settings"],
                                             tablefmt="pipe", disable_numparse=True), ""]
    if extra_index:
        lines += ["## Tuning", ""]
        for entry in extra_index:
            title, path = (entry["title"], entry["path"]) if isinstance(entry, dict) else entry
            lines.append(f"- [{title}]({_link(path, out_dir)})")
        lines.append("")
    lines += ["Each page lists the assumed settings with the reason for each choice. Cells: the paper's "
              "number, the reproduced mean ± sample std over seeds (n), and reproduced − paper.", ""]
    return "\n".join(lines)


def write_report(catalog: Catalog, selection: str = "all", profile: str = "paper",
                 tracking_uri: Optional[str] = None, out_dir: Path = Path("reports"),
                 extra_index: Sequence[IndexEntry] = (), *, store: Optional[RunStore] = None) -> list[Path]:
    """Write reports/<paper>/<id>.md + .tex per table, .md + .png + .pdf per figure, and reports/README.md.

    ``extra_index``: further (title, path) pages for the index (the tuning module's pages),
    listed under "Tuning"; a relative path is taken relative to ``out_dir``. Returns every written path, the index last.
    """
    out_dir = Path(out_dir)
    store = store or RunStore(tracking_uri)
    selected = select_tables(catalog, selection)
    collected = _collect(catalog, selected, profile, store)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    pages: list[tuple[PageContext, list[Path]]] = []
    all_runs: set[str] = set()
    for sel in selected:
        cells = iter_cells(collected.df, sel.table)
        all_runs |= {r for c in cells for r in c["run_ids"]}
        ctx = page_context(sel, profile, cells, collected.configs.get(sel.table.key, []), generated)
        if sel.table.kind == "figure":
            paths = write_figure(ctx, cells, store, out_dir)
        else:
            paths = write_table_page(ctx, cells, out_dir)
        pages.append((ctx, paths))
        written += paths
    index = out_dir / "README.md"
    index.write_text(render_index(pages, out_dir, profile, selection, store.uri, generated, len(all_runs),
                                  extra_index), encoding="utf-8")
    written.append(index)
    return written
