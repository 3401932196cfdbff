"""`perf`'s measurement of the decoded-image cache (``data.decoded_cache_mb``).

decoded_cache_epoch_ratio: the data time of a training epoch whose images are
read from the cache over the same epoch decoding them, same images, sampler
and views (paper-like: 500-px JPEGs, DM²'s multi-resolution 256 crop + flip,
4 views, batch 30, one process). The cache saves the decode; what remains is
the views, so the ratio is about views / (decode + views). Goal <= 0.5.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import torch



def measure_decoded_cache(batches: int = 6, image: int = 500, crop: int = 256, batch: int = 30, views: int = 4,
                          transform: str = "multi_resolution_crop", rounds: int = 3) -> dict:
    """An epoch of ``batches`` batches read from a filled cache vs decoded, interleaved, best of ``rounds``.

    Also reports the first (filling) pass, the cache's size, and whether the
    two paths gave the same bytes.
    """
    from benchmark.data import TrainBatches, prepare_splits
    from benchmark.perf import paper_like_data

    data = paper_like_data(image, crop, batch, transform)
    with tempfile.TemporaryDirectory() as tmp:
        splits = prepare_splits(data, Path(tmp))
        decoding = TrainBatches(data, splits.train, views=views, seed=0)
        cached = TrainBatches(dataclasses.replace(data, decoded_cache_mb=1024), splits.train, views=views, seed=0)

        def epoch(tb: TrainBatches) -> tuple[float, list]:
            t0 = time.perf_counter()
            out = list(tb.epoch(0, batches))
            return time.perf_counter() - t0, out

        fill, first = epoch(cached)
        times: dict[str, list[float]] = {"decoding": [], "cached": []}
        for _ in range(rounds):  # interleaved: machine noise hits both alike
            t, reference = epoch(decoding)
            times["decoding"].append(t)
            t, read = epoch(cached)
            times["cached"].append(t)
        same = all(torch.equal(a[0], b[0]) and torch.equal(a[0], c[0]) for a, b, c in zip(reference, first, read))
        cache_mb = cached.cache.nbytes / 2**20
    dec, hit = min(times["decoding"]), min(times["cached"])
    return {
        "decoded_cache_epoch_ratio": round(hit / dec, 3),
        "decoded_cache_s_per_batch": round(hit / batches, 4),
        "decoding_s_per_batch": round(dec / batches, 4),
        "decoded_cache_fill_s_per_batch": round(fill / batches, 4),
        "decoded_cache_size_mb": round(cache_mb, 1),
        "decoded_cache_same_bytes": same,
        "decoded_cache_setup": f"{image}-px JPEGs ({len(splits.train)} training images), {transform} {crop} + flip, "
                               f"{views} views, batch {batch}, {batches} batches an epoch, num_workers 0",
    }
