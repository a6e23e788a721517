"""Scenario generators: initial states of B environments (highway and merge), all batched."""

from __future__ import annotations

import torch

from drivestack.sim.config import EGO_CLEARANCE, TRUCK_MIN_LENGTH, EnvConfig, Scenario, is_truck
from drivestack.sim.randomness import EpisodeDraws, GeneratorDraws
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import VehicleState, WorldState

MERGE_EGO_START = 20.0  # [m] the merge ego starts this far along the on-ramp

__all__ = ["EGO_CLEARANCE", "MERGE_EGO_START", "TRUCK_MIN_LENGTH", "initial_state", "is_truck"]


def _uniform(lo: float, hi: float, shape: tuple[int, ...], draws: EpisodeDraws | GeneratorDraws) -> torch.Tensor:
    return lo + (hi - lo) * draws.rand(shape)


def initial_state(
    config: EnvConfig,
    road: RoadNetwork,
    num_envs: int,
    generator: torch.Generator | EpisodeDraws,
) -> WorldState:
    """Sample the initial state of `num_envs` environments.

    Traffic is spread over the through lanes in balanced numbers, evenly spaced around the ring with
    jitter (never closer than the longest possible body plus the IDM jam gap), at its desired speed. The
    ego starts in a random through lane (highway) or on the on-ramp (merge), with a clear gap ahead and
    behind. With `traffic.truck_fraction > 0` each traffic vehicle is a truck with that probability (truck
    sizes and desired speeds); with 0 no extra random numbers are drawn, so states stay as without trucks.

    `generator`: a `torch.Generator` (environment b's numbers follow those of environments 0..b-1), or
    `sim.randomness.EpisodeDraws` of `num_envs` episode ids: each environment's state is then a function of
    (seed, its episode id) only, whatever the batch (what `BatchedDrivingEnv` uses).
    """
    dev = road.device
    B, N = num_envs, config.traffic.num_vehicles
    L = road.length
    veh_cfg, traffic = config.vehicle, config.traffic
    g = generator if isinstance(generator, EpisodeDraws) else GeneratorDraws(generator, dev)

    length = _uniform(*veh_cfg.length_range, (B, N), g)
    width = _uniform(*veh_cfg.width_range, (B, N), g)
    length[:, 0] = 0.5 * sum(veh_cfg.length_range)
    width[:, 0] = 0.5 * sum(veh_cfg.width_range)

    first_through = road.num_lanes - road.num_through_lanes
    nl = road.num_through_lanes
    if road.scenario == Scenario.MERGE:
        ego_lane = torch.zeros(B, dtype=torch.long, device=dev)  # the on-ramp
        ego_s = torch.full((B,), config.road.ramp_start + MERGE_EGO_START, device=dev)
    else:
        ego_lane = first_through + g.randint(nl, (B,))
        ego_s = _uniform(0.0, L, (B,), g)
    ego_speed = _uniform(*config.ego_speed_range, (B,), g)

    # Traffic: a random permutation dealt round-robin over the through lanes -> balanced lane counts.
    M = N - 1
    perm = torch.argsort(g.rand((B, M)), dim=1, stable=True)  # stable: ties ordered the same everywhere
    lane_slot = perm % nl  # (B, M) through-lane number 0..nl-1
    rank = perm // nl  # position of the vehicle within its lane
    count = torch.tensor([(M - k + nl - 1) // nl for k in range(nl)], device=dev, dtype=torch.float32)
    n_in_lane = count[lane_slot].clamp_min(1.0)
    lane = first_through + lane_slot
    ego_here = lane == ego_lane[:, None]
    arc = torch.where(ego_here, L - 2.0 * EGO_CLEARANCE, L)  # free arc of the lane
    start = torch.where(
        ego_here,
        ego_s[:, None] + EGO_CLEARANCE,
        ego_s[:, None] + _uniform(0.0, L, (B, nl), g).gather(1, lane_slot),
    )
    slot = arc / n_in_lane
    min_spacing = config.max_body_length + traffic.idm_min_gap
    jitter = (0.5 * (1.0 - min_spacing / slot)).clamp(0.0, 0.3)
    s = start + (rank + 0.5 + jitter * (2.0 * g.rand((B, M)) - 1.0)) * slot
    desired = _uniform(*traffic.desired_speed_range, (B, M), g)
    if traffic.truck_fraction > 0.0:  # drawn after everything else: the car-only draws above stay as they were
        truck = g.rand((B, M)) < traffic.truck_fraction
        truck_length = _uniform(*veh_cfg.truck_length_range, (B, M), g)
        truck_width = _uniform(*veh_cfg.truck_width_range, (B, M), g)
        truck_desired = _uniform(*traffic.truck_desired_speed_range, (B, M), g)
        length[:, 1:] = torch.where(truck, truck_length, length[:, 1:])
        width[:, 1:] = torch.where(truck, truck_width, width[:, 1:])
        desired = torch.where(truck, truck_desired, desired)

    s_all = road.wrap(torch.cat([ego_s[:, None], s], dim=1))
    lane_all = torch.cat([ego_lane[:, None], lane], dim=1)
    offset, heading, _, _ = road.lane_frame(lane_all, s_all)
    speeds = torch.tensor(config.action.target_speeds, device=dev)
    ego_speed_index = (speeds[None, :] - ego_speed[:, None]).abs().argmin(dim=1)
    speed = torch.cat([ego_speed[:, None], desired], dim=1)
    desired_all = torch.cat([speeds[ego_speed_index][:, None], desired], dim=1)
    zeros = torch.zeros((B, N), device=dev)
    vehicles = VehicleState(
        s=s_all,
        d=offset,
        psi=heading,
        speed=speed,
        steer=zeros,
        accel=zeros.clone(),
        length=length,
        width=width,
        lane=lane_all,
        target_lane=lane_all.clone(),
        desired_speed=desired_all,
        lc_start_s=s_all.clone(),
        lc_offset=zeros.clone(),
        lc_length=torch.ones_like(zeros),
        speed_integral=zeros.clone(),
        active=torch.ones((B, N), dtype=torch.bool, device=dev),
    )
    zb = torch.zeros(B, device=dev)
    zl = torch.zeros(B, dtype=torch.long, device=dev)
    return WorldState(
        vehicles=vehicles,
        time=zb,
        policy_steps=zl,
        sim_steps=zl.clone(),
        ego_speed_index=ego_speed_index,
        crashed=zb.bool(),
        off_road=zb.bool(),
        distance=zb.clone(),
        jerk_sum=zb.clone(),
        lane_changes=zl.clone(),
    )
