"""Looks of the camera images: per-image lighting, sky, ground and vehicle materials, sensor noise (the opt-in
variety for sim-to-real training lives in sim.camera_variety, sim.camera_clutter and sim.camera_sensor).

All colours are sRGB-like floats in [0, 1] until `Lighting.finish` and `noise` turn them into the
final image. Every random choice comes from one (B, NUM_LIGHTING_DRAWS) uniform draw per call
(`draw_lighting`); textures and sensor noise are counter-based hashes of world positions and pixel
indices seeded from that draw, so they cost no generator state and do not depend on the batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from drivestack.sim.camera import CameraConfig
from drivestack.sim.raycast import CAR_BELT, CAR_CABIN, TRUCK_CAB
from drivestack.sim.render import RoadSurface

NUM_LIGHTING_DRAWS = 16  # uniforms drawn per environment and call
SHOULDER_WIDTH = 2.5  # [m] paved shoulder beyond the outer edge lines, then grass
ZENITH_CLEAR = (0.28, 0.48, 0.82)  # sky colours (sRGB)
HORIZON_CLEAR = (0.76, 0.81, 0.88)
OVERCAST = (0.72, 0.73, 0.75)
GRASS = ((0.25, 0.36, 0.15), (0.45, 0.42, 0.27))  # lush and dry
TREES = (0.14, 0.20, 0.12)  # distant tree line before haze
MARKING = (0.88, 0.88, 0.85)
GLASS = (0.07, 0.08, 0.10)
TYRE = (0.05, 0.05, 0.05)
TAIL_LIGHT = (0.75, 0.05, 0.04)
HEAD_LIGHT = (0.95, 0.95, 0.88)
SUN_TINT = (1.0, 0.96, 0.88)
HORIZON_BAND = 0.08  # [rad] rays this close above the horizon may see the tree line


def _rgb(c: tuple[float, float, float], dev: torch.device) -> torch.Tensor:
    return torch.tensor(c, dtype=torch.float32, device=dev)


@dataclass(frozen=True)
class Lighting:
    """Per-environment lighting and tones of one render call; tensors lead with B."""

    sun: torch.Tensor  # (B, 3) unit vector towards the sun, ego frame
    ambient: torch.Tensor  # (B,) sky light on any face
    diffuse: torch.Tensor  # (B,) direct sunlight on a face turned to the sun
    exposure: torch.Tensor  # (B,)
    contrast: torch.Tensor  # (B,)
    temperature: torch.Tensor  # (B,) relative red gain (blue gets the opposite)
    zenith: torch.Tensor  # (B, 3) sky colour overhead
    horizon: torch.Tensor  # (B, 3) sky colour at the horizon = haze colour
    asphalt: torch.Tensor  # (B,) asphalt grey level
    grass: torch.Tensor  # (B, 3)
    haze_power: torch.Tensor  # (B,) haze = (distance / max_depth) ** haze_power
    trees: torch.Tensor  # (B, 4) tree-line height [rad] and three phases [rad]
    seed: torch.Tensor  # (B,) int32: seeds the texture and noise hashes

    def index(self, idx: slice) -> Lighting:
        return Lighting(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def finish(self, image: torch.Tensor) -> torch.Tensor:
        """Exposure, contrast and white balance, in place, of colours (B, ..., 3) (channels last)."""
        view = (-1,) + (1,) * (image.dim() - 1)
        gain = torch.stack([1.0 + self.temperature, torch.ones_like(self.temperature), 1.0 - self.temperature], 1)
        # in place: these images are the largest tensors of a render call
        return (
            image.mul_(self.exposure.view(view))
            .sub_(0.5)
            .mul_(self.contrast.view(view))
            .add_(0.5)
            .mul_(gain.view(-1, *(1,) * (image.dim() - 2), 3))
        )


def lerp(lo_hi: tuple[float, float], x: torch.Tensor) -> torch.Tensor:
    """The range lo_hi = (low, high) at fractions x (uniforms in [0, 1) give uniform draws)."""
    return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * x


def draw_lighting(config: CameraConfig, num_envs: int, generator: torch.Generator, device: torch.device) -> Lighting:
    """Draw the lighting of `num_envs` images from one uniform draw on the generator's device."""
    u = torch.rand((num_envs, NUM_LIGHTING_DRAWS), generator=generator, device=generator.device).to(device)
    return lighting_from_uniforms(config, u)


def lighting_from_uniforms(config: CameraConfig, u: torch.Tensor) -> Lighting:
    """The lighting of B images from their uniforms u (B, NUM_LIGHTING_DRAWS) in [0, 1)."""
    device = u.device

    az = 2.0 * math.pi * u[:, 0]
    el = torch.deg2rad(lerp(config.sun_elevation_range, u[:, 1]))
    sun = torch.stack([torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], dim=1)
    overcast = 0.8 * u[:, 2] ** 2  # mostly clear skies
    clear = (1.0 - overcast).unsqueeze(1)
    blue = 1.0 + 0.15 * (2.0 * u[:, 3:4] - 1.0)  # a deeper or paler blue
    zenith = clear * _rgb(ZENITH_CLEAR, device) * torch.cat([2.0 - blue, torch.ones_like(blue), blue], 1) + (
        1.0 - clear
    ) * _rgb(OVERCAST, device)
    horizon = clear * _rgb(HORIZON_CLEAR, device) + (1.0 - clear) * _rgb(OVERCAST, device)
    dry = u[:, 4:5]
    grass = ((1.0 - dry) * _rgb(GRASS[0], device) + dry * _rgb(GRASS[1], device)) * lerp((0.8, 1.15), u[:, 5:6])
    trees = torch.stack(
        [torch.deg2rad(lerp((0.6, 2.2), u[:, 6])), 2 * math.pi * u[:, 7], 2 * math.pi * u[:, 8], 2 * math.pi * u[:, 9]],
        dim=1,
    )
    return Lighting(
        sun=sun,
        ambient=0.45 + 0.25 * overcast,
        diffuse=0.75 * (1.0 - 0.8 * overcast),
        exposure=lerp(config.exposure_range, u[:, 10]),
        contrast=lerp(config.contrast_range, u[:, 11]),
        temperature=config.color_temperature * (2.0 * u[:, 12] - 1.0),
        zenith=zenith,
        horizon=horizon,
        asphalt=lerp((0.27, 0.42), u[:, 13]),
        grass=grass,
        haze_power=lerp((1.4, 2.6), u[:, 14]),
        trees=trees,
        seed=(u[:, 15] * 2**30).int(),
    )


def hash32(key: torch.Tensor) -> torch.Tensor:
    """A well-mixed 32-bit hash of int32 keys (int32, wrapping arithmetic): counter-based noise."""
    # note: int32, not int64: about ten times faster on the CPU; products wrap modulo 2^32 on every device
    x = key.int()
    x = ((x >> 16) ^ x) * 0x45D9F3B
    x = ((x >> 16) ^ x) * 0x45D9F3B
    return (x >> 16) ^ x


def hash01(key: torch.Tensor) -> torch.Tensor:
    """hash32 of int32 keys as floats in [0, 1)."""
    return ((hash32(key) >> 8) & 0xFFFFFF).float() * (1.0 / 2**24)


def value_noise(x: torch.Tensor, y: torch.Tensor, cell: float, seed: torch.Tensor) -> torch.Tensor:
    """Smooth noise in [0, 1) over the plane [m] (lattice values, smoothstep-blended); seed broadcasts."""
    fx, fy = x / cell, y / cell
    ix, iy = fx.floor(), fy.floor()
    tx, ty = fx - ix, fy - iy
    tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)
    ix, iy = ix.int(), iy.int()
    salt = hash32(seed.int())

    def at(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return hash01((i * 73856093) ^ (j * 19349663) ^ salt)

    top = torch.lerp(at(ix, iy), at(ix + 1, iy), tx)
    bottom = torch.lerp(at(ix, iy + 1), at(ix + 1, iy + 1), tx)
    return torch.lerp(top, bottom, ty)


def haze(
    color: torch.Tensor, distance: torch.Tensor, power: torch.Tensor, horizon: torch.Tensor, max_depth: float
) -> torch.Tensor:
    """Blend colours [..., 3] towards the horizon colour [..., 3] with distance [m] (all haze at max_depth)."""
    f = (distance / max_depth).clamp(0.0, 1.0) ** power
    return torch.lerp(color, horizon, f.unsqueeze(-1))


def sky_color(dirs: torch.Tensor, light: Lighting, yaw: torch.Tensor) -> torch.Tensor:
    """Sky, sun glow and a distant tree line seen along rays (S, 3) that reach no ground within the render
    distance, in B environments: (B, S, 3). yaw: (B,) [rad] the ego's global yaw (the tree line is fixed
    in the global frame)."""
    el = torch.asin(dirs[:, 2].clamp(-1.0, 1.0))  # (S,) [rad] elevation
    f = (el.clamp_min(0.0) / 0.6).clamp_max(1.0) ** 0.6
    color = torch.lerp(light.horizon.unsqueeze(1), light.zenith.unsqueeze(1), f.view(1, -1, 1))  # (B, S, 3)
    glow = torch.exp(30.0 * (light.sun @ dirs.T - 1.0)) * (light.diffuse / 0.75).unsqueeze(1) * (el >= 0)
    color += 0.6 * glow.unsqueeze(-1) * _rgb(SUN_TINT, dirs.device)

    # Tree line: rays within a band above the horizon, up to a skyline height that varies with the
    # global azimuth; beyond the render distance it stands on the ground.
    band = (el < HORIZON_BAND).nonzero().squeeze(1)
    d = dirs[band]
    az = torch.atan2(d[:, 1], d[:, 0]) + yaw.unsqueeze(1)  # (B, Sb) global azimuth
    p = light.trees
    wave = (
        0.55
        + 0.25 * torch.sin(3 * az + p[:, 1:2])
        + 0.12 * torch.sin(11 * az + p[:, 2:3])
        + 0.08 * torch.sin(37 * az + p[:, 3:4])
    )
    under = el[band] < p[:, 0:1] * wave  # (B, Sb)
    trees = torch.lerp(_rgb(TREES, dirs.device), light.horizon, 0.55)  # (B, 3) hazed by distance
    color[:, band] = torch.where(under.unsqueeze(-1), trees.unsqueeze(1), color[:, band])
    return color


def ground_color(
    surface: RoadSurface,
    gx: torch.Tensor,
    gy: torch.Tensor,
    distance: torch.Tensor,
    shadow: torch.Tensor,
    light: Lighting,
    max_depth: float,
    lane_width: float,
) -> torch.Tensor:
    """Colours (B, Q, 3) of ground points: asphalt, markings, shoulder, grass; lit, shadowed, hazed.

    gx, gy: (B, Q) global position [m]; distance: (Q,) [m] from the camera; shadow: (B, Q) in [0, 1].
    """
    dev = gx.device
    seed = light.seed.unsqueeze(1)
    blotch = value_noise(gx, gy, 1.7, seed)  # (B, Q)
    asphalt = light.asphalt.unsqueeze(1) * (0.93 + 0.14 * blotch)
    in_lane = (surface.d - torch.round(surface.d / lane_width) * lane_width).abs()  # [m] from a lane centre
    asphalt = asphalt * (1.0 - 0.06 * torch.exp(-(((in_lane - 0.85) / 0.3) ** 2)))  # darker, worn wheel tracks
    shoulder = asphalt * 1.08 + 0.03
    grass = light.grass.unsqueeze(1) * (0.7 + 0.6 * value_noise(gx, gy, 0.9, seed + 1)).unsqueeze(-1)
    gray = torch.where(surface.on_road, asphalt, shoulder).unsqueeze(-1).expand(-1, -1, 3)
    color = torch.where((surface.outside <= SHOULDER_WIDTH).unsqueeze(-1), gray, grass)
    color = torch.where(surface.marking.unsqueeze(-1), _rgb(MARKING, dev) * (0.9 + 0.1 * blotch).unsqueeze(-1), color)
    sun_up = light.sun[:, 2:3].clamp_min(0.0)
    lum = light.ambient.unsqueeze(1) * (1.0 - 0.5 * shadow) + light.diffuse.unsqueeze(1) * sun_up * (1.0 - shadow)
    color = color * lum.unsqueeze(-1) * _rgb(SUN_TINT, dev)
    return haze(color, distance.unsqueeze(0), light.haze_power.unsqueeze(1), light.horizon.unsqueeze(1), max_depth)


def vehicle_color(
    local: torch.Tensor,
    face: torch.Tensor,
    part: torch.Tensor,
    yaw: torch.Tensor,
    size: torch.Tensor,
    truck: torch.Tensor,
    paint: torch.Tensor,
    distance: torch.Tensor,
    light: Lighting,
    env: torch.Tensor,
    max_depth: float,
) -> torch.Tensor:
    """Colours (V, 3) of V vehicle hits: paint, glass, tyres and lights, Lambert-lit, hazed.

    local: (V, 3) [m] hit point in the vehicle frame (z above the ground); face, part: from the caster;
    yaw: (V,) [rad] vehicle yaw in the ego frame; size: (V, 3) w, l, h [m]; paint: (V, 3); env: (V,).
    """
    dev = local.device
    lx, ly, lz = local.unbind(-1)
    w, l, h = size.unbind(-1)
    vertical = face < 4
    belt = CAR_BELT * h
    cab_h = TRUCK_CAB[2] * h
    car, cab = ~truck, part == 1
    # car windows: the cabin's vertical faces between the belt line and the roof, framed by pillars
    pillar = torch.where(
        face >= 2,
        (lx - CAR_CABIN[2] * l).abs() > 0.5 * CAR_CABIN[0] * l - 0.12,
        ly.abs() > 0.5 * CAR_CABIN[1] * w - 0.1,
    )
    car_glass = (lz > belt + 0.04) & (lz < h - 0.07) & ~pillar
    glass = vertical & cab & torch.where(truck, (face != 0) & (lz > 0.5 * cab_h) & (lz < 0.88 * cab_h), car_glass)
    dark = torch.where(truck, lz < torch.where(cab, 0.45, 0.95), lz < 0.22)
    wheel = car & (face >= 2) & vertical & (((lx.abs() - 0.3 * l) ** 2 + (lz - 0.32) ** 2) < 0.32**2)
    lamp_z = torch.where(truck, (lz > 0.6) & (lz < 0.9), (lz > 0.58 * belt) & (lz < 0.85 * belt))
    outer = ly.abs() > 0.3 * w
    tail = (face == 0) & ~cab & lamp_z & outer
    head = (face == 1) & (cab == truck) & lamp_z & outer
    color = paint
    color = torch.where((dark | wheel).unsqueeze(-1), _rgb(TYRE, dev), color)
    color = torch.where(glass.unsqueeze(-1), _rgb(GLASS, dev) + 0.2 * light.horizon[env], color)  # sky reflection
    color = torch.where(tail.unsqueeze(-1), _rgb(TAIL_LIGHT, dev), color)
    color = torch.where(head.unsqueeze(-1), _rgb(HEAD_LIGHT, dev), color)

    normal = face_normal(face, yaw)
    lambert = (normal * light.sun[env]).sum(dim=-1).clamp_min(0.0)
    lum = light.ambient[env] + light.diffuse[env] * lambert * torch.where(glass, 0.4, 1.0)
    color = color * lum.unsqueeze(-1) * _rgb(SUN_TINT, dev)
    return haze(color, distance, light.haze_power[env], light.horizon[env], max_depth)


def face_normal(face: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
    """Outward unit normals (V, 3), ego frame, of the box faces `face` (V,) hit on vehicles of yaw (V,) [rad]."""
    axis, sign = face // 2, (face % 2) * 2.0 - 1.0
    n_local = torch.nn.functional.one_hot(axis, 3).float() * sign.unsqueeze(-1)  # (V, 3) outward normal
    c, s = torch.cos(yaw), torch.sin(yaw)
    return torch.stack(
        [c * n_local[:, 0] - s * n_local[:, 1], s * n_local[:, 0] + c * n_local[:, 1], n_local[:, 2]], dim=-1
    )


def noise(image: torch.Tensor, light: Lighting, std: float) -> torch.Tensor:
    """Add per-pixel sensor noise (std [0-255 levels]) in place to colours (B, ..., 3) (channels last) and
    quantise them to uint8. The noise of pixel p of environment b is a hash of (p, b's seed)."""
    B = image.shape[0]
    if std > 0.0:
        pixel = torch.arange(image[0, ..., 0].numel(), device=image.device, dtype=torch.int32)
        bits = hash32(pixel ^ hash32(light.seed.int()).view(B, 1))  # (B, P): 3 x 10 bits per pixel
        scale = math.sqrt(12.0) * std / 255.0 / 1024.0  # uniform on 1024 levels with the given std
        flat = image.view(B, -1, 3)
        for ch in range(3):  # one channel at a time keeps the temporaries small
            flat[..., ch].add_(((bits >> (10 * ch)) & 1023).float().sub_(511.5).mul_(scale))
    return image.mul_(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)
