"""Roadside clutter of the opt-in renderer variety: buildings, street lights, sign posts, barriers, walls and trees.

Clutter stands in cells along both road edges, beyond the paved shoulder; each kind has its own cell length.
Whether a cell holds an object, and its size, place and colour, are hashes of (scene seed, kind, side, cell), so
the clutter is fixed in the world while the ego drives past it, differs from scene to scene, and needs no
generator state; the scene's roadside (urban or rural) sets each kind's density. Cells are counted along the
unwrapped arc length around the ego, so clutter jumps where the ego crosses the ring seam (an export never does).

An object is two parts like a vehicle (sim.raycast.body_parts), boxes or ellipsoids (a tree's crown), cast by the
camera rays with the vehicles' sparse caster; the nearest of clutter, vehicles and ground wins each ray, so clutter
occludes and is occluded exactly. Clutter is not a vehicle: it is never annotated and has no instance id. The lidar
does not see it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from drivestack.common.geometry import wrap_angle
from drivestack.sim.camera_shading import SHOULDER_WIDTH, SUN_TINT, Lighting, face_normal, haze, lerp, value_noise
from drivestack.sim.camera_variety import VarietyDraw, keyed01
from drivestack.sim.raycast import PROFILE_BOX, to_box_frame
from drivestack.sim.road import RoadNetwork

NUM_ATTRIBUTES = 11  # hashed uniforms per object
ABSENT_Z = -1.0e4  # [m] an unused part sits this far below the ground: no ray reaches it
FLOOR = 3.2  # [m] storey height of building facades
WINDOW_PITCH = 2.6  # [m] window spacing along a facade
GLASS = (0.06, 0.07, 0.09)  # windows before the sky's reflection
FOLIAGE_CELL = 0.35  # [m] leaf-clump size of tree crowns
FACADES = (
    (0.56, 0.33, 0.25),
    (0.74, 0.68, 0.56),
    (0.62, 0.62, 0.60),
    (0.38, 0.38, 0.39),
    (0.84, 0.83, 0.80),
    (0.32, 0.37, 0.42),
    (0.60, 0.50, 0.40),
)
FOLIAGE = ((0.16, 0.26, 0.10), (0.24, 0.32, 0.13), (0.30, 0.33, 0.16), (0.12, 0.20, 0.10))
METAL = ((0.42, 0.43, 0.45), (0.20, 0.21, 0.22), (0.60, 0.61, 0.62))
SIGNS = ((0.85, 0.85, 0.85), (0.10, 0.25, 0.60), (0.70, 0.08, 0.08), (0.10, 0.40, 0.20), (0.85, 0.70, 0.10))
CONCRETE = ((0.70, 0.70, 0.67), (0.58, 0.58, 0.56), (0.78, 0.77, 0.74))
WALLS = ((0.52, 0.31, 0.24), (0.62, 0.62, 0.59), (0.16, 0.26, 0.18), (0.45, 0.35, 0.24), (0.25, 0.25, 0.26))


@dataclass(frozen=True)
class ClutterKind:
    """One kind of roadside object: where its cells are, how often they are filled, and its size ranges [m]."""

    name: str
    spacing: float  # [m] cell length along the road
    run: int  # cells that share presence and size (rows of barriers, walls)
    density: tuple[float, float]  # probability that a run is filled on a (rural, urban) roadside
    setback: tuple[float, float]  # [m] near side's distance beyond the paved shoulder (negative: on it)
    length: tuple[float, float]  # along the road
    depth: tuple[float, float]  # across the road
    height: tuple[float, float]
    colors: tuple[tuple[float, float, float], ...]


KINDS = (
    ClutterKind("building", 14.0, 1, (0.12, 0.85), (2.0, 14.0), (9.0, 16.0), (8.0, 18.0), (4.0, 24.0), FACADES),
    ClutterKind("tree", 9.0, 1, (0.55, 0.25), (0.5, 10.0), (2.5, 6.5), (2.5, 6.5), (4.0, 10.0), FOLIAGE),
    ClutterKind("street light", 30.0, 1, (0.2, 0.7), (-1.5, 0.5), (0.18, 0.3), (1.2, 2.5), (6.0, 10.0), METAL),
    ClutterKind("sign post", 40.0, 1, (0.3, 0.45), (-1.5, 0.5), (0.6, 1.0), (0.6, 1.0), (2.2, 3.2), SIGNS),
    ClutterKind("barrier", 10.0, 6, (0.35, 0.15), (-0.9, -0.4), (10.02, 10.02), (0.6, 0.6), (0.8, 1.05), CONCRETE),
    ClutterKind("wall", 10.0, 5, (0.15, 0.3), (0.5, 4.0), (10.02, 10.02), (0.15, 0.35), (1.0, 2.6), WALLS),
)
BUILDING, TREE, LIGHT, SIGN, BARRIER, WALL = range(len(KINDS))


@dataclass(frozen=True)
class Clutter:
    """Roadside objects of B environments, M slots each (ego frame); parts as in sim.raycast.body_parts."""

    boxes: torch.Tensor  # (B, M, 7) x, y, z, w, l, h, yaw: the box around both parts [m, rad]
    centre: torch.Tensor  # (B, M, 2, 3) [m] part centres
    half: torch.Tensor  # (B, M, 2, 3) [m] part half extents in the object's frame
    profile: torch.Tensor  # (B, M, 2, NUM_PROFILE) ray_box profiles (boxes; ellipsoid crowns)
    present: torch.Tensor  # (B, M) bool
    kind: torch.Tensor  # (B, M) long index into KINDS
    color: torch.Tensor  # (B, M, 3) base colour
    seed: torch.Tensor  # (B, M) int32 texture seed


def _parts(k: int, u: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Parts of kind k in the object's road-facing frame: centres (..., 2, 3) as (along, away from the road, up)
    [m], half extents (..., 2, 3) [m] and ray_box profiles (..., 2, NUM_PROFILE), from the object's uniforms u
    (..., NUM_ATTRIBUTES) and its (length, depth, height) (..., 3) [m]."""
    length, depth, height = size.unbind(-1)
    zero, one = torch.zeros_like(length), torch.ones_like(length)
    absent = (zero, zero, zero + ABSENT_Z, one, one, one)
    box = (zero, 0.5 * depth, 0.5 * height, 0.5 * length, 0.5 * depth, 0.5 * height)  # (along, away, z, halves)
    second, crown = absent, False
    if k == BUILDING:  # a set-back upper storey on some
        upper = 0.25 + 0.2 * u[..., 9]
        top = (zero, 0.5 * depth, height * (1 + 0.5 * upper), 0.35 * length, 0.35 * depth, 0.5 * upper * height)
        second = tuple(torch.where(u[..., 10] < 0.4, a, b) for a, b in zip(top, absent))
    elif k == TREE:  # a trunk and an ellipsoid crown
        trunk_h = height * (0.2 + 0.15 * u[..., 9])
        trunk_r = 0.1 + 0.04 * depth
        box = (zero, 0.5 * depth, 0.5 * trunk_h, trunk_r, trunk_r, 0.5 * trunk_h)
        crown_h = height - trunk_h + 0.3 * depth
        second = (zero, 0.5 * depth, height - 0.5 * crown_h, 0.5 * length, 0.5 * depth, 0.5 * crown_h)
        crown = True
    elif k == LIGHT:  # a mast and an arm reaching over the shoulder; `length` is the mast's width, `depth` the arm
        box = (zero, zero, 0.5 * height, 0.5 * length, 0.5 * length, 0.5 * height)
        second = (zero, -0.5 * depth, height - 0.1, one * 0.08, 0.5 * depth, one * 0.08)
    elif k == SIGN:  # a post and a panel facing the traffic; length x depth is the panel
        post = 0.04 + 0.02 * u[..., 9]
        box = (zero, zero, 0.5 * height, post, post, 0.5 * height)
        second = (zero + 0.05, zero, height - 0.5 * depth, one * 0.025, 0.5 * length, 0.5 * depth)
    elif k == BARRIER:  # a jersey barrier: a wide foot and a narrow top
        foot = 0.35 * height
        box = (zero, 0.5 * depth, 0.5 * foot, 0.5 * length, 0.5 * depth, 0.5 * foot)
        second = (zero, 0.5 * depth, 0.5 * (foot + height), 0.5 * length, 0.25 * depth, 0.5 * (height - foot))
    elif k == WALL:  # a coping on top
        second = (zero, 0.5 * depth, height + 0.05, 0.5 * length, 0.5 * depth + 0.04, one * 0.05)
    centre = torch.stack([torch.stack(part[:3], -1) for part in (box, second)], -2)
    half = torch.stack([torch.stack(part[3:], -1) for part in (box, second)], -2)
    rows = [PROFILE_BOX, (1.0, *PROFILE_BOX[1:]) if crown else PROFILE_BOX]
    profile = torch.tensor(rows, device=length.device).expand(*length.shape, -1, -1)
    return centre, half, profile


def _to_ego(local: torch.Tensor, place: torch.Tensor) -> torch.Tensor:
    """Points (B, 2, J, [parts,] 3) [m] in the road-facing frame of objects placed at `place` (B, 2, J, 4) (x, y
    [m] and yaw [rad] in the ego frame, side +-1: away from the road is -y on the right, +y on the left) -> ego."""
    extra = (1,) * (local.dim() - 4)
    x, y, yaw, side = (v.reshape(*v.shape, *extra) for v in place.unbind(-1))
    lx, ly = local[..., 0], local[..., 1] * side
    c, s = torch.cos(yaw), torch.sin(yaw)
    return torch.stack([x + c * lx - s * ly, y + s * lx + c * ly, local[..., 2]], -1)


def _row(
    k: int, road: RoadNetwork, s_ego: torch.Tensor, ego_pose: torch.Tensor, draw: VarietyDraw, reach: float
) -> Clutter:
    """The objects of kind k in the cells within `reach` [m] of each ego, on both sides: B x (2 J) slots."""
    kind = KINDS[k]
    B, dev = s_ego.shape[0], s_ego.device
    side = torch.tensor([-1.0, 1.0], device=dev).view(1, 2, 1)  # right, left
    n = int(math.ceil(reach / kind.spacing)) + 1
    cell = torch.floor(s_ego / kind.spacing).long().view(B, 1, 1) + torch.arange(-n, n + 1, device=dev)  # (B, 1, J)
    unit = torch.div(cell, kind.run, rounding_mode="floor") * 2 + (side > 0).long()  # (B, 2, J): run and side
    seed = draw.scene_seed.view(B, 1, 1)
    u = torch.stack([keyed01(seed, 1_000 * (k + 1) + i, unit) for i in range(NUM_ATTRIBUTES)], -1)  # (B, 2, J, A)
    density = torch.where(draw.urban, kind.density[1], kind.density[0]) * draw.config.clutter  # (B,)

    height = lerp(kind.height, u[..., 3] ** 2 if k == BUILDING else u[..., 3])  # mostly low buildings
    size = torch.stack([lerp(kind.length, u[..., 1]), lerp(kind.depth, u[..., 2]), height], -1)  # (B, 2, J, 3)
    slack = (kind.spacing - size[..., 0]).clamp_min(0.0)
    s = (cell + 0.5) * kind.spacing + (u[..., 4] - 0.5) * slack  # (B, 2, J) [m] unwrapped
    left, right = road.edges(s)
    d = torch.where(side > 0, left, right) + side * (SHOULDER_WIDTH + lerp(kind.setback, u[..., 5]))
    x, y, heading = road.to_global(s, d)
    dx, dy = x - ego_pose[:, 0, None, None], y - ego_pose[:, 1, None, None]
    c, sn = torch.cos(ego_pose[:, 3, None, None]), torch.sin(ego_pose[:, 3, None, None])
    yaw = wrap_angle(heading - ego_pose[:, 3, None, None])
    place = torch.stack([c * dx + sn * dy, -sn * dx + c * dy, yaw, side.expand_as(yaw)], -1)  # (B, 2, J, 4)

    centre, half, profile = _parts(k, u, size)
    used = centre[..., 2:3] > ABSENT_Z / 2  # (B, 2, J, 2, 1) the parts that exist
    lo = (centre - half).where(used, math.inf).amin(dim=-2)  # (B, 2, J, 3) the box around them
    hi = (centre + half).where(used, -math.inf).amax(dim=-2)
    extent = hi - lo  # (along, away, up) -> l, w, h
    boxes = torch.cat([_to_ego(0.5 * (lo + hi), place), extent[..., [1, 0, 2]], yaw.unsqueeze(-1)], -1)
    palette = torch.tensor(kind.colors, device=dev)
    color = palette[(u[..., 6] * len(kind.colors)).long().clamp_max(len(kind.colors) - 1)] * (0.85 + 0.3 * u[..., 7:8])

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(B, -1, *t.shape[3:])

    return Clutter(
        boxes=flat(boxes),
        centre=flat(_to_ego(centre, place)),
        half=flat(half),
        profile=flat(profile),
        present=flat((u[..., 0] < density.view(B, 1, 1)) & torch.isfinite(boxes).all(-1)),
        kind=flat(torch.full_like(yaw, k, dtype=torch.long)),
        color=flat(color),
        seed=flat((u[..., 8] * 2**30).int()),
    )


def roadside_clutter(
    road: RoadNetwork, s_ego: torch.Tensor, ego_pose: torch.Tensor, draw: VarietyDraw, reach: float
) -> Clutter:
    """The clutter within `reach` [m] (along the road) of each ego, in its ego frame: B x M slots.

    Args:
        road: the road network; s_ego: (B,) [m] the egos' arc lengths; ego_pose: (B, 4) x, y, z, yaw (global).
        draw: the images' variety (scene seeds, urban roadsides, the clutter density).
        reach: [m] cells this far ahead and behind are filled.
    """
    rows = [_row(k, road, s_ego, ego_pose, draw, reach) for k in range(len(KINDS))]  # a handful of kinds
    return Clutter(**{f.name: torch.cat([getattr(r, f.name) for r in rows], dim=1) for f in fields(Clutter)})


def clutter_color(
    clutter: Clutter,
    env: torch.Tensor,
    obj: torch.Tensor,
    part: torch.Tensor,
    face: torch.Tensor,
    hit: torch.Tensor,
    distance: torch.Tensor,
    light: Lighting,
    max_depth: float,
) -> torch.Tensor:
    """Colours (V, 3) of V clutter hits: facades with windows, leafy crowns, metal, concrete; lit and hazed.

    env, obj, part, face: (V,) long, the hit object, its part and entered face; hit: (V, 3) [m] the hit point (ego
    frame); distance: (V,) [m] from the camera.
    """
    dev = hit.device
    B, M = clutter.kind.shape
    # note: index_select on flat tables, several times faster than advanced indexing by (env, obj) on the CPU
    slot, piece = env * M + obj, (env * M + obj) * 2 + part

    def per_object(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(B * M, -1).index_select(0, slot)

    def per_part(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(B * M * 2, -1).index_select(0, piece)

    kind, seed, base = per_object(clutter.kind)[:, 0], per_object(clutter.seed)[:, 0], per_object(clutter.color)
    yaw = per_object(clutter.boxes[..., 6])[:, 0]
    profile = per_part(clutter.profile[..., 0])[:, 0]
    ellipsoid = profile < 1.5  # tree crowns
    axes = per_part(clutter.half) * profile.clamp_max(1e3).unsqueeze(-1)
    local = to_box_frame(hit - per_part(clutter.centre), torch.cos(yaw), torch.sin(yaw))  # (V, 3) part's frame
    z = hit[:, 2]

    # Facades: storeys of windows on the vertical faces (shop windows on the ground floor), dark roofs.
    vertical = face < 4
    across = torch.where(face < 2, local[:, 1], local[:, 0])  # [m] along the facade
    col = torch.remainder(across / WINDOW_PITCH + 0.5, 1.0)
    storey = torch.remainder(z / FLOOR, 1.0)
    window = torch.where(z < FLOOR, (z > 0.5) & (z < 2.6) & (col > 0.08), (storey > 0.3) & (storey < 0.78))
    window = window & (col > 0.22) & (col < 0.78) & vertical & (kind == BUILDING)
    glass = torch.tensor(GLASS, device=dev) + 0.25 * light.horizon[env]
    roof = (face == 5) & (kind == BUILDING)
    grain = 0.9 + 0.2 * value_noise(across + 0.37 * z, z - 0.21 * across, 1.1, seed)
    color = base * grain.unsqueeze(-1)
    color = torch.where(roof.unsqueeze(-1), 0.45 * base + 0.1, color)
    color = torch.where(window.unsqueeze(-1), glass, color)

    # Trees: leaf clumps on the crown, a dark trunk.
    crown = ((kind == TREE) & (part == 1)).nonzero().squeeze(1)
    lx, ly, lz = local[crown].unbind(-1)
    leaves = value_noise(lx, lz, FOLIAGE_CELL, seed[crown]) + value_noise(ly, lz + 7.0, FOLIAGE_CELL, seed[crown])
    color[crown] = base[crown] * (0.55 + 0.45 * leaves).unsqueeze(-1)
    trunk = torch.tensor((0.22, 0.18, 0.14), device=dev)
    color = torch.where(((kind == TREE) & (part == 0)).unsqueeze(-1), trunk, color)
    # Sign posts: metal posts under coloured panels.
    metal = (kind == SIGN) & (part == 0)
    color = torch.where(metal.unsqueeze(-1), torch.tensor(METAL[0], device=dev), color)

    # Light: Lambert on the face (the ellipsoid's own normal on crowns), softer on glass and inside crowns.
    n_local = local / (axes * axes)
    n_local = n_local / n_local.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    c, s = torch.cos(yaw), torch.sin(yaw)
    n_round = torch.stack(
        [c * n_local[:, 0] - s * n_local[:, 1], s * n_local[:, 0] + c * n_local[:, 1], n_local[:, 2]], -1
    )
    normal = torch.where(ellipsoid.unsqueeze(-1), n_round, face_normal(face, yaw))
    lambert = (normal * light.sun[env]).sum(dim=-1).clamp_min(0.0)
    occlusion = torch.where(ellipsoid, 0.7 + 0.3 * normal[:, 2], torch.ones_like(lambert))
    lum = light.ambient[env] * occlusion + light.diffuse[env] * lambert * torch.where(window, 0.4, 1.0)
    color = color * lum.unsqueeze(-1) * torch.tensor(SUN_TINT, device=dev)
    return haze(color, distance, light.haze_power[env], light.horizon[env], max_depth)
