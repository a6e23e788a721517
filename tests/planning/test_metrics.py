"""Episode metrics registered by name: hand-built episodes with known answers, the registry's errors, and one
definition of mean speed shared by `eval policy` and the training monitor."""

from __future__ import annotations

import numpy as np
import pytest

from drivestack.planning import monitor
from drivestack.planning.evaluate import SUMMARY_METRICS, EvalResult
from drivestack.planning.metrics import METRICS, Episodes, compute_metrics, mean_speed, register_metric


def _episodes() -> Episodes:
    # A crash after 10 s at 25 m/s, and a full 40 s episode at 20 m/s.
    return Episodes.from_rows(
        [
            dict(
                returns=5.0,
                lengths=10,
                distances=250.0,
                times=10.0,
                lane_changes=1,
                mean_abs_jerk=2.0,
                crashed=True,
                off_road=False,
            ),
            dict(
                returns=30.0,
                lengths=40,
                distances=800.0,
                times=40.0,
                lane_changes=4,
                mean_abs_jerk=0.5,
                crashed=False,
                off_road=False,
            ),
        ]
    )


def test_metrics_of_hand_built_episodes() -> None:
    m = compute_metrics(_episodes())
    assert m["episodes"] == 2 and m["collision_rate"] == 0.5 and m["off_road_rate"] == 0.0
    # pooled: 1050 m over 50 s = 21 m/s, not the mean of the per-episode speeds (22.5 m/s)
    assert m["mean_speed"] == pytest.approx(21.0)
    assert m["distance_per_episode"] == pytest.approx(525.0)
    assert m["lane_changes_per_minute"] == pytest.approx(5.0 / 50.0 * 60.0)
    assert m["mean_abs_jerk"] == pytest.approx((2.0 * 10 + 0.5 * 40) / 50.0)
    assert m["return_mean"] == pytest.approx(17.5) and m["return_std"] == pytest.approx(12.5)
    assert m["episode_time_mean"] == pytest.approx(25.0) and m["episode_length_mean"] == pytest.approx(25.0)
    assert list(m) == list(METRICS)


def test_no_driving_time_gives_zero_rates_per_time() -> None:
    e = Episodes.from_rows(
        [
            dict(
                returns=0.0,
                lengths=0,
                distances=0.0,
                times=0.0,
                lane_changes=0,
                mean_abs_jerk=0.0,
                crashed=False,
                off_road=True,
            )
        ]
    )
    assert compute_metrics(e, ["mean_speed", "lane_changes_per_minute", "off_road_rate"]) == {
        "mean_speed": 0.0,
        "lane_changes_per_minute": 0.0,
        "off_road_rate": 1.0,
    }


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown metrics \['speed'\]; registered: episodes, collision_rate"):
        compute_metrics(_episodes(), ["speed"])
    with pytest.raises(ValueError, match="already registered"):
        register_metric("mean_speed")(mean_speed)


def test_evaluation_and_training_share_the_metrics() -> None:
    e = _episodes()
    result = EvalResult(policy="p", **{k: getattr(e, k) for k in e.__dataclass_fields__})
    assert {k: v for k, v in result.summary().items() if k != "wall_time"} == compute_metrics(e, SUMMARY_METRICS)
    # the training monitor's charts/* and the periodic eval/* name registered metrics, mean_speed included
    assert set(monitor.CHART_METRICS.values()) | set(monitor.EVAL_METRICS.values()) <= set(METRICS)
    assert monitor.CHART_METRICS["mean_speed"] == monitor.EVAL_METRICS["mean_speed"] == "mean_speed"
    info = {
        "episode_return": 5.0,
        "episode_length": 10,
        "episode_distance": 250.0,
        "episode_time": 10.0,
        "episode_lane_changes": 1,
        "episode_mean_abs_jerk": 2.0,
        "crashed": True,
        "off_road": False,
        "rewards": {},
    }
    row = Episodes.from_rows([monitor.episode_row(info)])
    assert np.array_equal(row.distances, [250.0]) and row.crashed.dtype == bool and bool(row.crashed[0])
