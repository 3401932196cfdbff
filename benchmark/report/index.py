"""`write_report`: the table and figure pages that have runs, a manifest of every
page, and the index reports/README.md.

By default only the tables whose cells some finished run of the profile fills
are rendered; the other pages are left as they are (``render_all`` renders
every selected page, empty ones included). ``reports/pages.json`` records, per
page, which store, profile and date its numbers come from, so the index can say
it for pages this command did not touch.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence, Union

from tabulate import tabulate

from benchmark.recipes import Catalog
from benchmark.runner.store import RunStore

from . import ledger
from .cells import Selected, collect_tables, iter_cells, selected_tables
from .claims import evaluate
from .figures import figure_kind, write_figure
from .latex import latex_table
from .markdown import render_markdown
from .page import SMOKE_TEXT, PageContext, assumed_values, display_name

IndexEntry = tuple[str, Union[str, Path]]  # (title, path of the page); a {"title", "path"} dict also works
MANIFEST = "pages.json"
MANIFEST_FORMAT = 1


def page_context(sel: Selected, profile: str, cells: list[dict], configs: list, generated: str) -> PageContext:
    recipe = sel.recipe
    counted = [c for c in cells if c["kind"] in ("run", "stat", "artifact") and c.get("variant") is None]
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


def write_table_page(ctx: PageContext, cells: list[dict], out_dir: Path) -> list[Path]:
    folder = out_dir / ctx.table.paper
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / f"{ctx.table.id}.md"
    tex = folder / f"{ctx.table.id}.tex"
    md.write_text(render_markdown(ctx, cells), encoding="utf-8")
    tex.write_text(latex_table(ctx, cells), encoding="utf-8")
    return [md, tex]


# ---------------------------------------------------------------------------
# manifest and index
# ---------------------------------------------------------------------------


def read_manifest(out_dir: Path) -> dict[str, dict]:
    path = out_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    pages = data.get("pages") if isinstance(data, dict) else None
    return pages if isinstance(pages, dict) else {}


def manifest_entry(ctx: PageContext, paths: list[Path], out_dir: Path, store_label: str) -> dict:
    return {
        "name": display_name(ctx.table), "title": ctx.table.title, "kind": ctx.table.kind,
        "plot": figure_kind(ctx.table) if ctx.table.kind == "figure" else None,
        "files": [p.relative_to(out_dir).as_posix() for p in paths],
        "profile": ctx.profile, "store": store_label, "generated": ctx.generated,
        "runs": ctx.run_count, "cells_total": ctx.cells_total, "cells_reproduced": ctx.cells_reproduced,
        "selections": ctx.selections, "not_a_reproduction": ctx.not_a_reproduction,
        "has_recipe": ctx.recipe is not None,
    }


def _link(path: Union[str, Path], out_dir: Path) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            return p.relative_to(out_dir.resolve()).as_posix()
        except ValueError:
            return os.path.relpath(p, out_dir.resolve())
    return p.as_posix()


def _file(entry: dict, suffix: str) -> str:
    return next((f for f in entry.get("files", []) if f.endswith(suffix)), "")


def render_index(pages: dict[str, dict], order: list[str], out_dir: Path,
                 extra_index: Sequence[IndexEntry] = (), claims: Optional[dict[str, str]] = None,
                 ledger: str = "") -> str:
    """The index of every page in the manifest, in the catalog's table order, one
    short line each; ``claims``: table key -> its claims' verdicts."""
    claims = claims or {}
    keys = [k for k in order if k in pages] + sorted(k for k in pages if k not in order)
    lines = ["# Reproduction report", ""]
    smoke = sorted({pages[k]["profile"] for k in keys if pages[k].get("not_a_reproduction")})
    if smoke:
        lines += [f"**{SMOKE_TEXT.format(profile=', '.join(smoke))}**", ""]
    if ledger:
        lines += [f"**[Claims ledger](claims.md)**: {ledger}", ""]
    lines += ["Each page: the paper's number, the reproduced mean ± sample std over seeds (n), reproduced − "
              "paper, its assumed settings with the reason for each, and where its numbers come from. A run is "
              "reproducible bit for bit only on the same machine kind with the same torch thread count and "
              "library versions (each run records them: tags bench.threads, bench.device, bench.versions); "
              "otherwise only statistically, so read the intervals over seeds, not single numbers.", ""]

    def source(e: dict) -> str:
        return f"`{e.get('profile', '?')}`, {e.get('store', '?')}, {e.get('generated', '?')}"

    for kind, heading in (("table", "Tables"), ("figure", "Figures")):
        entries = [(k, pages[k]) for k in keys if pages[k].get("kind") == kind]
        if not entries:
            continue
        rows = []
        for k, e in entries:
            files = ([f"[LaTeX]({_file(e, '.tex')})"] if kind == "table"
                     else [f"[PNG]({_file(e, '.png')})", f"[PDF]({_file(e, '.pdf')})"])
            rows.append([f"[{e['name']}]({_file(e, '.md')}) ({', '.join(files)})", e.get("title", ""),
                         str(e.get("runs", 0)), f"{e.get('cells_reproduced', 0)} / {e.get('cells_total', 0)}",
                         claims.get(k, "—"), source(e)])
        lines += [f"## {heading}", "", tabulate(rows, headers=[kind.capitalize(), "Title", "Runs", "Cells", "Claims",
                                                               "From"], tablefmt="pipe", disable_numparse=True), ""]
    if extra_index:
        lines += ["## Tuning", ""]
        for entry in extra_index:
            title, path = (entry["title"], entry["path"]) if isinstance(entry, dict) else entry
            lines.append(f"- [{title}]({_link(path, out_dir)})")
        lines.append("")
    return "\n".join(lines)


def write_report(catalog: Catalog, selection: str = "all", profile: str = "paper",
                 tracking_uri: Optional[str] = None, out_dir: Path = Path("reports"),
                 extra_index: Sequence[IndexEntry] = (), *, store: Optional[RunStore] = None,
                 render_all: bool = False) -> tuple[list[Path], list[str]]:
    """Write reports/<paper>/<id>.md + .tex per table, .md + .png + .pdf per figure, the
    manifest and reports/README.md; returns (written paths, the index last; the keys of
    the selected pages left as they are because no run of the profile fills them).

    ``extra_index``: further (title, path) pages for the index (the tuning module's pages),
    listed under "Tuning"; a relative path is taken relative to ``out_dir``.
    """
    out_dir = Path(out_dir)
    store = store or RunStore(tracking_uri)
    selected = selected_tables(catalog, selection)
    collected = collect_tables(catalog, selected, profile, store)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from benchmark.errors import UserError

        raise UserError(f"--out {out_dir}: cannot create the folder ({exc.strerror})") from None
    pages = read_manifest(out_dir)
    written: list[Path] = []
    left: list[str] = []
    for sel in selected:
        cells = iter_cells(collected.df, sel.table)
        if not render_all and not any(c["run_ids"] for c in cells):
            left.append(sel.table.key)
            continue
        ctx = page_context(sel, profile, cells, collected.configs.get(sel.table.key, []), generated)
        if sel.table.kind == "figure":
            paths = write_figure(ctx, cells, store, out_dir)
        else:
            paths = write_table_page(ctx, cells, out_dir)
        pages[sel.table.key] = manifest_entry(ctx, paths, out_dir, store.label)
        written += paths
    known = set(catalog.table_keys())
    pages = {k: v for k, v in pages.items() if k in known}
    results = evaluate(catalog, catalog.claims(), profile, store)
    written += ledger.write(results, out_dir, profile, generated, store.label)
    by_table: dict[str, list] = {}
    for r in results:
        by_table.setdefault(r.claim.table, []).append(r)
    claims = {k: ledger.summary_text(v) for k, v in by_table.items()}
    manifest = out_dir / MANIFEST
    manifest.write_text(json.dumps({"format": MANIFEST_FORMAT, "pages": pages}, indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    index = out_dir / "README.md"
    summary = f"{len(results)} claims of the papers' text tested on the runs: {ledger.summary_text(results)}"
    index.write_text(render_index(pages, catalog.table_keys(), out_dir, extra_index, claims, summary),
                     encoding="utf-8")
    written += [manifest, index]
    return written, left
