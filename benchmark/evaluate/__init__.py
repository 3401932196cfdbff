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
- Fallback: with more than ``MAX_POSITIVE_PAIRS`` positive pairs (a few huge
  classes), or if a positive's tile value falls outside its interval (a matrix
  product less precise than IEEE float32, e.g. TF32 on a GPU), a running
  top-K per row ([N, K] distances + matched-label flags, merged tile by tile)
  is used instead; it orders tied references arbitrarily (torch.topk), so it
  equals the one-pass result on data without ties.
"""


from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .onepass import onepass_ranks
from .tiles import relevant_counts
from .topk import metrics_from_matches, needed_k, topk_matches

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
    r = relevant_counts(query_labels, query_labels if symmetric else ref_labels, symmetric)
    n_ref = query.shape[0] - 1 if symmetric else ref.shape[0]
    ranks = onepass_ranks(query, query_labels, ref, ref_labels, map_r, block)
    if ranks is not None:
        return _metrics_from_ranks(*ranks, r, ks, map_r, n_ref)
    k = needed_k(ks, r, map_r, n_ref)
    if k == 0:
        matches = torch.zeros((query.shape[0], 0), dtype=torch.bool, device=query.device)
    else:
        matches = topk_matches(query, query_labels, ref, ref_labels, k, block)
    return metrics_from_matches(matches, r, ks, map_r)


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
