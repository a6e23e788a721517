"""Lateral control: steer a vehicle onto a lane centre line.

The lane-keeping controller is a cascade (the structure highway-env's vehicles use, written batched):
lateral error -> bounded lateral-speed command -> heading command -> yaw-rate command (with the
lane-curvature feed-forward) -> steering angle through the kinematic bicycle. The bound on lateral
speed is what makes a lane change a smooth, finite-duration manoeuvre instead of a step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MIN_SPEED = 1.0  # [m/s] speeds below this are treated as this in divisions (no blow-up at standstill)


@dataclass(frozen=True)
class LaneKeepingGains:
    """Gains of the cascaded lane-keeping controller."""

    lateral: float = 1.0
    """[1/s] lateral-offset gain: lateral-speed command per metre of error."""
    heading: float = 4.0
    """[1/s] heading gain: yaw-rate command per radian of heading error."""
    max_lateral_speed: float = 1.4
    """[m/s] bound on the commanded lateral speed (sets the lane-change duration, ~3 s for 4 m)."""
    max_heading: float = math.radians(15.0)
    """[rad] bound on the commanded heading relative to the lane."""

    def validate(self) -> None:
        for name in ("lateral", "heading", "max_lateral_speed", "max_heading"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"invalid LaneKeepingGains.{name}={getattr(self, name)!r}; allowed: > 0")


def lane_keeping_steer(lateral_error: torch.Tensor, heading_error: torch.Tensor, curvature: torch.Tensor,
                       speed: torch.Tensor, wheelbase: torch.Tensor | float,
                       gains: LaneKeepingGains = LaneKeepingGains()) -> torch.Tensor:
    """Steering angle that brings a vehicle onto a lane centre line. All inputs broadcast together.

    Args:
        lateral_error: [m] vehicle offset from the lane centre, positive when left of it.
        heading_error: [rad] vehicle heading minus lane heading (counter-clockwise positive).
        curvature: [1/m] lane curvature at the vehicle (positive turning left).
        speed: [m/s] vehicle speed.
        wheelbase: [m].
        gains: controller gains.
    Returns:
        steer [rad], positive to the left; not yet clipped to the vehicle's limits.
    """
    v = speed.clamp_min(MIN_SPEED)
    lateral_speed_cmd = (-gains.lateral * lateral_error).clamp(-gains.max_lateral_speed, gains.max_lateral_speed)
    sin_max = math.sin(gains.max_heading)
    heading_cmd = torch.asin((lateral_speed_cmd / v).clamp(-sin_max, sin_max))
    yaw_rate_cmd = gains.heading * (heading_cmd - heading_error) + speed * curvature
    return torch.atan(wheelbase * yaw_rate_cmd / v)
