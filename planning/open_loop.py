"""Lane-free shadow planners for log replay: the ego's 3 s trajectory from its own state and the perceived agents.

Real logs have no lane graph here, so the planner works on the ego's current path instead of lanes:

- **path**: the arc the ego is on, curvature = yaw rate / speed (clipped). When a drivable-area test is given
  (the map mask, `drivable`), the planner keeps the candidate curvature nearest to that one whose arc stays on
  the drivable area for the distance it needs; when none does, the end of the drivable prefix is a stopped
  obstacle (the ego brakes before the road ends instead of leaving it).
- **speed**: IDM (Treiber et al. 2000; the simulator's `sim.traffic.idm_acceleration`) along that arc against the
  nearest agent in the ego's corridor (an agent whose footprint comes within half the ego's width plus a margin
  of the arc, ahead of the ego's front), that agent moving along the arc at its own velocity's component along
  the path (an agent whose velocity is unknown moves with the ego). The desired speed is the ego's current speed
  (the log gives no speed limit), so on a free road the plan keeps its speed and never accelerates above it.

Beside it, `constant_velocity`: the ego-status baseline, a straight line at the ego's current velocity.

Everything is batched over B samples (numpy, float64; the IDM step in torch): agents come padded to (B, N) with a
`present` mask; the only Python loop is over the IDM integration steps. Frames: the ego frame at planning time
(x forward, y left, origin at the ego pose, which nuScenes puts at the rear axle). Waypoints: NUM_WAYPOINTS
positions, WAYPOINT_DT apart, of the ego pose (not of the box centre), shaped (B, 6, 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from drivestack.sim.config import TrafficConfig
from drivestack.sim.traffic import idm_acceleration

NUM_WAYPOINTS = 6  # 3 s at 2 Hz: the nuScenes open-loop planning horizon
WAYPOINT_DT = 0.5  # [s] between waypoints
EGO_LENGTH = 4.084  # [m] the ego box of the open-loop metrics (ST-P3, UniAD, VAD)
EGO_WIDTH = 1.85  # [m]
EGO_BOX_OFFSET = 0.5  # [m] the box centre lies this far ahead of the ego pose (rear axle), as UniAD / VAD place it

# points (B, M, 2) in the ego frame [m] -> (B, M) bool: on the drivable area
DrivableFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class EgoStatus:
    """The ego's state at planning time, from the logged poses; arrays shaped (B,)."""

    speed: np.ndarray  # [m/s] along its heading (negative: reversing)
    yaw_rate: np.ndarray  # [rad/s]
    velocity: np.ndarray  # (B, 2) [m/s] ego frame (vx forward, vy left)


@dataclass
class Agents:
    """Perceived agents around B egos, padded to N; ego frame at planning time."""

    xy: np.ndarray  # (B, N, 2) [m] centres
    yaw: np.ndarray  # (B, N) [rad]
    size: np.ndarray  # (B, N, 2) [m] (w, l)
    velocity: np.ndarray  # (B, N, 2) [m/s] over the ground, ego-frame axes (0 where unknown)
    present: np.ndarray  # (B, N) bool; False for padding
    velocity_known: np.ndarray | None = None
    """(B, N) bool: the velocity is an estimate (False: a track seen for the first time, whose velocity is the
    tracker's prior, zero; the planner then takes it to move with the ego). None: all known."""

    @classmethod
    def empty(cls, num_samples: int) -> Agents:
        return cls(
            np.zeros((num_samples, 0, 2)),
            np.zeros((num_samples, 0)),
            np.zeros((num_samples, 0, 2)),
            np.zeros((num_samples, 0, 2)),
            np.zeros((num_samples, 0), dtype=bool),
        )


@dataclass(frozen=True)
class ShadowPlannerConfig:
    """The lane-free IDM shadow planner (see the module docstring)."""

    max_accel: float = 1.5
    """[m/s^2] IDM maximum acceleration a."""
    comfort_decel: float = 2.0
    """[m/s^2] IDM comfortable deceleration b."""
    max_brake: float = 8.0
    """[m/s^2] hardest braking the plan may use."""
    time_headway: float = 1.5
    """[s] IDM desired time gap T."""
    min_gap: float = 2.0
    """[m] IDM standstill gap s0 (bumper to bumper)."""
    delta: float = 4.0
    """IDM acceleration exponent."""
    corridor_margin: float = 0.5
    """[m] an agent is in the corridor when its footprint comes within half the ego's width plus this of the arc."""
    lookahead: float = 80.0
    """[m] agents farther along the arc are ignored."""
    max_curvature: float = 0.2
    """[1/m] largest path curvature (a 5 m radius)."""
    min_turn_speed: float = 1.0
    """[m/s] curvature = yaw rate / max(speed, this): a near-standstill yaw rate does not make a tight circle."""
    curvature_offsets: tuple[float, ...] = (
        *(0.0, 0.001, -0.001, 0.002, -0.002, 0.004, -0.004, 0.007, -0.007),
        *(0.01, -0.01, 0.02, -0.02, 0.04, -0.04, 0.08, -0.08),
    )
    """[1/m] candidate curvature changes tried, in order of preference, to stay on the drivable area."""
    drivable_step: float = 1.0
    """[m] spacing of the points checked against the drivable area along each candidate arc."""
    sim_dt: float = 0.1
    """[s] IDM integration step (must divide WAYPOINT_DT)."""
    predict_agents: bool = False
    """Also brake for agents whose constant-velocity prediction enters the corridor within 3 s where the ego would
    meet them (cut-ins, merges, crossings). Off by default: on the real scene-0523 it brakes for crossing traffic
    the driver did not yield to (L2 avg 0.83 -> 2.05 m, 3 s collisions 0 -> 11.8 %); see docs/replay.md."""

    def validate(self) -> ShadowPlannerConfig:
        for name in ("max_accel", "comfort_decel", "max_brake", "time_headway", "delta", "lookahead"):
            if not getattr(self, name) > 0:
                raise ValueError(f"planner.{name} must be > 0, got {getattr(self, name)}")
        for name in ("min_gap", "corridor_margin", "max_curvature", "min_turn_speed"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"planner.{name} must be >= 0, got {getattr(self, name)}")
        if not self.drivable_step > 0:
            raise ValueError(f"planner.drivable_step must be > 0 [m], got {self.drivable_step}")
        steps = WAYPOINT_DT / self.sim_dt if self.sim_dt > 0 else 0.0
        if not (self.sim_dt > 0 and abs(steps - round(steps)) < 1e-9):
            raise ValueError(f"planner.sim_dt must be > 0 and divide {WAYPOINT_DT} s, got {self.sim_dt}")
        if not self.curvature_offsets or self.curvature_offsets[0] != 0.0:
            raise ValueError("planner.curvature_offsets must start with 0.0 (the ego's own curvature comes first)")
        return self


# ------------------------------------------------------------------------------------------------ geometry


def arc_points(curvature: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Points (..., 2) [m] at arc length `s` along arcs from the origin heading +x with `curvature` [1/m]
    (broadcast together); exact for every curvature, straight lines included."""
    a = curvature * s  # heading change [rad]
    x = s * np.sinc(a / np.pi)  # sin(a) / a, finite at a = 0
    y = s * 0.5 * a * np.sinc(a / (2 * np.pi)) ** 2  # (1 - cos a) / a = (a / 2) (sin(a/2) / (a/2))^2
    return np.stack([x, y], axis=-1)


def arc_coordinates(curvature: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arc length s [m], signed lateral offset d [m] (left positive) and path heading [rad] at the projection of
    points `xy` (..., 2) onto arcs from the origin heading +x with `curvature` (broadcast with xy[..., 0])."""
    x, y = xy[..., 0], xy[..., 1]
    k = curvature
    heading = np.arctan2(k * x, 1.0 - k * y)  # angle travelled to the projection
    safe = np.where(np.abs(k) > 1e-9, k, 1.0)
    s = np.where(np.abs(k) > 1e-9, heading / safe, x)
    r = np.hypot(k * x, 1.0 - k * y)
    d = (2.0 * y - k * (x * x + y * y)) / (1.0 + r)  # (1 - r) / k, stable as k -> 0
    return s, d, heading


# ------------------------------------------------------------------------------------------------ planners


def constant_velocity(ego: EgoStatus, num_waypoints: int = NUM_WAYPOINTS, dt: float = WAYPOINT_DT) -> np.ndarray:
    """The ego-status baseline: waypoints (B, num_waypoints, 2) [m] of a straight line at the current velocity."""
    t = dt * np.arange(1, num_waypoints + 1)  # (T,)
    return ego.velocity[:, None, :] * t[None, :, None]


def _choose_curvature(
    kappa0: np.ndarray, distance: np.ndarray, drivable: DrivableFn | None, cfg: ShadowPlannerConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The curvature (B,) to follow and the drivable distance along it (B,) [m] (inf: unbounded)."""
    B = len(kappa0)
    if drivable is None or B == 0:
        return kappa0, np.full(B, np.inf)
    offsets = np.asarray(cfg.curvature_offsets)
    kappa = np.clip(kappa0[:, None] + offsets[None, :], -cfg.max_curvature, cfg.max_curvature)  # (B, C)
    M = max(1, int(np.ceil(distance.max() / cfg.drivable_step)))
    s = cfg.drivable_step * np.arange(0, M + 1)  # (M+1,) from the ego's own position
    centre = arc_points(kappa[:, :, None], s[None, None, :])  # (B, C, M+1, 2) ego reference points
    heading = kappa[:, :, None] * s[None, None, :]
    centre = centre + EGO_BOX_OFFSET * np.stack([np.cos(heading), np.sin(heading)], axis=-1)  # box centres
    on = drivable(centre.reshape(B, -1, 2)).reshape(B, len(offsets), M + 1)
    off_first = np.where(~on, np.arange(M + 1)[None, None, :], M + 1).min(axis=2)  # (B, C) first point off
    free = np.where(off_first > M, np.inf, cfg.drivable_step * (off_first - 1).clip(min=0))  # (B, C) [m]
    reach = np.minimum(free, distance[:, None])  # only the distance the ego needs matters
    best = np.argmax(reach >= reach.max(axis=1, keepdims=True) - 1e-9, axis=1)  # first (preferred) of the longest
    unbounded = ~on[:, 0, 0]  # the ego already stands off the mask: the mask cannot bound this plan
    chosen = np.where(unbounded, kappa[:, 0], kappa[np.arange(B), best])
    bound = np.where(unbounded, np.inf, free[np.arange(B), best])
    return chosen, bound


def _leader(
    agents: Agents, kappa: np.ndarray, cfg: ShadowPlannerConfig, speed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gap (B,) [m] from the ego's front bumper to the rear of the nearest agent in its corridor (inf: none)
    and that agent's speed along the path (B,) [m/s].

    An agent is in the corridor now, or (`cfg.predict_agents`) at a waypoint time t in its constant-velocity
    prediction when the ego, keeping its speed, would be there by t (a cut-in, a merge, a crossing). A predicted
    entry counts as a leader that is now at (its arc position at t) - (its speed along the path) x t. An agent
    whose velocity is unknown (a just-born track's zero velocity is the tracker's prior, not a measurement) is
    taken to move with the ego and only counts where it stands now: a car first seen 60 m ahead on a highway is
    not taken to stand still, which would brake the plan for nothing."""
    B, N = agents.xy.shape[:2]
    if N == 0:
        return np.full(B, np.inf), np.zeros(B)
    known = np.ones((B, N), dtype=bool) if agents.velocity_known is None else agents.velocity_known
    T = NUM_WAYPOINTS + 1 if cfg.predict_agents else 1
    t = WAYPOINT_DT * np.arange(T)  # (T,) [s] now and each waypoint time
    xy = agents.xy[:, :, None, :] + agents.velocity[:, :, None, :] * t[None, None, :, None]  # (B, N, T, 2)
    s, d, heading = arc_coordinates(kappa[:, None, None], xy)  # (B, N, T)
    rel = agents.yaw[..., None] - heading  # agent heading relative to the path tangent
    w, ln = agents.size[..., 0, None], agents.size[..., 1, None]
    half_long = 0.5 * (ln * np.abs(np.cos(rel)) + w * np.abs(np.sin(rel)))
    half_lat = 0.5 * (w * np.abs(np.cos(rel)) + ln * np.abs(np.sin(rel)))
    front = EGO_BOX_OFFSET + 0.5 * EGO_LENGTH  # [m] ego front bumper ahead of the reference point
    v_along = agents.velocity[..., 0, None] * np.cos(heading) + agents.velocity[..., 1, None] * np.sin(heading)
    v_along = np.where(known[..., None], v_along, speed[:, None, None])
    gap = s - v_along * t - half_long - front  # (B, N, T) the leader's gap now, were it on the path all along
    reach = speed[:, None, None] * t + cfg.min_gap  # [m] how far the ego's front gets by t, keeping its speed
    in_corridor = (
        agents.present[..., None]
        & (np.abs(d) < 0.5 * EGO_WIDTH + half_lat + cfg.corridor_margin)
        & (s + half_long > front)  # reaches past the ego's front
        & (s < cfg.lookahead)
        & (np.abs(heading) < 0.5 * np.pi)  # on the ego's side of the circle
        & ((t == 0) | (known[..., None] & (s - half_long - front < reach)))  # predicted entries the ego would meet
    )
    gap = np.where(in_corridor, gap, np.inf).min(axis=2)  # (B, N)
    first = np.argmax(in_corridor, axis=2)  # the agent's speed along the path where it first enters
    v_lead = np.take_along_axis(v_along, first[..., None], axis=2)[..., 0]  # (B, N)
    nearest = np.argmin(gap, axis=1)
    rows = np.arange(B)
    return gap[rows, nearest], np.where(np.isfinite(gap[rows, nearest]), v_lead[rows, nearest], 0.0)


def idm_accel(
    v: np.ndarray, v0: np.ndarray, gap: np.ndarray, v_lead: np.ndarray, cfg: ShadowPlannerConfig
) -> np.ndarray:
    """IDM acceleration [m/s^2] (the simulator's `sim.traffic.idm_acceleration`, clipped to [-max_brake,
    max_accel]) of followers at speed `v` with desired speed `v0` behind a leader `gap` [m] ahead (inf: free road)
    moving at `v_lead`; all (B,)."""
    p = TrafficConfig(
        idm_accel=cfg.max_accel,
        idm_decel=cfg.comfort_decel,
        idm_min_gap=cfg.min_gap,
        idm_time_headway=cfg.time_headway,
        idm_delta=cfg.delta,
    )
    t = [torch.from_numpy(np.asarray(x, dtype=np.float64)) for x in (v, v0, gap, np.asarray(v) - v_lead)]
    return np.clip(idm_acceleration(*t, p).numpy(), -cfg.max_brake, cfg.max_accel)


def plan_idm(
    ego: EgoStatus,
    agents: Agents,
    cfg: ShadowPlannerConfig | None = None,
    drivable: DrivableFn | None = None,
) -> np.ndarray:
    """The lane-free IDM shadow plan: waypoints (B, NUM_WAYPOINTS, 2) [m], ego frame (module docstring).

    Args:
        ego: the egos' speeds and yaw rates.
        agents: the perceived agents (ego frame, padded with `present`).
        cfg: the planner's parameters.
        drivable: ego-frame points (B, M, 2) -> (B, M) bool on the drivable area; None: no map.
    """
    cfg = (cfg or ShadowPlannerConfig()).validate()
    speed = np.maximum(ego.speed, 0.0)  # a reversing ego plans a stop
    kappa0 = np.clip(ego.yaw_rate / np.maximum(speed, cfg.min_turn_speed), -cfg.max_curvature, cfg.max_curvature)
    horizon = NUM_WAYPOINTS * WAYPOINT_DT
    need = speed * horizon + EGO_BOX_OFFSET + 0.5 * EGO_LENGTH  # [m] the plan never drives faster than now
    kappa, bound = _choose_curvature(kappa0, need, drivable, cfg)
    gap, v_lead = _leader(agents, kappa, cfg, speed)
    # the end of the drivable area is a stopped obstacle at the ego's box front
    edge_gap = bound - 0.5 * EGO_LENGTH
    use_edge = edge_gap < gap
    gap, v_lead = np.where(use_edge, edge_gap, gap), np.where(use_edge, 0.0, v_lead)

    # IDM rollout along the arc; the leader keeps its speed along the path (it never reverses)
    steps_per_wp = round(WAYPOINT_DT / cfg.sim_dt)
    v, s, lead_s = speed.copy(), np.zeros_like(speed), np.zeros_like(speed)
    v_lead = np.maximum(v_lead, 0.0)
    out = np.zeros((len(speed), NUM_WAYPOINTS))
    for k in range(NUM_WAYPOINTS * steps_per_wp):  # time steps, batched over B
        a = idm_accel(v, speed, gap + lead_s - s, v_lead, cfg)
        v_next = np.clip(v + a * cfg.sim_dt, 0.0, speed)  # never faster than the current speed, never backwards
        s = s + 0.5 * (v + v_next) * cfg.sim_dt
        v = v_next
        lead_s = lead_s + v_lead * cfg.sim_dt
        if (k + 1) % steps_per_wp == 0:
            out[:, (k + 1) // steps_per_wp - 1] = s
    return arc_points(kappa[:, None], out)
