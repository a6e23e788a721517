"""A small spinning lidar (nuScenes' HDL-32E on LIDAR_TOP) cast against the same vehicle bodies as the cameras.

Beams are evenly spread in elevation from -30 to +10 degrees and fire at `num_azimuths` evenly spaced
azimuths over a full turn, all at one instant (no motion skew). Rays hit the flat ground or the
vehicles' two-box bodies (sim.raycast), whichever is nearer. Azimuth sectors of 8 columns are tested
only against the vehicles whose footprint spans them. Intensity is a simple reflectance model on the
0-255 scale nuScenes uses: dark asphalt, bright retro-reflective lane markings, painted bodies by the
cosine of the incidence angle, dark glass.
"""

from __future__ import annotations

import math

import torch

from drivestack.common.geometry import bottom_corners, quaternion_to_matrix, wrap_angle
from drivestack.sim.camera import NUSCENES_CAMERAS
from drivestack.sim.config import is_truck
from drivestack.sim.raycast import (
    VehicleAppearance,
    body_parts,
    cast_pairs,
    group_extent,
    nearest_pair,
    vehicle_boxes,
)
from drivestack.sim.render import road_layer
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import WorldState

ELEVATION_RANGE = (-30.0, 10.0)  # [deg] lowest and highest beam (HDL-32E: -30.67 .. +10.67)
SECTOR = 8  # azimuth columns per ray group
# Intensity [0-255] by surface.
ASPHALT_INTENSITY, MARKING_INTENSITY, SHOULDER_INTENSITY, GRASS_INTENSITY = 6.0, 90.0, 10.0, 3.0
PAINT_INTENSITY, GLASS_INTENSITY = 60.0, 4.0


def _sensor() -> tuple[torch.Tensor, torch.Tensor]:
    record = NUSCENES_CAMERAS["LIDAR_TOP"]
    rot = quaternion_to_matrix(torch.tensor(record["rotation"], dtype=torch.float64)).float()
    return rot, torch.tensor(record["translation"], dtype=torch.float32)


@torch.no_grad()
def lidar_scan(
    road: RoadNetwork,
    state: WorldState,
    appearance: VehicleAppearance,
    num_beams: int = 32,
    num_azimuths: int = 1024,
    max_range: float = 100.0,
    max_vehicles: int = 32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One full lidar turn in every environment from the LIDAR_TOP mounting.

    Args:
        road, state: the world (B environments, N vehicle slots; the ego, row 0, is not hit).
        appearance: the vehicles' heights (vehicle_appearance).
        num_beams: beams, evenly spaced in elevation from -30 to +10 degrees.
        num_azimuths: firings per turn, evenly spaced in azimuth (sensor frame, from +x towards +y).
        max_range: [m] returns farther than this are dropped.
        max_vehicles: nearest vehicles within range that the beams are tested against.

    Returns:
        points (B, P, 4): x, y, z [m] in the LIDAR_TOP sensor frame and intensity [0-255]; zeros where
            nothing was hit. P = num_beams * num_azimuths, ordered beam-major: point p is beam (ring)
            p // num_azimuths at azimuth column p % num_azimuths.
        hit (B, P) bool: the ray returned within max_range.
        instance (B, P) long: vehicle slot hit, -1 for the ground or no return.
    """
    if num_beams < 1 or num_azimuths < 1 or max_range <= 0.0 or max_vehicles < 1:
        raise ValueError(
            f"lidar_scan: need num_beams, num_azimuths, max_vehicles >= 1 and max_range > 0 m, got "
            f"{num_beams}, {num_azimuths}, {max_vehicles}, {max_range}"
        )
    if max_range > 250.0:
        raise ValueError(f"lidar_scan: max_range={max_range} m; allowed up to 250 m (the road tables' reach)")
    veh = state.vehicles
    B, N = veh.s.shape
    dev = veh.s.device
    rot, origin = (t.to(dev) for t in _sensor())

    # Rays in sector order: (G, R) with R = beams x SECTOR columns; padded columns are marked invalid.
    G = -(-num_azimuths // SECTOR)
    el = torch.deg2rad(torch.linspace(*ELEVATION_RANGE, num_beams, device=dev))
    col = torch.arange(G * SECTOR, device=dev)
    az = col.float() * (2.0 * math.pi / num_azimuths)
    d_sensor = torch.stack(
        [
            torch.cos(el)[:, None] * torch.cos(az),
            torch.cos(el)[:, None] * torch.sin(az),
            torch.sin(el)[:, None].expand(-1, az.shape[0]),
        ],
        dim=-1,
    )  # (beams, cols, 3)
    d_sensor = d_sensor.view(num_beams, G, SECTOR, 3).transpose(0, 1).reshape(G, -1, 3)  # (G, R, 3)
    valid = (col < num_azimuths).view(G, SECTOR).unsqueeze(1).expand(-1, num_beams, -1).reshape(G, -1)
    dirs = d_sensor @ rot.T  # (G, R, 3) ego frame
    R = dirs.shape[1]

    # Vehicles: the nearest within range, each tested against the sectors its footprint spans.
    _, _, boxes = vehicle_boxes(road, state, appearance)
    corners = bottom_corners(boxes)[..., :2] - origin[:2]  # (B, N, 4, 2) footprint corners from the sensor
    centre = boxes[..., :2] - origin[:2]
    radius = 0.5 * torch.hypot(boxes[..., 3], boxes[..., 4])
    ok = veh.active & torch.isfinite(boxes).all(dim=-1) & (centre.norm(dim=-1) - radius <= max_range)
    ok[:, 0] = False  # the ego
    dist = torch.where(ok, centre.norm(dim=-1), torch.full_like(radius, math.inf))
    k = min(max_vehicles, N)
    near, idx = dist.topk(k, dim=-1, largest=False)  # (B, k)
    az_v = torch.atan2(centre[..., 1], centre[..., 0])  # (B, N)
    spread = wrap_angle(torch.atan2(corners[..., 1], corners[..., 0]) - az_v.unsqueeze(-1)).abs().amax(-1)
    inside = centre.norm(dim=-1) <= radius  # the sensor within a body's circle: every sector
    az_g, half_g = group_extent(dirs.unsqueeze(0), valid)  # (1, G)
    az_k, spread_k = az_v.gather(1, idx), spread.gather(1, idx)
    overlap = (
        (wrap_angle(az_k.unsqueeze(-1) - az_g).abs() <= spread_k.unsqueeze(-1) + half_g + 1e-3)
        | inside.gather(1, idx).unsqueeze(-1)
    ) & torch.isfinite(near).unsqueeze(-1)  # (B, k, G)
    pb, pk, pg = overlap.nonzero(as_tuple=True)
    pn = idx[pb, pk]
    truck = is_truck(boxes[..., 4])
    part_c, part_h = body_parts(boxes, truck)
    yaw = boxes[..., 6]
    hits = cast_pairs(
        origin.view(1, 3),
        dirs.unsqueeze(0),
        torch.zeros_like(pg),
        pg,
        part_c[pb, pn],
        part_h[pb, pn],
        torch.cos(yaw)[pb, pn],
        torch.sin(yaw)[pb, pn],
        max_range,
    )
    r = torch.arange(R, device=dev)
    win = nearest_pair((pb * G + pg).unsqueeze(1) * R + r, hits.t, B * G * R).view(B, G, R)

    # Ground returns where no vehicle is hit first.
    t_ground = torch.where(
        dirs[..., 2] < -1e-6, -origin[2] / dirs[..., 2].clamp_max(-1e-6), torch.full_like(dirs[..., 2], math.inf)
    )  # (G, R)
    on_ground = (t_ground <= max_range) & valid
    t = torch.where(on_ground, t_ground, torch.full_like(t_ground, math.inf)).expand(B, -1, -1).clone()
    intensity = torch.zeros((B, G, R), device=dev)
    gi = on_ground.view(-1).nonzero().squeeze(1)
    p = origin + t_ground.view(-1)[gi, None] * dirs.view(-1, 3)[gi]  # (Qg, 3) ego frame, shared by all envs
    ego_x, ego_y, ego_yaw = _ego_pose(road, state)
    c, s = torch.cos(ego_yaw), torch.sin(ego_yaw)
    gx, gy = ego_x + c * p[:, 0] - s * p[:, 1], ego_y + s * p[:, 0] + c * p[:, 1]  # (B, Qg)
    s_ego = veh.s[:, 0:1]
    rx, ry, heading, _ = road.reference(s_ego)
    s_guess = s_ego + (gx - rx) * torch.cos(heading) + (gy - ry) * torch.sin(heading)
    surface = road_layer(road, gx, gy, s_guess, 0.05, marking_width=0.15, iterations=2)
    ground_i = torch.where(
        surface.marking,
        MARKING_INTENSITY,
        torch.where(
            surface.on_road, ASPHALT_INTENSITY, torch.where(surface.outside <= 2.5, SHOULDER_INTENSITY, GRASS_INTENSITY)
        ),
    )
    incidence = (-dirs.view(-1, 3)[gi, 2]).clamp_min(0.0)  # cos of the angle to the ground normal
    intensity.view(B, -1)[:, gi] = ground_i * (0.3 + 0.7 * incidence)

    # Vehicle returns.
    instance = torch.full((B, G, R), -1, dtype=torch.long, device=dev)
    hit_rays = (win.view(-1) >= 0).nonzero().squeeze(1)
    elem = win.view(-1)[hit_rays]
    pair = elem // R
    b, n = pb[pair], pn[pair]
    t.view(-1)[hit_rays] = hits.t.view(-1)[elem]
    instance.view(-1)[hit_rays] = n
    face, part = hits.face.view(-1)[elem], hits.part.view(-1)[elem]
    axis = face // 2
    n_local = torch.nn.functional.one_hot(axis, 3).float() * ((face % 2) * 2.0 - 1.0).unsqueeze(-1)
    cy, sy = torch.cos(yaw[b, n]), torch.sin(yaw[b, n])
    normal = torch.stack(
        [cy * n_local[:, 0] - sy * n_local[:, 1], sy * n_local[:, 0] + cy * n_local[:, 1], n_local[:, 2]], dim=-1
    )
    cos_inc = -(normal * dirs.view(-1, 3)[hit_rays % (G * R)]).sum(-1)
    glass = (part == 1) & (axis < 2) & ~truck[b, n]  # car cabin front and rear windows
    intensity.view(-1)[hit_rays] = torch.where(glass, GLASS_INTENSITY, PAINT_INTENSITY) * cos_inc.clamp(0.05, 1.0)

    hit = torch.isfinite(t)
    xyz = torch.where(hit.unsqueeze(-1), t.unsqueeze(-1) * d_sensor, torch.zeros(3, device=dev))  # sensor frame
    points = torch.cat([xyz, torch.where(hit, intensity, torch.zeros_like(intensity)).unsqueeze(-1)], dim=-1)

    def beam_major(x: torch.Tensor) -> torch.Tensor:  # (B, G, R, ...) -> (B, beams * azimuths, ...)
        x = x.reshape(B, G, num_beams, SECTOR, *x.shape[3:]).transpose(1, 2)
        return x.reshape(B, num_beams, G * SECTOR, *x.shape[4:])[:, :, :num_azimuths].reshape(B, -1, *x.shape[4:])

    return beam_major(points), beam_major(hit), beam_major(instance)


def _ego_pose(road: RoadNetwork, state: WorldState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    veh = state.vehicles
    x, y, yaw = road.to_global(veh.s[:, 0:1], veh.d[:, 0:1], veh.psi[:, 0:1])
    return x, y, yaw
