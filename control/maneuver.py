"""Lane-change reference paths: a quintic blend from the vehicle's offset to the target lane centre.

The reference is written in the frame of the TARGET lane (arc length s along it, lateral offset from its
centre, positive to the left). A lane change that starts at arc length `start_s` with the vehicle at
`start_offset` from the target lane centre follows

    offset(s) = start_offset * (1 - q(u)),  u = (s - start_s) / length,  q(u) = 10 u^3 - 15 u^4 + 6 u^5,

which leaves and joins the lane with zero slope and zero curvature (q' = q'' = 0 at both ends), so the
steering never jumps. Its peak slope is 1.875 * start_offset / length and its peak curvature
(10 / sqrt(3)) * start_offset / length^2. The meta-actions themselves (`MetaAction`) live in `sim.action`.
"""

from __future__ import annotations

import torch

from drivestack.control.command import check_finite

MIN_LENGTH = 1e-3  # [m] shorter lane-change paths are treated as this long (a step, without dividing by 0)


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
