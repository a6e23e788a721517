"""Lateral controllers closed loop on a kinematic bicycle, LQR gains, steering limits, batching, NaN inputs.

The closed-loop harness mirrors `sim.dynamics` (centre-of-gravity kinematic bicycle, forward Euler at
0.1 s, steering angle then rate limits) in lane coordinates, batched over scenarios:

    beta = atan(tan(steer) / 2),  e_y' = v sin(e_psi + beta),  e_psi' = v cos(beta) tan(steer) / L - v kappa.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drivestack.control import (
    LaneKeepingGains,
    LateralController,
    LQRTable,
    LQRWeights,
    PurePursuitGains,
    StanleyGains,
    lane_change_length,
    lane_change_offset,
    lane_keeping_steer,
    limit_steer,
    lookahead_distance,
    lqr_steer,
    pure_pursuit_steer,
    stanley_steer,
)

DT = 0.1  # [s] simulation and control step
WHEELBASE = 2.82  # [m] 0.6 * 4.7 m, the simulator's mid-size car
MAX_STEER = 0.52  # [rad]
MAX_STEER_RATE = 0.6  # [rad/s]
SPEEDS = (10.0, 20.0, 30.0)  # [m/s]
CURVATURES = (0.0, 1.0 / 500.0, 1.0 / 150.0, -1.0 / 150.0)  # [1/m] straight, R = 500 m, R = 150 m left/right
# Steady-state offset allowed on curves after 10 s. The cascade (highway-env's law) feeds back the heading of
# the centre of gravity, which on a curve holds the slip angle beta = atan(L kappa / 2): it settles at
# v beta / lateral_gain = 0.28 m outside on R = 150 m at 30 m/s. The others track the rear-axle heading.
CURVE_TOLERANCE = {
    LateralController.CASCADE: 0.3,
    LateralController.PURE_PURSUIT: 0.05,
    LateralController.STANLEY: 0.05,
    LateralController.LQR: 0.05,
}  # [m]

Reference = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _lane_centre(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    zero = torch.zeros_like(s)
    return zero, zero, zero


@pytest.fixture(scope="module")
def table() -> LQRTable:
    return LQRTable(LQRWeights(), DT, dtype=torch.float64)


# --------------------------------------------------------------------------- closed-loop harness
def _reference_point(
    delta: torch.Tensor,
    kappa: torch.Tensor,
    offset: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Point at `offset` [m] left of a lane of constant curvature kappa, `delta` [m] of arc ahead of the
    origin, in the lane frame at the origin (x along the lane, y left). Exact circle geometry; the sinc
    forms stay exact as kappa -> 0."""
    x = delta * torch.sinc(kappa * delta / math.pi)  # sin(kappa delta) / kappa
    y = 0.5 * kappa * delta**2 * torch.sinc(kappa * delta / (2.0 * math.pi)) ** 2  # (1 - cos(kappa delta)) / kappa
    return x - offset * torch.sin(kappa * delta), y + offset * torch.cos(kappa * delta)


def _pursuit_target(
    s: torch.Tensor,
    e_y: torch.Tensor,
    e_psi: torch.Tensor,
    kappa: torch.Tensor,
    lookahead: torch.Tensor,
    reference: Reference,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The point of the reference path at distance `lookahead` from the rear axle, ahead of the vehicle,
    in the rear-axle frame (x forward, y left). The vehicle's centre of gravity is at (0, e_y) of the lane
    frame at its foot point, heading e_psi; the rear axle half a wheelbase behind. The distance from the rear
    axle grows along the path ahead, so bisection on the arc length finds the point."""
    cos, sin = torch.cos(e_psi), torch.sin(e_psi)
    rear_x, rear_y = -0.5 * WHEELBASE * cos, e_y - 0.5 * WHEELBASE * sin

    def point(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        offset, _, _ = reference(s + delta)
        return _reference_point(delta, kappa, offset)

    low = torch.zeros_like(s)
    high = lookahead + WHEELBASE + e_y.abs() + 1.0
    for _ in range(40):  # 2^-40 of ~50 m: exact in float64 for the purpose
        mid = 0.5 * (low + high)
        x, y = point(mid)
        beyond = torch.hypot(x - rear_x, y - rear_y) > lookahead
        high, low = torch.where(beyond, mid, high), torch.where(beyond, low, mid)
    x, y = point(low)
    dx, dy = x - rear_x, y - rear_y
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _steer_command(
    controller: LateralController,
    s: torch.Tensor,
    e_y: torch.Tensor,
    e_psi: torch.Tensor,
    speed: torch.Tensor,
    kappa: torch.Tensor,
    reference: Reference,
    table: LQRTable,
) -> torch.Tensor:
    """Steering command of `controller` from the errors with respect to the reference (as `sim.driver`)."""
    offset, slope, second = reference(s)
    lateral_error = e_y - offset
    heading_error = e_psi - torch.atan(slope)
    curvature = kappa + second
    if controller == LateralController.CASCADE:
        return lane_keeping_steer(lateral_error, heading_error, curvature, speed, WHEELBASE, LaneKeepingGains())
    if controller == LateralController.PURE_PURSUIT:
        lookahead = lookahead_distance(speed, PurePursuitGains())
        x, y = _pursuit_target(s, e_y, e_psi, kappa, lookahead, reference)
        return pure_pursuit_steer(x, y, WHEELBASE)
    if controller == LateralController.STANLEY:
        front_error = lateral_error + 0.5 * WHEELBASE * torch.sin(heading_error)
        return stanley_steer(front_error, heading_error, curvature, speed, WHEELBASE, StanleyGains())
    return lqr_steer(lateral_error, heading_error, curvature, speed, WHEELBASE, table)


def simulate(
    controller: LateralController,
    speed: torch.Tensor,
    kappa: torch.Tensor,
    e_y0: float,
    table: LQRTable,
    reference: Reference = _lane_centre,
    duration: float = 20.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed loop from (e_y0, heading 0, steer 0) at constant speed. Returns the lateral error with
    respect to the reference and the offset from the lane centre, both [T, S] (state at the start of
    each step)."""
    speed, kappa = torch.broadcast_tensors(speed.double(), kappa.double())
    s = torch.zeros_like(speed)  # [m] arc length along the lane
    e_y = torch.full_like(speed, e_y0)  # [m] centre-of-gravity offset from the lane centre
    e_psi = torch.zeros_like(speed)  # [rad] heading relative to the lane
    steer = torch.zeros_like(speed)  # [rad]
    errors, offsets = [], []
    for _ in range(round(duration / DT)):
        errors.append(e_y - reference(s)[0])
        offsets.append(e_y)
        command = _steer_command(controller, s, e_y, e_psi, speed, kappa, reference, table)
        steer = limit_steer(command, steer, MAX_STEER, MAX_STEER_RATE, DT)
        beta = torch.atan(0.5 * torch.tan(steer))
        s = s + speed * torch.cos(e_psi + beta) * DT
        e_y = e_y + speed * torch.sin(e_psi + beta) * DT
        e_psi = e_psi + (speed * torch.cos(beta) * torch.tan(steer) / WHEELBASE - speed * kappa) * DT
    return torch.stack(errors), torch.stack(offsets)


def _scenarios() -> tuple[torch.Tensor, torch.Tensor]:
    speed = torch.tensor(SPEEDS, dtype=torch.float64).repeat_interleave(len(CURVATURES))  # [S]
    kappa = torch.tensor(CURVATURES, dtype=torch.float64).repeat(len(SPEEDS))  # [S]
    return speed, kappa


def _index(t: float) -> int:
    return round(t / DT)


# --------------------------------------------------------------------------- the harness itself
def test_pursuit_target_matches_closed_form_geometry() -> None:
    e_y = torch.tensor([0.0, 1.0, -0.7], dtype=torch.float64)
    e_psi = torch.tensor([0.0, 0.1, -0.05], dtype=torch.float64)
    lookahead = torch.tensor([8.0, 12.0, 20.0], dtype=torch.float64)
    s = torch.zeros(3, dtype=torch.float64)
    # Straight lane: the target is (rear_x + sqrt(Ld^2 - rear_y^2), 0) in the lane frame.
    x, y = _pursuit_target(s, e_y, e_psi, torch.zeros(3, dtype=torch.float64), lookahead, _lane_centre)
    rear_x, rear_y = -0.5 * WHEELBASE * torch.cos(e_psi), e_y - 0.5 * WHEELBASE * torch.sin(e_psi)
    tx, ty = rear_x + torch.sqrt(lookahead**2 - rear_y**2), torch.zeros(3, dtype=torch.float64)
    c, sn = torch.cos(e_psi), torch.sin(e_psi)
    torch.testing.assert_close(x, (tx - rear_x) * c + (ty - rear_y) * sn)
    torch.testing.assert_close(y, -(tx - rear_x) * sn + (ty - rear_y) * c)
    # Circle: the target is on the circle and at the look-ahead distance, ahead of the vehicle.
    kappa = torch.tensor([1 / 150, -1 / 150, 1 / 500], dtype=torch.float64)
    x, y = _pursuit_target(s, e_y, e_psi, kappa, lookahead, _lane_centre)
    torch.testing.assert_close(torch.hypot(x, y), lookahead)
    gx, gy = rear_x + x * c - y * sn, rear_y + x * sn + y * c  # back to the lane frame
    torch.testing.assert_close(torch.hypot(gx, gy - 1.0 / kappa), 1.0 / kappa.abs())
    assert bool((x > 0).all())


def test_pure_pursuit_holds_a_circle_exactly() -> None:
    """Rear axle on a circle, heading along it: every chord gives the circle's own steering angle."""
    kappa = torch.tensor([1 / 150, -1 / 40, 1 / 1000], dtype=torch.float64)
    arc = torch.tensor([5.0, 12.0, 30.0], dtype=torch.float64)
    x, y = torch.sin(kappa * arc) / kappa, (1 - torch.cos(kappa * arc)) / kappa
    torch.testing.assert_close(pure_pursuit_steer(x, y, WHEELBASE), torch.atan(WHEELBASE * kappa))


# --------------------------------------------------------------------------- closed loop
@pytest.mark.parametrize("controller", list(LateralController))
def test_converges_on_straight_and_curves_without_oscillation(controller: LateralController, table: LQRTable) -> None:
    speed, kappa = _scenarios()
    errors, _ = simulate(controller, speed, kappa, 1.0, table)  # [T, S], 1 m off the centre line
    at_10s = errors[_index(10.0)].abs()
    straight = kappa == 0
    assert bool((at_10s[straight] < 0.05).all()), f"straight: |error| at 10 s = {at_10s[straight].tolist()}"
    assert bool((at_10s < CURVE_TOLERANCE[controller]).all()), f"|error| at 10 s = {at_10s.tolist()}"
    tail = errors[_index(15.0) :]  # last 5 s: settled, no limit cycle
    swing = tail.max(dim=0).values - tail.min(dim=0).values
    assert bool((swing < 0.01).all()), f"peak-to-peak error in the last 5 s = {swing.tolist()}"
    # At most a centimetre of drift while the rate-limited steering (starting straight) reaches a curve.
    assert bool((errors.abs().amax(dim=0) <= 1.01).all()), "the error grew beyond the initial offset"


@pytest.mark.parametrize("controller", list(LateralController))
def test_small_offset_on_straight_at_30ms_has_small_rms(controller: LateralController, table: LQRTable) -> None:
    errors, _ = simulate(controller, torch.tensor([30.0]), torch.tensor([0.0]), 0.3, table, duration=10.0)
    rms = errors.pow(2).mean().sqrt().item()
    assert rms <= 0.10, f"RMS lateral error {rms:.3f} m over 10 s from a 0.3 m offset"


@pytest.mark.parametrize("controller", list(LateralController))
def test_lane_change_along_the_quintic_settles_in_4s_with_small_overshoot(
    controller: LateralController, table: LQRTable
) -> None:
    speed = torch.tensor(SPEEDS, dtype=torch.float64)
    length = lane_change_length(speed, 3.0, 20.0)  # [m] 3 s of travel
    start_offset = -4.0  # [m] the target lane is one 4 m lane to the left

    def reference(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return lane_change_offset(s, 0.0, length, start_offset)

    _, offsets = simulate(
        controller, speed, torch.zeros_like(speed), start_offset, table, reference, duration=12.0
    )  # [T, S] offset from the target lane centre
    outside = offsets.abs() > 0.1  # [T, S]
    steps = torch.arange(1, outside.shape[0] + 1).unsqueeze(1)
    settle = (outside * steps).amax(dim=0) * DT  # [s] end of the last step outside the band
    overshoot = offsets.amax(dim=0).clamp_min(0.0)  # [m] beyond the target lane centre
    assert bool((settle <= 4.0).all()), f"settle times {settle.tolist()} s"
    assert bool((overshoot <= 0.2).all()), f"overshoot {overshoot.tolist()} m"


def test_steering_signs() -> None:
    """Left of the reference or pointing left: steer right; a left curve: steer left."""
    one, zero, v = torch.tensor(0.5), torch.tensor(0.0), torch.tensor(20.0)
    table = LQRTable(LQRWeights(), DT)
    laws = {
        "cascade": lambda e, h, k: lane_keeping_steer(e, h, k, v, WHEELBASE),
        "stanley": lambda e, h, k: stanley_steer(e, h, k, v, WHEELBASE, StanleyGains()),
        "lqr": lambda e, h, k: lqr_steer(e, h, k, v, WHEELBASE, table),
    }
    for name, law in laws.items():
        assert law(one, zero, zero) < 0, name
        assert law(zero, one * 0.1, zero) < 0, name
        assert law(zero, zero, one * 0.01) > 0, name
    assert pure_pursuit_steer(torch.tensor(10.0), torch.tensor(1.0), WHEELBASE) > 0


def test_stanley_and_lookahead_by_hand() -> None:
    g = StanleyGains(gain=2.0, softening=1.0, heading_gain=0.5)
    steer = stanley_steer(
        torch.tensor(0.4), torch.tensor(0.1), torch.tensor(0.01), torch.tensor(9.0), 2.5, g, rear_to_point=0.0
    )
    expected = -0.5 * 0.1 - math.atan(2.0 * 0.4 / 10.0) + math.atan(2.5 * 0.01)
    assert steer.item() == pytest.approx(expected, abs=1e-6)
    pp = PurePursuitGains(lookahead_time=0.8, min_lookahead=4.0, max_lookahead=30.0)
    ld = lookahead_distance(torch.tensor([0.0, 10.0, 100.0]), pp)
    assert ld.tolist() == pytest.approx([4.0, 8.0, 30.0])


# --------------------------------------------------------------------------- LQR gains
def _model(v: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    A = torch.zeros(len(v), 2, 2, dtype=torch.float64)
    A[:, 0, 0] = A[:, 1, 1] = 1.0
    A[:, 0, 1] = v * dt
    B = torch.stack([v * v * dt * dt / 2, v * dt], dim=-1).unsqueeze(-1)
    return A, B


def test_lqr_gains_are_positive_and_stabilising(table: LQRTable) -> None:
    K = table.gains_table  # [V, 2]
    assert bool((K > 0).all())
    A, B = _model(table.speeds, DT)
    radius = torch.linalg.eigvals(A - B @ K.unsqueeze(1)).abs().amax(dim=-1)  # [V]
    assert bool((radius < 1.0).all()), radius.max().item()
    # Same bandwidth in time at every speed: the lateral-acceleration gain v^2 K_y is nearly constant.
    lateral_accel_gain = table.speeds**2 * K[:, 0]
    fast = table.speeds >= 10.0
    assert (lateral_accel_gain[fast].max() / lateral_accel_gain[fast].min()).item() < 1.5


def test_lqr_gains_match_scipy_dare(table: LQRTable) -> None:
    linalg = pytest.importorskip("scipy.linalg")
    w = table.weights
    for i in (0, 9, 29, len(table.speeds) - 1):
        v = table.speeds[i : i + 1]
        A, B = (m[0].numpy() for m in _model(v, DT))
        Q = torch.diag(torch.tensor([w.lateral, w.heading], dtype=torch.float64)).numpy()
        R = torch.tensor([[w.input * v.item() ** 4]], dtype=torch.float64).numpy()
        P = linalg.solve_discrete_are(A, B, Q, R)
        K = torch.linalg.solve(torch.tensor(R + B.T @ P @ B), torch.tensor(B.T @ P @ A))[0]
        torch.testing.assert_close(table.gains_table[i], K, rtol=1e-6, atol=0.0)


def test_lqr_table_interpolates_and_clamps(table: LQRTable) -> None:
    torch.testing.assert_close(table.gains(table.speeds), table.gains_table)
    mid = 0.5 * (table.speeds[:-1] + table.speeds[1:])
    torch.testing.assert_close(table.gains(mid), 0.5 * (table.gains_table[:-1] + table.gains_table[1:]))
    outside = torch.tensor([0.0, -3.0, 1e3], dtype=torch.float64)
    torch.testing.assert_close(table.gains(outside), table.gains_table[[0, 0, -1]])
    batched = table.gains(torch.full((2, 3), 17.3, dtype=torch.float64))
    assert batched.shape == (2, 3, 2)
    f32 = table.to(dtype=torch.float32)
    assert f32.gains(torch.tensor([17.3])).dtype == torch.float32
    torch.testing.assert_close(
        f32.gains(torch.tensor([17.3])).double(), table.gains(torch.tensor([17.3]).double()), rtol=1e-6, atol=0.0
    )


# --------------------------------------------------------------------------- batching, limits, NaN
def test_batched_call_equals_per_vehicle_calls(table: LQRTable) -> None:
    gen = torch.Generator().manual_seed(0)
    shape = (3, 5)
    e = torch.randn(shape, generator=gen)
    h = 0.1 * torch.randn(shape, generator=gen)
    k = 0.005 * torch.randn(shape, generator=gen)
    v = 30 * torch.rand(shape, generator=gen)
    L = 2.5 + torch.rand(shape, generator=gen)
    tbl = table.to(dtype=torch.float32)
    laws = [
        lambda e, h, k, v, L: lane_keeping_steer(e, h, k, v, L),
        lambda e, h, k, v, L: pure_pursuit_steer(10 * v.clamp_min(1), e, L),
        lambda e, h, k, v, L: stanley_steer(e, h, k, v, L, StanleyGains()),
        lambda e, h, k, v, L: lqr_steer(e, h, k, v, L, tbl),
        lambda e, h, k, v, L: lookahead_distance(v, PurePursuitGains()),
        lambda e, h, k, v, L: limit_steer(e, h, 0.52, 0.6, DT),
    ]
    for law in laws:
        batched = law(e, h, k, v, L)
        looped = torch.stack(
            [law(e[i, j], h[i, j], k[i, j], v[i, j], L[i, j]) for i in range(shape[0]) for j in range(shape[1])]
        ).view(shape)
        torch.testing.assert_close(batched, looped)


@settings(max_examples=200, deadline=None)
@given(
    steer_cmd=st.floats(-3.0, 3.0),
    prev_frac=st.floats(-1.0, 1.0),
    max_steer=st.floats(0.05, 1.5),
    max_rate=st.floats(0.01, 5.0),
    dt=st.floats(0.001, 1.0),
)
def test_limit_steer_respects_angle_and_rate(
    steer_cmd: float, prev_frac: float, max_steer: float, max_rate: float, dt: float
) -> None:
    prev = torch.tensor(prev_frac * max_steer, dtype=torch.float64)
    out = limit_steer(torch.tensor(steer_cmd, dtype=torch.float64), prev, max_steer, max_rate, dt)
    assert abs(out.item()) <= max_steer + 1e-12
    assert abs(out.item() - prev.item()) <= max_rate * dt + 1e-12
    target = min(max(steer_cmd, -max_steer), max_steer)
    if abs(target - prev.item()) <= max_rate * dt:
        assert out.item() == pytest.approx(target)


_NAN_CASES = {
    "lane_keeping_steer": (
        lane_keeping_steer,
        ["lateral_error", "heading_error", "curvature", "speed", "wheelbase"],
        {},
    ),
    "pure_pursuit_steer": (pure_pursuit_steer, ["target_x", "target_y", "wheelbase"], {}),
    "stanley_steer": (
        stanley_steer,
        ["front_axle_error", "heading_error", "curvature", "speed", "wheelbase"],
        {"gains": StanleyGains()},
    ),
    "lqr_steer": (lqr_steer, ["lateral_error", "heading_error", "curvature", "speed", "wheelbase"], {"table": None}),
    "lookahead_distance": (lookahead_distance, ["speed"], {"gains": PurePursuitGains()}),
    "limit_steer": (limit_steer, ["steer_cmd", "prev_steer", "max_steer", "max_rate", "dt"], {}),
}


@pytest.mark.parametrize("case", list(_NAN_CASES))
def test_nan_input_raises_naming_it(case: str, table: LQRTable) -> None:
    fn, names, extra = _NAN_CASES[case]
    extra = {key: (table if key == "table" else value) for key, value in extra.items()}
    for bad in names:
        kwargs = {name: torch.tensor([0.1, 0.2]) for name in names}
        kwargs[bad] = torch.tensor([0.1, math.nan])
        with pytest.raises(ValueError, match=rf"non-finite {bad}\b"):
            fn(**kwargs, **extra)
        fn(**{**kwargs, bad: torch.tensor([0.1, 0.2])}, **extra)  # finite: no error
    kwargs = {name: torch.tensor([math.inf]) for name in names}
    fn(**kwargs, **extra, validate=False)  # the hot path skips the check


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_controllers_on_cuda_match_cpu(table: LQRTable) -> None:
    gen = torch.Generator().manual_seed(2)
    e, h = torch.randn(64, generator=gen), 0.1 * torch.randn(64, generator=gen)
    k = 0.01 * torch.randn(64, generator=gen)
    v = 30 * torch.rand(64, generator=gen)
    cpu_table, cuda_table = table.to(dtype=torch.float32), table.to("cuda", torch.float32)
    for law, tbl_cpu, tbl_cuda in [(lqr_steer, cpu_table, cuda_table)]:
        expected = law(e, h, k, v, WHEELBASE, tbl_cpu)
        got = law(e.cuda(), h.cuda(), k.cuda(), v.cuda(), WHEELBASE, tbl_cuda)
        torch.testing.assert_close(got.cpu(), expected)
    torch.testing.assert_close(
        stanley_steer(e.cuda(), h.cuda(), k.cuda(), v.cuda(), WHEELBASE, StanleyGains()).cpu(),
        stanley_steer(e, h, k, v, WHEELBASE, StanleyGains()),
    )
    torch.testing.assert_close(
        limit_steer(e.cuda(), h.cuda(), MAX_STEER, MAX_STEER_RATE, DT).cpu(),
        limit_steer(e, h, MAX_STEER, MAX_STEER_RATE, DT),
    )
