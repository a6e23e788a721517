"""The lane-free shadow planner, the constant-velocity baseline and the open-loop metrics, on hand-built scenes."""

from __future__ import annotations

import numpy as np
import pytest

from drivestack.planning.open_loop import (
    NUM_WAYPOINTS,
    WAYPOINT_DT,
    Agents,
    EgoStatus,
    ShadowPlannerConfig,
    arc_coordinates,
    arc_points,
    constant_velocity,
    plan_idm,
)
from drivestack.planning.open_loop_metrics import FutureBoxes, headings, score_plans, summarize

T = NUM_WAYPOINTS
TIMES = WAYPOINT_DT * np.arange(1, T + 1)  # [s]


def _ego(speed: float, yaw_rate: float = 0.0, b: int = 1) -> EgoStatus:
    return EgoStatus(np.full(b, speed), np.full(b, yaw_rate), np.tile([speed, 0.0], (b, 1)))


def _agents(xy, yaw=0.0, size=(1.9, 4.5), velocity=(0.0, 0.0)) -> Agents:
    xy = np.asarray(xy, dtype=float).reshape(1, -1, 2)
    n = xy.shape[1]
    return Agents(
        xy,
        np.full((1, n), yaw),
        np.tile(size, (1, n, 1)).astype(float),
        np.tile(velocity, (1, n, 1)).astype(float),
        np.ones((1, n), dtype=bool),
    )


def _no_boxes(b: int = 1) -> FutureBoxes:
    return FutureBoxes(np.zeros((b, T, 0, 2)), np.zeros((b, T, 0)), np.zeros((b, T, 0, 2)), np.zeros((b, T, 0), bool))


def test_arc_geometry_round_trip():
    kappa = np.array([0.0, 1e-12, 0.05, -0.1])[:, None]
    s = np.array([0.0, 3.0, 10.0, 20.0])[None, :]
    pts = arc_points(kappa, s)
    s_back, d, heading = arc_coordinates(kappa, pts)
    np.testing.assert_allclose(s_back, np.broadcast_to(s, s_back.shape), atol=1e-9)
    np.testing.assert_allclose(d, 0.0, atol=1e-9)
    np.testing.assert_allclose(heading, kappa * s, atol=1e-9)
    # a point 1 m left of the 0.05 arc at s = 10 m
    p = arc_points(np.array(0.05), np.array(10.0)) + np.array([-np.sin(0.5), np.cos(0.5)])
    s1, d1, _ = arc_coordinates(np.array(0.05), p)
    assert s1 == pytest.approx(10.0) and d1 == pytest.approx(1.0)


def test_straight_logged_path_constant_velocity_scores_zero():
    ego = _ego(10.0)
    logged = np.stack([10.0 * TIMES, np.zeros(T)], axis=-1)[None]  # (1, T, 2) straight at 10 m/s
    plan = constant_velocity(ego)
    scores = score_plans(plan, logged, np.zeros((1, T)), _no_boxes())
    np.testing.assert_allclose(scores.l2, 0.0, atol=1e-12)
    summary = summarize(scores)
    for t in ("1s", "2s", "3s"):
        assert summary[f"l2_avg_{t}"] == pytest.approx(0.0) and summary[f"l2_at_{t}"] == pytest.approx(0.0)
        assert summary[f"collision_at_{t}"] == 0.0
    # the IDM planner on a free straight road keeps its speed: the same plan
    np.testing.assert_allclose(plan_idm(ego, Agents.empty(1)), plan, atol=1e-9)


def test_l2_conventions_differ_as_published():
    logged = np.zeros((1, T, 2))
    plan = np.stack([TIMES, np.zeros(T)], axis=-1)[None]  # error = t [m]
    s = summarize(score_plans(plan, logged, np.zeros((1, T)), _no_boxes()))
    assert s["l2_at_1s"] == pytest.approx(1.0) and s["l2_at_3s"] == pytest.approx(3.0)
    assert s["l2_avg_1s"] == pytest.approx(0.75)  # mean of 0.5 and 1.0
    assert s["l2_avg_3s"] == pytest.approx(np.mean(TIMES))


def test_box_on_planned_path_collides_at_the_right_time():
    ego = _ego(10.0)
    plan = constant_velocity(ego)  # waypoints at x = 5, 10, ..., 30 m
    logged = np.stack([np.zeros(T), 10.0 * np.ones(T)], axis=-1)[None]  # the logged ego stayed far left: no overlap
    xy = np.zeros((1, T, 1, 2))
    xy[0, :, 0] = [50.0, 0.0]
    xy[0, 3, 0] = [20.0 + 0.5, 0.0]  # at 2.0 s a car stands where the planned box is (its centre 0.5 m ahead)
    boxes = FutureBoxes(xy, np.zeros((1, T, 1)), np.tile([1.9, 4.5], (1, T, 1, 1)), np.ones((1, T, 1), bool))
    scores = score_plans(plan, logged, np.zeros((1, T)), boxes)
    assert scores.collision.tolist() == [[False, False, False, True, False, False]]
    assert scores.valid_collision.tolist() == [True]
    s = summarize(scores)
    assert s["collision_at_1s"] == 0.0 and s["collision_at_2s"] == 100.0 and s["collision_at_3s"] == 0.0
    assert s["collision_avg_2s"] == pytest.approx(25.0)  # 1 of 4 waypoints up to 2 s
    # a logged ego that overlaps the box itself leaves the sample out of the collision figures
    left_out = score_plans(plan, plan, np.zeros((1, T)), boxes)
    assert left_out.valid_collision.tolist() == [False]
    assert np.isnan(summarize(left_out)["collision_at_2s"])


def test_idm_stops_behind_a_stopped_car_the_baseline_hits():
    ego = _ego(10.0)
    agents = _agents([[30.0, 0.3]])  # a stopped car 30 m ahead, in the corridor
    idm, cv = plan_idm(ego, agents), constant_velocity(ego)
    car_rear = 30.0 - 2.25
    ego_front = idm[0, :, 0] + 0.5 + 4.084 / 2
    assert ego_front.max() < car_rear  # stops before it
    assert np.all(np.diff(idm[0, :, 0]) >= -1e-9)  # never reverses
    assert cv[0, -1, 0] + 0.5 + 4.084 / 2 > car_rear  # the baseline drives into it
    # a car in the next lane (3.5 m left) does not slow the plan
    np.testing.assert_allclose(plan_idm(ego, _agents([[30.0, 3.5]])), cv, atol=1e-9)
    # a leader at the ego's speed is followed without braking hard: the plan moves on
    follow = plan_idm(ego, _agents([[35.0, 0.0]], velocity=(10.0, 0.0)))
    assert follow[0, -1, 0] > 25.0


def test_curvature_from_yaw_rate_and_drivable_bound():
    ego = _ego(10.0, yaw_rate=0.5)  # curvature 0.05 / m: a left turn
    plan = plan_idm(ego, Agents.empty(1))
    np.testing.assert_allclose(plan[0], arc_points(np.array(0.05), 10.0 * TIMES), atol=1e-9)
    np.testing.assert_allclose(headings(plan)[0, -1], 0.05 * 27.5, atol=1e-9)  # the chord from 2.5 s to 3 s

    def straight_road(points: np.ndarray) -> np.ndarray:  # a road |y| < 4 m
        return np.abs(points[..., 1]) < 4.0

    bounded = plan_idm(ego, Agents.empty(1), drivable=straight_road)
    assert np.abs(bounded[0, :, 1]).max() < 4.0  # the turn is straightened or stopped to stay on the road
    assert straight_road(bounded).all()

    def dead_end(points: np.ndarray) -> np.ndarray:  # the road ends 20 m ahead
        return points[..., 0] < 20.0

    stopped = plan_idm(_ego(10.0), Agents.empty(1), drivable=dead_end)
    assert stopped[0, -1, 0] + 0.5 + 4.084 / 2 < 20.0


def test_planner_is_batched():
    ego = EgoStatus(np.array([10.0, 5.0]), np.array([0.0, 0.2]), np.array([[10.0, 0.0], [5.0, 0.0]]))
    xy = np.array([[[30.0, 0.0], [0.0, 0.0]], [[15.0, 1.0], [-10.0, 0.0]]])
    agents = Agents(
        xy,
        np.zeros((2, 2)),
        np.tile([1.9, 4.5], (2, 2, 1)),
        np.zeros((2, 2, 2)),
        np.array([[True, False], [True, True]]),
    )
    both = plan_idm(ego, agents)
    for b in range(2):
        one = Agents(
            xy[b : b + 1],
            np.zeros((1, 2)),
            np.tile([1.9, 4.5], (1, 2, 1)),
            np.zeros((1, 2, 2)),
            agents.present[b : b + 1],
        )
        single = EgoStatus(ego.speed[b : b + 1], ego.yaw_rate[b : b + 1], ego.velocity[b : b + 1])
        np.testing.assert_allclose(both[b : b + 1], plan_idm(single, one), atol=1e-12)


def test_config_validation():
    with pytest.raises(ValueError, match="sim_dt"):
        ShadowPlannerConfig(sim_dt=0.3).validate()
    with pytest.raises(ValueError, match="max_accel"):
        ShadowPlannerConfig(max_accel=0.0).validate()
