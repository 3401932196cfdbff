"""Paper vs reproduced: cells collected from what the runs logged, Markdown/LaTeX
tables, matplotlib figures, the index.

- :mod:`~benchmark.report.cells`: the cells of the selected tables (variants included);
- :mod:`~benchmark.report.page`: a page's context, assumed settings, header and footer;
- :mod:`~benchmark.report.text`: cell texts and table lines (Markdown and LaTeX share them);
- :mod:`~benchmark.report.markdown`, :mod:`~benchmark.report.latex`: the two table formats;
- :mod:`~benchmark.report.figures`: figure pages (PNG, PDF);
- :mod:`~benchmark.report.index`: `write_report`, the manifest and reports/README.md.

Public API (the CLI's `report` and `paper` commands call these):
  paper_cells(catalog, selection="all") -> list[dict]
  collect(catalog, selection, profile, tracking_uri) -> pandas.DataFrame
  report_cells(catalog, selection, profile, tracking_uri) -> list[dict]
  write_report(catalog, selection, profile, tracking_uri, out_dir, extra_index=(), render_all=False)
      -> (written paths, pages left as they are)
"""

from .cells import collect, paper_cells, report_cells, selected_tables
from .index import write_report

__all__ = ["collect", "paper_cells", "report_cells", "selected_tables", "write_report"]
