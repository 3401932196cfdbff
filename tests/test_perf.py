"""`perf`'s multi-view measurement runs the real pipeline and reports consistent parts
(no timing is asserted: speed goals are shown by `python -m benchmark perf`, not tested)."""

from __future__ import annotations

import pytest

from benchmark.perf import measure_multiview


@pytest.mark.parametrize("transform", ["multi_resolution_crop", "random_resized_crop"])
def test_multiview_measurement_reports_its_parts(transform):
    out = measure_multiview(batches=1, image=48, crop=24, batch=10, transform=transform)
    assert transform in out["multiview_setup"]
    d, v = out["decode_ms_per_image"], out["view_ms_reused_buffer"]
    assert d > 0 and v > 0 and out["data_1_view_s_per_batch"] > 0
    # d and v are printed rounded to 0.001 ms, the floor from the unrounded times: at these
    # tiny sizes the rounding alone moves (d + 4v) / (d + v) by more than 0.01
    h = 0.0005
    bounds = [(dd + 4 * vv) / (dd + vv) for dd in (max(d - h, 1e-9), d + h) for vv in (max(v - h, 1e-9), v + h)]
    assert min(bounds) - 0.001 <= out["multiview_ratio_floor_decode_and_views_only"] <= max(bounds) + 0.001
    assert out["multiview_data_ratio"] == pytest.approx(
        out["data_4_views_s_per_batch"] / out["data_1_view_s_per_batch"], rel=0.05)


@pytest.mark.slow  # spawns a second rank
def test_cohort_parallel_measurement_reports_its_parts():
    from benchmark.perf_parallel import measure_cohort_parallel

    out = measure_cohort_parallel(steps=2, image=32, batch=20, rounds=1)
    assert out["cohort_parallel_step_s"] > 0 and out["single_model_step_s"] > 0
    assert out["cohort_parallel_step_ratio"] == pytest.approx(
        out["cohort_parallel_step_s"] / out["single_model_step_s"], rel=0.02)
    assert 0 <= out["cohort_parallel_gather_share"] < 1
