"""One pass over the distance tiles: per positive, the negatives strictly nearer (benchmark.evaluate)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .tiles import augmented, distance_tiles, expand_ranges, positive_pairs


# Most tile elements counted at once (bounds the entries taken out of a tile).
_MAX_CHUNK = 1 << 22


def gamma(n: int, dtype: torch.dtype) -> float:
    """Higham's gamma_n = n u / (1 - n u): |fl(a . b) - a . b| <= gamma_n sum_k |a_k b_k| for length-n a, b."""
    nu = n * torch.finfo(dtype).eps / 2
    return nu / (1 - nu)


def _outward(lo: torch.Tensor, hi: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 bounds converted to ``dtype``, rounded outwards (the result still contains [lo, hi])."""
    if dtype == torch.float64:
        return lo, hi
    lo_t, hi_t = lo.to(dtype), hi.to(dtype)
    lo_t = torch.where(lo_t.double() > lo, torch.nextafter(lo_t, torch.full_like(lo_t, -float("inf"))), lo_t)
    hi_t = torch.where(hi_t.double() < hi, torch.nextafter(hi_t, torch.full_like(hi_t, float("inf"))), hi_t)
    return lo_t, hi_t


def _pair_products(left: torch.Tensor, right: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                   chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """``left[rows] . right[cols]`` and ``|left[rows]| . |right[cols]|`` per pair, in float64.

    Products of float32 numbers are exact in float64; the float64 sums err by
    at most gamma_n (float64) times the second value.
    """
    dot = torch.empty(rows.numel(), dtype=torch.float64, device=left.device)
    mag = torch.empty_like(dot)
    for s in range(0, rows.numel(), chunk):
        a, b = left[rows[s:s + chunk]].double(), right[cols[s:s + chunk]].double()
        dot[s:s + chunk] = (a * b).sum(1)
        mag[s:s + chunk] = (a.abs() * b.abs()).sum(1)
    return dot, mag


def _segment_cumsum(x: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """Inclusive cumulative sum of ``x`` restarted at each segment; ``first[p]`` = index of p's segment start."""
    cs = x.cumsum(0)
    return cs - (cs - x)[first]


def _certain_positions(lo: torch.Tensor, hi: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """Per positive, the best position it can have among its query's positives (1 = may be the nearest).

    1 + the number of the query's positives certainly nearer (their hi below
    its lo). Within a query lo and hi are sorted, so the positives that are
    not certainly nearer are the contiguous run just before it.
    """
    index = torch.arange(lo.numel(), device=lo.device)
    earlier = index - first
    close = torch.zeros_like(index)
    active, j = index[earlier > 0], 1
    while active.numel():
        active = active[hi[active - j] >= lo[active]]
        close[active] += 1
        j += 1
        active = active[earlier[active] >= j]
    return 1 + earlier - close



@dataclass
class _Positives:
    """The positive pairs, grouped by query (CSR) and sorted by their float64 distance within a query.

    ``row``/``col``: where a tile holds the pair's distance (``left[row] .
    right[col]``); ``lo``/``hi``: tile-dtype interval certain to contain that
    tile value; ``cap``: the largest count of nearer negatives that can still
    matter (negative: none does).
    """

    query: torch.Tensor
    first: torch.Tensor   # index of the query's first positive, per positive
    offset: torch.Tensor  # [Nq + 1]: the positives of query q are offset[q]:offset[q + 1]
    row: torch.Tensor
    col: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    cap: torch.Tensor


def _positives(left, right, query_labels, ref_labels, symmetric: bool, block: int,
               map_r: bool) -> Optional[_Positives]:
    """The positive pairs with their intervals and MAP@R caps; None above ``MAX_POSITIVE_PAIRS``."""
    pairs = positive_pairs(query_labels, ref_labels, symmetric)
    if pairs is None:
        return None
    q, j = pairs
    if symmetric:  # the upper triangle holds (q, j) when j is at or past the start of q's row block
        own = j >= (q // block) * block
        row, col = torch.where(own, q, j), torch.where(own, j, q)
    else:
        row, col = q, j
    dist, mag = _pair_products(left, right, row, col)
    order = torch.argsort(dist, stable=True)
    order = order[torch.argsort(q[order], stable=True)]
    q, row, col, dist, mag = q[order], row[order], col[order], dist[order], mag[order]
    nq = query_labels.shape[0]
    count = torch.bincount(q, minlength=nq)
    offset = torch.cat([count.new_zeros(1), torch.cumsum(count, 0)])
    n = left.shape[1]
    err = (gamma(n, left.dtype) + gamma(n + 2, torch.float64)) * mag
    delta = torch.zeros(nq, dtype=torch.float64, device=q.device).scatter_reduce_(0, q, err, reduce="amax")[q]
    lo, hi = _outward(dist - delta, dist + delta, left.dtype)
    first = offset[q]
    best = _certain_positions(lo, hi, first)
    cap = count[q] - best if map_r else torch.full_like(q, -1)
    return _Positives(q, first, offset, row, col, lo, hi, cap)


class _NearerCounter:
    """State of the pass: per positive the negatives counted below its lo, and its tile value.

    ``below[p]`` (cumulative over ``stop``) counts the negatives with a tile
    value < lo[p] seen while p was relevant; ``prefix[q]``: how many of q's
    positives (nearest first) are still relevant; ``limit[q]``: hi of the
    last relevant one (-inf: none), the bound below which values are taken.
    Taken values within some relevant [lo, hi) are kept in ``band``.
    """

    def __init__(self, pos: _Positives, nq: int, block: int, dtype: torch.dtype):
        self.pos, self.block = pos, block
        self.stop = torch.zeros_like(pos.query)
        self.value = torch.full(pos.query.shape, float("nan"), dtype=dtype, device=pos.query.device)
        self.prefix = torch.zeros(nq, dtype=torch.long, device=pos.query.device)
        self.limit = torch.full((nq,), -float("inf"), dtype=dtype, device=pos.query.device)
        self.band_q: list[torch.Tensor] = []
        self.band_v: list[torch.Tensor] = []
        # Recall@K: per query the negatives below the nearest positive's interval
        # (counted by a compare and a sum, for every K at once), and the values
        # within it (decided after the pass, against the exact tile value)
        dev = pos.query.device
        has = pos.offset[1:] > pos.offset[:-1]
        first = pos.offset[:-1].clamp_max(max(pos.lo.numel() - 1, 0))
        ninf = torch.full((nq,), -float("inf"), dtype=dtype, device=dev)
        self.near_lo = torch.where(has, pos.lo[first], ninf) if pos.lo.numel() else ninf
        self.near_hi = torch.where(has, pos.hi[first], ninf) if pos.lo.numel() else ninf
        self.near_below = torch.zeros(nq, dtype=torch.long, device=dev)
        self.near_band_q: list[torch.Tensor] = []
        self.near_band_v: list[torch.Tensor] = []
        tile_block = pos.row // block
        self.by_tile = torch.argsort(tile_block)
        self.tile_block = tile_block[self.by_tile]
        self.refresh(0, nq)

    def take_positives(self, ri: slice, rj: slice, d: torch.Tensor) -> None:
        """Read the positives' tile values held by ``d`` = D[ri, rj], then set them to +inf there."""
        blk = ri.start // self.block
        lo, hi = torch.searchsorted(self.tile_block, torch.tensor([blk, blk + 1], device=d.device)).tolist()
        p = self.by_tile[lo:hi]
        col = self.pos.col[p]
        p = p[(col >= rj.start) & (col < rj.stop)]
        r, c = self.pos.row[p] - ri.start, self.pos.col[p] - rj.start
        self.value[p] = d[r, c]
        d[r, c] = float("inf")

    def count(self, first_query: int, values: torch.Tensor, *, transposed: bool) -> None:
        """Count the negatives in ``values`` for queries ``first_query`` on, then refresh their relevance.

        ``values`` [n, m]: row i holds candidates of query first_query + i, or
        (``transposed``) column i does.
        """
        nq = values.shape[1] if transposed else values.shape[0]
        self._count_nearest(first_query, values, transposed, nq)
        limit = self.limit[first_query:first_query + nq]
        r, c = (values < (limit[None, :] if transposed else limit[:, None])).nonzero(as_tuple=True)
        if r.numel():
            self._add((c if transposed else r) + first_query, values[r, c])
        self.refresh(first_query, first_query + nq)

    def _count_nearest(self, first_query: int, values: torch.Tensor, transposed: bool, nq: int) -> None:
        """Negatives below each query's nearest-positive interval: counted; those inside it: kept."""
        span = slice(first_query, first_query + nq)
        lo, hi = self.near_lo[span], self.near_hi[span]
        dim = 0 if transposed else 1
        shape = (1, -1) if transposed else (-1, 1)
        below = torch.lt(values, lo.view(shape)).sum(dim)
        self.near_below[span] += below
        under_hi = torch.lt(values, hi.view(shape)).sum(dim)
        queries = (under_hi > below).nonzero().flatten()
        if queries.numel():  # rare: a value within float32 rounding of the nearest positive
            sub = values[:, queries] if transposed else values[queries]
            inside = (sub >= lo[queries].view(shape)) & (sub < hi[queries].view(shape))
            r, c = inside.nonzero(as_tuple=True)
            self.near_band_q.append(queries[c if transposed else r] + first_query)
            self.near_band_v.append(sub[r, c])

    def nearest_ranks(self) -> torch.Tensor:
        """Per query: rank of its nearest positive (float64; +inf without a positive)."""
        pos, nq = self.pos, self.near_below.numel()
        nearest = torch.full((nq,), float("inf"), dtype=self.value.dtype, device=self.value.device)
        nearest.scatter_reduce_(0, pos.query, self.value, reduce="amin")
        count = self.near_below.clone()
        if self.near_band_q:
            q, v = torch.cat(self.near_band_q), torch.cat(self.near_band_v)
            hit = v < nearest[q]
            count.index_add_(0, q[hit], torch.ones_like(q[hit]))
        has = pos.offset[1:] > pos.offset[:-1]
        return torch.where(has, 1.0 + count.double(), torch.full_like(count, float("inf"), dtype=torch.float64))

    def _add(self, q: torch.Tensor, v: torch.Tensor) -> None:
        """Add taken values ``v`` of queries ``q`` to the counts (and the band)."""
        start, prefix, lo = self.pos.offset[q], self.prefix[q], self.pos.lo
        bucket = torch.zeros_like(q)  # number of the query's relevant positives with lo <= v
        active = torch.arange(q.numel(), device=q.device)
        while active.numel():
            b = bucket[active]
            p = (start[active] + b).clamp_max(lo.numel() - 1)
            active = active[(b < prefix[active]) & (v[active] >= lo[p])]
            bucket[active] += 1
        counted = bucket < prefix
        self.stop.index_add_(0, start[counted] + bucket[counted], torch.ones_like(q[counted]))
        in_band = (bucket > 0) & (v < self.pos.hi[(start + bucket - 1).clamp_min(0)])
        if bool(in_band.any()):
            self.band_q.append(q[in_band])
            self.band_v.append(v[in_band])

    def _below(self, a: int, b: int) -> torch.Tensor:
        return _segment_cumsum(self.stop[a:b], self.pos.first[a:b] - a)

    def refresh(self, qa: int, qb: int) -> None:
        """Recompute ``prefix`` and ``limit`` of queries [qa, qb) from the counts."""
        a, b = int(self.pos.offset[qa]), int(self.pos.offset[qb])
        relevant = (self._below(a, b) <= self.pos.cap[a:b]).long()
        prefix = torch.zeros(qb - qa, dtype=torch.long, device=relevant.device)
        prefix.index_add_(0, self.pos.query[a:b] - qa, relevant)
        hi_last = self.pos.hi[(self.pos.offset[qa:qb] + prefix - 1).clamp(0, self.pos.hi.numel() - 1)]
        self.prefix[qa:qb] = prefix
        self.limit[qa:qb] = torch.where(prefix > 0, hi_last, torch.full_like(hi_last, -float("inf")))

    def ranks(self) -> Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per positive: query, position among its query's positives, rank (+inf where beyond every
        MAP@R cap); and per query the rank of its nearest positive.

        None if some tile value lies outside its interval (the counts are then
        not certain; the caller falls back to top-K).
        """
        pos, value = self.pos, self.value
        if not bool(((value >= pos.lo) & (value <= pos.hi)).all()):
            return None
        below = self._below(0, value.numel())
        relevant = below <= pos.cap
        nearer = below + self._band_counts(relevant)
        order = torch.argsort(value, stable=True)
        order = order[torch.argsort(pos.query[order], stable=True)]
        position = torch.empty_like(pos.query)
        position[order] = torch.arange(value.numel(), device=value.device) - pos.first[order] + 1
        rank = torch.where(relevant, (position + nearer).double(), torch.full_like(value, float("inf"), dtype=torch.float64))
        return pos.query, position, rank, self.nearest_ranks()

    def _band_counts(self, relevant: torch.Tensor) -> torch.Tensor:
        """Per positive: kept band values v with lo <= v < its tile value (relevant positives only)."""
        extra = torch.zeros_like(self.pos.query)
        if not self.band_q:
            return extra
        q, v = torch.cat(self.band_q), torch.cat(self.band_v)
        n_relevant = torch.zeros_like(self.prefix).index_add_(0, self.pos.query, relevant.long())[q]
        p = expand_ranges(self.pos.offset[q], n_relevant)
        v = v.repeat_interleave(n_relevant)
        hit = (v >= self.pos.lo[p]) & (v < self.value[p])
        return extra.index_add_(0, p[hit], torch.ones_like(p[hit]))


def onepass_ranks(query, query_labels, ref, ref_labels, map_r: bool, block: int):
    """(query, position, rank) per positive pair and the nearest positive's rank per query,
    from one pass over the tiles; None: fall back.

    ``ref`` None: symmetric (queries = references, self excluded).
    """
    symmetric = ref is None
    if symmetric:
        ref_labels = query_labels
    left, right = augmented(query, ref)
    pos = _positives(left, right, query_labels, ref_labels, symmetric, block, map_r)
    if pos is None:
        return None
    if pos.query.numel() == 0:  # no query has a positive: nothing to rank
        none = torch.full((query.shape[0],), float("inf"), dtype=torch.float64, device=query.device)
        return pos.query, pos.query, pos.lo.double(), none
    counter = _NearerCounter(pos, query.shape[0], block, left.dtype)
    for ri, rj, d, t in distance_tiles(left, right, block, symmetric):
        counter.take_positives(ri, rj, d)
        # widening column chunks: relevance is refreshed early, before most of a long row is counted
        width, c0 = block, 0
        while c0 < d.shape[1]:
            counter.count(ri.start, d[:, c0:c0 + width], transposed=False)
            c0 += width
            width = min(2 * width, max(block, _MAX_CHUNK // d.shape[0]))
        if symmetric:
            width = max(1, _MAX_CHUNK // d.shape[0])
            for c0 in range(t, d.shape[1], width):
                counter.count(rj.start + c0, d[:, c0:c0 + width], transposed=True)
    return counter.ranks()
