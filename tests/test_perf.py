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
    assert out["multiview_ratio_floor_decode_and_views_only"] == pytest.approx((d + 4 * v) / (d + v), abs=0.01)
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
