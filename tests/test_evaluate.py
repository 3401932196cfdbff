"""Retrieval metrics vs brute force (full matrix, float64 loops) and vs pytorch-metric-learning."""
import numpy as np
import pytest
import torch

from benchmark.evaluate import tiles
from benchmark.evaluate import map_at_r, query_gallery_metrics, recall_at_k, retrieval_metrics


def _brute(q, ql, g, gl, ks, exclude_self):
    q, g = np.asarray(q, np.float64), np.asarray(g, np.float64)
    ql, gl = np.asarray(ql), np.asarray(gl)
    d = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    recalls = {k: [] for k in ks}
    aps = []
    for i in range(len(q)):
        order = np.argsort(d[i], kind="stable")
        if exclude_self:
            order = order[order != i]
        rel = (gl[order] == ql[i]).astype(float)
        r = int(rel.sum())
        if r == 0:
            continue  # queries without a positive are left out
        for k in ks:
            recalls[k].append(rel[:k].any())
        hits, ap = 0, 0.0
        for pos in range(r):
            if rel[pos]:
                hits += 1
                ap += hits / (pos + 1)
        aps.append(ap / r)
    out = {f"recall@{k}": 100 * float(np.mean(v)) for k, v in recalls.items()}
    out["map@r"] = 100 * float(np.mean(aps))
    return out


@pytest.fixture
def small_tiles(monkeypatch):
    monkeypatch.setattr(tiles, "MAX_TILE", 200)  # several column strips per row block


@pytest.mark.parametrize("block", [7, 32, 1000])
def test_symmetric_metrics_match_brute_force(block, small_tiles):
    g = torch.Generator().manual_seed(block)
    x = torch.randn(150, 6, generator=g) * 3
    y = torch.randint(0, 12, (150,), generator=g)
    y[0] = 99  # a query with no positive: left out
    ks = [1, 2, 4, 8]
    expected = _brute(x, y, x, y, ks, exclude_self=True)
    got = retrieval_metrics(x, y, ks, block_size=block)
    assert set(got) == {"recall@1", "recall@2", "recall@4", "recall@8", "map@r"}
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key
    # the Recall@1-only path (min reductions) agrees with the top-K path
    assert recall_at_k(x, y, [1], block_size=block)[1] == pytest.approx(expected["recall@1"], abs=1e-9)
    assert map_at_r(x, y, block_size=block) == pytest.approx(expected["map@r"], abs=1e-9)


@pytest.mark.parametrize("block", [5, 64])
def test_query_gallery_metrics_match_brute_force(block, small_tiles):
    g = torch.Generator().manual_seed(3)
    gal = torch.randn(120, 5, generator=g)
    gl = torch.randint(0, 10, (120,), generator=g)
    q = torch.randn(40, 5, generator=g)
    ql = torch.randint(0, 11, (40,), generator=g)  # label 10 is not in the gallery: left out
    ks = [1, 3, 10]
    expected = _brute(q, ql, gal, gl, ks, exclude_self=False)
    got = query_gallery_metrics(q, ql, gal, gl, ks, block_size=block)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key
    only_r1 = query_gallery_metrics(q, ql, gal, gl, [1], map_r=False, block_size=block)
    assert only_r1 == {"recall@1": pytest.approx(expected["recall@1"], abs=1e-9)}
    via_retrieval = retrieval_metrics(gal, gl, ks, query=q, query_labels=ql, block_size=block)
    assert via_retrieval == got


def test_map_at_r_hand_case():
    # one query at 0; gallery at 1 (same), 2 (other), 3 (same), 4 (same): R = 3
    # first R neighbours: same, other, same -> AP@R = (1/1 + 2/3) / 3 = 0.5556
    q = torch.zeros(1, 1)
    gal = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    m = query_gallery_metrics(q, torch.tensor([0]), gal, torch.tensor([0, 1, 0, 0]), [1, 2])
    assert m["map@r"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert m["recall@1"] == 100.0 and m["recall@2"] == 100.0


def test_self_is_excluded_and_k_is_capped():
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    y = torch.tensor([0, 1, 1, 0])
    # nearest other of each item has a different label; K beyond N - 1 = 3 is capped
    m = retrieval_metrics(x, y, [1, 10])
    assert m["recall@1"] == 0.0 and m["recall@10"] == 100.0


def test_agrees_with_pytorch_metric_learning():
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    g = torch.Generator().manual_seed(7)
    x = torch.randn(300, 8, generator=g)
    y = torch.randint(0, 20, (300,), generator=g)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                              k="max_bin_count", device=torch.device("cpu"),
                              knn_func=CustomKNN(LpDistance(normalize_embeddings=False)))
    ref = calc.get_accuracy(x, y, x, y, ref_includes_query=True)
    ours = retrieval_metrics(x, y, [1], block_size=64)
    assert ours["recall@1"] == pytest.approx(100 * ref["precision_at_1"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(100 * ref["mean_average_precision_at_r"], abs=1e-6)


def test_measure_eval_speedup_runs_and_agrees_with_pml():
    # timings are not asserted (perf shows them); the measurement asserts inside
    # that both implementations give the same Recall@1
    from benchmark.perf_eval import measure_eval_speedup

    out = measure_eval_speedup(n=400, dim=16, classes=100, seed=1)
    assert {"eval_speedup_vs_pml", "ours_s", "pml_s", "recall_at_1"} <= set(out)
    assert out["ours_s"] > 0 and out["pml_s"] > 0 and 0 <= out["recall_at_1"] <= 100
