"""highway-env's ControlledVehicle traces for `drivestack bench control`: sign conventions, maneuvers, shapes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("highway_env")

from drivestack.bench.highway_env import (  # noqa: E402
    SIM_DT,
    Trace,
    _lane_change_run,
    highway_env_available,
    keep_lane_trace,
    lane_change_trace,
    stop_and_go_trace,
)

STOP_AND_GO = [(0.0, 20.0), (10.0, 5.0), (20.0, 25.0), (30.0, 0.0), (40.0, 15.0)]  # [(s, m/s)]


def _steady(trace: Trace, after: float = 10.0) -> np.ndarray:
    return trace.t >= after


def test_module_imports_without_highway_env() -> None:
    code = (
        "import sys; sys.modules['highway_env'] = None; "
        "import drivestack.bench.highway_env as m; assert not m.highway_env_available(); print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
    assert highway_env_available()


def test_highway_env_left_is_smaller_y() -> None:
    """The convention the module relies on: highway-env's LANE_LEFT goes to the lane at smaller y."""
    from highway_env.road.road import Road, RoadNetwork
    from highway_env.vehicle.controller import ControlledVehicle

    network = RoadNetwork.straight_road_network(lanes=2, length=1000.0)
    lane_0, lane_1 = network.get_lane(("0", "1", 0)), network.get_lane(("0", "1", 1))
    assert lane_0.position(0.0, 0.0)[1] < lane_1.position(0.0, 0.0)[1]
    vehicle = ControlledVehicle(Road(network=network), lane_1.position(50.0, 0.0), speed=20.0)
    vehicle.act("LANE_LEFT")
    assert vehicle.target_lane_index == ("0", "1", 0)


def test_straight_lane_keeping_stays_on_centre() -> None:
    for speed in (10.0, 30.0):
        trace = keep_lane_trace(speed, None, duration=10.0)
        assert np.abs(trace.cross_track).max() < 0.01
        assert np.abs(trace.heading_error).max() < 1e-3
        assert np.abs(trace.lateral_accel).max() < 1e-3
        np.testing.assert_allclose(trace.speed, speed, atol=1e-6)


def test_curve_turns_left_with_lateral_accel_v2_over_r() -> None:
    speed, radius = 20.0, 150.0  # [m/s], [m]
    trace = keep_lane_trace(speed, radius, duration=20.0)
    steady = _steady(trace)
    expected = speed**2 / radius  # [m/s^2] +2.67: positive = to the left
    assert trace.lateral_accel[steady].mean() == pytest.approx(expected, rel=0.15)
    assert np.all(trace.lateral_accel[steady] > 0) and np.all(trace.steer[steady] > 0)
    assert np.abs(trace.cross_track).max() < 0.5


def test_lane_change_moves_to_the_left_lane() -> None:
    lane_width = 4.0  # [m]
    trace, vehicle = _lane_change_run(30.0, lane_width, command_time=1.0, duration=10.0, dt=SIM_DT)
    before = trace.t < 1.0 - 1e-9
    np.testing.assert_allclose(trace.cross_track[before], -lane_width, atol=1e-6)
    assert abs(trace.cross_track[-1]) < 0.1
    assert trace.cross_track.max() < 0.5  # no large overshoot past the left lane
    assert vehicle.lane_index[2] == 0 and vehicle.target_lane_index[2] == 0
    assert vehicle.position[1] == pytest.approx(0.0, abs=0.1)  # highway-env y of lane 0's centre
    # Moving left starts with a left turn: same sign as the left curve above.
    first_move = np.argmax(np.abs(trace.lateral_accel) > 0.1)
    assert trace.lateral_accel[first_move] > 0 and trace.steer[first_move] > 0
    np.testing.assert_array_equal(lane_change_trace().cross_track, trace.cross_track)  # deterministic


def test_stop_and_go_reaches_each_target_by_segment_end() -> None:
    trace = stop_and_go_trace(STOP_AND_GO)
    assert trace.t[-1] == pytest.approx(STOP_AND_GO[-1][0] + 10.0)
    ends = [start for start, _ in STOP_AND_GO[1:]] + [trace.t[-1] + SIM_DT]
    for (start, target), end in zip(STOP_AND_GO, ends):
        in_segment = (trace.t >= start - 1e-9) & (trace.t < end - 1e-9)
        np.testing.assert_allclose(trace.target_speed[in_segment], target)
        assert abs(trace.speed[in_segment][-1] - target) < 1.0, (start, target)
    assert trace.speed.min() >= -1e-6


@pytest.mark.parametrize("dt", [SIM_DT, 0.05])
def test_traces_have_consistent_lengths_and_spacing(dt: float) -> None:
    traces = {
        "keep_lane": (keep_lane_trace(15.0, 200.0, duration=3.0, dt=dt), 3.0),
        "lane_change": (lane_change_trace(duration=3.0, dt=dt), 3.0),
        "stop_and_go": (stop_and_go_trace([(0.0, 10.0), (1.0, 0.0)], dt=dt), 11.0),
    }
    for name, (trace, duration) in traces.items():
        trace.validate()
        assert trace.t.shape == (int(round(duration / dt)) + 1,), name
        assert trace.t[0] == 0.0
        np.testing.assert_allclose(np.diff(trace.t), dt, atol=1e-9, err_msg=name)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="radius"):
        keep_lane_trace(10.0, -5.0)
    with pytest.raises(ValueError, match="speed"):
        keep_lane_trace(60.0, None)
    with pytest.raises(ValueError, match="command_time"):
        lane_change_trace(command_time=20.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        stop_and_go_trace([(0.0, 10.0), (0.0, 5.0)])
    with pytest.raises(ValueError, match="empty"):
        stop_and_go_trace([])
