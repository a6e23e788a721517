"""The driver: the simulator's road measurements for the maneuver controller of `control/`.

The ego (under meta actions) and all traffic drive with the same `control/` maneuver controller; this
module only supplies what needs the road. A change of target lane starts a lane-change reference path
(`control.start_lane_change`: a quintic in the lane frame from the vehicle's offset to the target lane
centre over `lane_change_duration` seconds of travel, so the reference never jumps); here the road gives
the target lane centre, wraps arc lengths on the ring, and turns the reference into the tracking errors
(or, for pure pursuit, the look-ahead point in the rear-axle frame, through `to_global`) that
`control.steer_command` takes (cascade, pure pursuit, Stanley or LQR, chosen by `ControllerConfig.lateral`).
The ego's speed set-point is tracked by `control.speed_command` (PID); traffic speed comes from IDM. The
path state lives in `VehicleState` (lc_start_s, lc_offset, lc_length).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from drivestack.control import (
    LaneChangePath,
    LateralController,
    LQRTable,
    finish_lane_change,
    lane_change_reference,
    lookahead_distance,
    reference_errors,
    speed_command,
    start_lane_change,
    steer_command,
)
from drivestack.sim.config import EnvConfig
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import VehicleState


def start_lane_changes(
    veh: VehicleState,
    target_lane: torch.Tensor,
    road: RoadNetwork,
    config: EnvConfig,
) -> VehicleState:
    """Set new target lanes (B, N); vehicles whose target changed start a lane-change reference path
    from where they are now."""
    changed = target_lane != veh.target_lane
    centre, _, _, _ = road.lane_frame(target_lane, veh.s)
    path = start_lane_change(_path(veh), changed, veh.s, veh.d - centre, veh.speed, config.control)
    return replace(
        veh, target_lane=target_lane, lc_start_s=path.start_s, lc_offset=path.start_offset, lc_length=path.length
    )


def _path(veh: VehicleState) -> LaneChangePath:
    return LaneChangePath(start_s=veh.lc_start_s, start_offset=veh.lc_offset, length=veh.lc_length)


def _reference_offset(
    veh: VehicleState,
    road: RoadNetwork,
    s: torch.Tensor,
    centre: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference path at arc length s (unwrapped ok): offset from the reference line [m], its slope and
    second derivative along s (lane centre plus the lane-change quintic). `centre`: the target lane's
    centre offset at s, when the caller already has it."""
    if centre is None:
        centre, _, _, _ = road.lane_frame(veh.target_lane, s)
    return lane_change_reference(_path(veh), road.wrap(s - veh.lc_start_s), centre, validate=False)


def finish_lane_changes(veh: VehicleState, road: RoadNetwork) -> VehicleState:
    """Forget completed lane-change paths (otherwise they would replay one ring length later)."""
    path = finish_lane_change(_path(veh), road.wrap(veh.s - veh.lc_start_s))
    return replace(veh, lc_offset=path.start_offset)


def tracking_errors(veh: VehicleState, road: RoadNetwork) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lateral error [m] (positive: left of the reference), heading error [rad] and reference curvature
    [1/m] of every vehicle with respect to its reference path, (B, N) each."""
    centre, heading, kappa, _ = road.lane_frame(veh.target_lane, veh.s)
    ref, slope, second = _reference_offset(veh, road, veh.s, centre)
    return reference_errors(veh.d, veh.psi, ref, slope, second, heading, kappa)


def steering(
    veh: VehicleState,
    road: RoadNetwork,
    config: EnvConfig,
    lqr: LQRTable | None = None,
) -> torch.Tensor:
    """Steering command [rad] (B, N) of the configured lateral controller; limits are applied by the
    vehicle model."""
    c = config.control
    wheelbase = config.vehicle.wheelbase_ratio * veh.length
    if c.lateral == LateralController.PURE_PURSUIT:
        # Look-ahead point on the reference path, expressed in the rear-axle frame (exact geometry).
        x, y, yaw = road.to_global(veh.s, veh.d, veh.psi)
        cos, sin = torch.cos(yaw), torch.sin(yaw)
        xr, yr = x - 0.5 * wheelbase * cos, y - 0.5 * wheelbase * sin  # CoG sits at mid-wheelbase
        s_ahead = veh.s + lookahead_distance(veh.speed, c.pure_pursuit, validate=False)
        ref, _, _ = _reference_offset(veh, road, s_ahead)
        xt, yt, _ = road.to_global(s_ahead, ref)
        dx, dy = xt - xr, yt - yr
        point = (dx * cos + dy * sin, -dx * sin + dy * cos)
        return steer_command(c, veh.speed, wheelbase, lookahead_point=point, validate=False)
    error, heading_error, curvature = tracking_errors(veh, road)
    return steer_command(c, veh.speed, wheelbase, error, heading_error, curvature, lqr=lqr, validate=False)


def ego_speed_command(veh: VehicleState, config: EnvConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Ego acceleration command [m/s^2] (B,) tracking its speed set-point, and the new PID integral."""
    limits = config.vehicle
    return speed_command(
        config.control,
        veh.speed[:, 0],
        veh.desired_speed[:, 0],
        veh.speed_integral[:, 0],
        veh.accel[:, 0],
        config.dt,
        limits.max_accel,
        limits.max_brake,
        target_accel=torch.zeros_like(veh.speed[:, 0]),
        validate=False,
    )
