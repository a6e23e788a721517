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
randomisation for sim-to-real training (sim.camera_variety): roadside clutter that occludes like the vehicles do
(sim.camera_clutter), urban or rural roadsides, repainted, metallic and shaped vehicles, cast shadows, fog, overcast
skies, exposure, asphalt wear and a sensor (sim.camera_sensor: blur, vignetting, noise, gamma, JPEG), drawn in the
same single draw plus per-scene hashes; without it renders are unchanged. Poses use the ego's arc length plus ring
distances, so nothing jumps at the ring seam; the ego itself is not drawn. The ray tiles and the sparse casting of
bodies are in sim.camera_cast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from drivestack.sim.camera import CameraRig, clip_to_image
from drivestack.sim.camera_cast import BodyHits, Rays, box_2d, cast_bodies, tile_pairs, tile_rays, untile
from drivestack.sim.camera_clutter import Clutter, clutter_color, roadside_clutter
from drivestack.sim.camera_sensor import sensor_effects
from drivestack.sim.camera_shading import (
    NUM_LIGHTING_DRAWS,
    SUN_TINT,
    Lighting,
    draw_lighting,
    face_normal,
    ground_color,
    lighting_from_uniforms,
    noise,
    sky_color,
    vehicle_color,
)
from drivestack.sim.camera_variety import (
    RenderVariety,
    VarietyDraw,
    asphalt_wear,
    body_profile,
    draw_lighting_and_variety,
    repaint,
    specular,
)
from drivestack.sim.config import is_truck
from drivestack.sim.lidar import lidar_scan
from drivestack.sim.raycast import (
    VehicleAppearance,
    body_parts,
    cast_rays,
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

PIXEL_BUDGET = 1 << 23  # rays (env x camera x pixel) rendered at once; bounds memory
GROUND_BUDGET = 1 << 20  # ground points (env x ray) looked up on the road at once
SHADOW_MARGIN = 0.5  # [m] a vehicle's contact shadow reaches this far past its footprint
MARKING_WIDTH = 0.15  # [m] painted lane-marking width seen by the cameras
CAST_SHADOW = 0.8  # [-] darkness of a vehicle's cast shadow under a clear sky (variety)
CLUTTER_PER_CAMERA = 128  # nearest roadside objects rendered per camera (variety)
CLUTTER_REACH = 10.0  # [m] clutter is placed this far past max_depth (its far objects' sizes)


@dataclass(frozen=True)
class CameraFrame:
    """Rendered images and per-vehicle pixel statistics of B environments, C cameras, N vehicle slots."""

    images: torch.Tensor  # (B, C, 3, H, W) uint8 RGB
    instance: torch.Tensor  # (B, C, H, W) int16: vehicle slot 0..N-1 seen at each pixel, -1 none
    visible_pixels: torch.Tensor  # (B, C, N) long: pixels where the vehicle is the nearest hit
    full_pixels: torch.Tensor  # (B, C, N) long: pixels its body covers ignoring other vehicles and clutter
    visibility: torch.Tensor  # (B, N) float: sum_C visible / sum_C full (0 when no camera sees it)
    box_2d: torch.Tensor  # (B, C, N, 4) float (x0, y0, x1, y1) [px] of the projected 3D box clipped to the
    #   image; NaN where it is not in front of the camera or not in the image (and for the ego, row 0)


@dataclass(frozen=True)
class _VehicleHits:
    """Vehicles seen by the rays of B environments."""

    cast: BodyHits  # nearest vehicle per ray and the (env, camera, tile, vehicle) pairs behind it
    full: torch.Tensor  # (B, C, N) long: pixels each body covers, other vehicles ignored
    shadow: torch.Tensor  # (B, C, T, R) shadow strength on the ground, in [0, 1]
    truck: torch.Tensor  # (B, N) bool


def _shadow_reach(boxes_ego: torch.Tensor, sun: torch.Tensor) -> torch.Tensor:
    """(B, N, 7) flat ego-frame boxes around the ground shadows that bodies boxes_ego (B, N, 7) cast away from the
    sun (B, 3) (unit, towards the sun)."""
    shift = -boxes_ego[..., 5:6] * sun[:, None, :2] / sun[:, None, 2:3].clamp_min(0.05)  # (B, N, 2) top's shadow
    diag = torch.hypot(boxes_ego[..., 3], boxes_ego[..., 4]).unsqueeze(-1)
    zero = torch.zeros_like(diag)
    size = shift.abs() + diag  # (B, N, 2) along ego x, y
    return torch.cat([boxes_ego[..., :2] + 0.5 * shift, zero, size[..., 1:2], size[..., 0:1], zero, zero], -1)


def _cast_vehicles(
    boxes_ego: torch.Tensor,
    active: torch.Tensor,
    rig: CameraRig,
    rays: Rays,
    light: Lighting,
    draw: VarietyDraw | None = None,
) -> _VehicleHits:
    """Nearest vehicle hit per ray, the pairs behind it, pixel counts and contact shadows (with variety: shaped
    bodies and shadows cast away from the sun)."""
    B, N, _ = boxes_ego.shape
    C, T, R = rays.dirs.shape[:3]
    dev = boxes_ego.device
    cast_shadows = draw is not None and draw.config.cast_shadows
    reach = _shadow_reach(boxes_ego, light.sun) if cast_shadows else None
    pairs = tile_pairs(boxes_ego, active, rig, rays, rig.config.max_vehicles, SHADOW_MARGIN, True, reach)
    pb, pc, pg, pn = pairs.env, pairs.cam, pairs.tile, pairs.body
    truck = is_truck(boxes_ego[..., 4])
    centre, half = body_parts(boxes_ego, truck)  # (B, N, 2, 3)
    profile = body_profile(truck) if draw is not None and draw.config.shaped_vehicles else None
    cast = cast_bodies(pairs, centre, half, boxes_ego[..., 6], B, rig, rays, profile)
    hits = cast.hits
    ray_ok = rays.valid[pg]  # (P, R) not padding
    slot = (pb * C + pc) * N + pn  # (P,) flat index into (B, C, N)
    full = torch.zeros(B * C * N, dtype=torch.long, device=dev).index_add_(
        0, slot, (torch.isfinite(hits.t) & ray_ok).sum(dim=1)
    )

    # Contact shadow: ground points (shared by all environments) near each pair's vehicle footprint.
    cos, sin = torch.cos(boxes_ego[..., 6]), torch.sin(boxes_ego[..., 6])
    t_g = rays.t_ground[pc, pg]  # (P, R)
    ground = rig.translation[pc].unsqueeze(1) + t_g.clamp_max(1e4).unsqueeze(-1) * rays.dirs[pc, pg]
    local = to_box_frame(ground - boxes_ego[pb, pn, None, :3], cos[pb, pn, None], sin[pb, pn, None])
    out_x = (local[..., 0].abs() - 0.5 * boxes_ego[pb, pn, 4, None]).clamp_min(0.0)
    out_y = (local[..., 1].abs() - 0.5 * boxes_ego[pb, pn, 3, None]).clamp_min(0.0)
    shade = (1.0 - torch.hypot(out_x, out_y) / SHADOW_MARGIN).clamp_min(0.0)
    if cast_shadows:  # the ground point sees the sun through the vehicle: shadow, faint when the sky is overcast
        sun = light.sun[pb].view(-1, 1, 1, 3)
        blocked = cast_rays(
            lambda sl: (ground[sl].unsqueeze(2), sun[sl]),
            R,
            centre[pb, pn],
            half[pb, pn],
            cos[pb, pn],
            sin[pb, pn],
            1e3,
        ).t.isfinite()  # (P, R); the plain boxes' shadow: the cut edges barely change it
        strength = CAST_SHADOW * (light.diffuse[pb] / 0.75).clamp_max(1.0)
        shade = torch.maximum(shade, blocked * strength.unsqueeze(1))
    shade = torch.where(t_g <= rig.config.max_depth, shade, torch.zeros_like(shade))
    shadow = torch.zeros(B * C * T * R, device=dev).scatter_reduce(
        0, cast.ray_index.reshape(-1), shade.reshape(-1), "amax"
    )
    return _VehicleHits(cast, full.view(B, C, N), shadow.view(B, C, T, R), truck)


def _cast_clutter(clutter: Clutter, rig: CameraRig, rays: Rays) -> BodyHits:
    """Nearest roadside object per ray (each camera's CLUTTER_PER_CAMERA nearest in view)."""
    pairs = tile_pairs(clutter.boxes, clutter.present, rig, rays, CLUTTER_PER_CAMERA, 0.0, False)
    yaw = clutter.boxes[..., 6]
    return cast_bodies(pairs, clutter.centre, clutter.half, yaw, clutter.boxes.shape[0], rig, rays, clutter.profile)


def _ground_color(
    road: RoadNetwork,
    s_ego: torch.Tensor,
    ego_pose: torch.Tensor,
    rig: CameraRig,
    rays: Rays,
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


@dataclass(frozen=True)
class _Winners:
    """The V rays whose nearest hit is a body of `BodyHits` (and not hidden), with what they hit."""

    rays: torch.Tensor  # (V,) long: flat (B, C, T, R) ray indices
    elem: torch.Tensor  # (V,) long: flat (pair, ray) element of the hit
    env: torch.Tensor  # (V,) long
    cam: torch.Tensor  # (V,) long
    body: torch.Tensor  # (V,) long
    t: torch.Tensor  # (V,) [m] distance from the camera
    view: torch.Tensor  # (V, 3) unit ray direction, ego frame
    point: torch.Tensor  # (V, 3) [m] hit point, ego frame


def _winners(cast: BodyHits, shown: torch.Tensor, rig: CameraRig, rays: Rays) -> _Winners:
    R = rays.dirs.shape[2]
    rays_hit = shown.nonzero().squeeze(1)  # (V,) flat (B, C, T, R) indices
    elem = cast.win[rays_hit]
    pair, r = elem // R, elem % R
    cam = cast.pairs.cam[pair]
    t = cast.hits.t.view(-1)[elem]
    view = rays.dirs[cam, cast.pairs.tile[pair], r]
    point = rig.translation[cam] + t.unsqueeze(-1) * view  # (V, 3)
    return _Winners(rays_hit, elem, cast.pairs.env[pair], cam, cast.pairs.body[pair], t, view, point)


def _render_chunk(
    road: RoadNetwork,
    state: WorldState,
    boxes_ego: torch.Tensor,
    ego_pose: torch.Tensor,
    appearance: VehicleAppearance,
    light: Lighting,
    rig: CameraRig,
    rays: Rays,
    draw: VarietyDraw | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    veh = state.vehicles
    B, N = veh.s.shape
    C, T, R = rays.dirs.shape[:3]
    dev = veh.s.device
    cfg = rig.config

    # Sky and far haze, the ground, then vehicles (and roadside clutter) on top.
    color = torch.empty((B, C, T, R, 3), device=dev)
    color.view(B, -1, 3)[:, rays.sky] = sky_color(rays.dirs.view(-1, 3)[rays.sky], light, ego_pose[:, 3])
    vh = _cast_vehicles(boxes_ego, veh.active, rig, rays, light, draw)

    step = max(1, GROUND_BUDGET // B)
    for i in range(0, rays.ground.shape[0], step):  # chunks of ground rays bound the per-lane temporaries
        ground = rays.ground[i : i + step]
        color.view(B, -1, 3)[:, ground] = _ground_color(
            road, veh.s[:, 0:1], ego_pose, rig, rays, ground, vh.shadow.view(B, -1)[:, ground], light, draw
        )

    front = vh.cast.win >= 0  # (B*C*T*R,) rays whose nearest hit is a vehicle
    if draw is not None and draw.config.clutter > 0:  # roadside clutter, nearer than the vehicle or alone
        clutter = roadside_clutter(road, veh.s[:, 0], ego_pose, draw, cfg.max_depth + CLUTTER_REACH)
        ch = _cast_clutter(clutter, rig, rays)
        t_clutter = ch.distance()
        front &= vh.cast.distance() < t_clutter
        w = _winners(ch, (ch.win >= 0) & ~front, rig, rays)
        part, face = ch.hits.part.view(-1)[w.elem], ch.hits.face.view(-1)[w.elem]
        color.view(-1, 3)[w.rays] = clutter_color(
            clutter, w.env, w.body, part, face, w.point, w.t, light, cfg.max_depth
        )

    # Vehicles: the winning (pair, ray) element of every ray a vehicle covers.
    w = _winners(vh.cast, front, rig, rays)
    b, n = w.env, w.body
    yaw = boxes_ego[b, n, 6]
    local = to_box_frame(
        w.point - boxes_ego[b, n, :3] * torch.tensor([1.0, 1.0, 0.0], device=dev), torch.cos(yaw), torch.sin(yaw)
    )  # (V, 3) in the vehicle frame, z above the ground
    face = vh.cast.hits.face.view(-1)[w.elem]
    paint = appearance.color if draw is None else repaint(appearance.color, draw)
    color.view(-1, 3)[w.rays] = vehicle_color(
        local,
        face,
        vh.cast.hits.part.view(-1)[w.elem],
        yaw,
        boxes_ego[b, n, 3:6],
        vh.truck[b, n],
        paint[b, n],
        w.t,
        light,
        b,
        cfg.max_depth,
    )
    if draw is not None:  # metallic paint: the sun's highlight on top
        view = w.view / w.view.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        glint = specular(face_normal(face, yaw), view, light, draw, b, n)
        color.view(-1, 3)[w.rays] += glint.unsqueeze(-1) * torch.tensor(SUN_TINT, device=dev)

    instance = torch.full((B * C * T * R,), -1, dtype=torch.long, device=dev)
    instance[w.rays] = n
    ray_ok = rays.valid.view(-1)[w.rays % (T * R)]
    visible = torch.zeros(B * C * N, dtype=torch.long, device=dev).index_add_(
        0, ((b * C + w.cam) * N + n)[ray_ok], torch.ones_like(n[ray_ok])
    )

    H, W = rig.height, rig.width
    # finish in tile order (contiguous, channels last), then reorder the uint8 result into images
    image = untile(noise(light.finish(color), light, cfg.noise_std).permute(0, 1, 4, 2, 3), rays, H, W)
    if draw is not None:
        image = sensor_effects(image, draw)
    instance = untile(instance.view(B, C, T, R), rays, H, W)
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
    scene_seed: torch.Tensor | None = None,
) -> CameraFrame:
    """Render every camera of the rig in every environment.

    Args:
        road: the road network the state lives on.
        state: world state of B environments with N vehicle slots (row 0 the ego, not drawn).
        rig: the cameras (sim.camera.camera_rig); rig.config holds max_depth, max_vehicles and the
            lighting variation.
        appearance: per-vehicle heights and colours (vehicle_appearance, drawn once per episode).
        generator: draws the per-image lighting ((B, 16) uniforms on the generator's device).
        variety: opt-in extra randomisation for sim-to-real training (sim.camera_variety.RenderVariety: roadside
            clutter, urban roadsides, repainted, metallic and shaped vehicles, cast shadows, fog, overcast skies,
            exposure, asphalt wear, blur, vignetting, noise, gamma, JPEG), drawn with the lighting in one (B, 28)
            draw. None (the default): today's renders, bit for bit.
        lighting: (B, 16) the lighting's uniforms in [0, 1) (`camera_shading.lighting_from_uniforms`), given by the
            caller (e.g. drawn once per episode) instead of drawn from `generator` (then unused, may be None);
            not with `variety`.
        scene_seed: with `variety`, (B,) int seeds of what stays fixed over a scene (clutter, roadside, paint;
            `camera_variety.draw_scene_seeds`, drawn once per scene). None: drawn with each image.

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
        if scene_seed is not None:
            raise ValueError("render_cameras: scene_seed seeds the variety; pass it with variety=RenderVariety()")
        light = draw_lighting(rig.config, B, generator, dev)
    else:
        light, draw = draw_lighting_and_variety(rig.config, variety.validate(), B, generator, dev, scene_seed)
    ego_pose, _, boxes_ego = vehicle_boxes(road, state, appearance)
    rays = tile_rays(rig)

    box = clip_to_image(box_2d(boxes_ego.unsqueeze(1).expand(-1, C, -1, -1), rig), W, H)  # (B, C, N, 4)
    drop = ~veh.active.clone()
    drop[:, 0] = True
    boxes_2d = torch.where(drop[:, None, :, None], torch.full_like(box, math.nan), box)

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
        box_2d=boxes_2d,
    )
