"""The opt-in renderer variety (sim.camera_shading.RenderVariety): deterministic under a seed, batched == one
environment at a time, geometry untouched, default renders unchanged, sensor effects that vanish at zero."""

from __future__ import annotations

import pytest
import torch

from drivestack.sim.camera import CameraConfig, camera_rig
from drivestack.sim.camera_render import CameraFrame, VehicleAppearance, render_cameras
from drivestack.sim.camera_shading import RenderVariety, sensor_effects, variety_from_uniforms

CONFIG = CameraConfig(width=160, height=90, channels=("CAM_FRONT", "CAM_BACK_LEFT"))


def _render(traffic, seed: int, variety: RenderVariety | None = None, envs: slice = slice(0, 3)) -> CameraFrame:
    road, world, looks = traffic
    looks = VehicleAppearance(looks.height[envs], looks.color[envs])
    return render_cameras(
        road, world.index(envs), camera_rig(CONFIG), looks, torch.Generator().manual_seed(seed), variety
    )


def test_variety_is_deterministic_under_a_seed(traffic) -> None:
    torch.set_num_threads(1)
    variety = RenderVariety(fog_probability=0.5)
    a, b, c = _render(traffic, 7, variety), _render(traffic, 7, variety), _render(traffic, 8, variety)
    assert torch.equal(a.images, b.images)
    assert (a.images != c.images).float().mean() > 0.3
    plain = _render(traffic, 7)
    assert (a.images != plain.images).float().mean() > 0.3  # the variety shows
    for name in ("instance", "visible_pixels", "full_pixels", "visibility"):  # the geometry does not change
        assert torch.equal(getattr(a, name), getattr(plain, name)), name
    assert torch.equal(plain.images, _render(traffic, 7, None).images)  # None: today's renders


def test_variety_batched_equals_one_environment_at_a_time(traffic) -> None:
    torch.set_num_threads(1)
    road, world, looks = traffic
    variety = RenderVariety()
    batched = _render(traffic, 11, variety)
    gen = torch.Generator().manual_seed(11)
    singles = [
        render_cameras(
            road,
            world.index(slice(i, i + 1)),
            camera_rig(CONFIG),
            VehicleAppearance(looks.height[i : i + 1], looks.color[i : i + 1]),
            gen,
            variety,
        )
        for i in range(3)
    ]
    assert torch.equal(torch.cat([s.images for s in singles]), batched.images)


def test_sensor_effects_vanish_at_zero_and_vary_per_image() -> None:
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(2, 1, 3, 40, 56, generator=gen) * 255).to(torch.uint8)
    off = RenderVariety(blur_sigma=0.0, vignetting=0.0, noise_std=0.0, gamma=(1.0, 1.0), jpeg_quality=(100.0, 100.0))
    u = torch.rand(2, 12, generator=gen)
    same = sensor_effects(images, variety_from_uniforms(off, u))
    error = (same.int() - images.int()).abs()
    assert error.max() <= 4 and error.float().mean() < 1.0  # quality 100: rounding in YCbCr and the DCT only
    strong = RenderVariety(blur_sigma=2.0, vignetting=0.5, noise_std=10.0, jpeg_quality=(10.0, 10.0))
    draw = variety_from_uniforms(strong, torch.tensor([[0.5] * 12, [0.9] * 12]))
    out = sensor_effects(images, draw)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert (out.float() - images.float()).abs().mean() > 10
    assert torch.equal(out, sensor_effects(images, draw))
    assert out[:, :, :, :4, :4].float().mean() < out[:, :, :, 18:22, 26:30].float().mean()  # darker corners


def test_variety_options_are_checked() -> None:
    for bad, field in (
        (RenderVariety(fog_probability=1.5), "variety.fog_probability"),
        (RenderVariety(blur_sigma=-1.0), "variety.blur_sigma"),
        (RenderVariety(jpeg_quality=(90.0, 20.0)), "variety.jpeg_quality"),
    ):
        with pytest.raises(ValueError, match=field):
            bad.validate()
