"""Vehicles as bodies that rays can hit: looks, 3D boxes, a two-box body model and a sparse ray caster.

A vehicle is drawn as two boxes: a car is a lower body of its full length and width plus a narrower,
shorter cabin on top; a truck is a tall cargo box plus a lower cab in front. Their union is exactly the
vehicle's 3D box (width, length, height), so annotations and pixels agree.

Rays come in groups that share a sensor (an image tile of one camera, an azimuth sector of the lidar).
The caster tests each group only against the vehicles listed for it as (env, sensor, group, vehicle)
pairs, so the work follows what is on screen rather than pixels x vehicles; the nearest hit per ray is
then found with scatter reductions. No Python loop runs over rays, vehicles or environments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from drivestack.common.geometry import wrap_angle
from drivestack.sim.config import is_truck
from drivestack.sim.road import MARGIN, RoadNetwork
from drivestack.sim.state import WorldState

CAR_HEIGHT_RANGE = (1.4, 1.9)  # [m] body height of cars, drawn per vehicle
TRUCK_HEIGHT_RANGE = (3.2, 4.0)  # [m] body height of trucks
# Body colours (sRGB in [0, 1]) with their shares among cars and trucks (roughly the world's car fleet).
PALETTE = (
    (0.86, 0.87, 0.88),
    (0.06, 0.06, 0.07),
    (0.36, 0.37, 0.39),
    (0.64, 0.65, 0.67),
    (0.10, 0.20, 0.45),
    (0.62, 0.07, 0.07),
    (0.46, 0.39, 0.29),
    (0.12, 0.30, 0.18),
    (0.86, 0.56, 0.10),
)
CAR_COLOR_SHARE = (0.24, 0.19, 0.16, 0.14, 0.10, 0.09, 0.04, 0.03, 0.01)
TRUCK_COLOR_SHARE = (0.45, 0.05, 0.12, 0.15, 0.08, 0.08, 0.03, 0.03, 0.01)
COLOR_JITTER = 0.12  # [-] per-vehicle brightness variation around the palette colour
CAR_BELT = 0.58  # [-] car: top of the lower body as a fraction of the height
CAR_CABIN = (0.54, 0.86, -0.06)  # car cabin: (length, width) fractions of the body, centre offset along x / length
TRUCK_CARGO = 0.75  # [-] truck: cargo box length as a fraction of the body (at the rear)
TRUCK_CAB = (0.22, 0.96, 0.8)  # truck cab: (length, width, height) fractions (at the front)
NUM_PARTS = 2
NUM_FACES = 6  # entered face: 0 -x (rear), 1 +x (front), 2 -y (right), 3 +y (left), 4 -z, 5 +z (roof)
PAIR_CHUNK = 1 << 20  # rays x parts tested at once (bounds the temporaries)
# Body profiles (ray_box): an ellipsoid scale, then the legs of eight chamfers as fractions of the half extents:
# vertical corners (x, y), front top edge (x, z), rear top edge (x, z), side top edges (y, z). A plain box:
PROFILE_BOX = (math.inf, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
NUM_PROFILE = len(PROFILE_BOX)
CHAMFER_FACE = (1, 1, 0, 0, 1, 0, 3, 2)  # the face each chamfer plane counts as (front, rear, left, right)


@dataclass(frozen=True)
class VehicleAppearance:
    """Per-vehicle looks, drawn once per episode; tensors shaped (B, N)."""

    height: torch.Tensor  # [m] body height (the 3D box height)
    color: torch.Tensor  # (B, N, 3) float in [0, 1]


def vehicle_appearance(state: WorldState, generator: torch.Generator) -> VehicleAppearance:
    """Draw every vehicle's height (cars 1.4-1.9 m, trucks 3.2-4.0 m) and body colour.

    One draw of (B, N, 3) uniforms from `generator` (on its own device), so a batch of environments gets
    the same looks as drawing them one environment after another from the same generator.
    """
    veh = state.vehicles
    dev = veh.s.device
    u = torch.rand((*veh.s.shape, 3), generator=generator, device=generator.device).to(dev)
    truck = is_truck(veh.length)
    lo = torch.where(truck, TRUCK_HEIGHT_RANGE[0], CAR_HEIGHT_RANGE[0])
    hi = torch.where(truck, TRUCK_HEIGHT_RANGE[1], CAR_HEIGHT_RANGE[1])
    height = lo + (hi - lo) * u[..., 0]
    shares = torch.tensor([CAR_COLOR_SHARE, TRUCK_COLOR_SHARE], device=dev)
    cum = torch.cumsum(shares / shares.sum(dim=1, keepdim=True), dim=1)[truck.long()]  # (B, N, K)
    pick = (u[..., 1:2] >= cum).sum(dim=-1).clamp_max(len(PALETTE) - 1)  # categorical draw
    palette = torch.tensor(PALETTE, device=dev)
    color = (palette[pick] * (1.0 + COLOR_JITTER * (2.0 * u[..., 2:3] - 1.0))).clamp(0.0, 1.0)
    return VehicleAppearance(height=height, color=color)


def vehicle_boxes(
    road: RoadNetwork, state: WorldState, appearance: VehicleAppearance, s_ego: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """3D boxes of every vehicle in the global and ego frames.

    The ego sits at road.to_global(s_ego, d_ego, psi_ego); every other vehicle at s_ego + delta_s(s_i, s_ego)
    along the road (unwrapped, so nothing jumps at the ring seam). The ego frame's origin is the centre of
    the ego's box on the ground, x forward, y left, z up. Vehicles whose unwrapped arc length falls
    outside the road's lookup tables (more than MARGIN = 300 m past the section) get NaN boxes.

    Args:
        road, state: the world (B environments, N vehicles; row 0 is the ego itself).
        appearance: the vehicles' heights.
        s_ego: optional (B,) [m] unwrapped arc length of the ego (default: its ring arc length); pass a
            continuous value to keep global poses continuous over a scene that crosses the ring seam.

    Returns:
        ego_pose (B, 4): x [m], y [m], z = 0, yaw [rad] in the global frame.
        boxes_global (B, N, 7): x, y, z, w, l, h, yaw (z = box centre = height / 2) [m, rad].
        boxes_ego (B, N, 7): the same in the ego frame.
    """
    veh = state.vehicles
    s0 = veh.s[:, 0] if s_ego is None else s_ego.to(veh.s)  # (B,)
    x0, y0, yaw0 = road.to_global(s0, veh.d[:, 0], veh.psi[:, 0])
    s = s0.unsqueeze(1) + road.delta_s(veh.s, veh.s[:, :1])  # (B, N) unwrapped, continuous around the ego
    s[:, 0] = s0
    inside = (s >= -MARGIN) & (s <= road.length + MARGIN)
    x, y, yaw = road.to_global(s, veh.d, veh.psi)
    yaw = wrap_angle(yaw)
    h = appearance.height
    nan = torch.full_like(x, math.nan)
    x, y = torch.where(inside, x, nan), torch.where(inside, y, nan)
    boxes_global = torch.stack([x, y, 0.5 * h, veh.width, veh.length, h, yaw], dim=-1)
    c, sn = torch.cos(yaw0).unsqueeze(1), torch.sin(yaw0).unsqueeze(1)
    dx, dy = x - x0.unsqueeze(1), y - y0.unsqueeze(1)
    ex, ey = c * dx + sn * dy, -sn * dx + c * dy
    boxes_ego = torch.stack([ex, ey, 0.5 * h, veh.width, veh.length, h, wrap_angle(yaw - yaw0.unsqueeze(1))], dim=-1)
    ego_pose = torch.stack([x0, y0, torch.zeros_like(x0), wrap_angle(yaw0)], dim=-1)
    return ego_pose, boxes_global, boxes_ego


def body_parts(boxes: torch.Tensor, truck: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two boxes each vehicle is drawn as: centres [..., 2, 3] and half extents [..., 2, 3] [m].

    boxes [..., 7] (x, y, z, w, l, h, yaw) in any frame with z up and the ground at z = 0; the half
    extents are in each vehicle's own frame (x along its yaw). Part 0: car lower body / truck cargo box;
    part 1: car cabin / truck cab.
    """
    w, l, h = boxes[..., 3], boxes[..., 4], boxes[..., 5]
    belt = CAR_BELT * h
    # car: body over the full length up to the belt line, cabin above it
    car = [
        (torch.zeros_like(l), 0.5 * l, 0.5 * w, 0.5 * belt, 0.5 * belt),
        (CAR_CABIN[2] * l, 0.5 * CAR_CABIN[0] * l, 0.5 * CAR_CABIN[1] * w, 0.5 * (h + belt), 0.5 * (h - belt)),
    ]
    # truck: cargo box at the rear over the full height, cab at the front
    cab_l, cab_w, cab_h = TRUCK_CAB
    trk = [
        (-0.5 * (1.0 - TRUCK_CARGO) * l, 0.5 * TRUCK_CARGO * l, 0.5 * w, 0.5 * h, 0.5 * h),
        ((0.5 - 0.5 * cab_l) * l, 0.5 * cab_l * l, 0.5 * cab_w * w, 0.5 * cab_h * h, 0.5 * cab_h * h),
    ]
    centres, halves = [], []
    c, s = torch.cos(boxes[..., 6]), torch.sin(boxes[..., 6])
    for (cx, hx, hy, cz, hz), (tx, thx, thy, tz, thz) in zip(car, trk):
        ox, hx, hy = torch.where(truck, tx, cx), torch.where(truck, thx, hx), torch.where(truck, thy, hy)
        cz, hz = torch.where(truck, tz, cz), torch.where(truck, thz, hz)
        centres.append(torch.stack([boxes[..., 0] + c * ox, boxes[..., 1] + s * ox, cz], dim=-1))
        halves.append(torch.stack([hx, hy, hz], dim=-1))
    return torch.stack(centres, dim=-2), torch.stack(halves, dim=-2)


def to_box_frame(p: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate vectors p [..., 3] by -yaw about z (into a box's frame); cos, sin [...] of the box yaw."""
    return torch.stack([cos * p[..., 0] + sin * p[..., 1], -sin * p[..., 0] + cos * p[..., 1], p[..., 2]], dim=-1)


def ray_box(
    origin: torch.Tensor,
    dirs: torch.Tensor,
    centre: torch.Tensor,
    half: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    profile: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact slab intersection of rays with upright boxes rotated by yaw about z (shapes broadcast).

    Args:
        origin, dirs: [..., 3] ray starts [m] and directions (any length; t is in units of |dirs|).
        centre, half: [..., 3] box centres [m] and half extents [m] in the box frame.
        cos, sin: [...] of the box yaw.
        profile: optional [..., NUM_PROFILE] bodies other than plain boxes, still inside them: the box cut by the
            ellipsoid of semi-axes profile[..., 0] * half (1: the inscribed ellipsoid; inf: no cut) and chamfered
            along its vertical and top edges (profile[..., 1:], see PROFILE_BOX).

    Returns:
        t [...]: ray parameter where the ray enters the box (inf where it misses or starts inside).
        face [...] long: the entered face, 0 -x, 1 +x, 2 -y, 3 +y, 4 -z, 5 +z in the box frame (through a cut: the
        face it slopes from, see CHAMFER_FACE; through the ellipsoid: the face its normal points to most).
    """
    o = to_box_frame(origin - centre, cos, sin)
    d = to_box_frame(dirs, cos, sin)
    d = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)  # a ray parallel to a slab: +-inf below
    inv = 1.0 / d
    t1, t2 = (-half - o) * inv, (half - o) * inv
    t_near, axis = torch.minimum(t1, t2).max(dim=-1)
    t_far = torch.maximum(t1, t2).amin(dim=-1)
    moving_down = (d < 0).expand_as(t1).gather(-1, axis.unsqueeze(-1)).squeeze(-1)
    face = 2 * axis + moving_down.long()  # moving towards -x enters through the +x face
    # note: each cut only where some body has it (a CPU-GPU sync point, cheaper than cutting every box)
    if profile is not None and bool((profile[..., 1:] > 0).any()):
        t_near, t_far, face = _chamfer_cut(o, d, half, profile[..., 1:], t_near, t_far, face)
    if profile is not None and bool(torch.isfinite(profile[..., 0]).any()):
        t_near, t_far, face = _ellipsoid_cut(o, d, half * profile[..., :1], t_near, t_far, face)
    hit = (t_near <= t_far) & (t_near > 0.0)
    return torch.where(hit, t_near, torch.full_like(t_near, math.inf)), face


def _chamfer_cut(
    o: torch.Tensor,
    d: torch.Tensor,
    half: torch.Tensor,
    chamfer: torch.Tensor,
    t_near: torch.Tensor,
    t_far: torch.Tensor,
    face: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ray interval inside a box narrowed by the eight chamfer planes of `chamfer` [..., 8] (box frame)."""
    hx, hy, hz = half.unbind(-1)
    runs = chamfer * torch.stack([hx, hy, hx, hz, hx, hz, hy, hz], dim=-1)  # [m] each cut's two legs
    legs = (runs > 0).view(*runs.shape[:-1], 4, 2).all(dim=-1)  # corners, front, rear, sides
    cut = legs[..., [0, 0, 0, 0, 1, 2, 3, 3]]  # [..., 8] per plane; a leg of 0: no cut
    inv = 1.0 / torch.where(runs > 0, runs, torch.ones_like(runs))
    ix, iy, fx, fz, rx, rz, sy, sz = inv.unbind(-1)
    # plane i: normal . p <= offset; legs a, b along the faces from the edge: p_a / a + p_b / b <= h_a/a + h_b/b - 1

    def dots(v: torch.Tensor) -> torch.Tensor:  # [..., 8] normal . v of the eight planes, written out (cheaper)
        vx, vy, vz = v.unbind(-1)
        x, y = vx * ix, vy * iy
        return torch.stack(
            [x + y, x - y, y - x, -x - y, vx * fx + vz * fz, vz * rz - vx * rx, vy * sy + vz * sz, vz * sz - vy * sy],
            dim=-1,
        )  # vertical corners front-left, front-right, rear-left, rear-right; front and rear top; left and right top

    corner = hx * ix + hy * iy
    offset = torch.stack(
        [corner, corner, corner, corner, hx * fx + hz * fz, hx * rx + hz * rz, hy * sy + hz * sz, hy * sy + hz * sz],
        dim=-1,
    )
    offset = torch.where(cut, offset - 1.0, torch.full_like(offset, math.inf))
    num = offset - dots(o)  # [..., 8] >= 0 inside
    den = dots(d)
    t_plane = num / torch.where(den == 0, torch.ones_like(den), den)
    t_in, which = torch.where(den < 0, t_plane, -math.inf).max(dim=-1)
    t_out = torch.where(den > 0, t_plane, math.inf).amin(dim=-1)
    t_out = torch.where(((den == 0) & (num < 0)).any(dim=-1), -math.inf, t_out)  # parallel, outside a plane
    face = torch.where(t_in > t_near, torch.tensor(CHAMFER_FACE, device=face.device)[which], face)
    return torch.maximum(t_near, t_in), torch.minimum(t_far, t_out), face


def _ellipsoid_cut(
    o: torch.Tensor, d: torch.Tensor, axes: torch.Tensor, t_near: torch.Tensor, t_far: torch.Tensor, face: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ray interval [t_near, t_far] inside a box narrowed to the ellipsoid of semi-axes `axes` [..., 3] (inf:
    no cut), in the box frame; the face becomes the ellipsoid normal's main direction where the ray enters it."""
    cut = torch.isfinite(axes).all(dim=-1)
    axes = torch.where(torch.isfinite(axes), axes, torch.ones_like(axes))
    os, ds = o / axes, d / axes  # the ellipsoid is the unit sphere here
    a = (ds * ds).sum(dim=-1)
    b = (os * ds).sum(dim=-1)
    disc = b * b - a * ((os * os).sum(dim=-1) - 1.0)
    root = disc.clamp_min(0.0).sqrt()
    e0 = torch.where(cut, torch.where(disc >= 0, (-b - root) / a, math.inf), -math.inf)
    e1 = torch.where(cut, torch.where(disc >= 0, (-b + root) / a, -math.inf), math.inf)
    normal = (os + e0.clamp(-1e6, 1e6).unsqueeze(-1) * ds) / axes  # box frame, unnormalised
    main = normal.abs().argmax(dim=-1)
    up = normal.gather(-1, main.unsqueeze(-1)).squeeze(-1) > 0
    face = torch.where(e0 > t_near, 2 * main + up.long(), face)
    return torch.maximum(t_near, e0), torch.minimum(t_far, e1), face


@dataclass(frozen=True)
class PairHits:
    """First hits of ray groups against listed vehicles: P (env, sensor, group, vehicle) pairs x R rays."""

    t: torch.Tensor  # (P, R) [m] distance to the nearest part of the pair's vehicle (inf: missed)
    part: torch.Tensor  # (P, R) long: 0 lower body / cargo, 1 cabin / cab
    face: torch.Tensor  # (P, R) long: entered face of that part (see ray_box)


def cast_pairs(
    origin: torch.Tensor,
    dirs: torch.Tensor,
    pair_sensor: torch.Tensor,
    pair_group: torch.Tensor,
    part_centre: torch.Tensor,
    part_half: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    max_t: float,
    profile: torch.Tensor | None = None,
) -> PairHits:
    """Intersect each pair's ray group with its vehicle's two boxes.

    Args:
        origin: (S, 3) [m] sensor positions; dirs: (S, G, R, 3) unit ray directions per group.
        pair_sensor, pair_group: (P,) long: the pair's sensor and group.
        part_centre, part_half: (P, 2, 3) the pair's vehicle parts (body_parts); cos, sin: (P,) its yaw.
        max_t: [m] hits farther than this count as misses.
        profile: optional (P, 2, NUM_PROFILE) per part, see ray_box (None: plain boxes).
    """
    if profile is not None:
        plain = (profile == torch.tensor(PROFILE_BOX, device=profile.device)).all(dim=-1).all(dim=-1)  # (P,)
        if bool(plain.any()):  # plain boxes skip the cuts, which cost more than the box itself
            P, R = plain.shape[0], dirs.shape[2]
            empty = torch.empty((P, R), dtype=torch.long, device=dirs.device)
            out = PairHits(torch.empty((P, R), device=dirs.device), empty, empty.clone())
            for subset, prof in ((plain, None), (~plain, profile[~plain])):
                sub = cast_pairs(
                    origin,
                    dirs,
                    pair_sensor[subset],
                    pair_group[subset],
                    part_centre[subset],
                    part_half[subset],
                    cos[subset],
                    sin[subset],
                    max_t,
                    prof,
                )
                for name in ("t", "part", "face"):
                    getattr(out, name)[subset] = getattr(sub, name)
            return out
    return cast_rays(
        lambda sl: (origin[pair_sensor[sl]].view(-1, 1, 1, 3), dirs[pair_sensor[sl], pair_group[sl]].unsqueeze(2)),
        dirs.shape[2],
        part_centre,
        part_half,
        cos,
        sin,
        max_t,
        profile,
    )


def cast_rays(
    rays: Callable[[slice], tuple[torch.Tensor, torch.Tensor]],
    num_rays: int,
    part_centre: torch.Tensor,
    part_half: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    max_t: float,
    profile: torch.Tensor | None = None,
) -> PairHits:
    """Intersect P groups of R = num_rays rays with one two-part body each, in chunks of groups.

    Args:
        rays: slice of groups -> their ray origins (p, R or 1, 1, 3) [m] and unit directions (p, R or 1, 1, 3).
        part_centre, part_half: (P, 2, 3) each group's body (body_parts); cos, sin: (P,) its yaw.
        max_t: [m] hits farther than this count as misses.
        profile: optional (P, 2, NUM_PROFILE) per part, see ray_box (None: plain boxes).
    """
    P, R, dev = part_centre.shape[0], num_rays, part_centre.device
    t_out = torch.full((P, R), math.inf, device=dev)
    part_out = torch.zeros((P, R), dtype=torch.long, device=dev)
    face_out = torch.zeros((P, R), dtype=torch.long, device=dev)
    step = max(1, PAIR_CHUNK // (R * NUM_PARTS))
    for i in range(0, P, step):  # chunks of pairs bound the temporaries; no loop over vehicles or rays
        sl = slice(i, i + step)
        o, d = rays(sl)  # (p, R or 1, 1, 3)
        t, face = ray_box(
            o,
            d,
            part_centre[sl].unsqueeze(1),
            part_half[sl].unsqueeze(1),
            cos[sl].view(-1, 1, 1),
            sin[sl].view(-1, 1, 1),
            None if profile is None else profile[sl].unsqueeze(1),
        )  # (p, R, 2)
        t_min, part = t.min(dim=-1)
        t_out[sl] = torch.where(t_min <= max_t, t_min, torch.full_like(t_min, math.inf))
        part_out[sl] = part
        face_out[sl] = face.gather(-1, part.unsqueeze(-1)).squeeze(-1)
    return PairHits(t_out, part_out, face_out)


def nearest_pair(ray_index: torch.Tensor, t: torch.Tensor, num_rays: int) -> torch.Tensor:
    """For every ray, the flat (pair * R + r) element of its nearest hit among all pairs, -1 for none.

    Args:
        ray_index: (P, R) long flat index of each element's ray in [0, num_rays).
        t: (P, R) [m] hit distances (inf: missed).
    """
    flat_ray, flat_t = ray_index.reshape(-1), t.reshape(-1)
    t_min = torch.full((num_rays,), math.inf, device=t.device).scatter_reduce(0, flat_ray, flat_t, "amin")
    win = torch.isfinite(flat_t) & (flat_t == t_min[flat_ray])
    element = torch.arange(flat_t.numel(), device=t.device)
    # amax keeps the choice deterministic on exact ties (two boxes touching along the ray)
    return torch.full((num_rays,), -1, dtype=torch.long, device=t.device).scatter_reduce(
        0, flat_ray[win], element[win], "amax"
    )


def group_extent(dirs: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Azimuth [rad] of the centre of each ray group (S, G, R, 3) and its half-width [rad] (valid rays)."""
    az = torch.atan2(dirs[..., 1], dirs[..., 0])  # (S, G, R)
    mean = torch.where(valid.unsqueeze(-1), dirs, torch.zeros_like(dirs)).sum(dim=2)
    centre = torch.atan2(mean[..., 1], mean[..., 0])  # (S, G)
    spread = wrap_angle(az - centre.unsqueeze(-1)).abs()
    return centre, torch.where(valid, spread, torch.zeros_like(spread)).amax(dim=-1)
