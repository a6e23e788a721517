"""Lateral control: steer a vehicle onto a reference path (a lane centre or a lane-change path).

Four steering laws, batched over any tensor shape (inputs broadcast together), chosen by
`config.LateralController`:

- cascade (`lane_keeping_steer`, highway-env's structure written batched): lateral error -> bounded
  lateral-speed command -> heading command -> yaw-rate command (with the curvature feed-forward) -> steering
  angle through the kinematic bicycle. The bound on lateral speed makes a lane change to a stepped target a
  smooth, finite-duration manoeuvre;
- pure pursuit (`pure_pursuit_steer`): the arc from the rear axle through a look-ahead point;
- Stanley (`stanley_steer`): heading error plus a front-axle cross-track term, curvature feed-forward;
- LQR (`lqr_steer` with an `LQRTable`): speed-scheduled discrete LQR on the kinematic error dynamics.

Sign conventions (road coordinates): lateral error > 0 when the vehicle is left of the reference, heading
error > 0 when it points left of it, curvature > 0 turning left, steer > 0 to the left. Every law returns a
steering angle [rad] not yet limited; `limit_steer` applies the angle and rate limits.

Errors are those of the simulator's vehicle position, the centre of gravity at mid-wheelbase. On a curve a
kinematic bicycle holds that point's heading at -atan(L kappa / 2) (its slip angle), so Stanley and LQR
feed back the heading error at the rear axle instead (`rear_axle_heading_error`), which is 0 there; the
cascade keeps highway-env's law and with it a steady offset on curves (0.28 m on R = 150 m at 30 m/s).
"""

from __future__ import annotations

import math

import torch

from drivestack.control.command import check_finite
from drivestack.control.config import LaneKeepingGains, LQRWeights, PurePursuitGains, StanleyGains

MIN_SPEED = 1.0  # [m/s] speeds below this are treated as this in divisions (no blow-up at standstill)
MIN_TARGET_DISTANCE_SQ = 1e-4  # [m^2] pure pursuit: floor of the squared distance to the target point
DEFAULT_CASCADE = LaneKeepingGains()


def lane_keeping_steer(
    lateral_error: torch.Tensor,
    heading_error: torch.Tensor,
    curvature: torch.Tensor,
    speed: torch.Tensor,
    wheelbase: torch.Tensor | float,
    gains: LaneKeepingGains = DEFAULT_CASCADE,
    *,
    validate: bool = True,
) -> torch.Tensor:
    """Steering angle of the cascade controller that brings a vehicle onto a reference path.

    Args:
        lateral_error: [m] vehicle (centre of gravity) offset from the reference, positive when left of it.
        heading_error: [rad] vehicle heading minus reference heading (counter-clockwise positive).
        curvature: [1/m] reference curvature at the vehicle (positive turning left).
        speed: [m/s] vehicle speed.
        wheelbase: [m].
        gains: controller gains.
        validate: check that every input is finite (raises ValueError naming the first that is not).
    Returns:
        steer [rad], positive to the left; not yet limited. Shaped like the broadcast inputs.
    """
    if validate:
        check_finite(
            lateral_error=lateral_error,
            heading_error=heading_error,
            curvature=curvature,
            speed=speed,
            wheelbase=wheelbase,
        )
    v = speed.clamp_min(MIN_SPEED)
    lateral_speed_cmd = (-gains.lateral * lateral_error).clamp(-gains.max_lateral_speed, gains.max_lateral_speed)
    sin_max = math.sin(gains.max_heading)
    heading_cmd = torch.asin((lateral_speed_cmd / v).clamp(-sin_max, sin_max))
    yaw_rate_cmd = gains.heading * (heading_cmd - heading_error) + speed * curvature
    return torch.atan(wheelbase * yaw_rate_cmd / v)


def lookahead_distance(speed: torch.Tensor, gains: PurePursuitGains, *, validate: bool = True) -> torch.Tensor:
    """Pure-pursuit look-ahead distance [m]: lookahead_time * speed clamped to [min_lookahead, max_lookahead].

    Args:
        speed: [m/s] vehicle speed, any shape.
        gains: look-ahead schedule.
        validate: check that the speed is finite.
    """
    if validate:
        check_finite(speed=speed)
    return (gains.lookahead_time * speed).clamp(gains.min_lookahead, gains.max_lookahead)


def pure_pursuit_steer(
    target_x: torch.Tensor, target_y: torch.Tensor, wheelbase: torch.Tensor | float, *, validate: bool = True
) -> torch.Tensor:
    """Pure-pursuit steering: the arc from the rear axle, tangent to the heading, through the target point.

    The arc's curvature is 2 y / (x^2 + y^2); a kinematic bicycle drives it with steer = atan(L * curvature).

    Args:
        target_x: [m] look-ahead point, forward coordinate in the rear-axle frame.
        target_y: [m] look-ahead point, left coordinate in the rear-axle frame (> 0: steer left).
        wheelbase: [m].
        validate: check that every input is finite.
    Returns:
        steer [rad], positive to the left; not yet limited.
    """
    if validate:
        check_finite(target_x=target_x, target_y=target_y, wheelbase=wheelbase)
    distance_sq = (target_x * target_x + target_y * target_y).clamp_min(MIN_TARGET_DISTANCE_SQ)  # [m^2]
    return torch.atan(2.0 * wheelbase * target_y / distance_sq)


def rear_axle_heading_error(
    heading_error: torch.Tensor, curvature: torch.Tensor, rear_to_point: torch.Tensor | float
) -> torch.Tensor:
    """Heading error [rad] with respect to the reference tangent at the rear axle's foot point.

    A kinematic bicycle tracking a curve of curvature kappa keeps its rear axle velocity along the heading,
    so a point `rear_to_point` [m] ahead of the rear axle (the centre of gravity, at mid-wheelbase in
    `sim.dynamics`) sits on the curve with heading error -atan(rear_to_point * kappa), its slip angle. Feeding
    that back would leave a lateral offset on every curve; measured at the rear axle the error is 0 there.
    """
    return heading_error + torch.atan(rear_to_point * curvature)


def stanley_steer(
    front_axle_error: torch.Tensor,
    heading_error: torch.Tensor,
    curvature: torch.Tensor,
    speed: torch.Tensor,
    wheelbase: torch.Tensor | float,
    gains: StanleyGains,
    *,
    rear_to_point: torch.Tensor | float | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """Stanley steering (Hoffmann et al. 2007) with curvature feed-forward:

        steer = -heading_gain * e_psi - atan(gain * front_axle_error / (softening + v)) + atan(L kappa),

    e_psi the heading error at the rear axle (`rear_axle_heading_error`), which is 0 on a tracked curve, so
    the feed-forward alone holds the curve and the front axle tracks it without offset.

    Args:
        front_axle_error: [m] offset of the front-axle centre from the reference, positive when left of it.
        heading_error: [rad] vehicle heading minus reference heading at the point `rear_to_point` ahead of
            the rear axle (positive: pointing left of the reference).
        curvature: [1/m] reference curvature (positive turning left).
        speed: [m/s] vehicle speed (negative values are treated as 0).
        wheelbase: [m].
        gains: Stanley gains.
        rear_to_point: [m] where heading_error's reference tangent is taken, ahead of the rear axle
            (None: wheelbase / 2, the centre of gravity of `sim.dynamics`; 0 for rear-axle errors).
        validate: check that every input is finite.
    Returns:
        steer [rad], positive to the left; not yet limited.
    """
    if validate:
        check_finite(
            front_axle_error=front_axle_error,
            heading_error=heading_error,
            curvature=curvature,
            speed=speed,
            wheelbase=wheelbase,
            rear_to_point=0.0 if rear_to_point is None else rear_to_point,
        )
    rear_to_point = 0.5 * wheelbase if rear_to_point is None else rear_to_point
    heading = rear_axle_heading_error(heading_error, curvature, rear_to_point)
    cross_track = torch.atan(gains.gain * front_axle_error / (gains.softening + speed.clamp_min(0.0)))
    return -gains.heading_gain * heading - cross_track + torch.atan(wheelbase * curvature)


class LQRTable:
    """Gains of the speed-scheduled discrete LQR lateral controller, computed once per (weights, dt).

    Model (kinematic, linearised, exact zero-order-hold discretisation over dt), at speed v:
    state x = [e_y, e_psi], input u = kappa_cmd - kappa_ref [1/m],

        x+ = A x + B u,  A = [[1, v dt], [0, 1]],  B = [[v^2 dt^2 / 2], [v dt]].

    Cost sum(x' Q x + R u^2) with Q = diag(lateral, heading), R = input * v^4 (the weight is on the lateral
    acceleration v^2 u; see `LQRWeights`). The discrete algebraic Riccati equation is solved by doubling
    in float64 for every speed of the grid at once. Using curvature as the input keeps the gains
    independent of the wheelbase: the steering angle is atan(L kappa_cmd).

    Attributes:
        speeds: [V] [m/s] grid speeds min_speed, min_speed + speed_step, ... <= max_speed.
        gains_table: [V, 2] K(v) in ([1/m^2], [1/m/rad]): u = -K(v) @ x.
    """

    def __init__(
        self,
        weights: LQRWeights,
        dt: float,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        *,
        max_iterations: int = 100,
        tolerance: float = 1e-13,
    ) -> None:
        weights.validate("lqr")
        if not (math.isfinite(dt) and dt > 0.0):
            raise ValueError(f"LQRTable: dt={dt!r}; allowed: > 0 s")
        self.weights = weights
        self.dt = dt
        num_speeds = int(math.floor((weights.max_speed - weights.min_speed) / weights.speed_step + 1e-9)) + 1
        speeds = weights.min_speed + weights.speed_step * torch.arange(num_speeds, dtype=torch.float64)  # [V]
        gains = _solve_lqr(speeds, weights, dt, max_iterations, tolerance)  # [V, 2] float64
        self.speeds = speeds.to(device=device, dtype=dtype)
        self.gains_table = gains.to(device=device, dtype=dtype)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> LQRTable:
        """A copy of the table on another device and/or dtype (the gains are not recomputed)."""
        table = object.__new__(LQRTable)
        table.weights, table.dt = self.weights, self.dt
        table.speeds = self.speeds.to(device=device, dtype=dtype)
        table.gains_table = self.gains_table.to(device=device, dtype=dtype)
        return table

    @property
    def device(self) -> torch.device:
        return self.gains_table.device

    def gains(self, speed: torch.Tensor) -> torch.Tensor:
        """K(v) [..., 2] for speeds [...] [m/s], linear between grid speeds, clamped to the grid's ends."""
        num_speeds = self.speeds.shape[0]
        table = self.gains_table.to(speed.dtype)
        if num_speeds == 1:
            return table[0].expand(*speed.shape, 2)
        position = ((speed - self.weights.min_speed) / self.weights.speed_step).clamp(0.0, num_speeds - 1)
        low = position.floor().long().clamp_max(num_speeds - 2)  # [...] index of the grid speed below
        frac = (position - low.to(position.dtype)).unsqueeze(-1)  # [..., 1]
        flat = (2 * low).unsqueeze(-1) + torch.arange(2, device=low.device)  # [..., 2] into the flat table
        return torch.lerp(torch.take(table, flat), torch.take(table, flat + 2), frac)  # take: faster than table[low]

    def __repr__(self) -> str:
        return (
            f"LQRTable({self.weights}, dt={self.dt}, speeds={self.speeds.shape[0]}, "
            f"device={self.device}, dtype={self.gains_table.dtype})"
        )


def _solve_lqr(
    speeds: torch.Tensor,
    weights: LQRWeights,
    dt: float,
    max_iterations: int,
    tolerance: float,
) -> torch.Tensor:
    """Infinite-horizon discrete LQR gains [V, 2] for the lateral-error model at each speed [V] (float64)."""
    v = speeds
    V = v.shape[0]
    A = torch.zeros(V, 2, 2, dtype=torch.float64)
    A[:, 0, 0] = 1.0
    A[:, 1, 1] = 1.0
    A[:, 0, 1] = v * dt
    B = torch.stack([0.5 * v * v * dt * dt, v * dt], dim=-1).unsqueeze(-1)  # [V, 2, 1]
    Q = torch.diag(torch.tensor([weights.lateral, weights.heading], dtype=torch.float64))  # [2, 2]
    R = (weights.input * v**4).view(V, 1, 1)  # [V, 1, 1] weight on kappa = input weight on v^2 kappa
    # Structure-preserving doubling (Chu et al. 2004): H_k -> P quadratically, each step doubling the horizon
    # of the Riccati recursion; a few tens of batched 2x2 steps instead of hundreds of plain iterations.
    eye = torch.eye(2, dtype=torch.float64).expand(V, 2, 2)
    Ak, Gk, Hk = A, B @ B.transpose(1, 2) / R, Q.expand(V, 2, 2).clone()
    for _ in range(max_iterations):
        W = eye + Gk @ Hk
        WA, WG = torch.linalg.solve(W, Ak), torch.linalg.solve(W, Gk)
        H_next = Hk + Ak.transpose(1, 2) @ Hk @ WA
        Gk = Gk + Ak @ WG @ Ak.transpose(1, 2)
        Ak = Ak @ WA
        change = ((H_next - Hk).abs().amax(dim=(1, 2)) / H_next.abs().amax(dim=(1, 2))).max()
        Hk = 0.5 * (H_next + H_next.transpose(1, 2))  # keep it symmetric against round-off
        if change.item() < tolerance:
            break
    else:
        raise RuntimeError(
            f"LQR Riccati iteration did not converge in {max_iterations} doubling steps "
            f"(relative change {change.item():.2e}); check the LQR weights"
        )
    P, Bt = Hk, B.transpose(1, 2)
    K = torch.linalg.solve(R + Bt @ P @ B, Bt @ P @ A)  # [V, 1, 2]
    return K.squeeze(1)


def lqr_steer(
    lateral_error: torch.Tensor,
    heading_error: torch.Tensor,
    curvature: torch.Tensor,
    speed: torch.Tensor,
    wheelbase: torch.Tensor | float,
    table: LQRTable,
    *,
    rear_to_point: torch.Tensor | float | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """Steering of the speed-scheduled LQR: steer = atan(L * (kappa_ref - K(v) @ [e_y, e_psi])).

    e_psi is the heading error at the rear axle (`rear_axle_heading_error`): the model's e_y' = v e_psi
    holds for a point moving along the heading, and on a tracked curve that error is 0.

    Args:
        lateral_error: [m] offset from the reference of the point `rear_to_point` ahead of the rear axle,
            positive when left of it.
        heading_error: [rad] vehicle heading minus reference heading at that point.
        curvature: [1/m] reference curvature, the feed-forward kappa_ref (positive turning left).
        speed: [m/s] vehicle speed (selects the gains).
        wheelbase: [m].
        table: gains built for the control period dt, on the inputs' device.
        rear_to_point: [m] where the errors are measured, ahead of the rear axle (None: wheelbase / 2, the
            centre of gravity of `sim.dynamics`; 0 for rear-axle errors).
        validate: check that every input is finite.
    Returns:
        steer [rad], positive to the left; not yet limited.
    """
    if validate:
        check_finite(
            lateral_error=lateral_error,
            heading_error=heading_error,
            curvature=curvature,
            speed=speed,
            wheelbase=wheelbase,
            rear_to_point=0.0 if rear_to_point is None else rear_to_point,
        )
    rear_to_point = 0.5 * wheelbase if rear_to_point is None else rear_to_point
    heading = rear_axle_heading_error(heading_error, curvature, rear_to_point)
    K = table.gains(speed)  # [..., 2]
    feedback = K[..., 0] * lateral_error + K[..., 1] * heading  # [1/m]
    return torch.atan(wheelbase * (curvature - feedback))


def limit_steer(
    steer_cmd: torch.Tensor,
    prev_steer: torch.Tensor,
    max_steer: torch.Tensor | float,
    max_rate: torch.Tensor | float,
    dt: float,
    *,
    validate: bool = True,
) -> torch.Tensor:
    """Steering angle after the angle limit and then the rate limit (the order `sim.dynamics` uses).

    Args:
        steer_cmd: [rad] commanded steering angle.
        prev_steer: [rad] steering angle of the previous step.
        max_steer: [rad] angle limit (> 0).
        max_rate: [rad/s] rate limit (> 0).
        dt: [s] step.
        validate: check that every input is finite.
    Returns:
        steer [rad] with |steer - prev_steer| <= max_rate * dt and, whenever |prev_steer| <= max_steer,
        |steer| <= max_steer (a steering angle beyond the limit returns to it at the maximum rate).
    """
    if validate:
        check_finite(steer_cmd=steer_cmd, prev_steer=prev_steer, max_steer=max_steer, max_rate=max_rate, dt=dt)
    max_delta = torch.as_tensor(max_rate * dt, dtype=steer_cmd.dtype, device=steer_cmd.device)  # [rad]
    limit = torch.as_tensor(max_steer, dtype=steer_cmd.dtype, device=steer_cmd.device)
    target = torch.minimum(torch.maximum(steer_cmd, -limit), limit)
    return prev_steer + torch.minimum(torch.maximum(target - prev_steer, -max_delta), max_delta)
