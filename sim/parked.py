"""Parked vehicles on the roadsides of a nuScenes-format export (`drivestack data make --parked-per-km`), opt-in.

Highway traffic shows the cameras vehicles from behind and, in the side cameras, from behind at an angle. City
streets, and the real nuScenes scenes, are full of vehicles seen from the side and the front: cars parked along
kerbs, nose-in in bays, at angles in lots. Parked vehicles stand on the paved shoulder (and the verge beyond it)
of both roadsides, in cells of CELL metres along the road (at most one per cell, so they never overlap), facing
either way along the road, across it or at an angle. They are rendered, scanned by the lidar and annotated like
traffic (speed 0: `vehicle.stopped`), but the traffic never sees them: they are appended to the state the sensors
capture, never to the one the simulation steps.
"""

from __future__ import annotations

import math
from dataclasses import fields

import torch

from drivestack.sim.camera_shading import lerp
from drivestack.sim.config import EnvConfig
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import VehicleState, WorldState

CELL = 14.0  # [m] one parked vehicle at most per cell of this length along each roadside (a 12 m truck fits)
KERB_GAP = (0.2, 0.9)  # [m] gap between the outer edge line and the vehicle's near side
# Orientation of a parked car relative to the road: (share, kind); trucks always park along the road.
PARALLEL, REVERSED, PERPENDICULAR, ANGLED = range(4)
ORIENTATION_SHARE = (0.35, 0.25, 0.25, 0.15)
ANGLE_RANGE = (math.radians(25.0), math.radians(65.0))  # [rad] angled parking, off the road's direction
MAX_PER_KM = 1000.0 / CELL  # every cell filled


def parked_vehicles(
    config: EnvConfig, road: RoadNetwork, num_scenes: int, per_km: float, generator: torch.Generator
) -> VehicleState:
    """Parked vehicles of `num_scenes` scenes: `per_km` [1/km] per roadside on average, (B, 2 x cells) slots.

    Every cell of both roadsides gets a slot; a slot is active (a parked vehicle) with probability
    per_km x CELL / 1000. Sizes follow the traffic's (cars and, with `traffic.truck_fraction`, trucks). One draw of
    (B, slots, 10) uniforms from `generator`.
    """
    if not 0.0 < per_km <= MAX_PER_KM:
        raise ValueError(f"parked_per_km={per_km}; allowed: 0 < value <= {MAX_PER_KM:.1f} (one per {CELL:g} m cell)")
    dev = road.device
    cells = int(road.length // CELL)
    B, P = num_scenes, 2 * cells
    u = torch.rand((B, P, 10), generator=generator, device=generator.device).to(dev)
    side = torch.where(torch.arange(P, device=dev) < cells, -1.0, 1.0).expand(B, P)  # right, left
    veh_cfg = config.vehicle
    truck = u[..., 0] < config.traffic.truck_fraction
    length = torch.where(truck, lerp(veh_cfg.truck_length_range, u[..., 1]), lerp(veh_cfg.length_range, u[..., 1]))
    width = torch.where(truck, lerp(veh_cfg.truck_width_range, u[..., 2]), lerp(veh_cfg.width_range, u[..., 2]))

    cum = torch.cumsum(torch.tensor(ORIENTATION_SHARE, device=dev), 0)
    kind = (u[..., 3:4] >= cum / cum[-1]).sum(-1).clamp_max(len(ORIENTATION_SHARE) - 1)
    kind = torch.where(truck, PARALLEL, kind)
    sign = torch.where(u[..., 4] < 0.5, -1.0, 1.0)
    psi = torch.zeros_like(length)
    psi = torch.where(kind == REVERSED, math.pi, psi)
    psi = torch.where(kind == PERPENDICULAR, sign * 0.5 * math.pi, psi)
    angled = sign * lerp(ANGLE_RANGE, u[..., 5]) + torch.where(u[..., 6] < 0.5, 0.0, math.pi)  # nose in or out
    psi = torch.where(kind == ANGLED, angled, psi)  # relative to the road's reference line
    along = (length * torch.cos(psi)).abs() + (width * torch.sin(psi)).abs()  # [m] extent along the road
    across = (length * torch.sin(psi)).abs() + (width * torch.cos(psi)).abs()  # [m] and across it

    cell = torch.arange(P, device=dev) % cells
    s = (cell + 0.5) * CELL + (u[..., 8] - 0.5) * (CELL - along).clamp_min(0.0)  # within [0, length)
    left, right = road.edges(s)
    gap = lerp(KERB_GAP, u[..., 7])
    d = torch.where(side > 0, left, right) + side * (gap + 0.5 * across)
    active = u[..., 9] < per_km * CELL / 1000.0
    zeros = torch.zeros((B, P), device=dev)
    lane = torch.zeros((B, P), dtype=torch.long, device=dev)
    return VehicleState(
        s=s,
        d=d,
        psi=psi,
        speed=zeros,
        steer=zeros.clone(),
        accel=zeros.clone(),
        length=length,
        width=width,
        lane=lane,
        target_lane=lane.clone(),
        desired_speed=zeros.clone(),
        lc_start_s=s.clone(),
        lc_offset=zeros.clone(),
        lc_length=torch.ones_like(zeros),
        speed_integral=zeros.clone(),
        active=active,
    )


def with_parked(state: WorldState, parked: VehicleState | None) -> WorldState:
    """The state the sensors capture: the traffic's vehicles, then the parked ones (None: the state itself)."""
    if parked is None:
        return state
    veh = state.vehicles
    joined = type(veh)(**{f.name: torch.cat([getattr(veh, f.name), getattr(parked, f.name)], 1) for f in fields(veh)})
    return state.replace(vehicles=joined)
