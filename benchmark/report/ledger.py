"""The claims ledger as pages: reports/claims.md (one line per claim) and a forest
plot per paper (reports/claims/<paper>.png and .pdf: each claim's effect with its
95% interval against the line it is judged by)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Optional

from . import stats as S
from .claims import PROTOCOL_TEXT, SMOKE_NOTE, Result
from .page import PAPER_NAMES

MARK = {S.HOLDS: "holds", S.CONTRADICTED: "**contradicted**", S.INCONCLUSIVE: "inconclusive",
        S.NOT_RUN: "not run", S.NOT_PRINTED: "not printed"}
COLORS = {S.HOLDS: "tab:green", S.CONTRADICTED: "tab:red", S.INCONCLUSIVE: "tab:orange", S.NOT_RUN: "0.6"}


def _num(v: Optional[float], d: int = 2) -> str:
    return "—" if v is None else f"{v:+.{d}f}" if d else f"{v:g}"


def effect_text(effect, lo, hi, n, relation: str) -> str:
    if effect is None:
        return "—"
    if relation == "ratio_at_most":
        body = f"×{effect:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None else "")
    else:
        body = f"{effect:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None else "")
    return f"{body} (n={n})"


def counts(results: list[Result]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        out[r.verdict] = out.get(r.verdict, 0) + 1
    return out


def summary_text(results: list[Result]) -> str:
    """'3 hold, 1 contradicted, 2 inconclusive, 4 not run' (the index's claims column)."""
    c = counts(results)
    parts = [(S.HOLDS, "hold"), (S.CONTRADICTED, "contradicted"), (S.INCONCLUSIVE, "inconclusive"),
             (S.NOT_RUN, "not run")]
    return ", ".join(f"{c[k]} {w}" for k, w in parts if c.get(k)) or "—"


def render(results: list[Result], profile: str, generated: str, store_label: str) -> str:
    lines = ["# Claims ledger: do the papers' conclusions hold?", ""]
    if profile == "smoke":
        lines += [f"**{SMOKE_NOTE.capitalize()}.** These verdicts come from synthetic data and tiny models (profile "
                  "`smoke`); they show that the ledger works, not whether the papers' claims hold.", ""]
    lines += [
        f"- Profile: `{profile}`; store: {store_label}; generated: {generated}",
        "- Each claim is a sentence of a paper tested as a relation between table cells. **Verdict**: the "
        "reproduced effect (mean over seeds of the paired difference, a − b) and its 95% t-interval: `holds` when "
        "the interval lies on the claimed side, `contradicted` when on the other, `inconclusive` when it "
        "straddles or fewer than two seeds ran, `not run`. **Paper**: the same relation on the paper's printed "
        "numbers (does its own table support the sentence?). Cited rows enter as their printed numbers.",
        "- **Protocol**: the runs' model selection; ABE's is the best test Recall@1 (selection on the test set), "
        "so a second verdict on the last evaluation (the clean protocol) is given beside it.",
        "- Forest plots: [DM²](claims/dm2.png), [ABE](claims/abe.png) ([PDF](claims/dm2.pdf), "
        "[PDF](claims/abe.pdf)).",
        "",
    ]
    for paper in ("dm2", "abe"):
        mine = [r for r in results if r.claim.paper == paper]
        if not mine:
            continue
        lines += [f"## {PAPER_NAMES.get(paper, paper)} ({len(mine)} claims: {summary_text(mine)})", "",
                  "| Claim | Sec. | Relation | Paper | Verdict | Effect [95% CI] | Protocol | Clean (last eval.) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in mine:
            c = r.claim
            clean = "—"
            if r.clean:
                clean = f"{MARK[r.clean['verdict']]}: " + effect_text(r.clean["effect"], r.clean["ci_low"],
                                                                       r.clean["ci_high"], r.clean["n"], c.relation)
            page = f"{c.table.split('/')[1]}"
            lines.append("| " + " | ".join([
                f"`{c.id}` ([{page}]({c.table}.md))", c.section, c.text().replace("|", "\\|"),
                MARK[r.paper_verdict], MARK[r.verdict], effect_text(r.effect, r.ci_low, r.ci_high, r.n, c.relation),
                PROTOCOL_TEXT.get(r.protocol or "", r.protocol or "—"), clean]) + " |")
        lines.append("")
        lines.append("Sources:")
        lines.append("")
        for r in mine:
            c = r.claim
            reading = f" *Reading:* {c.reading}" if c.reading else ""
            lines.append(f"- `{c.id}` (Sec. {c.section}): \"{c.source}\"{reading}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def forest(results: list[Result], paper: str, profile: str):
    """Each claim's effect and interval, against the threshold it is judged by."""
    from matplotlib.figure import Figure

    mine = [r for r in results if r.claim.paper == paper]
    fig = Figure(figsize=(8.5, max(2.5, 0.32 * len(mine) + 1.2)), layout="constrained")
    ax = fig.subplots()
    for i, r in enumerate(reversed(mine)):
        c = r.claim
        y = i
        if r.effect is None:
            ax.text(0, y, "not run", va="center", ha="center", fontsize=7, color="0.5")
            continue
        scale = (lambda v: math.log(v)) if c.relation == "ratio_at_most" else (lambda v: v)
        x = scale(r.effect)
        lo = scale(r.ci_low) if r.ci_low is not None else None
        hi = scale(r.ci_high) if r.ci_high is not None else None
        color = COLORS.get(r.verdict, "0.3")
        if lo is not None:
            ax.plot([lo, hi], [y, y], color=color, lw=2)
        ax.plot([x], [y], "o", color=color, ms=5)
        if c.relation in ("within", "no_effect"):
            ax.plot([-c.tol, c.tol], [y, y], color=color, alpha=0.2, lw=8)
        elif c.relation == "ratio_at_most":
            ax.plot([math.log(c.tol)], [y], "|", color="k", ms=10)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(mine)), [r.claim.id for r in reversed(mine)], fontsize=7)
    ax.set_xlabel("effect (a − b, Recall points; ratios on a log scale); shaded: tolerance band")
    title = f"{PAPER_NAMES.get(paper, paper)} claims: reproduced effect and 95% interval (profile {profile})"
    if profile == "smoke":
        title += f"\n{SMOKE_NOTE}"
    ax.set_title(textwrap.fill(title, 90), fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return fig


def write(results: list[Result], out_dir: Path, profile: str, generated: str, store_label: str) -> list[Path]:
    out_dir = Path(out_dir)
    (out_dir / "claims").mkdir(parents=True, exist_ok=True)
    md = out_dir / "claims.md"
    md.write_text(render(results, profile, generated, store_label), encoding="utf-8")
    paths = [md]
    for paper in sorted({r.claim.paper for r in results}):
        fig = forest(results, paper, profile)
        for ext in ("png", "pdf"):
            path = out_dir / "claims" / f"{paper}.{ext}"
            if ext == "png":
                fig.savefig(path, dpi=120)
            else:  # no timestamp: an unchanged plot is an unchanged file
                fig.savefig(path, metadata={"CreationDate": None})
            paths.append(path)
    return paths
