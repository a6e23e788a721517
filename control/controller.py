"""The maneuver controller: tracking errors and a speed set-point in, steering, throttle and brake out.

A maneuver (`maneuver.apply_maneuvers`) sets a target lane and a speed set-point; the caller keeps a
lane-change reference path to that lane (`maneuver.LaneChangePath`) and measures the vehicle against it
from its own road or map: lateral error, heading error and reference curvature (`maneuver.reference_errors`),
or for pure pursuit the look-ahead point on the reference in the rear-axle frame. From those tensors the
controller returns the steering angle of the configured law (`ControllerConfig.lateral`) and the PID
acceleration, split into throttle and brake (`Command`). No road types: a simulator and a scene built from
tracks and map lanes drive it the same way.

- `steer_command` and `speed_command`: pure functions of the config and the inputs (batched, any shape);
- `ManeuverController`: holds the config, the control period, the acceleration limits and the LQR gain
  table, and returns the whole `Command` (plus the new PID integral, the controller state to pass back).
"""

from __future__ import annotations

import torch

from drivestack.control.command import Command, check_finite
from drivestack.control.config import ControllerConfig, LateralController
from drivestack.control.lateral import (
    LQRTable,
    lane_keeping_steer,
    lookahead_distance,
    lqr_steer,
    pure_pursuit_steer,
    stanley_steer,
)
from drivestack.control.longitudinal import pid_speed_control, throttle_brake


def _require(value: torch.Tensor | None, name: str, law: LateralController) -> torch.Tensor:
    if value is None:
        raise ValueError(f"the {law.value} steering law needs {name}; pass it (or choose another control.lateral)")
    return value


def steer_command(
    config: ControllerConfig,
    speed: torch.Tensor,
    wheelbase: torch.Tensor | float,
    lateral_error: torch.Tensor | None = None,
    heading_error: torch.Tensor | None = None,
    curvature: torch.Tensor | None = None,
    lookahead_point: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    lqr: LQRTable | None = None,
    rear_to_point: torch.Tensor | float | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """Steering angle of the configured lateral controller tracking the reference path.

    Pure pursuit needs only `lookahead_point`; cascade, Stanley and LQR need the three tracking errors
    (the others may be None). Errors are those of the point `rear_to_point` ahead of the rear axle.

    Args:
        config: `lateral` selects the law; its gains.
        speed: [m/s] vehicle speed, any shape.
        wheelbase: [m].
        lateral_error: [m] offset from the reference, positive when left of it.
        heading_error: [rad] heading minus the reference heading, positive pointing left of it.
        curvature: [1/m] reference curvature (positive turning left).
        lookahead_point: ([m] forward, [m] left) the look-ahead point on the reference (at
            `lookahead_distance(speed, config.pure_pursuit)` along it) in the rear-axle frame.
        lqr: gain table (required for LQR), built for the control period, on the inputs' device.
        rear_to_point: [m] where the errors are measured, ahead of the rear axle (None: wheelbase / 2,
            the centre of gravity of `sim.dynamics`).
        validate: check that the inputs the law uses are finite (raises ValueError naming the first that
            is not).
    Returns:
        steer [rad], positive to the left; not yet limited (`limit_steer`). Shaped like the broadcast inputs.
    """
    law = config.lateral
    if law == LateralController.PURE_PURSUIT:
        target_x, target_y = _require(lookahead_point, "lookahead_point", law)  # type: ignore[misc]
        if validate:
            check_finite(target_x=target_x, target_y=target_y, wheelbase=wheelbase)
        return pure_pursuit_steer(target_x, target_y, wheelbase, validate=False)
    error = _require(lateral_error, "lateral_error", law)
    heading_error = _require(heading_error, "heading_error", law)
    curvature = _require(curvature, "curvature", law)
    if validate:
        check_finite(
            lateral_error=error,
            heading_error=heading_error,
            curvature=curvature,
            speed=speed,
            wheelbase=wheelbase,
            rear_to_point=0.0 if rear_to_point is None else rear_to_point,
        )
    if law == LateralController.STANLEY:
        to_front = 0.5 * wheelbase if rear_to_point is None else wheelbase - rear_to_point  # [m] point -> front axle
        front_error = error + to_front * torch.sin(heading_error)
        return stanley_steer(
            front_error,
            heading_error,
            curvature,
            speed,
            wheelbase,
            config.stanley,
            rear_to_point=0.5 * wheelbase if rear_to_point is None else rear_to_point,
            validate=False,
        )
    if law == LateralController.LQR:
        if lqr is None:
            raise ValueError("the lqr steering law needs its gain table: pass lqr=LQRTable(config.lqr, dt)")
        return lqr_steer(
            error,
            heading_error,
            curvature,
            speed,
            wheelbase,
            lqr,
            rear_to_point=0.5 * wheelbase if rear_to_point is None else rear_to_point,
            validate=False,
        )
    return lane_keeping_steer(error, heading_error, curvature, speed, wheelbase, config.cascade, validate=False)


def speed_command(
    config: ControllerConfig,
    speed: torch.Tensor,
    target_speed: torch.Tensor | float,
    integral: torch.Tensor | float,
    prev_accel: torch.Tensor | float,
    dt: float,
    max_accel: torch.Tensor | float,
    max_brake: torch.Tensor | float,
    *,
    target_accel: torch.Tensor | float = 0.0,
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Acceleration [m/s^2] of the PID speed controller (`pid_speed_control` with the config's gains and jerk).

    Args:
        config: `speed` gains and `max_jerk` [m/s^3].
        speed: [m/s] measured speed, any shape.
        target_speed: [m/s] speed set-point.
        integral: [m/s^2] PID integral from the previous call (0 at the start).
        prev_accel: [m/s^2] acceleration of the previous step (0 at the start).
        dt: [s] control period.
        max_accel: [m/s^2] acceleration limit (> 0).
        max_brake: [m/s^2] deceleration limit (> 0).
        target_accel: [m/s^2] set-point acceleration, the feed-forward (0 for a constant set-point).
        validate: check that every input is finite.
    Returns:
        accel [m/s^2] and the new integral [m/s^2], shaped like the broadcast inputs.
    """
    return pid_speed_control(
        speed,
        target_speed,
        target_accel,
        integral,
        prev_accel,
        dt,
        config.speed,
        max_accel,
        max_brake,
        config.max_jerk,
        validate=validate,
    )


class ManeuverController:
    """Steering, throttle and brake from tracking errors and a speed set-point, batched over any shape.

    Holds only constants (config, period, limits, LQR gains): the PID integral and the previous
    acceleration are passed in and the new integral is returned, so the same controller serves any batch.

    Args:
        config: which steering law and every gain (validated here).
        dt: [s] control period (the LQR gains and the PID are built for it).
        max_accel: [m/s^2] acceleration at full throttle, the acceleration limit (> 0).
        max_brake: [m/s^2] deceleration at full brake, the braking limit (> 0).
        lqr: the LQR gain table when the caller already has one (built here when the law is LQR and it is None).
        device: where to build the LQR gain table.
    """

    def __init__(
        self,
        config: ControllerConfig,
        dt: float,
        max_accel: float,
        max_brake: float,
        lqr: LQRTable | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        config.validate()
        check_finite(dt=dt, max_accel=max_accel, max_brake=max_brake)
        if not (dt > 0.0 and max_accel > 0.0 and max_brake > 0.0):
            raise ValueError(
                f"ManeuverController: dt={dt!r} s, max_accel={max_accel!r}, max_brake={max_brake!r} m/s^2; "
                "allowed: all > 0"
            )
        if lqr is None and config.lateral == LateralController.LQR:
            lqr = LQRTable(config.lqr, dt, device)
        self.config = config
        self.dt = dt
        self.max_accel = max_accel
        self.max_brake = max_brake
        self.lqr = lqr

    @property
    def uses_lookahead(self) -> bool:
        """True when the steering law (pure pursuit) takes a look-ahead point instead of tracking errors."""
        return self.config.lateral == LateralController.PURE_PURSUIT

    def lookahead_distance(self, speed: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
        """[m] how far along the reference the pure-pursuit look-ahead point lies, at speed [m/s] (any shape)."""
        return lookahead_distance(speed, self.config.pure_pursuit, validate=validate)

    def steer(
        self,
        speed: torch.Tensor,
        wheelbase: torch.Tensor | float,
        lateral_error: torch.Tensor | None = None,
        heading_error: torch.Tensor | None = None,
        curvature: torch.Tensor | None = None,
        lookahead_point: tuple[torch.Tensor, torch.Tensor] | None = None,
        *,
        rear_to_point: torch.Tensor | float | None = None,
        validate: bool = True,
    ) -> torch.Tensor:
        """Steering angle [rad], not yet limited; see `steer_command` for the arguments."""
        return steer_command(
            self.config,
            speed,
            wheelbase,
            lateral_error,
            heading_error,
            curvature,
            lookahead_point,
            lqr=self.lqr,
            rear_to_point=rear_to_point,
            validate=validate,
        )

    def accel(
        self,
        speed: torch.Tensor,
        target_speed: torch.Tensor | float,
        integral: torch.Tensor | float,
        prev_accel: torch.Tensor | float,
        *,
        target_accel: torch.Tensor | float = 0.0,
        validate: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Acceleration [m/s^2] and the new PID integral [m/s^2]; see `speed_command` for the arguments."""
        return speed_command(
            self.config,
            speed,
            target_speed,
            integral,
            prev_accel,
            self.dt,
            self.max_accel,
            self.max_brake,
            target_accel=target_accel,
            validate=validate,
        )

    def __call__(
        self,
        speed: torch.Tensor,
        target_speed: torch.Tensor | float,
        integral: torch.Tensor | float,
        prev_accel: torch.Tensor | float,
        wheelbase: torch.Tensor | float,
        lateral_error: torch.Tensor | None = None,
        heading_error: torch.Tensor | None = None,
        curvature: torch.Tensor | None = None,
        lookahead_point: tuple[torch.Tensor, torch.Tensor] | None = None,
        *,
        target_accel: torch.Tensor | float = 0.0,
        rear_to_point: torch.Tensor | float | None = None,
        validate: bool = True,
    ) -> tuple[Command, torch.Tensor]:
        """One control step: the full command and the new PID integral.

        Args:
            speed: [m/s] vehicle speed, any shape.
            target_speed: [m/s] speed set-point.
            integral: [m/s^2] PID integral from the previous step (0 at the start).
            prev_accel: [m/s^2] acceleration of the previous step (0 at the start).
            wheelbase: [m].
            lateral_error, heading_error, curvature, lookahead_point: the tracking errors or the look-ahead
                point of the configured law (see `steer_command`).
            target_accel: [m/s^2] set-point acceleration (feed-forward).
            rear_to_point: [m] where the errors are measured, ahead of the rear axle (None: wheelbase / 2).
            validate: check that every input is finite (raises ValueError naming the first that is not).
        Returns:
            Command(steer [rad] not yet limited, accel [m/s^2], throttle and brake in [0, 1]) and the new
            integral [m/s^2], shaped like the broadcast inputs.
        """
        steer = self.steer(
            speed,
            wheelbase,
            lateral_error,
            heading_error,
            curvature,
            lookahead_point,
            rear_to_point=rear_to_point,
            validate=validate,
        )
        accel, new_integral = self.accel(
            speed, target_speed, integral, prev_accel, target_accel=target_accel, validate=validate
        )
        throttle, brake = throttle_brake(accel, self.max_accel, self.max_brake, validate=False)
        return Command(steer=steer, accel=accel, throttle=throttle, brake=brake), new_integral

    def __repr__(self) -> str:
        return (
            f"ManeuverController(lateral={self.config.lateral.value}, dt={self.dt}, "
            f"max_accel={self.max_accel}, max_brake={self.max_brake})"
        )
