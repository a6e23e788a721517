"""The driver: from each vehicle's target lane and speed to steering and acceleration commands.

The ego (under meta actions) and all traffic drive with the same `control/` controllers. A change of
target lane starts a lane-change reference path: a quintic in the lane frame from the vehicle's offset
to the target lane centre over `lane_change_duration` seconds of travel, so the reference never jumps.
The lateral controller (cascade, pure pursuit, Stanley or LQR, chosen by `ControllerConfig.lateral`)
tracks that reference; the ego's speed set-point is tracked by the PID speed controller, traffic speed
comes from IDM.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from drivestack.control import (
    LateralController,
    LQRTable,
    lane_change_length,
    lane_change_offset,
    lane_keeping_steer,
    lookahead_distance,
    lqr_steer,
    pid_speed_control,
    pure_pursuit_steer,
    stanley_steer,
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
    length = lane_change_length(veh.speed, config.control.lane_change_duration, config.control.min_lane_change_length)
    return replace(
        veh,
        target_lane=target_lane,
        lc_start_s=torch.where(changed, veh.s, veh.lc_start_s),
        lc_offset=torch.where(changed, veh.d - centre, veh.lc_offset),
        lc_length=torch.where(changed, length, veh.lc_length),
    )


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
    travelled = road.wrap(s - veh.lc_start_s)
    offset, slope, second = lane_change_offset(
        travelled, torch.zeros_like(s), veh.lc_length, veh.lc_offset, validate=False
    )
    return centre + offset, slope, second


def finish_lane_changes(veh: VehicleState, road: RoadNetwork) -> VehicleState:
    """Forget completed lane-change paths (otherwise they would replay one ring length later)."""
    done = road.wrap(veh.s - veh.lc_start_s) >= veh.lc_length
    return replace(veh, lc_offset=torch.where(done, 0.0, veh.lc_offset))


def tracking_errors(veh: VehicleState, road: RoadNetwork) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lateral error [m] (positive: left of the reference), heading error [rad] and reference curvature
    [1/m] of every vehicle with respect to its reference path, (B, N) each."""
    centre, heading, kappa, _ = road.lane_frame(veh.target_lane, veh.s)
    ref, slope, second = _reference_offset(veh, road, veh.s, centre)
    return veh.d - ref, veh.psi - heading - torch.atan(slope), kappa + second


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
        xr, yr = x - 0.5 * wheelbase * cos, y - 0.5 * wheelbase * sin
        s_ahead = veh.s + lookahead_distance(veh.speed, c.pure_pursuit, validate=False)
        ref, _, _ = _reference_offset(veh, road, s_ahead)
        xt, yt, _ = road.to_global(s_ahead, ref)
        dx, dy = xt - xr, yt - yr
        return pure_pursuit_steer(dx * cos + dy * sin, -dx * sin + dy * cos, wheelbase, validate=False)
    error, heading_error, curvature = tracking_errors(veh, road)
    if c.lateral == LateralController.STANLEY:
        front_error = error + 0.5 * wheelbase * torch.sin(heading_error)  # CoG sits at mid-wheelbase
        return stanley_steer(
            front_error,
            heading_error,
            curvature,
            veh.speed,
            wheelbase,
            c.stanley,
            rear_to_point=0.5 * wheelbase,
            validate=False,
        )
    if c.lateral == LateralController.LQR:
        assert lqr is not None, "the LQR controller needs its gain table"
        return lqr_steer(
            error, heading_error, curvature, veh.speed, wheelbase, lqr, rear_to_point=0.5 * wheelbase, validate=False
        )
    return lane_keeping_steer(error, heading_error, curvature, veh.speed, wheelbase, c.cascade, validate=False)


def ego_speed_command(veh: VehicleState, config: EnvConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Ego acceleration command [m/s^2] (B,) tracking its speed set-point, and the new PID integral."""
    limits = config.vehicle
    return pid_speed_control(
        veh.speed[:, 0],
        veh.desired_speed[:, 0],
        torch.zeros_like(veh.speed[:, 0]),
        veh.speed_integral[:, 0],
        veh.accel[:, 0],
        config.dt,
        config.control.speed,
        limits.max_accel,
        limits.max_brake,
        config.control.max_jerk,
        validate=False,
    )
