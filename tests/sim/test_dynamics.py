"""Kinematic bicycle in road coordinates: hand-computed steps, actuator limits, circles, batching, curves."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drivestack.sim.config import VehicleConfig
from drivestack.sim.dynamics import apply_limits, bicycle_step
from drivestack.sim.road import RoadNetwork

LIMITS = VehicleConfig()
DT = 0.1  # [s]
LENGTH = 4.5  # [m]
WHEELBASE = LIMITS.wheelbase_ratio * LENGTH  # [m] 2.7


def _cmd(value: float | list[float]) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32)
    return t.view(1, -1) if t.dim() <= 1 else t


# --------------------------------------------------------------------------- one step by hand
@pytest.mark.parametrize("psi", [0.0, 0.2, -0.3])
def test_straight_road_step_matches_hand_computation(highway_road: RoadNetwork, make_vehicles, psi: float) -> None:
    v, steer0, steer_cmd, accel_cmd = 10.0, 0.05, 0.1, 1.0  # 0.05 rad change < 0.06 rad rate limit
    veh = make_vehicles(s=100.0, d=2.0, psi=psi, speed=v, steer=steer0, length=LENGTH)
    out = bicycle_step(veh, _cmd(steer_cmd), _cmd(accel_cmd), highway_road, LIMITS, DT)

    beta = math.atan(math.tan(steer_cmd) / 2.0)
    expected = dict(
        s=100.0 + v * math.cos(psi + beta) * DT,
        d=2.0 + v * math.sin(psi + beta) * DT,
        psi=psi + v * math.cos(beta) * math.tan(steer_cmd) / WHEELBASE * DT,
        speed=v + accel_cmd * DT,
        steer=steer_cmd,
        accel=accel_cmd,
    )
    for name, value in expected.items():
        assert getattr(out, name).item() == pytest.approx(value, abs=1e-5), name
    # untouched fields
    assert out.lane.item() == veh.lane.item() and out.length.item() == LENGTH


def test_curved_road_step_follows_frenet_kinematics(curved_road: RoadNetwork, make_vehicles) -> None:
    s, d, psi, v, steer = 200.0, 8.0, 0.05, 25.0, 0.02  # s = 200 m: curvature peak
    veh = make_vehicles(s=s, d=d, psi=psi, speed=v, steer=steer, length=LENGTH)
    out = bicycle_step(veh, _cmd(steer), _cmd(0.0), curved_road, LIMITS, DT)
    kappa = curved_road.reference(torch.tensor(s))[3].item()
    assert kappa == pytest.approx(1.0 / 500.0, rel=1e-3)
    beta = math.atan(math.tan(steer) / 2.0)
    s_dot = v * math.cos(psi + beta) / (1.0 - kappa * d)
    yaw_rate = v * math.cos(beta) * math.tan(steer) / WHEELBASE
    assert out.s.item() == pytest.approx(s + s_dot * DT, abs=1e-4)
    assert out.d.item() == pytest.approx(d + v * math.sin(psi + beta) * DT, abs=1e-5)
    assert out.psi.item() == pytest.approx(psi + (yaw_rate - kappa * s_dot) * DT, abs=1e-6)


def test_step_wraps_arc_length_across_the_seam(highway_road: RoadNetwork, make_vehicles) -> None:
    veh = make_vehicles(s=[highway_road.length - 0.5, 0.2], speed=10.0)
    out = bicycle_step(veh, _cmd([0.0, 0.0]), _cmd([0.0, 0.0]), highway_road, LIMITS, DT)
    torch.testing.assert_close(out.s, torch.tensor([[0.5, 1.2]]))


def test_heading_stays_wrapped(highway_road: RoadNetwork, make_vehicles) -> None:
    veh = make_vehicles(s=500.0, psi=math.pi - 0.01, speed=20.0, steer=LIMITS.max_steer)
    out = bicycle_step(veh, _cmd(LIMITS.max_steer), _cmd(0.0), highway_road, LIMITS, DT)
    assert -math.pi <= out.psi.item() < math.pi
    assert out.psi.item() < 0.0  # turned left through +pi


# ------------------------------------------------------------------------------------- limits
def test_steering_rate_limit(make_vehicles) -> None:
    veh = make_vehicles(steer=[0.0, 0.0, 0.2, 0.2], speed=10.0)
    steer, _, _ = apply_limits(veh, _cmd([0.5, -0.5, 0.23, -0.4]), _cmd([0.0] * 4), LIMITS, DT)
    max_delta = LIMITS.max_steer_rate * DT  # 0.06 rad
    torch.testing.assert_close(steer, torch.tensor([[max_delta, -max_delta, 0.23, 0.2 - max_delta]]))


def test_steering_angle_limit(make_vehicles) -> None:
    m = LIMITS.max_steer
    veh = make_vehicles(steer=[m - 0.01, -m + 0.01, m], speed=10.0)
    steer, _, _ = apply_limits(veh, _cmd([2.0, -2.0, 5.0]), _cmd([0.0] * 3), LIMITS, DT)
    torch.testing.assert_close(steer, torch.tensor([[m, -m, m]]))


def test_acceleration_and_braking_limits(make_vehicles) -> None:
    veh = make_vehicles(speed=[20.0, 20.0, 20.0])
    _, accel, speed = apply_limits(veh, _cmd([0.0] * 3), _cmd([100.0, -100.0, 1.5]), LIMITS, DT)
    torch.testing.assert_close(accel, torch.tensor([[LIMITS.max_accel, -LIMITS.max_brake, 1.5]]))
    torch.testing.assert_close(speed, torch.tensor([[20.4, 19.2, 20.15]]))


def test_speed_never_negative_and_never_above_the_cap(make_vehicles) -> None:
    veh = make_vehicles(speed=[0.3, 0.0, 39.9, LIMITS.max_speed])
    _, accel, speed = apply_limits(veh, _cmd([0.0] * 4), _cmd([-8.0, -3.0, 4.0, 2.0]), LIMITS, DT)
    torch.testing.assert_close(speed, torch.tensor([[0.0, 0.0, LIMITS.max_speed, LIMITS.max_speed]]))
    # the reported acceleration is the one that actually happened
    torch.testing.assert_close(accel, torch.tensor([[-3.0, 0.0, 1.0, 0.0]]), atol=1e-4, rtol=0.0)


_vehicle = st.tuples(
    st.floats(-LIMITS.max_steer, LIMITS.max_steer),  # steer
    st.floats(0.0, LIMITS.max_speed),  # speed
    st.floats(-3.0, 3.0),  # steer command [rad]
    st.floats(-50.0, 50.0),  # acceleration command [m/s^2]
    st.floats(-0.5, 0.5),  # psi
)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(_vehicle, min_size=1, max_size=12), dt=st.sampled_from([0.05, 0.1, 1.0 / 15.0, 0.5]))
def test_limits_always_hold(highway_road: RoadNetwork, make_vehicles, rows: list[tuple[float, ...]], dt: float) -> None:
    steer0, speed0, steer_cmd, accel_cmd, psi = (
        torch.tensor(c, dtype=torch.float32).view(1, -1) for c in zip(*rows, strict=True)
    )
    veh = make_vehicles(s=300.0, d=2.0, psi=psi, speed=speed0, steer=steer0)
    out = bicycle_step(veh, steer_cmd, accel_cmd, highway_road, LIMITS, dt)
    eps = 1e-5
    assert torch.all(out.steer.abs() <= LIMITS.max_steer + eps)
    assert torch.all((out.steer - steer0).abs() <= LIMITS.max_steer_rate * dt + eps)
    assert torch.all(out.speed >= 0.0) and torch.all(out.speed <= LIMITS.max_speed)
    assert torch.all(out.accel >= -LIMITS.max_brake - 1e-3)
    assert torch.all(out.accel <= LIMITS.max_accel + 1e-3)
    torch.testing.assert_close(out.speed, speed0 + out.accel * dt, atol=1e-4, rtol=0.0)
    # the steering moved towards the command, as far as the limits allowed
    target = steer_cmd.clamp(-LIMITS.max_steer, LIMITS.max_steer)
    assert torch.all((target - out.steer).abs() <= (target - steer0).abs() + eps)
    out.validate()


# -------------------------------------------------------------------------------- trajectories
def test_constant_steer_drives_a_closed_circle(highway_road: RoadNetwork, make_vehicles) -> None:
    v, steer = 5.0, 0.3
    beta = math.atan(math.tan(steer) / 2.0)
    radius = WHEELBASE / (math.cos(beta) * math.tan(steer))  # [m] CoG path radius, about 8.8 m
    omega = v / radius  # [rad/s]
    steps = round(2.0 * math.pi / (omega * DT))  # one lap
    veh = make_vehicles(s=500.0, d=0.0, speed=v, steer=steer, length=LENGTH)
    points = []
    for _ in range(steps + 1):
        x, y, _ = highway_road.to_global(veh.s, veh.d)
        points.append((x.item(), y.item()))
        veh = bicycle_step(veh, _cmd(steer), _cmd(0.0), highway_road, LIMITS, DT)
    p = np.array(points, dtype=np.float64)
    # least-squares circle (Kasa): x^2 + y^2 = 2 a x + 2 b y + c
    A = np.stack([2 * p[:, 0], 2 * p[:, 1], np.ones(len(p))], 1)
    (a, b, c), *_ = np.linalg.lstsq(A, (p**2).sum(1), rcond=None)
    fitted = math.sqrt(c + a * a + b * b)
    dist = np.hypot(p[:, 0] - a, p[:, 1] - b)
    assert fitted == pytest.approx(radius, rel=0.01)
    assert np.abs(dist - fitted).max() < 0.01  # every point on the circle
    # Forward Euler walks the chords of the circle: step k heads along psi_k + beta, so the start
    # tangent is beta - omega dt / 2 and the centre lies a radius to its left (positive steer: left).
    tangent = beta - 0.5 * omega * DT
    chord_radius = v * DT / (2.0 * math.sin(0.5 * omega * DT))
    assert a == pytest.approx(500.0 - chord_radius * math.sin(tangent), abs=0.01)
    assert b == pytest.approx(chord_radius * math.cos(tangent), abs=0.01)
    assert fitted == pytest.approx(chord_radius, abs=0.01)
    assert math.hypot(*(p[-1] - p[0])) < v * DT


def test_batched_step_equals_per_vehicle_steps(curved_road: RoadNetwork, make_vehicles) -> None:
    gen = torch.Generator().manual_seed(3)
    B, N = 3, 5

    def rand(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(B, N, generator=gen)

    veh = make_vehicles(
        s=rand(0.0, 1000.0),
        d=rand(-2.0, 14.0),
        psi=rand(-0.3, 0.3),
        speed=rand(0.0, 35.0),
        steer=rand(-0.3, 0.3),
        length=rand(4.2, 5.2),
    )
    steer_cmd, accel_cmd = rand(-1.0, 1.0), rand(-10.0, 10.0)
    out = bicycle_step(veh, steer_cmd, accel_cmd, curved_road, LIMITS, DT)
    for b in range(B):
        for n in range(N):
            one = make_vehicles(**{k: getattr(veh, k)[b, n] for k in ("s", "d", "psi", "speed", "steer", "length")})
            cmds = steer_cmd[b : b + 1, n : n + 1], accel_cmd[b : b + 1, n : n + 1]
            res = bicycle_step(one, *cmds, curved_road, LIMITS, DT)
            for name in ("s", "d", "psi", "speed", "steer", "accel"):
                got, want = getattr(res, name)[0, 0], getattr(out, name)[b, n]
                torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def _feed_forward_steer(road: RoadNetwork, veh) -> torch.Tensor:
    """Steering angle whose path curvature equals the lane's: tan(steer) cos(beta) / wheelbase = kappa."""
    _, _, kappa, _ = road.lane_frame(veh.lane, veh.s)
    return torch.atan(kappa * LIMITS.wheelbase_ratio * veh.length)


def _max_lateral_drift(road: RoadNetwork, veh, feed_forward: bool, steps: int = 100) -> torch.Tensor:
    d0, drift = veh.d.clone(), torch.zeros_like(veh.d)
    zeros = torch.zeros_like(veh.s)
    for _ in range(steps):
        steer = _feed_forward_steer(road, veh) if feed_forward else zeros
        veh = bicycle_step(veh, steer, zeros, road, LIMITS, DT)
        drift = torch.maximum(drift, (veh.d - d0).abs())
    return drift


def test_curvature_feed_forward_keeps_the_lane(curved_road: RoadNetwork, make_vehicles) -> None:
    # four lanes side by side, 50 m before the curvature peak, 20 m/s for 10 s (200 m of curve)
    lanes = torch.arange(4)
    veh = make_vehicles(s=150.0, d=4.0 * lanes, lane=lanes, speed=20.0, length=LENGTH)
    _, heading, _, _ = curved_road.lane_frame(veh.lane, veh.s)
    veh = replace(veh, psi=heading)  # pointing along the lane
    straight = _max_lateral_drift(curved_road, veh, feed_forward=False)
    assert torch.all(straight > 10.0)  # without steering the curve leaves the car behind

    veh = replace(veh, steer=_feed_forward_steer(curved_road, veh))
    tracked = _max_lateral_drift(curved_road, veh, feed_forward=True)
    # only the constant slip angle beta (~3 mrad) at the centre of gravity remains: < 1 m over 200 m
    assert torch.all(tracked < 1.0)

    # with the body yawed by -beta, the centre of gravity moves along the lane
    veh = replace(veh, psi=heading - torch.atan(0.5 * torch.tan(veh.steer)))
    assert torch.all(_max_lateral_drift(curved_road, veh, feed_forward=True) < 0.15)
