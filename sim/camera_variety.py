"""Opt-in variety of the camera images for sim-to-real training (`RenderVariety`), off by default: default renders
never pass through here and stay unchanged bit for bit.

Two kinds of randomness. Per image (the lighting's draw grown by NUM_VARIETY_DRAWS uniforms): fog, overcast skies,
exposure, asphalt wear and the sensor (sim.camera_sensor). Per scene (a hash of the scene seed, which the caller
draws once per scene; without it, one per image): the roadside (urban pavement and buildings or rural grass and
trees; sim.camera_clutter), repainted and metallic vehicles. Everything is a counter-based hash of seeds and
indices, so a batch equals its environments rendered one after another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from drivestack.sim.camera import CameraConfig
from drivestack.sim.camera_shading import (
    NUM_LIGHTING_DRAWS,
    Lighting,
    hash01,
    hash32,
    lerp,
    lighting_from_uniforms,
    value_noise,
)

NUM_VARIETY_DRAWS = 12  # uniforms drawn per environment and call when a RenderVariety is given
OVERCAST_SKY = (0.55, 0.8)  # overcast amount of the overcast images (lighting_from_uniforms' scale: at most 0.8)
PAVEMENT = (0.50, 0.50, 0.48)  # urban roadside (sidewalks, lots) in place of grass (sRGB)
# Repaint colours (sRGB) and shares: real traffic is mostly white, black, grey and silver.
REPAINT = (
    (0.90, 0.90, 0.90),
    (0.03, 0.03, 0.035),
    (0.22, 0.23, 0.24),
    (0.45, 0.46, 0.48),
    (0.68, 0.69, 0.71),
    (0.52, 0.06, 0.06),
    (0.07, 0.14, 0.36),
    (0.32, 0.29, 0.25),
    (0.74, 0.70, 0.62),
)
REPAINT_SHARE = (0.25, 0.22, 0.13, 0.12, 0.12, 0.06, 0.05, 0.03, 0.02)
# Vehicle bodies with chamfered edges (sim.raycast.ray_box's profiles: no ellipsoid, then the legs of the cuts as
# fractions of each part's half extents: vertical corners x, y; front top x, z; rear top x, z; side tops y, z):
# (car lower body: hood and boot edges, car cabin: windscreen and rear window), (truck cargo box, truck cab).
VEHICLE_PROFILES = (
    (
        (math.inf, 0.10, 0.25, 0.12, 0.5, 0.06, 0.35, 0.08, 0.2),
        (math.inf, 0.12, 0.2, 0.6, 0.95, 0.4, 0.9, 0.25, 0.4),
    ),
    (
        (math.inf, 0.02, 0.08, 0.01, 0.05, 0.01, 0.05, 0.05, 0.05),
        (math.inf, 0.12, 0.10, 0.3, 0.25, 0.0, 0.0, 0.08, 0.08),
    ),
)
SALT_URBAN, SALT_PAVEMENT, SALT_REPAINT, SALT_PICK, SALT_SHADE, SALT_METAL = 11, 13, 17, 19, 23, 29


@dataclass(frozen=True)
class RenderVariety:
    """Extra randomisation for sim-to-real training (0 turns an effect off).

    Per scene: roadside clutter (buildings, poles and sign posts, barriers and walls, trees) on urban or rural
    roadsides, repainted and metallic vehicles, shaped vehicle bodies, cast shadows. Per image: fog, overcast
    skies, exposure, worn asphalt, and a sensor (blur, vignetting, extra noise, gamma, JPEG compression).
    """

    clutter: float = 1.0
    """[-] density of the roadside clutter relative to the default (0: none; up to 2)."""
    urban_probability: float = 0.6
    """Share of scenes with an urban roadside: pavement instead of grass, more buildings and poles, fewer trees."""
    repaint_probability: float = 0.6
    """Share of vehicles (per scene) repainted from a white / black / grey / silver-heavy palette."""
    metallic_probability: float = 0.5
    """Share of vehicles (per scene) with metallic paint: a specular sun highlight."""
    shaped_vehicles: bool = True
    """Vehicle bodies with cut corners and edges (a sloped windscreen and hood; still inside their 3D box)."""
    cast_shadows: bool = True
    """Vehicles cast their shadow on the ground away from the sun (faint under overcast skies)."""
    fog_probability: float = 0.15
    """Share of images with fog: haze reaching `fog_distance` of max_depth, a grey sky."""
    fog_distance: tuple[float, float] = (0.15, 0.5)
    """[-] where the fog is complete, as a fraction of max_depth (drawn per foggy image)."""
    overcast_probability: float = 0.4
    """Share of images under an overcast sky: grey and bright, soft light, faint shadows."""
    exposure: tuple[float, float] = (0.75, 1.35)
    """[-] extra exposure gain range (on top of the camera's), drawn per image (log-uniform)."""
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
        for name in (
            "urban_probability",
            "repaint_probability",
            "metallic_probability",
            "fog_probability",
            "overcast_probability",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"invalid config: variety.{name}={getattr(self, name)!r}; allowed: 0..1")
        for name, high in (
            ("clutter", 2.0),
            ("asphalt_wear", 1.0),
            ("blur_sigma", 5.0),
            ("vignetting", 0.9),
            ("noise_std", 50.0),
        ):
            if not 0.0 <= getattr(self, name) <= high:
                raise ValueError(f"invalid config: variety.{name}={getattr(self, name)!r}; allowed: 0..{high}")
        for name, lo_min, hi_max in (
            ("fog_distance", 0.02, 1.0),
            ("exposure", 0.1, 10.0),
            ("gamma", 0.2, 5.0),
            ("jpeg_quality", 1.0, 100.0),
        ):
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
    exposure: torch.Tensor  # (B,) [-] extra exposure gain
    wear: torch.Tensor  # (B,) extra asphalt patch amplitude
    blur: torch.Tensor  # (B,) [px] Gaussian sigma
    vignetting: torch.Tensor  # (B,) brightness loss in the corners
    noise_std: torch.Tensor  # (B,) [0-255 levels]
    gamma: torch.Tensor  # (B,)
    jpeg_quality: torch.Tensor  # (B,) 1..100
    seed: torch.Tensor  # (B,) int32 seeds the per-pixel hashes of the image
    scene_seed: torch.Tensor  # (B,) int32 seeds what stays fixed over a scene (clutter, paint, roadside)
    urban: torch.Tensor  # (B,) bool: an urban roadside
    config: RenderVariety  # the options drawn from

    def index(self, idx: slice) -> VarietyDraw:
        return replace(self, **{f.name: getattr(self, f.name)[idx] for f in fields(self) if f.name != "config"})


def keyed01(seed: torch.Tensor, salt: int, index: torch.Tensor) -> torch.Tensor:
    """Uniforms in [0, 1) that are a hash of (seed, salt, index) (int tensors that broadcast): stable per scene."""
    return hash01(index.int() ^ hash32(seed.int() ^ salt))


def variety_from_uniforms(
    variety: RenderVariety, u: torch.Tensor, scene_seed: torch.Tensor | None = None
) -> VarietyDraw:
    """The variety of B images from their uniforms u (B, NUM_VARIETY_DRAWS) in [0, 1); scene_seed (B,) int (None:
    one per image, from u)."""

    def log_lerp(lo_hi: tuple[float, float], x: torch.Tensor) -> torch.Tensor:
        return torch.exp(lerp((math.log(lo_hi[0]), math.log(lo_hi[1])), x))

    scene = (u[:, 11] * 2**30).int() if scene_seed is None else scene_seed.to(u.device).int()
    return VarietyDraw(
        fog=u[:, 0] < variety.fog_probability,
        fog_distance=lerp(variety.fog_distance, u[:, 1]),
        exposure=log_lerp(variety.exposure, u[:, 10]),
        wear=variety.asphalt_wear * u[:, 2],
        blur=variety.blur_sigma * u[:, 3] ** 2,  # mostly sharp
        vignetting=variety.vignetting * u[:, 4],
        noise_std=variety.noise_std * u[:, 5],
        gamma=log_lerp(variety.gamma, u[:, 6]),
        jpeg_quality=lerp(variety.jpeg_quality, u[:, 7]),
        seed=(u[:, 8] * 2**30).int(),
        scene_seed=scene,
        urban=keyed01(scene, SALT_URBAN, torch.zeros_like(scene)) < variety.urban_probability,
        config=variety,
    )


def draw_scene_seeds(num_envs: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(num_envs,) int32 scene seeds for render_cameras(..., scene_seed=): draw once per scene, so the roadside and
    the vehicles' paint stay the same from one image of a scene to the next."""
    u = torch.rand(num_envs, generator=generator, device=generator.device).to(device)
    return (u * 2**30).int()


def draw_lighting_and_variety(
    config: CameraConfig,
    variety: RenderVariety,
    num_envs: int,
    generator: torch.Generator,
    device: torch.device,
    scene_seed: torch.Tensor | None = None,
) -> tuple[Lighting, VarietyDraw]:
    """Lighting and variety of `num_envs` images from one uniform draw (so a batch equals its environments drawn
    one after another); the lighting of a call is then not the one `draw_lighting` would draw."""
    u = torch.rand((num_envs, NUM_LIGHTING_DRAWS + NUM_VARIETY_DRAWS), generator=generator, device=generator.device).to(
        device
    )
    ul, uv = u[:, :NUM_LIGHTING_DRAWS].clone(), u[:, NUM_LIGHTING_DRAWS:]
    # overcast images: the lighting's own overcast amount (0.8 u^2) set from the variety's uniform
    p = variety.overcast_probability
    amount = OVERCAST_SKY[0] + (OVERCAST_SKY[1] - OVERCAST_SKY[0]) * (uv[:, 9] / max(p, 1e-9)).clamp_max(1.0)
    ul[:, 2] = torch.where(uv[:, 9] < p, (amount / 0.8).sqrt(), ul[:, 2])
    draw = variety_from_uniforms(variety, uv, scene_seed)
    return with_weather(lighting_from_uniforms(config, ul), draw), draw


def with_weather(light: Lighting, draw: VarietyDraw) -> Lighting:
    """`light` with the variety's exposure, pavement on urban roadsides, and the foggy images' haze thick (a linear
    haze power, complete at fog_distance) and grey, their distant tree line gone (below the horizon)."""
    grey = light.horizon.mean(dim=1, keepdim=True).expand(-1, 3) * 0.9 + 0.08
    fog = draw.fog.unsqueeze(1)
    zero = torch.zeros_like(draw.scene_seed)
    tone = 0.8 + 0.35 * keyed01(draw.scene_seed, SALT_PAVEMENT, zero).unsqueeze(1)
    pavement = torch.tensor(PAVEMENT, device=tone.device) * tone  # (B, 3)
    return replace(
        light,
        exposure=light.exposure * draw.exposure,
        grass=torch.where(draw.urban.unsqueeze(1), pavement, light.grass),
        horizon=torch.where(fog, grey, light.horizon),
        zenith=torch.where(fog, torch.lerp(light.zenith, grey, 0.8), light.zenith),
        haze_power=torch.where(draw.fog, 0.6 * draw.fog_distance.sqrt(), light.haze_power),
        diffuse=torch.where(draw.fog, 0.3 * light.diffuse, light.diffuse),
        ambient=torch.where(draw.fog, light.ambient + 0.15, light.ambient),
        trees=torch.where(fog, light.trees * torch.tensor([-1.0, 1.0, 1.0, 1.0], device=fog.device), light.trees),
    )


def asphalt_wear(
    color: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, on_road: torch.Tensor, draw: VarietyDraw
) -> torch.Tensor:
    """Ground colours (B, Q, 3) with darker and lighter patches (repairs, wet spots) on the road (`on_road`, (B, Q)
    bool) of per-image strength `draw.wear`; gx, gy: (B, Q) global position [m]."""
    patches = value_noise(gx, gy, 4.0, draw.seed.unsqueeze(1) + 7) - 0.5  # (B, Q) in [-0.5, 0.5)
    gain = 1.0 + 2.0 * draw.wear.unsqueeze(1) * patches * on_road
    return color * gain.unsqueeze(-1)


def repaint(color: torch.Tensor, draw: VarietyDraw) -> torch.Tensor:
    """Body colours (B, N, 3) with a share `repaint_probability` of the vehicles (a hash of scene seed and slot)
    repainted from REPAINT, with a per-vehicle shade."""
    B, N, _ = color.shape
    seed = draw.scene_seed.view(B, 1)
    slot = torch.arange(N, device=color.device).view(1, N)
    shares = torch.tensor(REPAINT_SHARE, device=color.device)
    cum = torch.cumsum(shares / shares.sum(), dim=0)
    pick = (keyed01(seed, SALT_PICK, slot).unsqueeze(-1) >= cum).sum(dim=-1).clamp_max(len(REPAINT) - 1)
    shade = 0.85 + 0.3 * keyed01(seed, SALT_SHADE, slot).unsqueeze(-1)
    new = (torch.tensor(REPAINT, device=color.device)[pick] * shade).clamp(0.0, 1.0)  # (B, N, 3)
    chosen = keyed01(seed, SALT_REPAINT, slot) < draw.config.repaint_probability
    return torch.where(chosen.unsqueeze(-1), new, color)


def body_profile(truck: torch.Tensor) -> torch.Tensor:
    """(B, N, 2, NUM_PROFILE) ray_box profiles of each vehicle's two parts (VEHICLE_PROFILES of cars and trucks)."""
    table = torch.tensor(VEHICLE_PROFILES, device=truck.device)  # (2, 2, NUM_PROFILE)
    return table[truck.long()]


def specular(
    normal: torch.Tensor,
    view: torch.Tensor,
    light: Lighting,
    draw: VarietyDraw,
    env: torch.Tensor,
    vehicle: torch.Tensor,
) -> torch.Tensor:
    """Specular sun highlight (V,) of metallic vehicles (a hash of scene seed and vehicle slot decides which):
    Blinn-Phong on the face normal (V, 3) seen along the unit ray `view` (V, 3), both in the ego frame."""
    metallic = keyed01(draw.scene_seed[env], SALT_METAL, vehicle) < draw.config.metallic_probability
    half = light.sun[env] - view
    half = half / half.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    highlight = (normal * half).sum(dim=-1).clamp_min(0.0) ** 40
    return 0.8 * highlight * metallic * (light.diffuse[env] / 0.75)
