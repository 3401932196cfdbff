"""What the harness reads back of an MLflow run: :class:`RunRecord`, and the table
cells a run fills as its tags carry them.

Cells travel as compact JSON in the ``bench.cells`` tag (split over
``bench.cells.1``, ``bench.cells.2``, ... past MLflow's 8,000 characters per tag
value): a list of ``[paper, table, row, column, source, metric]``. Runs logged
before cells were tagged carry them only in their ``config.json`` artifact,
without source and metric (None here; the report completes them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from benchmark.names import TAG_CELLS, TAG_GROUP, TAG_HASH, TAG_SEED, TAG_SERIES

TAG_VALUE_MAX = 8000  # MLflow's limit on a tag value (mlflow.utils.validation.MAX_TAG_VAL_LENGTH)
CELL_FIELDS = ("paper", "table", "row", "column", "source", "metric")

CellKey = tuple  # (paper, table, row, column, source, metric); source/metric None for legacy runs


@dataclass
class RunRecord:
    run_id: str
    status: str  # RUNNING | FINISHED | FAILED | KILLED | SCHEDULED
    hash: str
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    end_time: int = 0
    experiment_id: str = ""

    @classmethod
    def from_run(cls, run: Any) -> "RunRecord":
        tags = dict(run.data.tags)
        return cls(run_id=run.info.run_id, status=run.info.status, hash=tags.get(TAG_HASH, run.info.run_id),
                   tags=tags, metrics=dict(run.data.metrics), end_time=run.info.end_time or 0,
                   experiment_id=run.info.experiment_id)

    @property
    def group(self) -> str:
        return self.tags.get(TAG_GROUP, "")

    @property
    def series(self) -> Optional[str]:
        """``bench.series`` (None for runs logged before it existed)."""
        return self.tags.get(TAG_SERIES) or None

    @property
    def seed(self) -> Optional[int]:
        text = self.tags.get(TAG_SEED, "")
        return int(text) if text.lstrip("-").isdigit() else None

    def cells(self) -> Optional[list[CellKey]]:
        """The cells this run's tags say it fills; None when it has no cells tag."""
        return decode_cells(self.tags)


def cell_key(cell: Any) -> CellKey:
    """A Cell (benchmark.recipes.spec) or a cell mapping as a tuple of CELL_FIELDS."""
    if isinstance(cell, dict):
        return tuple(None if cell.get(k) is None else str(cell[k]) for k in CELL_FIELDS)
    return tuple(getattr(cell, k) for k in CELL_FIELDS)


def merge_cells(old: Iterable[CellKey], new: Iterable[CellKey]) -> set[CellKey]:
    """The cells a run fills after a command names ``new`` ones: a cell named again
    keeps one entry, the new one (with its source, where a legacy entry had none)."""
    new = set(new)
    named = {c[:4] for c in new}
    return {c for c in old if c[:4] not in named} | new


def encode_cells(cells: Iterable[CellKey]) -> dict[str, str]:
    """Tags holding ``cells`` (sorted, deduplicated)."""
    unique = sorted(set(cells), key=lambda c: tuple("" if v is None else v for v in c))
    text = json.dumps([list(c) for c in unique], ensure_ascii=True, separators=(",", ":"))
    chunks = [text[i:i + TAG_VALUE_MAX] for i in range(0, len(text), TAG_VALUE_MAX)] or ["[]"]
    return {TAG_CELLS if i == 0 else f"{TAG_CELLS}.{i}": chunk for i, chunk in enumerate(chunks)}


def decode_cells(tags: dict[str, str]) -> Optional[list[CellKey]]:
    if TAG_CELLS not in tags:
        return None
    text, i = tags[TAG_CELLS], 1
    while f"{TAG_CELLS}.{i}" in tags:
        text += tags[f"{TAG_CELLS}.{i}"]
        i += 1
    try:
        return [tuple(c) for c in json.loads(text)]
    except (ValueError, TypeError):
        return None
