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

Two guards keep a meta-action ego on the road where its lane ends (the merge on-ramp), whatever the policy
does: its speed command never exceeds a stop before the end of the lane it is heading for
(`min_lane_change_length` short of it, so a change can still be made from standstill), and a lane change off
a lane that ends is shortened to finish before the end (`ego_speed_limit`, `start_lane_changes`). With
`ActionConfig.speed_control = follow` (adaptive cruise control) the command is also capped by IDM following of
the ego's leader (`ego_speed_limit`).
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
from drivestack.sim.config import EnvConfig, Scenario, SpeedControl
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import VehicleState
from drivestack.sim.traffic import FAR, idm_acceleration

STOP_DECEL = 4.0  # [m/s^2] deceleration at which the ego starts its stop before the end of its lane
STOP_ZONE = 2.0  # [m] within this of its stop point the ego may only slow down (no creeping on past it)


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
    if config.road.scenario != Scenario.HIGHWAY:  # a lane ends: a change off it must finish before its end
        room = _lane_end_distance(veh.lane, veh.s, road) - 0.5 * veh.length
        short = torch.minimum(path.length, room).clamp_min(0.5 * config.control.min_lane_change_length)
        path = replace(path, length=torch.where(changed & (room < path.length), short, path.length))
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


def _lane_end_distance(lane: torch.Tensor, s: torch.Tensor, road: RoadNetwork) -> torch.Tensor:
    """[m] distance along the road from arc length s to the end of `lane` (FAR where the lane does not end)."""
    end = torch.take(road.lane_end, lane.clamp(0, road.num_lanes - 1))
    finite = torch.isfinite(end)
    return torch.where(finite, road.delta_s(torch.where(finite, end, 0.0), s), FAR)


def ego_speed_limit(veh: VehicleState, road: RoadNetwork, config: EnvConfig) -> torch.Tensor | None:
    """[m/s^2] (B,) the highest acceleration the ego's speed command may ask for, or None where nothing caps it.

    - Where lanes end (merge): a stop `min_lane_change_length` before the end of the lane the ego heads for, at
      the constant deceleration v^2 / (2 gap) once that reaches STOP_DECEL (no braking before it is needed: the
      merge zone is for accelerating).
    - `follow` speed control: IDM following (the ego's `follow_time_headway` and `follow_min_gap`, traffic's
      a, b and delta) of the nearest vehicle ahead in the ego's lane or target lane, or whose lane or target
      lane is one of them (a vehicle cutting in counts from the moment it starts its change).
    IDM runs with a free-road speed of `vehicle.max_speed`, so only the interaction term binds: the set-point is
    the PID's job.
    """
    action, traffic = config.action, config.traffic
    p = replace(traffic, idm_time_headway=action.follow_time_headway, idm_min_gap=action.follow_min_gap)
    v = veh.speed[:, 0]
    v0 = torch.full_like(v, config.vehicle.max_speed)
    limit = None
    if config.road.scenario != Scenario.HIGHWAY:
        target = veh.target_lane[:, 0]
        margin = config.control.min_lane_change_length
        end_gap = _lane_end_distance(target, veh.s[:, 0], road) - 0.5 * veh.length[:, 0] - margin
        needed = v * v / (2.0 * end_gap.clamp_min(0.1))  # [m/s^2] deceleration that stops at the stop point
        limit = torch.where((needed >= STOP_DECEL) | (end_gap < STOP_ZONE), -needed, torch.inf)  # then it stays
    if action.speed_control == SpeedControl.FOLLOW:
        lane, target = veh.lane, veh.target_lane
        ego_lanes = (lane[:, :1], target[:, :1])
        shares = (lane == ego_lanes[0]) | (lane == ego_lanes[1]) | (target == ego_lanes[0]) | (target == ego_lanes[1])
        ahead = road.delta_s(veh.s, veh.s[:, :1])  # (B, N) [m] signed ring distance, the ego's own entry 0
        gap = ahead - 0.5 * (veh.length + veh.length[:, :1])
        candidate = shares & veh.active & (ahead > 0.0)
        candidate[:, 0] = False
        i_lead = torch.where(candidate, ahead, torch.inf).argmin(dim=1, keepdim=True)  # (B, 1)
        has_lead = candidate.gather(1, i_lead).squeeze(1)
        lead_gap = torch.where(has_lead, gap.gather(1, i_lead).squeeze(1), FAR)
        closing = v - veh.speed.gather(1, i_lead).squeeze(1)
        follow = idm_acceleration(v, v0, lead_gap, torch.where(has_lead, closing, 0.0), p)
        limit = follow if limit is None else torch.minimum(limit, follow)
    return limit
