"""Retrieval metrics: Recall@K and MAP@R, computed in tiles (never the N x N matrix).

Definitions
- Distance: squared Euclidean distance of the embeddings as given (they may be
  unnormalised, e.g. ABE's learners or a concatenated ensemble; for
  L2-normalised embeddings the ranking equals the cosine ranking).
- Symmetric case (one test set): every item queries all OTHER items; itself is
  excluded. Query/gallery case (In-Shop): each query searches the gallery
  only; nothing is excluded.
- Positives of a query: the references sharing its label; R = their number.
  Negatives: all other references.
- Tie rule: a negative at exactly the same distance as a positive is NOT
  nearer than it (ties are resolved in the positives' favour). Positives tied
  with each other are ordered arbitrarily (that changes no metric).
- Rank of a positive p: 1 + (number of negatives strictly nearer than p) +
  (number of positives ordered before p).
- Recall@K: percentage of queries whose nearest positive has rank <= K (for
  K >= the number of references every query with a positive hits).
- MAP@R (Musgrave et al. 2020, "A Metric Learning Reality Check"):
  ``AP@R = (1/R) sum_{i=1}^{R} P(i) * rel(i)`` with P(i) the precision among the
  first i neighbours and rel(i) = 1 if the i-th neighbour is a positive; with
  the i-th positive (nearest first) at rank_i this is
  ``AP@R = (1/R) sum_{i: rank_i <= R} i / rank_i``.
- Queries with no positive (R = 0) can neither hit nor be ranked; they are
  left out of every metric (as pytorch-metric-learning does). If no query has
  one, the metrics are NaN.
- All values are in PERCENT (0-100).

Computation (hand-written: pytorch-metric-learning's AccuracyCalculator ranks
every query against the full reference matrix and exploits no symmetry; see
benchmark/perf_eval.py for the measured difference):
- One matrix product of augmented factors gives squared distances directly
  (``[-2x, |x|^2, 1] . [y, 1, |y|^2]``), with no extra pass over the tile.
- Tiles are ``block_size`` rows by a wide column strip (at most 2^25
  elements, 128 MiB in float32). When queries = references only the upper
  triangle is computed: the tile of row block I covers columns from I's start
  on, and its columns past I's end serve, transposed, as candidates for those
  rows. So every distance is computed once (about half the multiply-adds).
  The distances ranked are these tile values (float32 for float32 input).
- One pass gives every K and MAP@R: only the count of negatives strictly
  nearer than each positive is needed (the rank formula above). Before the
  pass, each positive's distance is computed in float64 (a few flops per
  positive pair) with a rigorous bound on the tile's float32 rounding
  (``gamma_n * sum |terms|``); this gives an interval [lo, hi] certain to hold
  the positive's tile value. During the pass the tile values of the positives
  are read where the tile holds them (then set to +inf, so they are not
  counted as negatives).
  Recall@K, every K at once: per query, the tile values below the lo of its
  nearest positive are counted (a compare and a sum per distance, like the
  min reduction Recall@1 alone would need); the rare values within that
  positive's [lo, hi) are kept and compared with the exact tile value after
  the pass. The nearest positive's rank is 1 + that count.
  MAP@R: per query, tile values below its largest relevant hi are taken out of
  the tile (a compare and ``nonzero``) and each one counts for the positives
  whose lo lies above it; again the few within some [lo, hi) are decided after
  the pass. A positive is relevant while its count can still matter: while it
  does not exceed ``R - i`` (a positive that is at best the i-th); once it
  does, nothing more is counted for it (so a query gives up a few values per
  positive, plus those below the bound in one column chunk before its
  relevance is refreshed).
  Memory: O(tile + positive pairs).
- Fallback: with more than ``_MAX_POSITIVE_PAIRS`` positive pairs (a few huge
  classes), or if a positive's tile value falls outside its interval (a matrix
  product less precise than IEEE float32, e.g. TF32 on a GPU), a running
  top-K per row ([N, K] distances + matched-label flags, merged tile by tile)
  is used instead; it orders tied references arbitrarily (torch.topk), so it
  equals the one-pass result on data without ties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

DEFAULT_BLOCK = 512


def _to_tensor(x, *, float_: bool) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.detach()
    if float_:
        if t.dim() != 2:
            raise ValueError(f"embeddings must be [N, d], got shape {tuple(t.shape)}")
        if t.dtype != torch.float64:
            t = t.float()
    else:
        if t.dim() != 1:
            raise ValueError(f"labels must be [N], got shape {tuple(t.shape)}")
    return t


def _augmented(query: torch.Tensor, ref: Optional[torch.Tensor]):
    """Factors whose product is the distance used for ranking, in ONE matrix product.

    Symmetric (``ref`` None): ``[-2x_i, |x_i|^2, 1] . [x_j, 1, |x_j|^2]`` =
    ``||x_i - x_j||^2``, the same number for row i and (transposed) for row j.
    Query/gallery: ``[-2q, 1] . [g, |g|^2]`` = ``||q - g||^2 - ||q||^2`` (the
    per-query constant does not change a query's ranking).
    """
    if ref is None:
        sq = (query * query).sum(1, keepdim=True)
        one = torch.ones_like(sq)
        return torch.cat([-2.0 * query, sq, one], 1), torch.cat([query, one, sq], 1)
    sq = (ref * ref).sum(1, keepdim=True)
    return torch.cat([-2.0 * query, torch.ones_like(query[:, :1])], 1), torch.cat([ref, sq], 1)


# Largest distance tile computed at once (elements; 2^25 float32 = 128 MiB).
_MAX_TILE = 1 << 25


def _tiles(left: torch.Tensor, right: torch.Tensor, block: int, symmetric: bool):
    """Yield ``(I, J, D[I, J], t)``: row blocks of ``block`` rows times wide column strips.

    Symmetric: only columns from I's first index on are computed (the lower
    triangle is the transpose of the upper), self-distances are +inf, and
    ``d[:, t:]`` are the columns past the end of I, i.e. the entries whose
    transpose serves the rows of J. Query/gallery: t = number of columns.
    """
    nq, nr = left.shape[0], right.shape[0]
    width = max(block, _MAX_TILE // max(block, 1))
    for a in range(0, nq, block):
        ri = slice(a, min(a + block, nq))
        for b in range(a if symmetric else 0, nr, width):
            rj = slice(b, min(b + width, nr))
            d = left[ri] @ right[rj].t()
            t = d.shape[1]
            if symmetric:
                if b < ri.stop:  # this tile holds (part of) the diagonal block I x I
                    n_diag = min(ri.stop, rj.stop) - b
                    d[:, :n_diag].fill_diagonal_(float("inf"))  # exclude self
                    t = n_diag
                else:
                    t = 0
            yield ri, rj, d, t


# ---------------------------------------------------------------------------
# Top-K fallback: a running top-K per row.

class _TopK:
    """Running K smallest values per row, with a matched-label flag per entry."""

    def __init__(self, n: int, k: int, dtype: torch.dtype, device: torch.device):
        self.k = k
        self.val = torch.full((n, k), float("inf"), dtype=dtype, device=device)
        self.match = torch.zeros((n, k), dtype=torch.bool, device=device)

    def add(self, rows: slice, d: torch.Tensor, row_labels: torch.Tensor, col_labels: torch.Tensor) -> None:
        """Merge the block ``d`` [rows, cols] (candidates for ``rows``) into the running top-K."""
        val, idx = torch.topk(d, min(self.k, d.shape[1]), dim=1, largest=False)
        match = col_labels[idx] == row_labels[:, None]
        val = torch.cat([self.val[rows], val], dim=1)
        match = torch.cat([self.match[rows], match], dim=1)
        top_val, top_idx = torch.topk(val, self.k, dim=1, largest=False)
        self.val[rows] = top_val
        self.match[rows] = match.gather(1, top_idx)


def _topk_matches(query, query_labels, ref, ref_labels, k: int, block: int) -> torch.Tensor:
    """[Nq, k] bool: does the i-th nearest reference share the query's label (nearest first).

    ``ref`` None: symmetric (queries = references, self excluded); each
    off-diagonal block serves row block I and, transposed, row block J.
    """
    symmetric = ref is None
    if symmetric:
        ref_labels = query_labels
    left, right = _augmented(query, ref)
    state = _TopK(query.shape[0], k, query.dtype, query.device)
    # Taller row blocks for a large K: each merge then costs K + (block's candidates)
    # per row, and there are fewer merges (measured: K = 1000 runs 2x faster at 4096).
    block = max(block, min(4096, 4 * k))
    for ri, rj, d, t in _tiles(left, right, block, symmetric):
        state.add(ri, d, query_labels[ri], ref_labels[rj])
        if symmetric and t < d.shape[1]:
            cols = slice(rj.start + t, rj.stop)
            state.add(cols, d[:, t:].t().contiguous(), query_labels[cols], query_labels[ri])
    return state.match


def _metrics_from_matches(matches: torch.Tensor, r: torch.Tensor, ks: Sequence[int],
                          map_r: bool, chunk: int = 8192) -> dict[str, float]:
    valid = r > 0
    nvalid = int(valid.sum())
    out: dict[str, float] = {}
    kmax = matches.shape[1]
    for k in ks:
        if nvalid == 0:
            out[f"recall@{k}"] = float("nan")
            continue
        kk = min(int(k), kmax)
        hit = matches[:, :kk].any(1) if kk > 0 else torch.zeros_like(valid)
        out[f"recall@{k}"] = 100.0 * float(hit[valid].double().sum()) / nvalid
    if map_r:
        if nvalid == 0:
            out["map@r"] = float("nan")
        else:
            total = 0.0
            ranks = torch.arange(1, kmax + 1, device=matches.device, dtype=torch.float64)
            for s in range(0, matches.shape[0], chunk):
                m = matches[s:s + chunk].double()
                rr = r[s:s + chunk].double()
                v = valid[s:s + chunk]
                within = (ranks[None, :] <= rr[:, None]).double()
                rel = m * within
                prec = rel.cumsum(1) / ranks[None, :]
                ap = (prec * rel).sum(1) / rr.clamp_min(1)
                total += float(ap[v].sum())
            out["map@r"] = 100.0 * total / nvalid
    return out


def _needed_k(ks: Iterable[int], r: torch.Tensor, map_r: bool, n_ref: int) -> int:
    k = max([int(x) for x in ks] or [1])
    if map_r and r.numel():
        k = max(k, int(r.max()))
    return max(0, min(k, n_ref))


# ---------------------------------------------------------------------------
# Positive pairs.

# Above this many positive pairs the metrics fall back to the top-K path.
_MAX_POSITIVE_PAIRS = 50_000_000


def _positive_pairs(query_labels: torch.Tensor, ref_labels: torch.Tensor, symmetric: bool):
    """All ordered pairs (i, j) with query_labels[i] == ref_labels[j] (i != j when symmetric)."""
    uniq, inv, counts = torch.unique(ref_labels, return_inverse=True, return_counts=True)
    order = torch.argsort(inv, stable=True)  # reference indices grouped by label
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.searchsorted(uniq, query_labels).clamp_max(len(uniq) - 1)
    found = uniq[pos] == query_labels
    rows = torch.nonzero(found).squeeze(1)
    group = pos[rows]
    cnt = counts[group]
    total = int(cnt.sum())
    if total > _MAX_POSITIVE_PAIRS:
        return None
    i = rows.repeat_interleave(cnt)
    j = order[_expand(starts[group], cnt)]
    if symmetric:
        keep = i != j
        i, j = i[keep], j[keep]
    return i, j


def _relevant_counts(query_labels: torch.Tensor, ref_labels: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """R per query: references sharing its label (self excluded when symmetric)."""
    uniq, counts = torch.unique(ref_labels, return_counts=True)
    pos = torch.searchsorted(uniq, query_labels).clamp_max(len(uniq) - 1)
    r = torch.where(uniq[pos] == query_labels, counts[pos], torch.zeros_like(counts[pos]))
    return r - 1 if symmetric else r


# ---------------------------------------------------------------------------
# One pass: per positive, the number of negatives strictly nearer.

# Most tile elements counted at once (bounds the entries taken out of a tile).
_MAX_CHUNK = 1 << 22


def _gamma(n: int, dtype: torch.dtype) -> float:
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


def _expand(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Concatenated ranges ``starts[i] .. starts[i] + counts[i] - 1``."""
    total = int(counts.sum())
    within = torch.arange(total, device=starts.device) - (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
    return starts.repeat_interleave(counts) + within


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
    """The positive pairs with their intervals and MAP@R caps; None above ``_MAX_POSITIVE_PAIRS``."""
    pairs = _positive_pairs(query_labels, ref_labels, symmetric)
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
    err = (_gamma(n, left.dtype) + _gamma(n + 2, torch.float64)) * mag
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
        p = _expand(self.pos.offset[q], n_relevant)
        v = v.repeat_interleave(n_relevant)
        hit = (v >= self.pos.lo[p]) & (v < self.value[p])
        return extra.index_add_(0, p[hit], torch.ones_like(p[hit]))


def _onepass_ranks(query, query_labels, ref, ref_labels, map_r: bool, block: int):
    """(query, position, rank) per positive pair and the nearest positive's rank per query,
    from one pass over the tiles; None: fall back.

    ``ref`` None: symmetric (queries = references, self excluded).
    """
    symmetric = ref is None
    if symmetric:
        ref_labels = query_labels
    left, right = _augmented(query, ref)
    pos = _positives(left, right, query_labels, ref_labels, symmetric, block, map_r)
    if pos is None:
        return None
    if pos.query.numel() == 0:  # no query has a positive: nothing to rank
        none = torch.full((query.shape[0],), float("inf"), dtype=torch.float64, device=query.device)
        return pos.query, pos.query, pos.lo.double(), none
    counter = _NearerCounter(pos, query.shape[0], block, left.dtype)
    for ri, rj, d, t in _tiles(left, right, block, symmetric):
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


def _metrics_from_ranks(query: torch.Tensor, position: torch.Tensor, rank: torch.Tensor, nearest: torch.Tensor,
                        r: torch.Tensor, ks: Sequence[int], map_r: bool, n_ref: int) -> dict[str, float]:
    """Recall@K and MAP@R (percent) from each positive's position and rank, and each query's
    nearest positive's rank (definitions: module docstring)."""
    valid = r > 0
    nvalid = int(valid.sum())
    out: dict[str, float] = {}
    for k in ks:
        hit = (nearest <= int(k)) | (int(k) >= n_ref)
        out[f"recall@{k}"] = 100.0 * float(hit[valid].double().sum()) / nvalid if nvalid else float("nan")
    if map_r:
        within = rank <= r[query]
        ap = torch.zeros(r.shape, dtype=torch.float64, device=r.device)
        ap.index_add_(0, query[within], position[within].double() / rank[within])
        out["map@r"] = 100.0 * float((ap[valid] / r[valid]).sum()) / nvalid if nvalid else float("nan")
    return out


def _metrics(query, query_labels, ref, ref_labels, ks: Sequence[int], map_r: bool, block: int) -> dict[str, float]:
    """Recall@K / MAP@R by one pass, or by the top-K fallback (see the module docstring)."""
    symmetric = ref is None
    r = _relevant_counts(query_labels, query_labels if symmetric else ref_labels, symmetric)
    n_ref = query.shape[0] - 1 if symmetric else ref.shape[0]
    ranks = _onepass_ranks(query, query_labels, ref, ref_labels, map_r, block)
    if ranks is not None:
        return _metrics_from_ranks(*ranks, r, ks, map_r, n_ref)
    k = _needed_k(ks, r, map_r, n_ref)
    if k == 0:
        matches = torch.zeros((query.shape[0], 0), dtype=torch.bool, device=query.device)
    else:
        matches = _topk_matches(query, query_labels, ref, ref_labels, k, block)
    return _metrics_from_matches(matches, r, ks, map_r)


@torch.no_grad()
def retrieval_metrics(emb, labels, ks: Sequence[int] = (1, 2, 4, 8), map_r: bool = True, *,
                      query=None, query_labels=None,
                      block_size: Optional[int] = None) -> dict[str, float]:
    """Recall@K for each K in ``ks`` and MAP@R, in percent: ``{"recall@1": .., "map@r": ..}``.

    Symmetric by default: each row of ``emb`` [N, d] queries the other rows.
    With ``query``/``query_labels`` given, ``emb``/``labels`` are the gallery and
    the queries search it only (In-Shop); see :func:`query_gallery_metrics`.
    """
    if query is not None or query_labels is not None:
        if query is None or query_labels is None:
            raise ValueError("query and query_labels go together")
        return query_gallery_metrics(query, query_labels, emb, labels, ks, map_r, block_size=block_size)
    x = _to_tensor(emb, float_=True)
    y = _to_tensor(labels, float_=False).to(x.device)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} embeddings but {y.shape[0]} labels")
    return _metrics(x, y, None, None, ks, map_r, block_size or DEFAULT_BLOCK)


@torch.no_grad()
def query_gallery_metrics(query, query_labels, gallery, gallery_labels,
                          ks: Sequence[int] = (1, 10, 20, 30, 40, 50), map_r: bool = True, *,
                          block_size: Optional[int] = None) -> dict[str, float]:
    """Recall@K / MAP@R (percent) of ``query`` [Nq, d] searching ``gallery`` [Ng, d] only.

    Nothing is excluded (a query image is not in the gallery); R = number of
    gallery items with the query's label.
    """
    q = _to_tensor(query, float_=True)
    g = _to_tensor(gallery, float_=True).to(device=q.device, dtype=q.dtype)
    ql = _to_tensor(query_labels, float_=False).to(q.device)
    gl = _to_tensor(gallery_labels, float_=False).to(q.device)
    if q.shape[0] != ql.shape[0] or g.shape[0] != gl.shape[0]:
        raise ValueError("embeddings and labels differ in length")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != gallery dim {g.shape[1]}")
    return _metrics(q, ql, g, gl, ks, map_r, block_size or DEFAULT_BLOCK)


def recall_at_k(emb, labels, ks: Sequence[int], *, block_size: Optional[int] = None) -> dict[int, float]:
    """Recall@K in percent for each K, self excluded: ``{1: 62.3, 2: ...}``."""
    m = retrieval_metrics(emb, labels, ks, map_r=False, block_size=block_size)
    return {int(k): m[f"recall@{k}"] for k in ks}


def map_at_r(emb, labels, *, block_size: Optional[int] = None) -> float:
    """MAP@R in percent (Musgrave et al.), self excluded."""
    return retrieval_metrics(emb, labels, ks=(), map_r=True, block_size=block_size)["map@r"]
