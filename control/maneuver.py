"""Maneuvers and the lane-change reference paths that carry them out.

A maneuver (`Maneuver`, highway-env's DiscreteMetaAction order) moves the vehicle's target lane or its
speed set-point (`apply_maneuvers`). Lanes are indexed from the right (0 = rightmost lane), so LANE_LEFT
adds 1 to the target lane; which changes the road allows is the caller's business (it passes `can_left`
and `can_right` from its road or map: control has no road model).

A new target lane starts a lane-change reference path (`start_lane_change`), written in the frame of the
TARGET lane (arc length s along it, lateral offset from its centre, positive to the left). A lane change
that starts at arc length `start_s` with the vehicle at `start_offset` from the target lane centre follows

    offset(s) = start_offset * (1 - q(u)),  u = (s - start_s) / length,  q(u) = 10 u^3 - 15 u^4 + 6 u^5,

which leaves and joins the lane with zero slope and zero curvature (q' = q'' = 0 at both ends), so the
steering never jumps. Its peak slope is 1.875 * start_offset / length and its peak curvature
(10 / sqrt(3)) * start_offset / length^2. `lane_change_reference` evaluates the reference, `reference_errors`
turns it into the tracking errors the steering laws take, `finish_lane_change` forgets a completed path.
`drivestack.sim.action.MetaAction` is `Maneuver`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import torch

from drivestack.control.command import check_finite
from drivestack.control.config import ControllerConfig

MIN_LENGTH = 1e-3  # [m] shorter lane-change paths are treated as this long (a step, without dividing by 0)


class Maneuver(IntEnum):
    """A maneuver, in highway-env's DiscreteMetaAction order (`drivestack.sim.action.MetaAction`)."""

    LANE_LEFT = 0
    IDLE = 1
    LANE_RIGHT = 2
    FASTER = 3
    SLOWER = 4


def apply_maneuvers(
    maneuver: torch.Tensor,
    lane: torch.Tensor,
    target_lane: torch.Tensor,
    speed_index: torch.Tensor,
    can_left: torch.Tensor,
    can_right: torch.Tensor,
    num_speeds: int,
    *,
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply maneuvers to the vehicles' target lane and speed set-point index; impossible ones change nothing.

    Lane changes are relative to the target lane (the lane the vehicle is heading for), one at a time: a
    change is refused while the vehicle is still heading for a lane on the other side of its current one
    in the same direction (target_lane > lane forbids a second LANE_LEFT; it may still turn back right).
    FASTER and SLOWER step the set-point index through [0, num_speeds - 1] and are refused at either end.
    IDLE changes nothing and is never invalid. All tensors share one shape (any, e.g. (B,)).

    Args:
        maneuver: long, `Maneuver` values 0..4.
        lane: long, the lane the vehicle is in now (0 = rightmost; larger to the left).
        target_lane: long, the lane it is heading for.
        speed_index: long, index of its speed set-point in the caller's table of speeds.
        can_left: bool, the road has a lane left of target_lane and allows changing into it here
            (computed by the caller from its road or map).
        can_right: bool, the same for the lane right of target_lane.
        num_speeds: number of speed set-points (>= 1).
        validate: check the maneuver values and num_speeds (raises ValueError).
    Returns:
        new_target_lane (long), new_speed_index (long) and invalid (bool: the maneuver was impossible and
        was ignored), shaped like the inputs.
    """
    if validate:
        if num_speeds < 1:
            raise ValueError(f"num_speeds={num_speeds!r}; allowed: >= 1 speed set-point")
        if maneuver.numel() and bool(((maneuver < 0) | (maneuver > len(Maneuver) - 1)).any()):
            raise ValueError(
                f"maneuver out of range: got {int(maneuver.min())}..{int(maneuver.max())}, allowed 0..4 "
                "(LANE_LEFT, IDLE, LANE_RIGHT, FASTER, SLOWER)"
            )
    left = maneuver == Maneuver.LANE_LEFT
    right = maneuver == Maneuver.LANE_RIGHT
    can_left = can_left & (target_lane <= lane)  # no second change to the left while one is under way
    can_right = can_right & (target_lane >= lane)
    new_target = torch.where(
        left & can_left, target_lane + 1, torch.where(right & can_right, target_lane - 1, target_lane)
    )
    faster = maneuver == Maneuver.FASTER
    slower = maneuver == Maneuver.SLOWER
    new_index = (speed_index + faster.long() - slower.long()).clamp(0, num_speeds - 1)
    invalid = (left & ~can_left) | (right & ~can_right) | ((faster | slower) & (new_index == speed_index))
    return new_target, new_index, invalid


@dataclass
class LaneChangePath:
    """Lane-change reference paths of a batch of vehicles; tensors of one shape (any, e.g. (B, N)).

    The controller state of the lateral maneuver: pass it in and take the new one out of
    `start_lane_change` / `finish_lane_change`. start_offset == 0 means plain lane keeping.
    """

    start_s: torch.Tensor  # [m] arc length along the target lane where the lane change started
    start_offset: torch.Tensor  # [m] offset from the target lane centre there (0: keeping the lane)
    length: torch.Tensor  # [m] length of the path along the lane (> 0)


def quintic(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The minimum-jerk blend q(u) = 10 u^3 - 15 u^4 + 6 u^5 on u clamped to [0, 1].

    Args:
        u: [-] progress, any shape; values outside [0, 1] hold the end values.
    Returns:
        q [-] in [0, 1], dq/du and d2q/du2 (both 0 outside [0, 1]), shaped like u.
    """
    u = u.clamp(0.0, 1.0)
    w = 1.0 - u
    q = u * u * u * (10.0 - 15.0 * u + 6.0 * u * u)
    dq = 30.0 * u * u * w * w
    d2q = 60.0 * u * w * (w - u)
    return q, dq, d2q


def lane_change_length(speed: torch.Tensor, duration: float, min_length: float) -> torch.Tensor:
    """Length [m] of a lane-change path driven in about `duration` [s] at `speed` [m/s]: at least `min_length` [m]."""
    return (speed * duration).clamp_min(min_length)


def lane_change_offset(
    s: torch.Tensor,
    start_s: torch.Tensor | float,
    length: torch.Tensor | float,
    start_offset: torch.Tensor | float,
    *,
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lateral offset of the lane-change reference from the target lane centre, and its derivatives along s.

    On a ring road pass the travelled distance already wrapped (`s = wrap(s - start_s)`, `start_s = 0`): the
    function only uses the difference s - start_s. Before the start (s < start_s) the reference sits at
    start_offset; after the end (s >= start_s + length) at the target lane centre.

    Args:
        s: [m] arc length along the target lane where the reference is wanted, any shape.
        start_s: [m] arc length where the lane change starts.
        length: [m] length of the lane change along the lane (> 0; below MIN_LENGTH treated as MIN_LENGTH).
        start_offset: [m] offset from the target lane centre at the start (positive: the vehicle started
            left of the target lane, i.e. it changes to the right).
        validate: check that every input is finite.
    Returns:
        offset [m], slope d offset / ds [-] and second derivative d2 offset / ds2 [1/m], shaped like the
        broadcast inputs. For a path at small slope the second derivative is the curvature it adds to the lane.
    """
    if validate:
        check_finite(s=s, start_s=start_s, length=length, start_offset=start_offset)
    length = torch.as_tensor(length, dtype=s.dtype, device=s.device).clamp_min(MIN_LENGTH)
    q, dq, d2q = quintic((s - start_s) / length)
    offset = start_offset * (1.0 - q)
    slope = -start_offset * dq / length
    second = -start_offset * d2q / (length * length)
    return offset, slope, second


def start_lane_change(
    path: LaneChangePath,
    changed: torch.Tensor,
    s: torch.Tensor,
    offset: torch.Tensor,
    speed: torch.Tensor,
    config: ControllerConfig,
) -> LaneChangePath:
    """Start a lane-change path for the vehicles whose target lane changed; the others keep theirs.

    The path starts where the vehicle is, so the reference never jumps.

    Args:
        path: current paths.
        changed: bool, the target lane changed.
        s: [m] the vehicle's arc length (along the new target lane).
        offset: [m] the vehicle's offset from the NEW target lane centre (positive: left of it).
        speed: [m/s] the vehicle's speed (sets the length, `lane_change_length`).
        config: `lane_change_duration` [s] and `min_lane_change_length` [m].
    Returns:
        the new paths, shaped like the broadcast inputs.
    """
    length = lane_change_length(speed, config.lane_change_duration, config.min_lane_change_length)
    return LaneChangePath(
        start_s=torch.where(changed, s, path.start_s),
        start_offset=torch.where(changed, offset, path.start_offset),
        length=torch.where(changed, length, path.length),
    )


def finish_lane_change(path: LaneChangePath, travelled: torch.Tensor) -> LaneChangePath:
    """Forget completed paths (start_offset -> 0), e.g. so that a ring road does not replay them a lap later.

    Args:
        path: current paths.
        travelled: [m] arc length driven since the path's start (s - start_s, wrapped on a ring road).
    """
    done = travelled >= path.length
    return LaneChangePath(path.start_s, torch.where(done, 0.0, path.start_offset), path.length)


def lane_change_reference(
    path: LaneChangePath,
    travelled: torch.Tensor,
    centre: torch.Tensor | float = 0.0,
    *,
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference path at `travelled` metres past the paths' starts: offset, slope and second derivative.

    Args:
        path: lane-change paths (start_offset 0: the lane centre).
        travelled: [m] arc length past start_s where the reference is wanted (s - start_s, wrapped on a
            ring road; before the start the reference holds start_offset).
        centre: [m] the target lane centre's offset from the caller's reference line at that arc length
            (0: offsets measured from the target lane centre).
        validate: check that every input is finite.
    Returns:
        offset [m] from the caller's reference line, slope d offset / ds [-] and d2 offset / ds2 [1/m]
        (added to the lane curvature), shaped like the broadcast inputs.
    """
    if validate:
        check_finite(travelled=travelled, centre=centre)
    offset, slope, second = lane_change_offset(
        travelled, torch.zeros_like(travelled), path.length, path.start_offset, validate=validate
    )
    return centre + offset, slope, second


def reference_errors(
    offset: torch.Tensor,
    heading: torch.Tensor,
    reference_offset: torch.Tensor,
    reference_slope: torch.Tensor,
    reference_second: torch.Tensor,
    lane_heading: torch.Tensor,
    lane_curvature: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tracking errors of the vehicles with respect to their reference paths (the steering laws' inputs).

    Args:
        offset: [m] the vehicle's lateral offset, in the frame of `reference_offset` (positive: left).
        heading: [rad] the vehicle's heading, in the branch of `lane_heading` (not wrapped here).
        reference_offset, reference_slope, reference_second: the reference at the vehicle's arc length
            (`lane_change_reference`).
        lane_heading: [rad] the target lane's heading there.
        lane_curvature: [1/m] the target lane's curvature there (positive turning left).
    Returns:
        lateral_error [m] (positive: left of the reference), heading_error [rad] (positive: pointing left
        of it) and the reference curvature [1/m], shaped like the broadcast inputs.
    """
    return (
        offset - reference_offset,
        heading - lane_heading - torch.atan(reference_slope),
        lane_curvature + reference_second,
    )
