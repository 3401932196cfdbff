"""Every generated LaTeX table compiles in a two-column paper with pdflatex, with
no error and no overfull box (Debian: texlive-latex-base, texlive-latex-recommended;
.ci/run installs them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from benchmark.recipes import Catalog, Context, expand, select

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("pdflatex") is None,
                                 reason="pdflatex is not installed (apt-get install texlive-latex-base "
                                        "texlive-latex-recommended)")]

TEMPLATE = r"""\documentclass[twocolumn,10pt]{article}
\usepackage[utf8]{inputenc}
\usepackage{booktabs}
\usepackage{graphicx}
\begin{document}
Some text of the paper before the table.
\input{%s}
More text after it.
\end{document}
"""


def _store_with_runs():
    """Runs for a few cells, so that reproduced, Δ and variant lines are typeset too."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_report_collect import FakeStore, _metrics

    catalog = Catalog()
    specs = [s for s in expand(catalog, select(catalog, "dm2/table1,abe/table1"), Context(profile="smoke", seeds=[0, 1]))]
    runs = [(s, _metrics(60.0 + s.seed)) for s in specs[:6]]
    return FakeStore(runs)


def test_every_generated_table_compiles_without_an_overfull_box(tmp_path, monkeypatch):
    from benchmark.report.index import write_report

    monkeypatch.setitem(sys.modules, "benchmark.stats", types.SimpleNamespace(
        config_model_stats=lambda cfg: {"params_1e7": 0.5, "gflops": 1.0}))
    out = tmp_path / "reports"
    write_report(Catalog(), "all", "smoke", store=_store_with_runs(), out_dir=out, render_all=True)
    texs = sorted(out.glob("*/*.tex"))
    assert len(texs) == 13
    failures = []
    for tex in texs:
        doc = tmp_path / f"{tex.parent.name}-{tex.stem}.tex"
        doc.write_text(TEMPLATE % tex.as_posix(), encoding="utf-8")
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        log = doc.with_suffix(".log").read_text(errors="replace")
        if proc.returncode != 0 or "Overfull \\hbox" in log or "Overfull \\vbox" in log:
            lines = [ln for ln in log.splitlines() if ln.startswith(("!", "Overfull"))]
            failures.append(f"{tex.relative_to(out)}: {lines[:3]}")
    assert not failures, failures
