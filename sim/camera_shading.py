"""Looks of the camera images: per-image lighting, sky, ground and vehicle materials, sensor noise; and, opt-in,
more variety for sim-to-real training (`RenderVariety`: fog, metallic paint, asphalt wear, blur, vignetting, stronger
noise, gamma, JPEG artifacts; off by default, so default renders are unchanged).

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


def draw_lighting(config: CameraConfig, num_envs: int, generator: torch.Generator, device: torch.device) -> Lighting:
    """Draw the lighting of `num_envs` images from one uniform draw on the generator's device."""
    u = torch.rand((num_envs, NUM_LIGHTING_DRAWS), generator=generator, device=generator.device).to(device)
    return lighting_from_uniforms(config, u)


def lighting_from_uniforms(config: CameraConfig, u: torch.Tensor) -> Lighting:
    """The lighting of B images from their uniforms u (B, NUM_LIGHTING_DRAWS) in [0, 1)."""
    device = u.device

    def lerp(lo_hi: tuple[float, float], x: torch.Tensor) -> torch.Tensor:
        return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * x

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


def _haze(
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
    return _haze(color, distance.unsqueeze(0), light.haze_power.unsqueeze(1), light.horizon.unsqueeze(1), max_depth)


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
    return _haze(color, distance, light.haze_power[env], light.horizon[env], max_depth)


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


# ------------------------------------------------------------------------------------------ opt-in variety

NUM_VARIETY_DRAWS = 12  # uniforms drawn per environment and call when a RenderVariety is given
JPEG_BLOCK = 8  # [px] JPEG's DCT block
# JPEG's standard luminance quantisation table (ITU T.81 Annex K), the base of every quality setting
JPEG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)


@dataclass(frozen=True)
class RenderVariety:
    """Extra per-image randomisation for sim-to-real training, each effect drawn per image (0 turns one off).

    Scene: fog (thicker, greyer haze), metallic paint (a specular highlight of the sun on the body), worn
    asphalt (stronger patches). Sensor: blur, vignetting, extra noise, gamma, JPEG compression.
    """

    fog_probability: float = 0.25
    """Share of images with fog: haze reaching `fog_distance` of max_depth, a grey sky."""
    fog_distance: tuple[float, float] = (0.15, 0.5)
    """[-] where the fog is complete, as a fraction of max_depth (drawn per foggy image)."""
    metallic_probability: float = 0.5
    """Share of vehicles (per image) with metallic paint: a specular sun highlight."""
    asphalt_wear: float = 0.25
    """[-] largest extra amplitude of the asphalt's patches (0: the default texture)."""
    blur_sigma: float = 1.2
    """[px] largest Gaussian blur (defocus, motion) sigma, drawn per image."""
    vignetting: float = 0.45
    """[-] largest brightness loss in the image corners, drawn per image."""
    noise_std: float = 6.0
    """[0-255 levels] largest extra per-pixel noise, drawn per image."""
    gamma: tuple[float, float] = (0.8, 1.25)
    """[-] tone-curve exponent range, drawn per image."""
    jpeg_quality: tuple[float, float] = (25.0, 95.0)
    """JPEG quality range (libjpeg's 1-100 scale), drawn per image; quality 100 adds nothing."""

    def validate(self) -> RenderVariety:
        """Raise ValueError naming the field for anything out of range; returns self."""
        for name in ("fog_probability", "metallic_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"invalid config: variety.{name}={getattr(self, name)!r}; allowed: 0..1")
        for name, high in (("asphalt_wear", 1.0), ("blur_sigma", 5.0), ("vignetting", 0.9), ("noise_std", 50.0)):
            if not 0.0 <= getattr(self, name) <= high:
                raise ValueError(f"invalid config: variety.{name}={getattr(self, name)!r}; allowed: 0..{high}")
        for name, lo_min, hi_max in (("fog_distance", 0.02, 1.0), ("gamma", 0.2, 5.0), ("jpeg_quality", 1.0, 100.0)):
            lo, hi = getattr(self, name)
            if not lo_min <= lo <= hi <= hi_max:
                raise ValueError(
                    f"invalid config: variety.{name}={(lo, hi)!r}; allowed: {lo_min} <= low <= high <= {hi_max}"
                )
        return self


@dataclass(frozen=True)
class VarietyDraw:
    """The variety of B images of one render call; tensors lead with B."""

    fog: torch.Tensor  # (B,) bool
    fog_distance: torch.Tensor  # (B,) [-] fraction of max_depth where the fog is complete
    metallic: torch.Tensor  # (B,) probability that a vehicle of the image is metallic
    wear: torch.Tensor  # (B,) extra asphalt patch amplitude
    blur: torch.Tensor  # (B,) [px] Gaussian sigma
    vignetting: torch.Tensor  # (B,) brightness loss in the corners
    noise_std: torch.Tensor  # (B,) [0-255 levels]
    gamma: torch.Tensor  # (B,)
    jpeg_quality: torch.Tensor  # (B,) 1..100
    seed: torch.Tensor  # (B,) int32 seeds the per-vehicle and per-pixel hashes

    def index(self, idx: slice) -> VarietyDraw:
        return VarietyDraw(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


def variety_from_uniforms(variety: RenderVariety, u: torch.Tensor) -> VarietyDraw:
    """The variety of B images from their uniforms u (B, NUM_VARIETY_DRAWS) in [0, 1)."""

    def lerp(lo_hi: tuple[float, float], x: torch.Tensor) -> torch.Tensor:
        return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * x

    return VarietyDraw(
        fog=u[:, 0] < variety.fog_probability,
        fog_distance=lerp(variety.fog_distance, u[:, 1]),
        metallic=variety.metallic_probability * torch.ones_like(u[:, 2]),
        wear=variety.asphalt_wear * u[:, 2],
        blur=variety.blur_sigma * u[:, 3] ** 2,  # mostly sharp
        vignetting=variety.vignetting * u[:, 4],
        noise_std=variety.noise_std * u[:, 5],
        gamma=torch.exp(lerp((math.log(variety.gamma[0]), math.log(variety.gamma[1])), u[:, 6])),
        jpeg_quality=lerp(variety.jpeg_quality, u[:, 7]),
        seed=(u[:, 8] * 2**30).int(),
    )


def draw_lighting_and_variety(
    config: CameraConfig, variety: RenderVariety, num_envs: int, generator: torch.Generator, device: torch.device
) -> tuple[Lighting, VarietyDraw]:
    """Lighting and variety of `num_envs` images from one uniform draw (so a batch equals its environments drawn
    one after another); the lighting of a call is then not the one `draw_lighting` would draw."""
    u = torch.rand((num_envs, NUM_LIGHTING_DRAWS + NUM_VARIETY_DRAWS), generator=generator, device=generator.device).to(
        device
    )
    light = lighting_from_uniforms(config, u[:, :NUM_LIGHTING_DRAWS])
    draw = variety_from_uniforms(variety, u[:, NUM_LIGHTING_DRAWS:])
    return with_fog(light, draw), draw


def with_fog(light: Lighting, draw: VarietyDraw) -> Lighting:
    """`light` with the foggy images' haze thick (a linear haze power, complete at fog_distance) and grey."""
    grey = light.horizon.mean(dim=1, keepdim=True).expand(-1, 3) * 0.9 + 0.08
    fog = draw.fog.unsqueeze(1)
    return Lighting(
        **{
            **{f.name: getattr(light, f.name) for f in fields(light)},
            "horizon": torch.where(fog, grey, light.horizon),
            "zenith": torch.where(fog, torch.lerp(light.zenith, grey, 0.8), light.zenith),
            "haze_power": torch.where(draw.fog, 0.6 * draw.fog_distance.sqrt(), light.haze_power),
            "diffuse": torch.where(draw.fog, 0.3 * light.diffuse, light.diffuse),
            "ambient": torch.where(draw.fog, light.ambient + 0.15, light.ambient),
        }
    )


def asphalt_wear(
    color: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, on_road: torch.Tensor, draw: VarietyDraw
) -> torch.Tensor:
    """Ground colours (B, Q, 3) with darker and lighter patches (repairs, wet spots) on the road (`on_road`, (B, Q)
    bool) of per-image strength `draw.wear`; gx, gy: (B, Q) global position [m]."""
    patches = value_noise(gx, gy, 4.0, draw.seed.unsqueeze(1) + 7) - 0.5  # (B, Q) in [-0.5, 0.5)
    gain = 1.0 + 2.0 * draw.wear.unsqueeze(1) * patches * on_road
    return color * gain.unsqueeze(-1)


def specular(
    normal: torch.Tensor,
    view: torch.Tensor,
    light: Lighting,
    draw: VarietyDraw,
    env: torch.Tensor,
    vehicle: torch.Tensor,
) -> torch.Tensor:
    """Specular sun highlight (V,) of metallic vehicles (a hash of image seed and vehicle slot decides which):
    Blinn-Phong on the face normal (V, 3) seen along the unit ray `view` (V, 3), both in the ego frame."""
    metallic = hash01(vehicle.int() * 2654435 ^ hash32(draw.seed[env])) < draw.metallic[env]
    half = light.sun[env] - view
    half = half / half.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    highlight = (normal * half).sum(dim=-1).clamp_min(0.0) ** 40
    return 0.8 * highlight * metallic * (light.diffuse[env] / 0.75)


def _gaussian_blur(image: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Images (B, K, 3, H, W) float blurred with a per-image Gaussian of sigma (B,) [px] (0: unchanged)."""
    B, K, _, H, W = image.shape
    radius = int(math.ceil(3.0 * float(sigma.max()))) if sigma.numel() else 0
    if radius < 1:
        return image
    x = torch.arange(-radius, radius + 1, device=image.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma.clamp_min(1e-3).unsqueeze(1)) ** 2)  # (B, 2r + 1)
    kernel = torch.where(sigma.unsqueeze(1) > 1e-3, kernel, (x == 0).float())  # sigma 0: identity
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    # one grouped convolution per axis: the group of a channel is its image's kernel
    flat = image.reshape(1, B * K * 3, H, W)
    weight = kernel.repeat_interleave(K * 3, dim=0)  # (B * K * 3, 2r + 1)
    flat = torch.nn.functional.pad(flat, (radius, radius, 0, 0), mode="replicate")
    flat = torch.nn.functional.conv2d(flat, weight.view(-1, 1, 1, 2 * radius + 1), groups=B * K * 3)
    flat = torch.nn.functional.pad(flat, (0, 0, radius, radius), mode="replicate")
    flat = torch.nn.functional.conv2d(flat, weight.view(-1, 1, 2 * radius + 1, 1), groups=B * K * 3)
    return flat.view(B, K, 3, H, W)


def _dct_matrix(device: torch.device) -> torch.Tensor:
    n = torch.arange(JPEG_BLOCK, dtype=torch.float32, device=device)
    m = torch.cos((2 * n.view(1, -1) + 1) * n.view(-1, 1) * math.pi / (2 * JPEG_BLOCK))  # (k, n)
    m[0] *= 1.0 / math.sqrt(2.0)
    return m * math.sqrt(2.0 / JPEG_BLOCK)


def _jpeg(image: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG's lossy step on images (B, K, 3, H, W) in 0-255: YCbCr, 8 x 8 DCT, quantisation with the standard
    luminance table at per-image `quality` (B,) (libjpeg's scaling; chroma with twice the step), and back."""
    B, K, _, H, W = image.shape
    ph, pw = (-H) % JPEG_BLOCK, (-W) % JPEG_BLOCK
    x = torch.nn.functional.pad(image.reshape(B * K, 3, H, W), (0, pw, 0, ph), mode="replicate")
    r, g, b = x.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    ycc = torch.stack([y - 128.0, 0.564 * (b - y), 0.713 * (r - y)], dim=1)  # (BK, 3, H', W')
    Hp, Wp = ycc.shape[-2:]
    blocks = ycc.view(B * K, 3, Hp // 8, 8, Wp // 8, 8).transpose(3, 4)  # (BK, 3, h, w, 8, 8)
    d = _dct_matrix(image.device)
    coeff = d @ blocks @ d.T
    q = quality.clamp(1.0, 100.0)
    scale = torch.where(q < 50, 50.0 / q, 2.0 - q / 50.0)  # libjpeg's quality scaling
    table = torch.tensor(JPEG_LUMA, dtype=torch.float32, device=image.device)
    step = (table * scale.view(-1, 1, 1)).clamp_min(1.0)  # (B, 8, 8)
    step = step.repeat_interleave(K, dim=0).view(B * K, 1, 1, 1, 8, 8)
    step = step * torch.tensor([1.0, 2.0, 2.0], device=image.device).view(1, 3, 1, 1, 1, 1)
    coeff = torch.round(coeff / step) * step
    blocks = d.T @ coeff @ d
    y, cb, cr = blocks.transpose(3, 4).reshape(B * K, 3, Hp, Wp).unbind(1)
    y = y + 128.0
    rgb = torch.stack([y + 1.403 * cr, y - 0.344 * cb - 0.714 * cr, y + 1.773 * cb], dim=1)
    return rgb[..., :H, :W].reshape(B, K, 3, H, W)


def sensor_effects(images: torch.Tensor, draw: VarietyDraw) -> torch.Tensor:
    """Images (B, K, 3, H, W) uint8 (K cameras) through a per-image sensor: blur, vignetting, gamma, extra noise
    (a hash of pixel and image seed), JPEG compression; uint8 again."""
    B, K, _, H, W = images.shape
    dev = images.device
    x = _gaussian_blur(images.float(), draw.blur)
    v = (torch.arange(H, device=dev, dtype=torch.float32) + 0.5) / H - 0.5
    u = (torch.arange(W, device=dev, dtype=torch.float32) + 0.5) / W - 0.5
    r2 = (u.view(1, -1) ** 2 + v.view(-1, 1) ** 2) / 0.5  # (H, W) 1 in the corners
    x = x * (1.0 - draw.vignetting.view(B, 1, 1, 1, 1) * r2)
    x = 255.0 * (x / 255.0).clamp(0.0, 1.0) ** draw.gamma.view(B, 1, 1, 1, 1)
    pixel = torch.arange(K * 3 * H * W, device=dev, dtype=torch.int32).view(1, -1)
    uniform = hash01(pixel ^ hash32(draw.seed.int() + 3).view(B, 1)).view(B, K, 3, H, W)
    x = x + (uniform - 0.5) * math.sqrt(12.0) * draw.noise_std.view(B, 1, 1, 1, 1)
    x = _jpeg(x.clamp(0.0, 255.0), draw.jpeg_quality)
    return x.round().clamp(0.0, 255.0).to(torch.uint8)
