"""Longitudinal control: track a speed set-point with a bounded acceleration and jerk.

Two controllers, batched over any tensor shape (inputs broadcast together):

- `speed_control`: the proportional controller the simulator's traffic-free ego used first (highway-env's);
- `pid_speed_control`: PID with reference-acceleration feed-forward, derivative on the measurement,
  conditional-integration anti-windup and acceleration and jerk limits. It is stateless: the caller
  carries the integral term and the previous acceleration from one step to the next.

`throttle_brake` splits an acceleration into pedal positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drivestack.control.command import check_finite
from drivestack.control.config import PIDGains


@dataclass(frozen=True)
class SpeedGains:
    """Gains of the proportional speed controller."""

    proportional: float = 1.0 / 0.6
    """[1/s] acceleration command per m/s of speed error (highway-env's KP_A)."""

    def validate(self) -> None:
        if not self.proportional > 0.0:
            raise ValueError(f"invalid SpeedGains.proportional={self.proportional!r}; allowed: > 0")


def speed_control(
    speed: torch.Tensor, target_speed: torch.Tensor | float, gains: SpeedGains = SpeedGains(), *, validate: bool = True
) -> torch.Tensor:
    """Acceleration command [m/s^2] that drives `speed` [m/s] to `target_speed` [m/s].

    Not clipped: the vehicle model applies its acceleration and braking limits.
    """
    if validate:
        check_finite(speed=speed, target_speed=target_speed)
    return gains.proportional * (target_speed - speed)


def _clamp(x: torch.Tensor, low: torch.Tensor | float, high: torch.Tensor | float) -> torch.Tensor:
    """Element-wise clamp to bounds that may be tensors or numbers (broadcast with x)."""
    low_t = torch.as_tensor(low, dtype=x.dtype, device=x.device)
    high_t = torch.as_tensor(high, dtype=x.dtype, device=x.device)
    return torch.minimum(torch.maximum(x, low_t), high_t)


def pid_speed_control(
    speed: torch.Tensor,
    target_speed: torch.Tensor | float,
    target_accel: torch.Tensor | float,
    integral: torch.Tensor | float,
    prev_accel: torch.Tensor | float,
    dt: float,
    gains: PIDGains,
    max_accel: torch.Tensor | float,
    max_brake: torch.Tensor | float,
    max_jerk: torch.Tensor | float,
    *,
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the PID speed controller. All tensor inputs broadcast together (any shape).

    accel = target_accel (when gains.feedforward) + kp * e + I - kd * prev_accel, e = target_speed - speed,
    then limited to [-max_brake, max_accel] and to |accel - prev_accel| <= max_jerk * dt.

    - Derivative on the measurement: the derivative term acts on d(speed)/dt, measured as the acceleration
      of the last step (`prev_accel`), never on d(error)/dt, so a set-point step gives no derivative kick.
    - Anti-windup by conditional integration: the integral term I (carried as its acceleration
      contribution) is updated by ki * e * dt and clamped to +-gains.integral_limit, except when the
      command is held by a limit (acceleration or jerk) and the error would push it further into that
      limit; then I keeps its value. It may always unwind.

    Args:
        speed: [m/s] measured speed.
        target_speed: [m/s] speed set-point.
        target_accel: [m/s^2] set-point acceleration d(target_speed)/dt, the feed-forward (0 for a constant
            set-point; ignored unless gains.feedforward).
        integral: [m/s^2] integral term from the previous call (0 at the start), i.e. ki * int(e dt).
        prev_accel: [m/s^2] acceleration of the previous step: the reference of the jerk limit and the
            measured d(speed)/dt of the derivative term (0 at the start).
        dt: [s] control period (> 0).
        gains: PID gains.
        max_accel: [m/s^2] acceleration limit (> 0).
        max_brake: [m/s^2] deceleration limit (> 0, a positive number).
        max_jerk: [m/s^3] bound on |accel - prev_accel| / dt (> 0).
        validate: check that every input is finite (raises ValueError naming the first that is not).
    Returns:
        accel: [m/s^2] acceleration command, within [-max_brake, max_accel] and, whenever prev_accel is
            within those limits, within max_jerk * dt of prev_accel (the acceleration limits win otherwise);
        integral: [m/s^2] the new integral term, to pass back at the next call.
        Both are shaped like the broadcast inputs.
    """
    if validate:
        check_finite(
            speed=speed,
            target_speed=target_speed,
            target_accel=target_accel,
            integral=integral,
            prev_accel=prev_accel,
            dt=dt,
            max_accel=max_accel,
            max_brake=max_brake,
            max_jerk=max_jerk,
        )
    error = target_speed - speed  # [m/s]
    integral = torch.as_tensor(integral, dtype=error.dtype, device=error.device)
    prev_accel = torch.as_tensor(prev_accel, dtype=error.dtype, device=error.device)
    base = gains.kp * error - gains.kd * prev_accel  # [m/s^2] P and D terms
    if gains.feedforward:
        base = base + target_accel
    max_step = max_jerk * dt  # [m/s^2] largest change of the command in one step

    def limited(command: torch.Tensor) -> torch.Tensor:
        # Jerk first, then the acceleration bounds: the result satisfies both whenever prev_accel does.
        return _clamp(_clamp(command, prev_accel - max_step, prev_accel + max_step), -max_brake, max_accel)

    candidate = (integral + gains.ki * error * dt).clamp(-gains.integral_limit, gains.integral_limit)
    unlimited = base + candidate
    excess = unlimited - limited(unlimited)  # > 0: held by an upper limit, < 0: by a lower one
    winding_up = excess * error > 0.0  # integrating would push the command further into the limit
    new_integral = torch.where(winding_up, integral.clamp(-gains.integral_limit, gains.integral_limit), candidate)
    return limited(base + new_integral), new_integral


def throttle_brake(
    accel: torch.Tensor, max_accel: torch.Tensor | float, max_brake: torch.Tensor | float, *, validate: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pedal positions for an acceleration command; never both pressed.

    Args:
        accel: [m/s^2] acceleration command, any shape.
        max_accel: [m/s^2] acceleration at full throttle (> 0).
        max_brake: [m/s^2] deceleration at full brake (> 0).
        validate: check that every input is finite.
    Returns:
        throttle: [0, 1] accel / max_accel when accel > 0, else 0 (saturates at 1);
        brake: [0, 1] -accel / max_brake when accel < 0, else 0 (saturates at 1).
    """
    if validate:
        check_finite(accel=accel, max_accel=max_accel, max_brake=max_brake)
    throttle = (accel / max_accel).clamp(0.0, 1.0)
    brake = (-accel / max_brake).clamp(0.0, 1.0)
    return throttle, brake
