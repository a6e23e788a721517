"""Camera images of the simulated world: a batched ray caster in torch, on the state's device.

Every pixel centre casts one ray from its camera (nuScenes calibration, sim.camera). Rays that go down
hit the flat ground z = 0; the hit is turned into road coordinates by Newton steps from the ego's arc
length plus the ray's distance along the road, and coloured as asphalt, lane markings (sim.render's
road_layer: dashed between lanes, solid at the edges), a shoulder and grass beyond. Rays above the
horizon see a sky gradient with a distant tree line. Vehicles are two shaded boxes each (sim.raycast:
lower body + glass cabin for cars, cargo box + cab for trucks) of their true length and width, hit by
exact slab tests; the nearest hit wins, so occlusion and perspective are exact. Each camera renders
only its `max_vehicles` nearest vehicles that can be in view, and each 16 x 16 pixel tile tests only
the vehicles whose projected box reaches it. Everything fades into haze towards `max_depth`.

Looks vary per image (sun direction, exposure, contrast, white balance, sky, asphalt and grass tones,
haze, sensor noise), all drawn from the caller's torch.Generator: one (B, 16) draw per call, so a batch
equals the same environments rendered one after another from the same generator, and images are
bit-identical under a seed on the CPU. `render_cameras(..., variety=RenderVariety())` adds, opt-in, more
randomisation for sim-to-real training (fog, metallic paint, asphalt wear and sensor effects: blur, vignetting,
noise, gamma, JPEG), drawn in the same single draw; without it renders are unchanged. Poses use the ego's arc
length plus ring distances, so nothing jumps at the ring seam; the ego itself is not drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from drivestack.common.geometry import BOX_EDGES, box_corners
from drivestack.sim.camera import (
    CameraRig,
    clip_to_image,
    ego_to_camera,
    frustum_normals,
    pixel_rays,
    points_bbox,
)
from drivestack.sim.camera_shading import (
    NUM_LIGHTING_DRAWS,
    SUN_TINT,
    Lighting,
    RenderVariety,
    VarietyDraw,
    asphalt_wear,
    draw_lighting,
    draw_lighting_and_variety,
    face_normal,
    ground_color,
    lighting_from_uniforms,
    noise,
    sensor_effects,
    sky_color,
    specular,
    vehicle_color,
)
from drivestack.sim.config import is_truck
from drivestack.sim.lidar import lidar_scan
from drivestack.sim.raycast import (
    PairHits,
    VehicleAppearance,
    body_parts,
    cast_pairs,
    nearest_pair,
    to_box_frame,
    vehicle_appearance,
    vehicle_boxes,
)
from drivestack.sim.render import road_layer
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import WorldState

__all__ = [
    "CameraFrame",
    "RenderVariety",
    "VehicleAppearance",
    "lidar_scan",
    "render_cameras",
    "vehicle_appearance",
    "vehicle_boxes",
]

TILE = 16  # [px] side of the square tiles that vehicles are culled against
PIXEL_BUDGET = 1 << 23  # rays (env x camera x pixel) rendered at once; bounds memory
GROUND_BUDGET = 1 << 20  # ground points (env x ray) looked up on the road at once
NEAR = 0.05  # [m] near plane of the box projections
SHADOW_MARGIN = 0.5  # [m] a vehicle's contact shadow reaches this far past its footprint
MARKING_WIDTH = 0.15  # [m] painted lane-marking width seen by the cameras


@dataclass(frozen=True)
class CameraFrame:
    """Rendered images and per-vehicle pixel statistics of B environments, C cameras, N vehicle slots."""

    images: torch.Tensor  # (B, C, 3, H, W) uint8 RGB
    instance: torch.Tensor  # (B, C, H, W) int16: vehicle slot 0..N-1 seen at each pixel, -1 none
    visible_pixels: torch.Tensor  # (B, C, N) long: pixels where the vehicle is the nearest hit
    full_pixels: torch.Tensor  # (B, C, N) long: pixels its body covers ignoring other vehicles
    visibility: torch.Tensor  # (B, N) float: sum_C visible / sum_C full (0 when no camera sees it)
    box_2d: torch.Tensor  # (B, C, N, 4) float (x0, y0, x1, y1) [px] of the projected 3D box clipped to the
    #   image; NaN where it is not in front of the camera or not in the image (and for the ego, row 0)


@dataclass(frozen=True)
class _Rays:
    """Pixel rays of the rig in tile order: T = TH x TW tiles of R = TILE^2 pixels (padded image)."""

    dirs: torch.Tensor  # (C, T, R, 3) unit directions, ego frame
    valid: torch.Tensor  # (T, R) bool: inside the image (not padding)
    t_ground: torch.Tensor  # (C, T, R) [m] distance to the ground z = 0 (inf above the horizon)
    ground: torch.Tensor  # (Q,) long: flat (C, T, R) indices of rays that meet the ground within max_depth
    sky: torch.Tensor  # (S,) long: the other rays
    tiles: tuple[int, int]  # (TH, TW)


_RAYS_CACHE: dict[int, tuple[CameraRig, _Rays]] = {}


def _tile_rays(rig: CameraRig) -> _Rays:
    """The rig's rays, computed once per rig object (the last few rigs are kept)."""
    hit = _RAYS_CACHE.get(id(rig))
    if hit is not None and hit[0] is rig:
        return hit[1]
    rays = _make_rays(rig)
    if len(_RAYS_CACHE) >= 4:
        _RAYS_CACHE.pop(next(iter(_RAYS_CACHE)))
    _RAYS_CACHE[id(rig)] = (rig, rays)
    return rays


def _make_rays(rig: CameraRig) -> _Rays:
    H, W, C = rig.height, rig.width, rig.num_cameras
    TH, TW = -(-H // TILE), -(-W // TILE)
    d = pixel_rays(rig, TH * TILE, TW * TILE).view(C, TH, TILE, TW, TILE, 3)
    dirs = d.permute(0, 1, 3, 2, 4, 5).reshape(C, TH * TW, TILE * TILE, 3)
    rows = torch.arange(TH * TILE, device=rig.device).view(TH, TILE, 1, 1) < H
    cols = torch.arange(TW * TILE, device=rig.device).view(1, 1, TW, TILE) < W
    valid = (rows & cols).permute(0, 2, 1, 3).reshape(TH * TW, TILE * TILE)
    dz = dirs[..., 2]
    oz = rig.translation[:, 2].view(C, 1, 1)
    t_ground = torch.where(dz < -1e-6, -oz / dz.clamp_max(-1e-6), torch.full_like(dz, math.inf))
    ground = (t_ground <= rig.config.max_depth).view(-1)
    return _Rays(dirs, valid, t_ground, ground.nonzero().squeeze(1), (~ground).nonzero().squeeze(1), (TH, TW))


def _untile(x: torch.Tensor, rays: _Rays, height: int, width: int) -> torch.Tensor:
    """(..., T, R) in tile order -> (..., H, W) image layout."""
    TH, TW = rays.tiles
    lead = x.shape[:-2]
    x = x.reshape(*lead, TH, TW, TILE, TILE).transpose(-3, -2).reshape(*lead, TH * TILE, TW * TILE)
    return x[..., :height, :width]


def _select(
    boxes_ego: torch.Tensor,
    active: torch.Tensor,
    rig: CameraRig,
    k: int,
    normals: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest vehicles per camera whose bounding sphere meets the view: (B, C, k) index, valid."""
    w, l, h = boxes_ego[..., 3], boxes_ego[..., 4], boxes_ego[..., 5]
    radius = 0.5 * torch.sqrt(w * w + l * l + h * h) + SHADOW_MARGIN  # (B, N)
    p = ego_to_camera(boxes_ego[..., :3], rig).transpose(1, 2)  # (B, C, N, 3)
    r = radius.unsqueeze(1)  # (B, 1, N)
    side = torch.einsum("bcnj,cpj->bcnp", p, normals)  # (B, C, N, 4) signed distance to each side plane
    ok = (
        (side >= -r.unsqueeze(-1)).all(dim=-1)
        & (p[..., 2] >= -r)
        & (p[..., 2] <= rig.config.max_depth + r)
        & (active & torch.isfinite(boxes_ego).all(dim=-1)).unsqueeze(1)
    )
    ok[:, :, 0] = False  # the ego is not drawn
    dist = torch.where(ok, p.norm(dim=-1), torch.full_like(p[..., 0], math.inf))
    near, idx = dist.topk(k, dim=-1, largest=False)  # (B, C, k) sorted, nearest first
    return idx, torch.isfinite(near)


def _box_2d(boxes: torch.Tensor, rig: CameraRig, grow: float = 0.0) -> torch.Tensor:
    """Unclipped pixel boxes (B, C, M, 4) of boxes (B, C, M, 7) (ego frame) in their camera, NaN behind."""
    grown = torch.cat([boxes[..., :3], boxes[..., 3:5] + 2 * grow, boxes[..., 5:]], dim=-1)  # footprint grown
    corners = box_corners(grown)  # (B, C, M, 8, 3)
    rot = rig.cam_to_ego[:, :3, :3]
    rel = corners - rig.translation.view(1, -1, 1, 1, 3)
    cam = torch.einsum("cji,bcmkj->bcmki", rot, rel)  # R^T (p - t), camera c for row c
    return points_bbox(cam, rig.intrinsic.view(1, -1, 1, 3, 3), BOX_EDGES, NEAR)


@dataclass(frozen=True)
class _VehicleHits:
    """Vehicles seen by the rays of B environments: P (env, camera, tile, vehicle) pairs behind them."""

    win: torch.Tensor  # (B*C*T*R,) long: flat (pair, ray) element of each ray's nearest hit, -1 none
    hits: PairHits  # (P, R) per-pair hits
    pair_env: torch.Tensor  # (P,) long
    pair_cam: torch.Tensor  # (P,) long
    pair_tile: torch.Tensor  # (P,) long
    pair_vehicle: torch.Tensor  # (P,) long
    full: torch.Tensor  # (B, C, N) long: pixels each body covers, other vehicles ignored
    shadow: torch.Tensor  # (B, C, T, R) contact-shadow strength on the ground, in [0, 1]
    truck: torch.Tensor  # (B, N) bool


def _cast_vehicles(boxes_ego: torch.Tensor, active: torch.Tensor, rig: CameraRig, rays: _Rays) -> _VehicleHits:
    """Nearest vehicle hit per ray, the pairs behind it, pixel counts and contact shadows."""
    B, N, _ = boxes_ego.shape
    C, T, R = rays.dirs.shape[:3]
    TH, TW = rays.tiles
    dev = boxes_ego.device
    k = min(rig.config.max_vehicles, N)
    idx, sel_ok = _select(boxes_ego, active, rig, k, frustum_normals(rig))  # (B, C, k)
    sel = boxes_ego.gather(1, idx.view(B, -1, 1).expand(-1, -1, 7)).view(B, C, k, 7)
    bb = _box_2d(sel, rig, grow=SHADOW_MARGIN)  # (B, C, k, 4) reaches every pixel its body or shadow can
    tx0, ty0 = (bb[..., 0] / TILE).floor().clamp(0, TW - 1), (bb[..., 1] / TILE).floor().clamp(0, TH - 1)
    tx1, ty1 = (bb[..., 2] / TILE).floor().clamp(0, TW - 1), (bb[..., 3] / TILE).floor().clamp(0, TH - 1)
    ty = torch.arange(TH, device=dev).view(TH, 1)
    tx = torch.arange(TW, device=dev).view(1, TW)
    keep = (
        sel_ok
        & torch.isfinite(bb).all(dim=-1)
        & (bb[..., 2] >= 0)
        & (bb[..., 3] >= 0)
        & (bb[..., 0] <= rig.width)
        & (bb[..., 1] <= rig.height)
    )[..., None, None]
    overlap = (
        keep
        & (ty >= ty0[..., None, None])
        & (ty <= ty1[..., None, None])
        & (tx >= tx0[..., None, None])
        & (tx <= tx1[..., None, None])
    )  # (B, C, k, TH, TW)
    pb, pc, pk, pty, ptx = overlap.nonzero(as_tuple=True)  # P pairs (env, camera, slot, tile)
    pg = pty * TW + ptx
    pn = idx[pb, pc, pk]  # vehicle index of each pair

    truck = is_truck(boxes_ego[..., 4])
    centre, half = body_parts(boxes_ego, truck)  # (B, N, 2, 3)
    cos, sin = torch.cos(boxes_ego[..., 6]), torch.sin(boxes_ego[..., 6])
    hits = cast_pairs(
        rig.translation, rays.dirs, pc, pg, centre[pb, pn], half[pb, pn], cos[pb, pn], sin[pb, pn], rig.config.max_depth
    )
    r = torch.arange(R, device=dev)
    ray_index = ((pb * C + pc) * T + pg).unsqueeze(1) * R + r  # (P, R) flat index into (B, C, T, R)
    win = nearest_pair(ray_index, hits.t, B * C * T * R)  # (B*C*T*R,)
    ray_ok = rays.valid[pg]  # (P, R) not padding
    slot = (pb * C + pc) * N + pn  # (P,) flat index into (B, C, N)
    full = torch.zeros(B * C * N, dtype=torch.long, device=dev).index_add_(
        0, slot, (torch.isfinite(hits.t) & ray_ok).sum(dim=1)
    )

    # Contact shadow: ground points (shared by all environments) near each pair's vehicle footprint.
    t_g = rays.t_ground[pc, pg]  # (P, R)
    ground = rig.translation[pc].unsqueeze(1) + t_g.clamp_max(1e4).unsqueeze(-1) * rays.dirs[pc, pg]
    local = to_box_frame(ground - boxes_ego[pb, pn, None, :3], cos[pb, pn, None], sin[pb, pn, None])
    out_x = (local[..., 0].abs() - 0.5 * boxes_ego[pb, pn, 4, None]).clamp_min(0.0)
    out_y = (local[..., 1].abs() - 0.5 * boxes_ego[pb, pn, 3, None]).clamp_min(0.0)
    shade = (1.0 - torch.hypot(out_x, out_y) / SHADOW_MARGIN).clamp_min(0.0)
    shade = torch.where(t_g <= rig.config.max_depth, shade, torch.zeros_like(shade))
    shadow = torch.zeros(B * C * T * R, device=dev).scatter_reduce(0, ray_index.reshape(-1), shade.reshape(-1), "amax")
    return _VehicleHits(win, hits, pb, pc, pg, pn, full.view(B, C, N), shadow.view(B, C, T, R), truck)


def _ground_color(
    road: RoadNetwork,
    s_ego: torch.Tensor,
    ego_pose: torch.Tensor,
    rig: CameraRig,
    rays: _Rays,
    ground: torch.Tensor,
    shadow: torch.Tensor,
    light: Lighting,
    draw: VarietyDraw | None = None,
) -> torch.Tensor:
    """Colours (B, q, 3) of the ground seen by rays `ground` (q,) (flat (C, T, R) indices) of B environments."""
    T, R = rays.dirs.shape[1:3]
    t_g = rays.t_ground.view(-1)[ground]
    cam = ground // (T * R)
    p = rig.translation[cam] + t_g.unsqueeze(-1) * rays.dirs.view(-1, 3)[ground]  # (q, 3) ego frame, shared
    x0, y0, yaw0 = ego_pose[:, 0:1], ego_pose[:, 1:2], ego_pose[:, 3:4]
    c, s = torch.cos(yaw0), torch.sin(yaw0)
    gx = x0 + c * p[:, 0] - s * p[:, 1]  # (B, q) global [m]
    gy = y0 + s * p[:, 0] + c * p[:, 1]
    # Newton from the ego's arc length plus the point's distance along the road tangent at the ego
    rx, ry, heading, _ = road.reference(s_ego)
    s_guess = s_ego + (gx - rx) * torch.cos(heading) + (gy - ry) * torch.sin(heading)
    px_size = (t_g / rig.intrinsic[cam, 0, 0]).expand(gx.shape[0], -1)  # [m] lateral size of a pixel there
    surface = road_layer(road, gx, gy, s_guess, px_size, marking_width=MARKING_WIDTH, iterations=2)
    color = ground_color(surface, gx, gy, t_g, shadow, light, rig.config.max_depth, road.lane_width)
    return color if draw is None else asphalt_wear(color, gx, gy, surface.on_road, draw)


def _render_chunk(
    road: RoadNetwork,
    state: WorldState,
    boxes_ego: torch.Tensor,
    ego_pose: torch.Tensor,
    appearance: VehicleAppearance,
    light: Lighting,
    rig: CameraRig,
    rays: _Rays,
    draw: VarietyDraw | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    veh = state.vehicles
    B, N = veh.s.shape
    C, T, R = rays.dirs.shape[:3]
    dev = veh.s.device
    cfg = rig.config
    origin = rig.translation

    # Sky and far haze, the ground, then vehicles on top.
    color = torch.empty((B, C, T, R, 3), device=dev)
    color.view(B, -1, 3)[:, rays.sky] = sky_color(rays.dirs.view(-1, 3)[rays.sky], light, ego_pose[:, 3])
    vh = _cast_vehicles(boxes_ego, veh.active, rig, rays)

    step = max(1, GROUND_BUDGET // B)
    for i in range(0, rays.ground.shape[0], step):  # chunks of ground rays bound the per-lane temporaries
        ground = rays.ground[i : i + step]
        color.view(B, -1, 3)[:, ground] = _ground_color(
            road, veh.s[:, 0:1], ego_pose, rig, rays, ground, vh.shadow.view(B, -1)[:, ground], light, draw
        )

    # Vehicles: the winning (pair, ray) element of every ray a vehicle covers.
    rays_hit = (vh.win >= 0).nonzero().squeeze(1)  # (V,) flat (B, C, T, R) indices
    elem = vh.win[rays_hit]
    pair, r = elem // R, elem % R
    b, cam, n = vh.pair_env[pair], vh.pair_cam[pair], vh.pair_vehicle[pair]
    t = vh.hits.t.view(-1)[elem]
    hit_point = origin[cam] + t.unsqueeze(-1) * rays.dirs[cam, vh.pair_tile[pair], r]  # (V, 3)
    yaw = boxes_ego[b, n, 6]
    local = to_box_frame(
        hit_point - boxes_ego[b, n, :3] * torch.tensor([1.0, 1.0, 0.0], device=dev), torch.cos(yaw), torch.sin(yaw)
    )  # (V, 3) in the vehicle frame, z above the ground
    color.view(-1, 3)[rays_hit] = vehicle_color(
        local,
        vh.hits.face.view(-1)[elem],
        vh.hits.part.view(-1)[elem],
        yaw,
        boxes_ego[b, n, 3:6],
        vh.truck[b, n],
        appearance.color[b, n],
        t,
        light,
        b,
        cfg.max_depth,
    )
    if draw is not None:  # metallic paint: the sun's highlight on top
        view = rays.dirs[cam, vh.pair_tile[pair], r]
        view = view / view.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        glint = specular(face_normal(vh.hits.face.view(-1)[elem], yaw), view, light, draw, b, n)
        color.view(-1, 3)[rays_hit] += glint.unsqueeze(-1) * torch.tensor(SUN_TINT, device=dev)

    instance = torch.full((B * C * T * R,), -1, dtype=torch.long, device=dev)
    instance[rays_hit] = n
    ray_ok = rays.valid.view(-1)[rays_hit % (T * R)]
    visible = torch.zeros(B * C * N, dtype=torch.long, device=dev).index_add_(
        0, ((b * C + cam) * N + n)[ray_ok], torch.ones_like(n[ray_ok])
    )

    H, W = rig.height, rig.width
    # finish in tile order (contiguous, channels last), then reorder the uint8 result into images
    image = _untile(noise(light.finish(color), light, cfg.noise_std).permute(0, 1, 4, 2, 3), rays, H, W)
    if draw is not None:
        image = sensor_effects(image, draw)
    instance = _untile(instance.view(B, C, T, R), rays, H, W)
    return image, instance, visible.view(B, C, N), vh.full


@torch.no_grad()
def render_cameras(
    road: RoadNetwork,
    state: WorldState,
    rig: CameraRig,
    appearance: VehicleAppearance,
    generator: torch.Generator | None,
    variety: RenderVariety | None = None,
    lighting: torch.Tensor | None = None,
) -> CameraFrame:
    """Render every camera of the rig in every environment.

    Args:
        road: the road network the state lives on.
        state: world state of B environments with N vehicle slots (row 0 the ego, not drawn).
        rig: the cameras (sim.camera.camera_rig); rig.config holds max_depth, max_vehicles and the
            lighting variation.
        appearance: per-vehicle heights and colours (vehicle_appearance, drawn once per episode).
        generator: draws the per-image lighting ((B, 16) uniforms on the generator's device).
        variety: opt-in extra randomisation per image for sim-to-real training (fog, metallic paint, asphalt wear,
            blur, vignetting, noise, gamma, JPEG; sim.camera_shading.RenderVariety), drawn with the lighting in
            one (B, 28) draw. None (the default): today's renders, bit for bit.
        lighting: (B, 16) the lighting's uniforms in [0, 1) (`camera_shading.lighting_from_uniforms`), given by the
            caller (e.g. drawn once per episode) instead of drawn from `generator` (then unused, may be None);
            not with `variety`.

    Returns:
        CameraFrame: images, instance masks, per-vehicle pixel counts and visibility, 2D boxes.
        Vehicles farther than max_depth or beyond a camera's max_vehicles nearest get no pixels there.
    """
    veh = state.vehicles
    B, N = veh.s.shape
    dev = veh.s.device
    C, H, W = rig.num_cameras, rig.height, rig.width
    if rig.device != dev:
        raise ValueError(
            f"render_cameras: the camera rig is on {rig.device} but the state on {dev}; "
            "build the rig with camera_rig(config, device=state's device)"
        )
    draw = None
    if lighting is not None:
        if variety is not None or lighting.shape != (B, NUM_LIGHTING_DRAWS):
            raise ValueError(
                f"render_cameras: lighting must be ({B}, {NUM_LIGHTING_DRAWS}) uniforms and comes without variety; "
                f"got {tuple(lighting.shape)}{' with variety' if variety is not None else ''}"
            )
        light = lighting_from_uniforms(rig.config, lighting.to(dev))
    elif variety is None:
        light = draw_lighting(rig.config, B, generator, dev)
    else:
        light, draw = draw_lighting_and_variety(rig.config, variety.validate(), B, generator, dev)
    ego_pose, _, boxes_ego = vehicle_boxes(road, state, appearance)
    rays = _tile_rays(rig)

    box = clip_to_image(_box_2d(boxes_ego.unsqueeze(1).expand(-1, C, -1, -1), rig), W, H)  # (B, C, N, 4)
    drop = ~veh.active.clone()
    drop[:, 0] = True
    box_2d = torch.where(drop[:, None, :, None], torch.full_like(box, math.nan), box)

    per_env = C * rays.dirs.shape[1] * rays.dirs.shape[2]
    step = max(1, PIXEL_BUDGET // per_env)
    parts = [
        _render_chunk(
            road,
            state.index(slice(i, i + step)),
            boxes_ego[i : i + step],
            ego_pose[i : i + step],
            VehicleAppearance(appearance.height[i : i + step], appearance.color[i : i + step]),
            light.index(slice(i, i + step)),
            rig,
            rays,
            None if draw is None else draw.index(slice(i, i + step)),
        )
        for i in range(0, B, step)
    ]  # chunks of environments bound memory
    images, instance, visible, full = (torch.cat(x) for x in zip(*parts))
    total = full.sum(dim=1)
    visibility = torch.where(
        total > 0, visible.sum(dim=1) / total.clamp_min(1), torch.zeros_like(total, dtype=torch.float32)
    )
    dtype = torch.int16 if N <= torch.iinfo(torch.int16).max else torch.int32
    return CameraFrame(
        images=images,
        instance=instance.to(dtype),
        visible_pixels=visible,
        full_pixels=full,
        visibility=visibility.float(),
        box_2d=box_2d,
    )
