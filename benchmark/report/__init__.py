"""Paper vs reproduced: collection from MLflow, Markdown/LaTeX tables, matplotlib figures.

Public API (the CLI's `report` and `paper` commands call these):
  paper_cells(catalog, selection="all") -> list[dict]
  collect(catalog, selection, profile, tracking_uri) -> pandas.DataFrame
  report_cells(catalog, selection, profile, tracking_uri) -> list[dict]
  write_report(catalog, selection, profile, tracking_uri, out_dir=Path("reports"), extra_index=()) -> list[Path]
"""

from .cells import (
    RunStore,
    collect,
    default_tracking_uri,
    paper_cells,
    report_cells,
    select_tables,
)
from .index import write_report

__all__ = [
    "RunStore",
    "collect",
    "default_tracking_uri",
    "paper_cells",
    "report_cells",
    "select_tables",
    "write_report",
]
