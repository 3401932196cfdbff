"""Retrieval metrics: Recall@K and MAP@R, computed in tiles (never the N x N matrix).

Definitions
- Distance: squared Euclidean distance of the embeddings as given (they may be
  unnormalised, e.g. ABE's learners or a concatenated ensemble; for
  L2-normalised embeddings the ranking equals the cosine ranking).
- Symmetric case (one test set): every item queries all OTHER items; itself is
  excluded. Query/gallery case (In-Shop): each query searches the gallery
  only; nothing is excluded.
- Recall@K: percentage of queries with at least one same-label item among
  their K nearest neighbours (K capped at the number of references).
- MAP@R (Musgrave et al. 2020, "A Metric Learning Reality Check"): R = number
  of same-label references of the query (self excluded);
  ``AP@R = (1/R) sum_{i=1}^{R} P(i) * rel(i)`` with P(i) the precision among the
  first i neighbours and rel(i) = 1 if the i-th neighbour shares the label.
- Queries with no same-label reference (R = 0) can neither hit nor be ranked;
  they are left out of every metric (as pytorch-metric-learning does). If no
  query has one, the metrics are NaN.
- Ties (references at exactly the same distance): in general ordered
  arbitrarily by torch.topk. When only Recall@1 is asked (no MAP@R), a
  same-label reference tied with the nearest other reference counts as a hit.
  Continuous embeddings practically never tie.
- All values are in PERCENT (0-100).

Computation (hand-written: pytorch-metric-learning's AccuracyCalculator needs
faiss or ranks every query against the full reference matrix, and exploits no
symmetry; see benchmark/perf_eval.py for the measured difference):
- One matrix product of augmented factors gives squared distances directly
  (``[-2x, |x|^2, 1] . [y, 1, |y|^2]``), with no extra pass over the tile.
- Tiles are ``block_size`` rows by a wide column strip (at most 2^25
  elements, 128 MiB in float32). When queries = references only the upper
  triangle is computed: the tile of row block I covers columns from I's start
  on, and its columns past I's end serve, transposed, as candidates for those
  rows. So every distance is computed once (about half the multiply-adds).
- Top-K path: a running top-K per row keeps only distances and whether the
  neighbour's label matches ([N, K] float + bool), merged tile by tile.
  Memory O(tile + N K): 60k x 60k with K = 1000 needs ~0.3 GB of state.
- Recall@1-only path: per row the minimum over all references (plain min
  reductions, cheap in both directions) and the minimum over same-label
  references gathered from the same tile values; hit iff they are equal.
"""

from __future__ import annotations

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


# Above this many same-label pairs the K = 1 path falls back to the top-K path.
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
    within = torch.arange(total, device=ref_labels.device) - (torch.cumsum(cnt, 0) - cnt).repeat_interleave(cnt)
    j = order[starts[group].repeat_interleave(cnt) + within]
    if symmetric:
        keep = i != j
        i, j = i[keep], j[keep]
    return i, j


def _nearest_matches(query, query_labels, ref, ref_labels, block: int) -> Optional[torch.Tensor]:
    """[Nq, 1] bool for K = 1 only: is the nearest reference of the query's label?

    Cheaper than top-K: per row it keeps the minimum distance over all
    references (a plain min along rows and, for the transposed use of a block,
    along columns) and the minimum over same-label references, gathered from
    the SAME block values (so both see identical rounding); the query hits iff
    the two are equal. A same-label reference tied with the nearest other one
    counts as a hit. Returns None when there are too many same-label pairs.
    """
    symmetric = ref is None
    if symmetric:
        ref_labels = query_labels
    pairs = _positive_pairs(query_labels, ref_labels, symmetric)
    if pairs is None:
        return None
    pi, pj = pairs
    nq = query.shape[0]
    left, right = _augmented(query, ref)
    # Bucket the pairs by row block, and keep (when symmetric) only those whose
    # value lies in a computed tile: column index >= the start of the row's block.
    bi = pi // block
    if symmetric:
        keep = pj >= bi * block
        pi, pj, bi = pi[keep], pj[keep], bi[keep]
    order = torch.argsort(bi)
    pi, pj, bi = pi[order], pj[order], bi[order]
    inf = float("inf")
    best = torch.full((nq,), inf, dtype=query.dtype, device=query.device)
    best_pos = torch.full((nq,), inf, dtype=query.dtype, device=query.device)
    for ri, rj, d, t in _tiles(left, right, block, symmetric):
        best[ri] = torch.minimum(best[ri], torch.amin(d, dim=1))
        if symmetric and t < d.shape[1]:
            cols = slice(rj.start + t, rj.stop)
            best[cols] = torch.minimum(best[cols], torch.amin(d[:, t:], dim=0))
        blk = ri.start // block
        lo, hi = torch.searchsorted(bi, torch.tensor([blk, blk + 1], device=bi.device)).tolist()
        i, j = pi[lo:hi], pj[lo:hi]
        inside = (j >= rj.start) & (j < rj.stop)
        if bool(inside.any()):
            i, j = i[inside], j[inside]
            v = d[i - ri.start, j - rj.start]
            best_pos.scatter_reduce_(0, i, v, reduce="amin")
            if symmetric:  # the transposed use: row j sees the same value, if j is past block I
                past = j >= rj.start + t
                best_pos.scatter_reduce_(0, j[past], v[past], reduce="amin")
    return ((best_pos <= best) & torch.isfinite(best_pos))[:, None]


def _matches(query, query_labels, ref, ref_labels, k: int, block: int) -> torch.Tensor:
    if k == 0:
        return torch.zeros((query.shape[0], 0), dtype=torch.bool, device=query.device)
    if k == 1:
        m = _nearest_matches(query, query_labels, ref, ref_labels, block)
        if m is not None:
            return m
    return _topk_matches(query, query_labels, ref, ref_labels, k, block)


def _relevant_counts(query_labels: torch.Tensor, ref_labels: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """R per query: references sharing its label (self excluded when symmetric)."""
    uniq, counts = torch.unique(ref_labels, return_counts=True)
    pos = torch.searchsorted(uniq, query_labels).clamp_max(len(uniq) - 1)
    r = torch.where(uniq[pos] == query_labels, counts[pos], torch.zeros_like(counts[pos]))
    return r - 1 if symmetric else r


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
    r = _relevant_counts(y, y, symmetric=True)
    k = _needed_k(ks, r, map_r, x.shape[0] - 1)
    matches = _matches(x, y, None, None, k, block_size or DEFAULT_BLOCK)
    return _metrics_from_matches(matches, r, ks, map_r)


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
    r = _relevant_counts(ql, gl, symmetric=False)
    k = _needed_k(ks, r, map_r, g.shape[0])
    matches = _matches(q, ql, g, gl, k, block_size or DEFAULT_BLOCK)
    return _metrics_from_matches(matches, r, ks, map_r)


def recall_at_k(emb, labels, ks: Sequence[int], *, block_size: Optional[int] = None) -> dict[int, float]:
    """Recall@K in percent for each K, self excluded: ``{1: 62.3, 2: ...}``."""
    m = retrieval_metrics(emb, labels, ks, map_r=False, block_size=block_size)
    return {int(k): m[f"recall@{k}"] for k in ks}


def map_at_r(emb, labels, *, block_size: Optional[int] = None) -> float:
    """MAP@R in percent (Musgrave et al.), self excluded."""
    return retrieval_metrics(emb, labels, ks=(), map_r=True, block_size=block_size)["map@r"]
