"""Observations: `kinematics` (ego + K nearest vehicles) and a BEV `occupancy` grid.

Both use the ego's road frame: x along the road at the ego (forward), y across it (left), the
nuScenes ego-frame convention. The meanings follow highway-env's Kinematics and OccupancyGrid so its
users feel at home:

kinematics, shape (K, F), rows = the ego then the K-1 nearest vehicles by distance (absent rows 0):
  presence  1 if the row holds a vehicle
  x, y      ego row: 0 and the ego's lateral position on the road (offset from the rightmost through
            lane's centre: negative on the merge on-ramp); other rows: position relative to the ego [m]
  vx, vy    ego row: its velocity in the road frame; other rows: velocity relative to the ego [m/s]
  cos_h, sin_h  heading relative to the road
normalised by x_range, y_range and v_range and clipped to [-1, 1].

occupancy, shape (4, H, W): channels presence, vx, vy (relative, normalised by v_range), on_road,
over cells centred on the ego (rows along x, columns along y).

With `lane_features` the kinematics rows are flattened and followed by the lane-feature block of
`sim.lane_features` (the ego's set-point; gaps, relative speeds and time-to-collision ahead and behind, and
the lane's end, for the lanes right of, at and left of the ego's target lane): shape (K * F + LANE_BLOCK,).

`encode_kinematics` (and `encode_lane_features`) are the one encoders: the simulator's ground truth feeds them
here and the planning scene model (ground truth or tracked) feeds them the same way. With `noise.enabled` the
other vehicles are perturbed first (`sim.observation_noise`), from (seed, episode, policy step) keys.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from drivestack.sim.collision import relative_positions
from drivestack.sim.config import ObservationConfig, ObservationType
from drivestack.sim.lane_features import LANE_BLOCK, ego_lane_context, encode_lane_features
from drivestack.sim.observation_noise import perturb_agents
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import WorldState

OCCUPANCY_CHANNELS = ("presence", "vx", "vy", "on_road")


def observation_space(config: ObservationConfig) -> spaces.Box:
    """Gymnasium space of one environment's observation."""
    if config.type == ObservationType.KINEMATICS and config.lane_features:
        shape: tuple[int, ...] = (config.vehicles_count * len(config.features) + LANE_BLOCK,)
    elif config.type == ObservationType.KINEMATICS:
        shape = (config.vehicles_count, len(config.features))
    else:
        shape = (len(OCCUPANCY_CHANNELS), *config.grid_shape)
    return spaces.Box(low=-1.0, high=1.0, shape=shape, dtype=np.float32)


def encode_kinematics(
    ego_y: torch.Tensor,
    ego_vx: torch.Tensor,
    ego_vy: torch.Tensor,
    ego_heading: torch.Tensor,
    rel_x: torch.Tensor,
    rel_y: torch.Tensor,
    rel_vx: torch.Tensor,
    rel_vy: torch.Tensor,
    heading: torch.Tensor,
    present: torch.Tensor,
    config: ObservationConfig,
) -> torch.Tensor:
    """Encode an ego and M candidate vehicles into the kinematics observation (B, K, F).

    Args:
        ego_y: [m] (B,) ego lateral position on the road; ego_vx, ego_vy: [m/s] (B,) road-frame
            velocity; ego_heading: [rad] (B,) relative to the road.
        rel_x, rel_y: [m] (B, M) positions relative to the ego in its road frame.
        rel_vx, rel_vy: [m/s] (B, M) velocities relative to the ego; heading: [rad] (B, M).
        present: (B, M) bool, candidates that exist; only those within x_range are observed.
    """
    B, M = rel_x.shape
    K = config.vehicles_count
    dist = torch.hypot(rel_x, rel_y)
    visible = present & (rel_x.abs() <= config.x_range)
    dist = torch.where(visible, dist, torch.inf)
    k = min(K - 1, M)
    nearest_dist, nearest = torch.topk(dist, k, dim=1, largest=False)  # (B, k), sorted by distance
    seen = torch.isfinite(nearest_dist).float()

    def rows(ego: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        picked = torch.where(seen > 0, others.gather(1, nearest), 0.0) if k > 0 else others[:, :0]  # no NaN leaks
        out = torch.cat([ego[:, None], picked], dim=1)
        return torch.nn.functional.pad(out, (0, K - 1 - k))

    columns = {
        "presence": lambda: rows(torch.ones_like(ego_y), torch.ones_like(rel_x)),
        "x": lambda: rows(torch.zeros_like(ego_y), rel_x) / config.x_range,
        "y": lambda: rows(ego_y, rel_y) / config.y_range,
        "vx": lambda: rows(ego_vx, rel_vx) / config.v_range,
        "vy": lambda: rows(ego_vy, rel_vy) / config.v_range,
        "cos_h": lambda: rows(torch.cos(ego_heading), torch.cos(heading)),
        "sin_h": lambda: rows(torch.sin(ego_heading), torch.sin(heading)),
    }
    obs = torch.stack([columns[f]() for f in config.features], dim=-1)
    return obs.clamp(-1.0, 1.0)


def _road_frame_velocity(state: WorldState) -> tuple[torch.Tensor, torch.Tensor]:
    veh = state.vehicles
    return veh.speed * torch.cos(veh.psi), veh.speed * torch.sin(veh.psi)


NoiseKey = tuple[int, torch.Tensor, torch.Tensor]  # (seed, episode ids (B,), policy steps (B,)) of the noise draws


def kinematics(
    state: WorldState, road: RoadNetwork, config: ObservationConfig, noise_key: NoiseKey | None = None
) -> torch.Tensor:
    """Kinematics observation of the simulator's ground truth: (B, K, F), or flat (B, K * F + LANE_BLOCK) with
    lane features. With `config.noise.enabled` and a `noise_key`, the other vehicles are perturbed first."""
    veh = state.vehicles
    dx, dy = relative_positions(veh, road)
    vx, vy = _road_frame_velocity(state)
    x, y, ax, ay, present = dx[:, 1:], dy[:, 1:], vx[:, 1:], vy[:, 1:], veh.active[:, 1:]
    if config.noise.enabled and noise_key is not None:
        x, y, ax, ay, present = perturb_agents(x, y, ax, ay, present, config.noise, *noise_key)
    obs = encode_kinematics(
        ego_y=veh.d[:, 0],
        ego_vx=vx[:, 0],
        ego_vy=vy[:, 0],
        ego_heading=veh.psi[:, 0],
        rel_x=x,
        rel_y=y,
        rel_vx=ax - vx[:, :1],
        rel_vy=ay - vy[:, :1],
        heading=veh.psi[:, 1:],
        present=present,
        config=config,
    )
    if not config.lane_features:
        return obs
    lanes = encode_lane_features(ego_lane_context(state, road), x, y, ax, veh.length[:, 1:], present, config)
    return torch.cat([obs.flatten(1), lanes], dim=1)


def occupancy(state: WorldState, road: RoadNetwork, config: ObservationConfig) -> torch.Tensor:
    """Occupancy grid (B, 4, H, W) around the ego: each vehicle marks the cell holding its centre."""
    veh = state.vehicles
    B, N = veh.shape
    H, W = config.grid_shape
    step_x, step_y = config.grid_step
    dx, dy = relative_positions(veh, road)
    vx, vy = _road_frame_velocity(state)
    row = torch.floor(dx / step_x + 0.5 * H).long()
    col = torch.floor(dy / step_y + 0.5 * W).long()
    inside = (row >= 0) & (row < H) & (col >= 0) & (col < W) & veh.active
    inside[:, 0] = False  # the ego is the grid's centre, not an obstacle
    cell = torch.where(inside, row * W + col, H * W)  # the extra cell H*W collects the rest
    grid = torch.zeros((B, 3, H * W + 1), device=dx.device)
    values = torch.stack(
        [torch.ones_like(dx), (vx - vx[:, :1]) / config.v_range, (vy - vy[:, :1]) / config.v_range], dim=1
    )  # (B, 3, N)
    grid.scatter_(2, cell[:, None, :].expand(B, 3, N), values)
    # On-road channel from the cell centres' road coordinates.
    xc = (torch.arange(H, device=dx.device) + 0.5 - 0.5 * H) * step_x
    yc = (torch.arange(W, device=dx.device) + 0.5 - 0.5 * W) * step_y
    s = veh.s[:, :1, None] + xc[None, :, None]  # (B, H, 1)
    d = veh.d[:, :1, None] + yc[None, None, :]  # (B, 1, W)
    _, on_road = road.nearest_lane(s.expand(B, H, W), d.expand(B, H, W))
    obs = torch.cat([grid[:, :, : H * W].view(B, 3, H, W), on_road.float()[:, None]], dim=1)
    return obs.clamp(-1.0, 1.0)


def observe(
    state: WorldState, road: RoadNetwork, config: ObservationConfig, noise_key: NoiseKey | None = None
) -> torch.Tensor:
    """The configured observation of every environment, batched (B, ...); `noise_key` (seed, episode ids,
    policy steps) keys the perception-shaped noise when `config.noise.enabled` (kinematics only)."""
    if config.type == ObservationType.KINEMATICS:
        return kinematics(state, road, config, noise_key)
    return occupancy(state, road, config)
