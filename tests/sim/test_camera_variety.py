"""The opt-in renderer variety (sim.camera_variety.RenderVariety): default renders unchanged, deterministic under a
seed, batched == one environment at a time, annotations untouched, roadside clutter that occludes but is never a
vehicle, scenery fixed over a scene, shaped bodies inside their boxes, sensor effects that vanish at zero."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import drivestack.sim.camera_render as camera_render
from drivestack.sim.camera import CameraConfig, camera_rig
from drivestack.sim.camera_clutter import BUILDING, Clutter, roadside_clutter
from drivestack.sim.camera_render import CameraFrame, VehicleAppearance, render_cameras
from drivestack.sim.camera_sensor import sensor_effects
from drivestack.sim.camera_variety import RenderVariety, draw_scene_seeds, variety_from_uniforms
from drivestack.sim.raycast import PROFILE_BOX, ray_box, vehicle_boxes
from drivestack.sim.state import WorldState

CONFIG = CameraConfig(width=160, height=90, channels=("CAM_FRONT", "CAM_BACK_LEFT"))
# Renders of the renderer before the variety existed (tests/sim/data/default_render.npz: the `traffic` fixture,
# CAM_FRONT and CAM_BACK_LEFT at 96 x 54, generator seed 7, one thread); the shipped detector trained on such renders.
REFERENCE = Path(__file__).parent / "data" / "default_render.npz"
# Effects off: only the scene's variety shows (sensor effects would spread a change to neighbouring pixels).
NO_SENSOR = dict(blur_sigma=0.0, vignetting=0.0, noise_std=0.0, gamma=(1.0, 1.0), jpeg_quality=(100.0, 100.0))


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # renders compared bit for bit: one thread


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit, NaN where NaN."""
    return torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))


def _render(
    traffic,
    seed: int,
    variety: RenderVariety | None = None,
    envs: slice = slice(0, 3),
    scene_seed: torch.Tensor | None = None,
    config: CameraConfig = CONFIG,
) -> CameraFrame:
    road, world, looks = traffic
    looks = VehicleAppearance(looks.height[envs], looks.color[envs])
    gen = torch.Generator().manual_seed(seed)
    return render_cameras(road, world.index(envs), camera_rig(config), looks, gen, variety, scene_seed=scene_seed)


def test_default_renders_are_unchanged(traffic) -> None:
    frame = _render(traffic, 7, config=replace(CONFIG, width=96, height=54))
    ref = np.load(REFERENCE)
    # Bit for bit on the machine that made the reference; the tolerance only absorbs another CPU's float kernels.
    diff = np.abs(frame.images.numpy().astype(int) - ref["images"].astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
    assert (frame.instance.numpy() != ref["instance"]).mean() < 1e-3
    assert (ref["instance"] >= 0).sum() > 100  # vehicles are in view


def test_variety_is_deterministic_under_a_seed(traffic) -> None:
    variety = RenderVariety(fog_probability=0.5)
    a, b, c = _render(traffic, 7, variety), _render(traffic, 7, variety), _render(traffic, 8, variety)
    for name in ("images", "instance", "visible_pixels", "full_pixels", "visibility", "box_2d"):
        assert _same(getattr(a, name), getattr(b, name)), name
    assert (a.images != c.images).float().mean() > 0.3
    plain = _render(traffic, 7)
    assert (a.images != plain.images).float().mean() > 0.3  # the variety shows
    assert _same(a.box_2d, plain.box_2d)  # the annotations' geometry does not change
    flat = _render(traffic, 7, RenderVariety(clutter=0.0, shaped_vehicles=False))  # nothing that changes pixels' owners
    for name in ("instance", "visible_pixels", "full_pixels", "visibility"):
        assert torch.equal(getattr(flat, name), getattr(plain, name)), name


@pytest.mark.parametrize("per_scene", [False, True])
def test_variety_batched_equals_one_environment_at_a_time(traffic, per_scene: bool) -> None:
    variety = RenderVariety()
    seeds = draw_scene_seeds(3, torch.Generator().manual_seed(4), torch.device("cpu")) if per_scene else None
    batched = _render(traffic, 11, variety, scene_seed=seeds)
    road, world, looks = traffic
    gen = torch.Generator().manual_seed(11)
    singles = [
        render_cameras(
            road,
            world.index(slice(i, i + 1)),
            camera_rig(CONFIG),
            VehicleAppearance(looks.height[i : i + 1], looks.color[i : i + 1]),
            gen,
            variety,
            scene_seed=None if seeds is None else seeds[i : i + 1],
        )
        for i in range(3)
    ]
    for name in ("images", "instance", "visible_pixels"):
        assert torch.equal(torch.cat([getattr(s, name) for s in singles]), getattr(batched, name)), name


def test_scene_seed_fixes_the_scenery_as_the_ego_drives(traffic) -> None:
    road, world, looks = traffic
    draw = variety_from_uniforms(RenderVariety(urban_probability=0.5), torch.rand(3, 12), torch.tensor([5, 6, 7]))

    def global_clutter(ahead: float) -> list[np.ndarray]:
        """Centres (x, y) [m] of the present clutter, global frame, with the egos `ahead` [m] further on."""
        moved = world.replace(vehicles=replace(world.vehicles, s=world.vehicles.s + ahead))
        pose, _, _ = vehicle_boxes(road, moved, looks)
        clutter = roadside_clutter(road, moved.vehicles.s[:, 0], pose, draw, 80.0)
        c, s = torch.cos(pose[:, 3:4]), torch.sin(pose[:, 3:4])
        x, y = clutter.boxes[..., 0], clutter.boxes[..., 1]
        gx, gy = pose[:, 0:1] + c * x - s * y, pose[:, 1:2] + s * x + c * y
        return [torch.stack([gx[b], gy[b]], -1)[clutter.present[b]].numpy() for b in range(3)]

    here, there = global_clutter(0.0), global_clutter(23.0)
    for b in range(3):
        assert len(here[b]) > 20
        dist = np.linalg.norm(here[b][:, None] - there[b][None], axis=-1).min(axis=1)  # (M,) to the nearest
        # what stays within reach of both egos has not moved (the rest left the reach behind the ego)
        assert (dist < 1e-2).mean() > 0.6, b
    assert not np.array_equal(here[0][:5], here[1][:5])  # scenes differ


def _hand_world(make_vehicles) -> WorldState:
    """Three environments: an ego and one car 25 m ahead in its lane."""
    veh = make_vehicles(B=3, N=2, s=[100.0, 125.0], lane=1, d=[4.0, 4.0])
    B = 3
    zb, zl = torch.zeros(B), torch.zeros(B, dtype=torch.long)
    return WorldState(veh, zb, zl, zl.clone(), zl.clone(), zb.bool(), zb.bool(), zb.clone(), zb.clone(), zl.clone())


def _wall(x: float, B: int = 3) -> Clutter:
    """One building facade across the road x [m] ahead of each ego (ego frame), 12 m wide and 4 m high."""
    box = torch.tensor([x, 0.0, 2.0, 12.0, 0.4, 4.0, 0.0]).expand(B, 1, 7)
    centre = torch.tensor([[x, 0.0, 2.0], [0.0, 0.0, -1.0e4]]).expand(B, 1, 2, 3)
    half = torch.tensor([[0.2, 6.0, 2.0], [1.0, 1.0, 1.0]]).expand(B, 1, 2, 3)
    profile = torch.tensor([PROFILE_BOX, PROFILE_BOX]).expand(B, 1, 2, len(PROFILE_BOX))
    return Clutter(
        box,
        centre,
        half,
        profile,
        torch.ones(B, 1, dtype=torch.bool),
        torch.full((B, 1), BUILDING),
        torch.full((B, 1, 3), 0.6),
        torch.zeros(B, 1, dtype=torch.int32),
    )


def test_clutter_occludes_vehicles_and_is_never_one(highway_road, make_vehicles, monkeypatch) -> None:
    world = _hand_world(make_vehicles)
    looks = VehicleAppearance(torch.full((3, 2), 1.5), torch.full((3, 2, 3), 0.5))
    rig = camera_rig(replace(CONFIG, channels=("CAM_FRONT",)))
    variety = RenderVariety(**NO_SENSOR)

    def render(wall_at: float | None) -> CameraFrame:
        with monkeypatch.context() as mp:
            mp.setattr(camera_render, "roadside_clutter", lambda *args: _wall(wall_at) if wall_at else _wall(-1e3))
            return render_cameras(highway_road, world, rig, looks, torch.Generator().manual_seed(3), variety)

    open_road, in_front, behind = render(None), render(12.0), render(40.0)
    assert (open_road.visible_pixels[:, 0, 1] > 50).all()  # the car ahead is in view
    assert (in_front.visible_pixels[:, 0, 1] == 0).all() and (in_front.instance == -1).all()  # hidden by the wall
    assert (in_front.visibility == 0).all()
    assert torch.equal(behind.visible_pixels, open_road.visible_pixels)  # a wall behind the car hides none of it
    assert torch.equal(behind.instance, open_road.instance)
    for frame in (in_front, behind):
        assert torch.equal(frame.full_pixels, open_road.full_pixels)  # its body is all there, only hidden
        assert _same(frame.box_2d, open_road.box_2d)  # the annotation does not change
    wall = (in_front.images.float() - open_road.images.float()).abs().sum(dim=2) > 30  # (B, C, H, W)
    assert wall.float().mean() > 0.2  # the wall is drawn


def test_roadside_clutter_only_hides_vehicles(traffic) -> None:
    seeds = torch.tensor([1, 2, 3])
    bare = _render(traffic, 5, RenderVariety(clutter=0.0), scene_seed=seeds)
    full = _render(traffic, 5, RenderVariety(clutter=2.0, urban_probability=1.0), scene_seed=seeds)
    assert (full.images != bare.images).float().mean() > 0.1  # the clutter is drawn
    assert torch.equal(full.full_pixels, bare.full_pixels)
    assert (full.visible_pixels <= bare.visible_pixels).all()
    N = traffic[1].vehicles.s.shape[1]
    assert full.instance.min() >= -1 and full.instance.max() < N  # no ids beyond the vehicles
    counts = torch.stack([(full.instance == n).sum(dim=(-2, -1)) for n in range(N)], dim=-1)  # (B, C, N)
    assert torch.equal(counts, full.visible_pixels)
    assert (full.instance >= 0).sum() < (bare.instance >= 0).sum() or torch.equal(full.instance, bare.instance)


def test_cast_shadows_darken_only_the_ground(traffic) -> None:
    seeds = torch.tensor([1, 2, 3])
    base = dict(clutter=0.0, fog_probability=0.0, overcast_probability=0.0, **NO_SENSOR)
    lit = _render(traffic, 2, RenderVariety(cast_shadows=False, **base), scene_seed=seeds)
    shaded = _render(traffic, 2, RenderVariety(cast_shadows=True, **base), scene_seed=seeds)
    assert torch.equal(lit.instance, shaded.instance)
    diff = shaded.images.float() - lit.images.float()  # (B, C, 3, H, W)
    changed = diff.abs().amax(dim=2) > 8  # JPEG at quality 100 still moves a few levels
    assert changed.sum() > 20 and not (changed & (lit.instance >= 0)).any()  # ground pixels only
    assert diff.sum(dim=2)[changed].max() < 0  # darker


def test_shaped_bodies_stay_inside_their_box() -> None:
    half = torch.tensor([2.0, 1.0, 0.5])
    one = torch.ones(())
    zero = torch.zeros(())
    chamfer = torch.tensor([math.inf, 0.2, 0.3, 0.5, 0.9, 0.0, 0.0, 0.2, 0.3])
    crown = torch.tensor([1.0, *PROFILE_BOX[1:]])
    origin = torch.tensor([[-10.0, 0.0, 0.0], [-10.0, 0.95, 0.45], [10.0, 0.0, 0.45], [-10.0, 0.0, 0.49]])
    dirs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    box_t, _ = ray_box(origin, dirs, torch.zeros(3), half, one, zero)
    cut_t, cut_face = ray_box(origin, dirs, torch.zeros(3), half, one, zero, chamfer)
    round_t, _ = ray_box(origin, dirs, torch.zeros(3), half, one, zero, crown)
    assert torch.allclose(box_t, torch.tensor([8.0, 8.0, 8.0, 8.0]))
    assert cut_t[0] == 8.0 and round_t[0] == 8.0  # through the middle of the rear face: unchanged
    assert math.isinf(cut_t[1]) and math.isinf(round_t[1])  # the top left edge is cut away
    assert 8.5 < cut_t[2] < 9.0 and cut_face[2] == 1  # the front top edge slopes back (a windscreen)
    assert cut_t[3] == 8.0 and round_t[3] > 9.0  # no cut on the rear top edge; the ellipsoid is round there
    assert (cut_t >= box_t).all() and (round_t >= box_t).all()  # never outside the box


def test_sensor_effects_vanish_at_zero_and_vary_per_image() -> None:
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(2, 1, 3, 40, 56, generator=gen) * 255).to(torch.uint8)
    off = RenderVariety(**NO_SENSOR)
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


def test_variety_options_are_checked(traffic) -> None:
    for bad, field in (
        (RenderVariety(fog_probability=1.5), "variety.fog_probability"),
        (RenderVariety(blur_sigma=-1.0), "variety.blur_sigma"),
        (RenderVariety(jpeg_quality=(90.0, 20.0)), "variety.jpeg_quality"),
        (RenderVariety(clutter=3.0), "variety.clutter"),
        (RenderVariety(urban_probability=-0.1), "variety.urban_probability"),
        (RenderVariety(exposure=(2.0, 1.0)), "variety.exposure"),
    ):
        with pytest.raises(ValueError, match=field):
            bad.validate()
    with pytest.raises(ValueError, match="scene_seed seeds the variety"):
        _render(traffic, 0, None, scene_seed=torch.tensor([1, 2, 3]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_variety_on_cuda_matches_cpu(traffic) -> None:
    road, world, looks = traffic
    seeds = torch.tensor([1, 2, 3])
    cpu = _render(traffic, 0, RenderVariety(), scene_seed=seeds)
    gpu = render_cameras(
        road.to("cuda"),
        world.to("cuda"),
        camera_rig(CONFIG, "cuda"),
        VehicleAppearance(looks.height.cuda(), looks.color.cuda()),
        torch.Generator().manual_seed(0),
        RenderVariety(),
        scene_seed=seeds.cuda(),
    )
    assert (gpu.instance.cpu() == cpu.instance).float().mean() > 0.995
    assert (gpu.images.cpu().float() - cpu.images.float()).abs().mean() < 2.0  # blur and JPEG spread float noise
