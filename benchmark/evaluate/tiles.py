"""Distance tiles and positive pairs, shared by both ways of ranking (benchmark.evaluate)."""

from __future__ import annotations

from typing import Optional

import torch


def augmented(query: torch.Tensor, ref: Optional[torch.Tensor]):
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
MAX_TILE = 1 << 25


def distance_tiles(left: torch.Tensor, right: torch.Tensor, block: int, symmetric: bool):
    """Yield ``(I, J, D[I, J], t)``: row blocks of ``block`` rows times wide column strips.

    Symmetric: only columns from I's first index on are computed (the lower
    triangle is the transpose of the upper), self-distances are +inf, and
    ``d[:, t:]`` are the columns past the end of I, i.e. the entries whose
    transpose serves the rows of J. Query/gallery: t = number of columns.
    """
    nq, nr = left.shape[0], right.shape[0]
    width = max(block, MAX_TILE // max(block, 1))
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


def expand_ranges(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Concatenated ranges ``starts[i] .. starts[i] + counts[i] - 1``."""
    total = int(counts.sum())
    within = torch.arange(total, device=starts.device) - (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
    return starts.repeat_interleave(counts) + within


# Above this many positive pairs the metrics fall back to the top-K path.
MAX_POSITIVE_PAIRS = 50_000_000


def positive_pairs(query_labels: torch.Tensor, ref_labels: torch.Tensor, symmetric: bool):
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
    if total > MAX_POSITIVE_PAIRS:
        return None
    i = rows.repeat_interleave(cnt)
    j = order[expand_ranges(starts[group], cnt)]
    if symmetric:
        keep = i != j
        i, j = i[keep], j[keep]
    return i, j


def relevant_counts(query_labels: torch.Tensor, ref_labels: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """R per query: references sharing its label (self excluded when symmetric)."""
    uniq, counts = torch.unique(ref_labels, return_counts=True)
    pos = torch.searchsorted(uniq, query_labels).clamp_max(len(uniq) - 1)
    r = torch.where(uniq[pos] == query_labels, counts[pos], torch.zeros_like(counts[pos]))
    return r - 1 if symmetric else r
