"""Statistics over seeds: t-intervals and the verdict a claim gets from them.

One run says little: the same smoke command gives Recall@1 19.4 with two torch
threads and 34.7 with one. So every effect is a mean over seeds with a 95%
t-interval (Student's t with n - 1 degrees of freedom: exact for normal seeds,
and honest for small n, where it is wide; a bootstrap would be narrower than
the data justify at n = 2 or 3). Differences between two reproduced cells are
paired by seed (the same seed: the same data order and initialisation); a
difference to a cited number subtracts the constant.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Optional, Union

from scipy import stats as _st

LEVEL = 0.95
HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_RUN, NOT_PRINTED = "holds", "contradicted", "inconclusive", "not_run", "not_printed"

Series = Union[float, Mapping[int, float]]  # a constant (a cited or computed number) or seed -> value


@dataclass
class Interval:
    mean: Optional[float]
    low: Optional[float]
    high: Optional[float]
    n: int
    exact: bool = False  # computed without seeds (a constant): the interval is the point

    @property
    def known(self) -> bool:
        return self.mean is not None


def t_interval(values: list[float], level: float = LEVEL) -> Interval:
    """Mean and t-interval of ``values``; low/high None below two values."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(vals)
    if n == 0:
        return Interval(None, None, None, 0)
    mean = statistics.fmean(vals)
    if n < 2:
        return Interval(mean, None, None, n)
    half = _st.t.ppf(0.5 + level / 2, n - 1) * statistics.stdev(vals) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def difference(a: Series, b: Series, log: bool = False) -> Interval:
    """a - b (or log a - log b): paired over the seeds both have, or against a constant."""
    def tr(v: float) -> float:
        return math.log(v) if log else v

    if not isinstance(a, Mapping) and not isinstance(b, Mapping):
        d = tr(a) - tr(b)
        return Interval(d, d, d, 1, exact=True)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        diffs = [tr(a[s]) - tr(b[s]) for s in sorted(set(a) & set(b))]
    elif isinstance(a, Mapping):
        diffs = [tr(v) - tr(b) for _, v in sorted(a.items())]
    else:
        diffs = [tr(a) - tr(v) for _, v in sorted(b.items())]
    return t_interval(diffs)


def side(iv: Interval, threshold: float) -> str:
    """Where the interval lies against ``threshold``: above, below or straddles."""
    if not iv.known:
        return NOT_RUN
    if iv.low is None:
        return INCONCLUSIVE
    if iv.low > threshold:
        return HOLDS
    if iv.high < threshold:
        return CONTRADICTED
    return INCONCLUSIVE


def within(iv: Interval, tol: float) -> str:
    """The interval inside [-tol, tol] (holds), outside it entirely (contradicted), or neither."""
    if not iv.known:
        return NOT_RUN
    if iv.low is None:
        return INCONCLUSIVE
    if -tol <= iv.low and iv.high <= tol:
        return HOLDS
    if iv.high < -tol or iv.low > tol:
        return CONTRADICTED
    return INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    """All comparisons of an ordering must hold; one contradicted contradicts it."""
    if not verdicts or any(v == NOT_RUN for v in verdicts):
        return NOT_RUN
    if any(v == CONTRADICTED for v in verdicts):
        return CONTRADICTED
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return INCONCLUSIVE
