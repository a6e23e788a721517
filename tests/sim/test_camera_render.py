"""Camera rendering and lidar: pixels where the projection puts them, occlusion and visibility, 2D boxes,
determinism under a seed, batched == one environment at a time, shapes, the lidar's instance points."""

from __future__ import annotations

import pytest
import torch

import drivestack.sim.camera_render as camera_render
from drivestack.common.geometry import box_corners, quaternion_to_matrix
from drivestack.sim.camera import NUSCENES_CAMERAS, CameraConfig, camera_rig, project_to_image
from drivestack.sim.camera_render import (
    CameraFrame,
    VehicleAppearance,
    render_cameras,
    vehicle_appearance,
    vehicle_boxes,
)
from drivestack.sim.lidar import lidar_scan
from drivestack.sim.raycast import body_parts
from drivestack.sim.road import RoadNetwork
from drivestack.sim.scenario import is_truck
from drivestack.sim.state import WorldState

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # renders compared bit for bit: one thread


def _world(vehicles) -> WorldState:
    B = vehicles.s.shape[0]
    zb, zl = torch.zeros(B), torch.zeros(B, dtype=torch.long)
    return WorldState(
        vehicles=vehicles,
        time=zb,
        policy_steps=zl,
        sim_steps=zl.clone(),
        ego_speed_index=zl.clone(),
        crashed=zb.bool(),
        off_road=zb.bool(),
        distance=zb.clone(),
        jerk_sum=zb.clone(),
        lane_changes=zl.clone(),
    )


def _looks(heights: list[list[float]]) -> VehicleAppearance:
    h = torch.tensor(heights)
    return VehicleAppearance(height=h, color=torch.full((*h.shape, 3), 0.6))


def _render(
    road: RoadNetwork, world: WorldState, looks: VehicleAppearance, seed: int = 0, **camera: object
) -> CameraFrame:
    config = CameraConfig(**{"width": 400, "height": 225, **camera})  # type: ignore[arg-type]
    return render_cameras(road, world, camera_rig(config), looks, torch.Generator().manual_seed(seed))


def _silhouette_bbox(road, world, looks, n: int, rig) -> torch.Tensor:
    """Pixel bbox (x0, y0, x1, y1) of the projected corners of vehicle n's two body boxes (env 0, camera 0)."""
    _, _, boxes = vehicle_boxes(road, world, looks)
    centre, half = body_parts(boxes, is_truck(boxes[..., 4]))
    corners = []
    for j in range(2):
        part = torch.cat([centre[0, n, j], 2 * half[0, n, j, [1, 0, 2]], boxes[0, n, 6:7]])  # x, y, z, w, l, h, yaw
        corners.append(box_corners(part))
    uv, depth = project_to_image(torch.cat(corners), rig)
    assert (depth[:, 0] > 0).all()
    return torch.cat([uv[:, 0].amin(0), uv[:, 0].amax(0)])


@pytest.mark.parametrize("where", ["straight", "curved", "seam"])
def test_vehicle_ahead_covers_the_pixels_its_projection_predicts(
    where, make_vehicles, highway_road, curved_road
) -> None:
    road = curved_road if where == "curved" else highway_road
    s_ego = road.length - 8.0 if where == "seam" else 240.0
    s_car = (s_ego + 22.0) % road.length
    world = _world(make_vehicles(s=[s_ego, s_car], d=[4.0, 4.6], lane=[1, 1], length=[4.7, 4.5], width=[1.9, 1.8]))
    looks = _looks([[1.5, 1.6]])
    frame = _render(road, world, looks)
    rig = camera_rig(CameraConfig(width=400, height=225))
    expected = _silhouette_bbox(road, world, looks, 1, rig)
    rows, cols = (frame.instance[0, 0] == 1).nonzero(as_tuple=True)
    assert rows.numel() > 200
    # pixel centres (col + 0.5, row + 0.5) inside the projected silhouette, nothing outside
    got = torch.stack([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]).float()
    assert (got - expected).abs().max() <= 1.0, (got, expected)
    # the 2D box of the 3D box contains every instance pixel and is close to the silhouette
    box = frame.box_2d[0, 0, 1]
    assert float(box[0]) <= float(cols.min()) + 0.5 and float(box[2]) >= float(cols.max()) + 0.5
    assert float(box[1]) <= float(rows.min()) + 0.5 and float(box[3]) >= float(rows.max()) + 0.5
    assert (box - expected).abs().max() < 6.0
    assert int(frame.visible_pixels[0, 0, 1]) == rows.numel() == int(frame.full_pixels[0, 0, 1])
    assert float(frame.visibility[0, 1]) == 1.0
    assert torch.isnan(frame.box_2d[0, 0, 0]).all()  # the ego's own row
    # the car sits on the road: the pixels right below it are asphalt grey, not grass green
    below = frame.images[0, 0, :, min(int(rows.max()) + 3, 224), int(cols.float().mean())].float()
    assert float(below[1] - below[0]) < 20.0


def test_occlusion_gives_partial_and_zero_visibility(make_vehicles, highway_road) -> None:
    # env 0: a car 20 m ahead, a taller SUV 35 m ahead offset 1.2 m left -> partly hidden
    # env 1: a truck 20 m ahead, a small car right behind it -> entirely hidden
    veh = make_vehicles(
        s=[[100.0, 120.0, 135.0], [100.0, 120.0, 127.5]],
        d=[[4.0, 4.0, 5.2], [4.0, 4.0, 4.0]],
        lane=1,
        length=[[4.7, 4.5, 4.8], [4.7, 10.0, 4.2]],
        width=[[1.9, 1.8, 1.9], [1.9, 2.5, 1.75]],
    )
    looks = _looks([[1.5, 1.5, 1.9], [1.5, 3.6, 1.45]])
    frame = _render(highway_road, _world(veh), looks)
    vis, visible, full = frame.visibility, frame.visible_pixels, frame.full_pixels
    assert float(vis[0, 1]) == 1.0 and 0.05 < float(vis[0, 2]) < 0.9
    assert int(full[0, 0, 2]) > int(visible[0, 0, 2]) > 0
    assert float(vis[1, 1]) == 1.0 and float(vis[1, 2]) == 0.0 and int(full[1, 0, 2]) > 50
    assert not (frame.instance[1] == 2).any()
    # the hidden car's 2D box still exists (it is in view) and lies inside the truck's
    inner, outer = frame.box_2d[1, 0, 2], frame.box_2d[1, 0, 1]
    assert torch.isfinite(inner).all()
    assert inner[0] >= outer[0] and inner[1] >= outer[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def test_vehicle_behind_is_seen_by_the_back_camera_only(make_vehicles, highway_road) -> None:
    world = _world(make_vehicles(s=[100.0, 80.0], d=[4.0, 4.0], lane=1, length=[4.7, 4.5]))
    looks = _looks([[1.5, 1.5]])
    front = _render(highway_road, world, looks)
    assert int(front.visible_pixels[0, 0, 1]) == 0 and int(front.full_pixels[0, 0, 1]) == 0
    assert float(front.visibility[0, 1]) == 0.0 and torch.isnan(front.box_2d[0, 0, 1]).all()
    both = _render(highway_road, world, looks, channels=("CAM_FRONT", "CAM_BACK"))
    assert int(both.visible_pixels[0, 0, 1]) == 0 and int(both.visible_pixels[0, 1, 1]) > 100
    assert float(both.visibility[0, 1]) == 1.0 and torch.isfinite(both.box_2d[0, 1, 1]).all()


def test_render_distance_and_vehicle_budget(make_vehicles, highway_road) -> None:
    world = _world(make_vehicles(s=[100.0, 130.0, 160.0, 100.0 + 160.0], d=[4.0, 8.0, 0.0, 4.0], lane=[1, 2, 0, 1]))
    looks = _looks([[1.5, 1.5, 1.5, 1.5]])
    frame = _render(highway_road, world, looks)
    assert (frame.full_pixels[0, 0, 1:3] > 0).all() and int(frame.full_pixels[0, 0, 3]) == 0  # 160 m > 150 m
    nearest = _render(highway_road, world, looks, max_vehicles=1)
    assert int(nearest.full_pixels[0, 0, 1]) > 0 and (nearest.full_pixels[0, 0, 2:] == 0).all()


def test_images_are_deterministic_under_a_seed(traffic) -> None:
    road, world, looks = traffic
    kw = dict(width=200, height=112, channels=("CAM_FRONT", "CAM_BACK_LEFT"))
    a = _render(road, world.index(slice(0, 2)), VehicleAppearance(looks.height[:2], looks.color[:2]), 7, **kw)
    b = _render(road, world.index(slice(0, 2)), VehicleAppearance(looks.height[:2], looks.color[:2]), 7, **kw)
    c = _render(road, world.index(slice(0, 2)), VehicleAppearance(looks.height[:2], looks.color[:2]), 8, **kw)
    assert torch.equal(a.images, b.images) and torch.equal(a.instance, b.instance)
    assert (a.images != c.images).float().mean() > 0.3  # other lighting, tones and noise
    assert torch.equal(a.instance, c.instance) and torch.equal(a.visible_pixels, c.visible_pixels)  # same geometry


def test_batched_equals_one_environment_at_a_time(traffic, monkeypatch) -> None:
    road, world, looks = traffic
    config = CameraConfig(width=160, height=90, channels=("CAM_FRONT", "CAM_BACK"))
    rig = camera_rig(config)
    batched = render_cameras(road, world, rig, looks, torch.Generator().manual_seed(11))
    gen = torch.Generator().manual_seed(11)
    singles = [
        render_cameras(
            road,
            world.index(slice(i, i + 1)),
            rig,
            VehicleAppearance(looks.height[i : i + 1], looks.color[i : i + 1]),
            gen,
        )
        for i in range(3)
    ]
    monkeypatch.setattr(camera_render, "PIXEL_BUDGET", 2 * 2 * 160 * 96)  # chunks of two environments
    chunked = render_cameras(road, world, rig, looks, torch.Generator().manual_seed(11))
    for name in ("images", "instance", "visible_pixels", "full_pixels", "visibility", "box_2d"):
        whole = getattr(batched, name)
        torch.testing.assert_close(torch.cat([getattr(s, name) for s in singles]), whole, equal_nan=True, msg=name)
        torch.testing.assert_close(getattr(chunked, name), whole, equal_nan=True, msg=name)
    # appearance draws the same looks batched and one environment after another
    gen = torch.Generator().manual_seed(5)
    one_by_one = [vehicle_appearance(world.index(slice(i, i + 1)), gen) for i in range(3)]
    both = vehicle_appearance(world, torch.Generator().manual_seed(5))
    assert torch.equal(torch.cat([a.color for a in one_by_one]), both.color)


def test_shapes_dtypes_and_consistency_for_several_channels(traffic) -> None:
    road, world, looks = traffic
    channels = ("CAM_FRONT", "CAM_BACK", "CAM_FRONT_LEFT", "CAM_BACK_RIGHT")
    frame = _render(road, world, looks, 1, width=128, height=72, channels=channels)
    B, N = world.vehicles.s.shape
    assert frame.images.shape == (B, 4, 3, 72, 128) and frame.images.dtype == torch.uint8
    assert frame.instance.shape == (B, 4, 72, 128) and frame.instance.dtype == torch.int16
    assert frame.visible_pixels.shape == frame.full_pixels.shape == (B, 4, N)
    assert frame.visible_pixels.dtype == frame.full_pixels.dtype == torch.long
    assert frame.visibility.shape == (B, N) and frame.visibility.dtype == torch.float32
    assert frame.box_2d.shape == (B, 4, N, 4)
    assert int(frame.instance.min()) >= -1 and int(frame.instance.max()) < N and (frame.instance == 0).sum() == 0
    counts = torch.stack([(frame.instance == n).sum(dim=(2, 3)) for n in range(N)], dim=-1)
    assert torch.equal(counts, frame.visible_pixels)
    assert (frame.visible_pixels <= frame.full_pixels).all()
    assert ((frame.visibility >= 0) & (frame.visibility <= 1)).all() and (frame.visibility > 0).sum() >= 4
    seen = frame.full_pixels > 0
    assert torch.isfinite(frame.box_2d[seen]).all()  # drawn vehicles have a 2D box
    # sky above, road below
    img = frame.images[:, 0].float()
    assert img[:, 2, :5].mean() > img[:, 0, :5].mean() + 20  # blue-ish sky at the top
    assert (img[:, 1, -5:] - img[:, 0, -5:]).abs().mean() < 25  # grey asphalt at the bottom centre rows


def test_lidar_points_carry_their_vehicle_and_lie_on_its_box(traffic) -> None:
    road, world, looks = traffic
    points, hit, instance = lidar_scan(road, world, looks, num_beams=32, num_azimuths=1000, max_range=80.0)
    B, N = world.vehicles.s.shape
    assert points.shape == (B, 32 * 1000, 4) and hit.shape == instance.shape == (B, 32 * 1000)
    assert hit.dtype == torch.bool and instance.dtype == torch.long
    record = NUSCENES_CAMERAS["LIDAR_TOP"]
    rot = quaternion_to_matrix(torch.tensor(record["rotation"]))
    ego = points[..., :3] @ rot.T + torch.tensor(record["translation"])  # sensor -> ego frame
    assert (points[~hit] == 0).all() and (ego[hit].norm(dim=-1) < 82.0).all()
    ground = hit & (instance < 0)
    assert ego[..., 2][ground].abs().max() < 0.01  # ground returns on z = 0
    _, _, boxes = vehicle_boxes(road, world, looks)
    on_vehicle = (instance >= 0).nonzero(as_tuple=True)
    assert on_vehicle[0].numel() > 200 and len(instance.unique()) > 6
    box = boxes[on_vehicle[0], instance[on_vehicle]]  # (M, 7)
    rel = ego[on_vehicle][:, :2] - box[:, :2]
    c, s = torch.cos(box[:, 6]), torch.sin(box[:, 6])
    along, across = c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]
    z = ego[on_vehicle][:, 2]
    tol = 0.05
    assert (along.abs() <= 0.5 * box[:, 4] + tol).all() and (across.abs() <= 0.5 * box[:, 3] + tol).all()
    assert ((z >= -tol) & (z <= box[:, 5] + tol)).all()
    assert (points[..., 3][hit] >= 0).all() and (points[..., 3][hit] <= 255).all()
    # ring order: point p is beam p // num_azimuths; elevation rises with the beam index
    elevation = torch.atan2(points[..., 2], points[..., :2].norm(dim=-1)).view(B, 32, 1000)
    low, high = elevation[:, 2][hit.view(B, 32, 1000)[:, 2]], elevation[:, 20][hit.view(B, 32, 1000)[:, 20]]
    assert low.mean() < high.mean()


def test_lidar_sees_a_car_alongside_from_every_side(make_vehicles, highway_road) -> None:
    world = _world(make_vehicles(s=[100.0, 101.0, 130.0, 70.0], d=[4.0, 8.0, 4.0, 0.0], lane=[1, 2, 1, 0]))
    looks = _looks([[1.5, 1.6, 1.6, 1.6]])
    _, hit, instance = lidar_scan(highway_road, world, looks, max_range=60.0)
    counts = torch.stack([(instance[0] == n).sum() for n in range(4)])
    assert int(counts[0]) == 0 and (counts[1:] > 10).all()
    assert int(counts[1]) > int(counts[2])  # the near car alongside returns more points than the one 30 m ahead
    with pytest.raises(ValueError, match="max_range"):
        lidar_scan(highway_road, world, looks, max_range=400.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(traffic) -> None:
    road, world, looks = traffic
    config = CameraConfig(width=320, height=180, channels=("CAM_FRONT", "CAM_BACK"))
    cpu = render_cameras(road, world, camera_rig(config), looks, torch.Generator().manual_seed(0))
    gpu_looks = VehicleAppearance(looks.height.cuda(), looks.color.cuda())
    gpu = render_cameras(
        road.to("cuda"), world.to("cuda"), camera_rig(config, "cuda"), gpu_looks, torch.Generator().manual_seed(0)
    )
    assert (gpu.instance.cpu() == cpu.instance).float().mean() > 0.999
    assert (gpu.images.cpu().float() - cpu.images.float()).abs().mean() < 1.0
    torch.testing.assert_close(gpu.visibility.cpu(), cpu.visibility, atol=0.02, rtol=0)


def test_bench_render_cli_smoke(tmp_path) -> None:
    import json

    from drivestack.cli import main

    out = tmp_path / "bench"
    args = [
        "bench",
        "render",
        "--seconds",
        "0.01",
        "--resolutions",
        "64",
        "36",
        "--batch-sizes",
        "1",
        "2",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    report = json.loads((out / "render.json").read_text())
    assert [(r["width"], r["batch"]) for r in report["camera"]] == [(64, 1), (64, 2)]
    assert all(r["images_per_s"] > 0 for r in report["camera"]) and len(report["lidar"]) == 2
    for name in ("example_64x36.png", "contact_sheet.png", "six_cameras.png"):
        assert (out / name).stat().st_size > 0
    assert main(["bench", "render", "--channels", "CAM_SIDE", "--out", str(out)]) == 2
