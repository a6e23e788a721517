"""PID speed control closed loop on the integrator plant v' = a, anti-windup, feed-forward, limits, pedals."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drivestack.control import PIDGains, SpeedGains, pid_speed_control, speed_control, throttle_brake

DT = 0.1  # [s]
MAX_ACCEL = 4.0  # [m/s^2]
MAX_BRAKE = 8.0  # [m/s^2]
MAX_JERK = 10.0  # [m/s^3]
GAINS = PIDGains()

Schedule = Callable[[float], float]


def _constant(value: float) -> Schedule:
    return lambda t: value


_NO_ACCEL = _constant(0.0)


def simulate(
    gains: PIDGains, v0: float, target: Schedule, target_accel: Schedule = _NO_ACCEL, duration: float = 30.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed loop on v' = a (forward Euler, as `sim.dynamics`). Returns speed after each step, the
    acceleration applied in it and the set-point at the end of it, each [T]."""
    v = torch.tensor([v0], dtype=torch.float64)
    integral = torch.zeros(1, dtype=torch.float64)
    accel = torch.zeros(1, dtype=torch.float64)
    speeds, accels, targets = [], [], []
    for k in range(round(duration / DT)):
        t = k * DT
        accel, integral = pid_speed_control(
            v, target(t), target_accel(t), integral, accel, DT, gains, MAX_ACCEL, MAX_BRAKE, MAX_JERK
        )
        v = v + accel * DT
        speeds.append(v)
        accels.append(accel)
        targets.append(target(t + DT))
    return torch.cat(speeds), torch.cat(accels), torch.tensor(targets, dtype=torch.float64)


def _naive_pi(gains: PIDGains, v0: float, target: float, duration: float = 30.0) -> torch.Tensor:
    """The same PI without anti-windup: the integral always integrates and is never clamped."""
    v, integral, prev = v0, 0.0, 0.0
    speeds = []
    for _ in range(round(duration / DT)):
        error = target - v
        integral += gains.ki * error * DT
        accel = gains.kp * error + integral
        accel = min(max(accel, prev - MAX_JERK * DT), prev + MAX_JERK * DT)
        accel = min(max(accel, -MAX_BRAKE), MAX_ACCEL)
        v, prev = v + accel * DT, accel
        speeds.append(v)
    return torch.tensor(speeds, dtype=torch.float64)


def _linear_step_overshoot(kp: float, ki: float) -> float:
    """Peak overshoot (fraction of the step) of (kp s + ki) / (s^2 + kp s + ki), the unsaturated continuous
    closed loop, for distinct real poles p1, p2 (kp^2 > 4 ki): y(t) = 1 + A e^(p1 t) + B e^(p2 t)."""
    root = math.sqrt(kp * kp - 4 * ki)
    p1, p2 = (-kp + root) / 2, (-kp - root) / 2  # p1 the slow pole
    z = ki / kp  # the zero sits at -z
    A = (p1 + z) * kp / ((p1 - p2) * p1)
    B = (p2 + z) * kp / ((p2 - p1) * p2)
    t_peak = math.log(-(B * p2) / (A * p1)) / (p1 - p2)  # y'(t) = 0
    return A * math.exp(p1 * t_peak) + B * math.exp(p2 * t_peak)


# --------------------------------------------------------------------------- step responses
def test_small_step_matches_the_linear_closed_loop() -> None:
    """A 0.5 m/s step stays inside every limit (kp * 0.5 < jerk * dt), so it is the linear PI loop."""
    speeds, accels, _ = simulate(GAINS, 20.0, _constant(20.5), duration=60.0)
    expected = _linear_step_overshoot(GAINS.kp, GAINS.ki)  # 0.089 with the default gains
    overshoot = (speeds.max().item() - 20.5) / 0.5
    assert 0.0 < overshoot <= expected * 1.1 + 0.005, (overshoot, expected)
    assert abs(speeds[-1].item() - 20.5) < 1e-3  # no steady-state error
    assert accels.abs().max().item() < MAX_ACCEL


def test_large_step_rises_at_the_acceleration_limit_and_settles() -> None:
    step = 10.0  # [m/s]
    speeds, accels, _ = simulate(GAINS, 20.0, _constant(20.0 + step), duration=40.0)
    t90 = (speeds >= 20.0 + 0.9 * step).nonzero()[0].item() * DT + DT
    # Physically impossible faster than the acceleration limit; with it: jerk ramp (~0.2 s lost), full
    # acceleration until kp * e = max_accel, then the exponential tail of the P loop down to 10 %.
    e_sat = MAX_ACCEL / GAINS.kp  # [m/s] error where the command leaves saturation
    t_expected = MAX_ACCEL / MAX_JERK / 2 + (step - e_sat) / MAX_ACCEL + math.log(e_sat / (0.1 * step)) / GAINS.kp
    assert 0.9 * step / MAX_ACCEL <= t90 <= t_expected + 0.3, (t90, t_expected)
    assert accels.max().item() == pytest.approx(MAX_ACCEL)
    assert abs(speeds[-1].item() - 30.0) < 1e-3  # no steady-state error


def test_anti_windup_keeps_the_overshoot_after_saturation_small() -> None:
    step = 15.0  # [m/s] 4 s at the acceleration limit
    speeds, _, _ = simulate(GAINS, 10.0, _constant(10.0 + step))
    naive = _naive_pi(GAINS, 10.0, 10.0 + step)
    overshoot = speeds.max().item() - 25.0
    naive_overshoot = naive.max().item() - 25.0
    # The loop leaves saturation at e = max_accel / kp with an empty integral and a = kp e: exactly the state of
    # the linear loop just after a step of that size, so the overshoot is that step's.
    bound = _linear_step_overshoot(GAINS.kp, GAINS.ki) * MAX_ACCEL / GAINS.kp  # [m/s] 0.24 with the defaults
    assert overshoot <= 1.1 * bound + 0.02, (overshoot, bound)
    assert naive_overshoot > 4.0 * overshoot, (overshoot, naive_overshoot)
    assert naive_overshoot > 1.0


def test_integral_does_not_grow_while_saturated() -> None:
    integral = torch.zeros(1)
    accel = torch.tensor([MAX_ACCEL])
    for _ in range(50):  # a 30 m/s error: the command sits at the acceleration limit
        accel, integral = pid_speed_control(
            torch.tensor([0.0]), 30.0, 0.0, integral, accel, DT, GAINS, MAX_ACCEL, MAX_BRAKE, MAX_JERK
        )
    assert integral.item() == 0.0
    # ... but unwinds when the error points back out of the limit (here the feed-forward holds the command
    # at the acceleration limit while the vehicle is faster than its set-point).
    accel, unwound = pid_speed_control(
        torch.tensor([21.0]),
        20.0,
        10.0,
        torch.tensor([0.5]),
        torch.tensor([MAX_ACCEL]),
        DT,
        GAINS,
        MAX_ACCEL,
        MAX_BRAKE,
        MAX_JERK,
    )
    assert accel.item() == MAX_ACCEL
    assert unwound.item() == pytest.approx(0.5 - GAINS.ki * 1.0 * DT)


def test_feedforward_removes_the_ramp_lag() -> None:
    def ramp(t: float) -> float:
        return 20.0 + min(t, 8.0)  # 1 m/s^2 for 8 s

    def ramp_accel(t: float) -> float:
        return 1.0 if t < 8.0 else 0.0

    with_ff, _, ref = simulate(GAINS, 20.0, ramp, ramp_accel, duration=15.0)
    without, _, _ = simulate(replace(GAINS, feedforward=False), 20.0, ramp, ramp_accel, duration=15.0)
    rms_ff = (with_ff - ref).pow(2).mean().sqrt().item()
    rms_p = (without - ref).pow(2).mean().sqrt().item()
    assert rms_p > 0.1  # lag of about accel / kp on the ramp
    assert rms_ff < 0.1 * rms_p, (rms_ff, rms_p)


def test_derivative_acts_on_the_measurement_not_on_set_point_steps() -> None:
    args = dict(
        speed=torch.tensor([20.0]),
        target_accel=0.0,
        integral=torch.tensor([0.0]),
        dt=DT,
        max_accel=MAX_ACCEL,
        max_brake=MAX_BRAKE,
        max_jerk=100.0,
    )
    with_d = replace(GAINS, kd=0.5)
    for target in (20.0, 21.0):  # a set-point step changes the command by kp * step only
        a_d, _ = pid_speed_control(target_speed=target, prev_accel=torch.tensor([1.0]), gains=with_d, **args)
        a_0, _ = pid_speed_control(target_speed=target, prev_accel=torch.tensor([1.0]), gains=GAINS, **args)
        assert (a_d - a_0).item() == pytest.approx(-0.5 * 1.0)  # -kd * measured dv/dt


# --------------------------------------------------------------------------- limits and pedals
@settings(max_examples=300, deadline=None)
@given(
    speed=st.floats(0.0, 40.0),
    target=st.floats(0.0, 40.0),
    target_accel=st.floats(-10.0, 10.0),
    integral=st.floats(-5.0, 5.0),
    prev_frac=st.floats(-1.0, 1.0),
    kp=st.floats(0.01, 10.0),
    ki=st.floats(0.0, 5.0),
    kd=st.floats(0.0, 2.0),
    limit=st.floats(0.01, 3.0),
    max_jerk=st.floats(0.1, 50.0),
    dt=st.floats(0.01, 0.5),
)
def test_limits_are_always_respected(
    speed: float,
    target: float,
    target_accel: float,
    integral: float,
    prev_frac: float,
    kp: float,
    ki: float,
    kd: float,
    limit: float,
    max_jerk: float,
    dt: float,
) -> None:
    gains = PIDGains(kp=kp, ki=ki, kd=kd, integral_limit=limit)
    prev = MAX_ACCEL * prev_frac if prev_frac > 0 else MAX_BRAKE * prev_frac  # a previous output: within limits
    accel, new_integral = pid_speed_control(
        torch.tensor(speed, dtype=torch.float64),
        target,
        target_accel,
        torch.tensor(integral, dtype=torch.float64),
        prev,
        dt,
        gains,
        MAX_ACCEL,
        MAX_BRAKE,
        max_jerk,
    )
    eps = 1e-9
    assert -MAX_BRAKE - eps <= accel.item() <= MAX_ACCEL + eps
    assert abs(accel.item() - prev) <= max_jerk * dt + eps
    assert abs(new_integral.item()) <= max(limit, abs(integral)) + eps
    if abs(integral) <= limit:
        assert abs(new_integral.item()) <= limit + eps


@settings(max_examples=300, deadline=None)
@given(accel=st.floats(-20.0, 20.0), max_accel=st.floats(0.1, 10.0), max_brake=st.floats(0.1, 15.0))
def test_throttle_brake_split(accel: float, max_accel: float, max_brake: float) -> None:
    throttle, brake = throttle_brake(torch.tensor(accel, dtype=torch.float64), max_accel, max_brake)
    t, b = throttle.item(), brake.item()
    assert 0.0 <= t <= 1.0 and 0.0 <= b <= 1.0
    assert t == 0.0 or b == 0.0
    if 0.0 <= accel <= max_accel:
        assert t == pytest.approx(accel / max_accel) and b == 0.0
    if -max_brake <= accel <= 0.0:
        assert b == pytest.approx(-accel / max_brake) and t == 0.0


def test_batched_call_equals_per_vehicle_calls() -> None:
    gen = torch.Generator().manual_seed(1)
    shape = (4, 3)
    speed = 30 * torch.rand(shape, generator=gen)
    target = 30 * torch.rand(shape, generator=gen)
    integral = torch.randn(shape, generator=gen)
    prev = torch.randn(shape, generator=gen)
    batched, batched_i = pid_speed_control(
        speed, target, 0.5, integral, prev, DT, GAINS, MAX_ACCEL, MAX_BRAKE, MAX_JERK
    )
    for idx in [(i, j) for i in range(shape[0]) for j in range(shape[1])]:
        a, i_new = pid_speed_control(
            speed[idx], target[idx], 0.5, integral[idx], prev[idx], DT, GAINS, MAX_ACCEL, MAX_BRAKE, MAX_JERK
        )
        assert a.item() == batched[idx].item() and i_new.item() == batched_i[idx].item()


def test_proportional_controller_unchanged() -> None:
    assert speed_control(torch.tensor([20.0]), 26.0).item() == pytest.approx(6.0 / 0.6)
    assert speed_control(torch.tensor([20.0]), 26.0, SpeedGains(2.0)).item() == pytest.approx(12.0)


@pytest.mark.parametrize("bad", ["speed", "target_speed", "target_accel", "integral", "prev_accel", "max_jerk"])
def test_nan_input_raises_naming_it(bad: str) -> None:
    args = dict(
        speed=torch.tensor([20.0]),
        target_speed=torch.tensor([25.0]),
        target_accel=0.0,
        integral=torch.tensor([0.0]),
        prev_accel=torch.tensor([0.0]),
        dt=DT,
        gains=GAINS,
        max_accel=MAX_ACCEL,
        max_brake=MAX_BRAKE,
        max_jerk=MAX_JERK,
    )
    args[bad] = torch.tensor([math.nan]) if isinstance(args[bad], torch.Tensor) else math.nan
    with pytest.raises(ValueError, match=rf"non-finite {bad}\b.*controller inputs must be finite"):
        pid_speed_control(**args)
    with pytest.raises(ValueError, match="non-finite accel"):
        throttle_brake(torch.tensor([math.inf]), MAX_ACCEL, MAX_BRAKE)
    with pytest.raises(ValueError, match="non-finite speed"):
        speed_control(torch.tensor([math.nan]), 20.0)
