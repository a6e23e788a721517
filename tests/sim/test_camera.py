"""Cameras: nuScenes calibration, projection against hand computation and nuscenes-devkit, intrinsics,
config validation, 3D boxes in the global and ego frames, 2D box clipping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from nuscenes.utils.geometry_utils import view_points
from pyquaternion import Quaternion

from drivestack.common.geometry import BOX_EDGES, box_corners, quaternion_to_matrix, yaw_to_quaternion
from drivestack.sim.camera import (
    CAMERA_CHANNELS,
    NUSCENES_CAMERAS,
    CameraConfig,
    camera_rig,
    clip_to_image,
    pixel_rays,
    points_bbox,
    project_to_image,
)
from drivestack.sim.config import RoadConfig
from drivestack.sim.raycast import VehicleAppearance, vehicle_boxes
from drivestack.sim.road import MARGIN, build_road
from drivestack.sim.state import WorldState

NUSCENES = Path("/work/shared/data/nuscenes-scene-0523/v1.0-trainval")


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


@pytest.mark.skipif(not NUSCENES.exists(), reason="nuScenes scene-0523 tables not on this machine")
def test_calibration_matches_the_nuscenes_tables() -> None:
    sensors = {s["token"]: s["channel"] for s in json.loads((NUSCENES / "sensor.json").read_text())}
    table = {sensors[c["sensor_token"]]: c for c in json.loads((NUSCENES / "calibrated_sensor.json").read_text())}
    assert set(CAMERA_CHANNELS) | {"LIDAR_TOP"} == set(NUSCENES_CAMERAS)
    for channel, record in NUSCENES_CAMERAS.items():
        for key in ("translation", "rotation", "camera_intrinsic"):
            np.testing.assert_allclose(np.array(record[key]), np.array(table[channel][key]), rtol=0, atol=1e-12)


def test_front_camera_projection_by_hand_and_with_the_devkit() -> None:
    rig = camera_rig(CameraConfig(channels=("CAM_FRONT",), width=1600, height=900))
    record = NUSCENES_CAMERAS["CAM_FRONT"]
    point = np.array([20.0, 0.0, 0.0])  # on the ground 20 m ahead of the ego origin
    # By hand: R from the quaternion (camera -> ego), camera coordinates R^T (p - t), then the pinhole.
    w, x, y, z = record["rotation"]
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
    cam = rot.T @ (point - np.array(record["translation"]))
    k = np.array(record["camera_intrinsic"])
    u, v = k[0, 0] * cam[0] / cam[2] + k[0, 2], k[1, 1] * cam[1] / cam[2] + k[1, 2]
    # The camera looks almost straight ahead, 1.49 m up: a ground point 18.3 m in front lies below the
    # principal point by about f * 1.49 / 18.3 = 102 px.
    assert cam[2] == pytest.approx(18.26, abs=0.01) and 560.0 < v < 600.0 and abs(u - k[0, 2]) < 30.0
    uv, depth = project_to_image(torch.tensor(point, dtype=torch.float32), rig)
    assert uv.shape == (1, 2) and depth.shape == (1,)
    assert float(depth[0]) == pytest.approx(cam[2], abs=1e-4)
    assert (float(uv[0, 0]), float(uv[0, 1])) == pytest.approx((u, v), abs=1e-3)
    # nuscenes-devkit: pyquaternion for the rotation, view_points for the pinhole
    cam_dev = Quaternion(record["rotation"]).inverse.rotate(point - np.array(record["translation"]))
    ref = view_points(cam_dev[:, None], k, normalize=True)[:2, 0]
    assert (float(uv[0, 0]), float(uv[0, 1])) == pytest.approx(tuple(ref), abs=1e-3)


def test_every_channel_projects_like_the_devkit() -> None:
    rig = camera_rig(CameraConfig(channels=CAMERA_CHANNELS, width=1600, height=900))
    gen = torch.Generator().manual_seed(0)
    points = (torch.rand((50, 3), generator=gen, dtype=torch.float64) - 0.5) * torch.tensor([60.0, 60.0, 4.0])
    uv, depth = project_to_image(points, rig)  # (50, 6, 2), (50, 6)
    assert uv.shape == (50, 6, 2) and depth.shape == (50, 6)
    for c, channel in enumerate(CAMERA_CHANNELS):
        record = NUSCENES_CAMERAS[channel]
        cam = np.stack(
            [
                Quaternion(record["rotation"]).inverse.rotate(p - np.array(record["translation"]))
                for p in points.numpy()
            ],
            axis=1,
        )  # (3, 50)
        front = cam[2] > 0.5
        ref = view_points(cam[:, front], np.array(record["camera_intrinsic"]), normalize=True)[:2].T
        np.testing.assert_allclose(depth[:, c].numpy(), cam[2], atol=1e-5)
        np.testing.assert_allclose(uv[front, c].numpy(), ref, atol=1e-3, rtol=1e-6)  # float32 rig


def test_intrinsics_scale_with_the_image_size() -> None:
    full = camera_rig(CameraConfig(channels=("CAM_FRONT", "CAM_BACK"), width=1600, height=900))
    small = camera_rig(CameraConfig(channels=("CAM_FRONT", "CAM_BACK"), width=800, height=300))
    k, ks = full.intrinsic, small.intrinsic
    torch.testing.assert_close(ks[:, 0, 0], k[:, 0, 0] / 2) and torch.testing.assert_close(ks[:, 0, 2], k[:, 0, 2] / 2)
    torch.testing.assert_close(ks[:, 1, 1], k[:, 1, 1] / 3) and torch.testing.assert_close(ks[:, 1, 2], k[:, 1, 2] / 3)
    assert torch.all(ks[:, 2] == torch.tensor([0.0, 0.0, 1.0]))
    # the same 3D point lands on the same relative image position
    uv, _ = project_to_image(torch.tensor([30.0, 2.0, 1.0]), full)
    uv_s, _ = project_to_image(torch.tensor([30.0, 2.0, 1.0]), small)
    torch.testing.assert_close(uv_s[0], uv[0] * torch.tensor([0.5, 1.0 / 3.0]))
    # rig fields
    assert small.channels == ("CAM_FRONT", "CAM_BACK") and (small.width, small.height) == (800, 300)
    assert small.translation.shape == (2, 3) and small.rotation.shape == (2, 4) and small.cam_to_ego.shape == (2, 4, 4)
    torch.testing.assert_close(small.cam_to_ego[:, :3, :3], quaternion_to_matrix(small.rotation))
    torch.testing.assert_close(small.cam_to_ego[:, :3, 3], small.translation)


def test_pixel_rays_pass_through_their_pixel_centres() -> None:
    rig = camera_rig(CameraConfig(channels=("CAM_FRONT", "CAM_BACK_LEFT"), width=64, height=36))
    dirs = pixel_rays(rig)
    assert dirs.shape == (2, 36, 64, 3)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(2, 36, 64))
    row, col = 7, 50
    for c in range(2):
        point = rig.translation[c] + 25.0 * dirs[c, row, col]
        uv, depth = project_to_image(point, rig)
        assert float(depth[c]) > 0
        torch.testing.assert_close(uv[c], torch.tensor([col + 0.5, row + 0.5]), atol=1e-3, rtol=0)


def test_invalid_camera_config_is_refused() -> None:
    with pytest.raises(ValueError, match=r"camera\.channels.*CAM_FRONT_LEFT"):
        camera_rig(CameraConfig(channels=("CAM_FRONT", "CAM_TOP")))
    with pytest.raises(ValueError, match=r"camera\.width"):
        CameraConfig(width=0).validate()
    with pytest.raises(ValueError, match=r"camera\.max_depth"):
        CameraConfig(max_depth=400.0).validate()
    with pytest.raises(ValueError, match=r"camera\.channels.*repeats"):
        CameraConfig(channels=("CAM_BACK", "CAM_BACK")).validate()


def test_yaw_quaternion_rotates_about_z() -> None:
    q = yaw_to_quaternion(torch.tensor([0.3], dtype=torch.float64))
    r = quaternion_to_matrix(q)[0]
    expected = torch.tensor(
        [[math.cos(0.3), -math.sin(0.3), 0.0], [math.sin(0.3), math.cos(0.3), 0.0], [0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(r, expected)
    np.testing.assert_allclose(Quaternion(q[0].numpy()).rotation_matrix, expected.numpy(), atol=1e-12)


def test_vehicle_boxes_in_the_global_and_ego_frames(make_vehicles, curved_road) -> None:
    # ego near the ring's end, one car 20 m ahead across the seam, one 15 m behind in the next lane
    L = curved_road.length
    veh = make_vehicles(
        s=[L - 8.0, 12.0, L - 23.0],
        d=[4.0, 4.0, 0.0],
        lane=[1, 1, 0],
        psi=[0.05, 0.0, 0.0],
        length=[4.7, 4.4, 10.0],
        width=[1.9, 1.8, 2.5],
    )
    world = _world(veh)
    app = VehicleAppearance(height=torch.tensor([[1.5, 1.6, 3.5]]), color=torch.full((1, 3, 3), 0.5))
    ego_pose, boxes_g, boxes_e = vehicle_boxes(curved_road, world, app)
    assert ego_pose.shape == (1, 4) and boxes_g.shape == (1, 3, 7) and boxes_e.shape == (1, 3, 7)
    x0, y0, yaw0 = curved_road.to_global(veh.s[:, 0], veh.d[:, 0], veh.psi[:, 0])
    torch.testing.assert_close(ego_pose[0], torch.stack([x0[0], y0[0], torch.tensor(0.0), yaw0[0]]))
    # the car across the seam sits at the unwrapped s = L + 12 (continuous with the ego), not at s = 12
    x1, y1, _ = curved_road.to_global(torch.tensor([L + 12.0]), torch.tensor([4.0]))
    torch.testing.assert_close(boxes_g[0, 1, :2], torch.stack([x1[0], y1[0]]))
    torch.testing.assert_close(
        boxes_g[0, :, 2:6], torch.tensor([[0.75, 1.9, 4.7, 1.5], [0.8, 1.8, 4.4, 1.6], [1.75, 2.5, 10.0, 3.5]])
    )
    torch.testing.assert_close(boxes_e[0, 0], torch.tensor([0.0, 0.0, 0.75, 1.9, 4.7, 1.5, 0.0]), atol=1e-4, rtol=0)
    # in the ego frame (heading 0.05 rad off the road): ahead ~20 m, behind ~15 m and 4 m to the right
    assert 19.5 < float(boxes_e[0, 1, 0]) < 20.5 and abs(float(boxes_e[0, 1, 1])) < 1.2
    assert -15.6 < float(boxes_e[0, 2, 0]) < -14.4 and -5.0 < float(boxes_e[0, 2, 1]) < -3.0
    # ego frame = global frame moved to the ego and turned by its yaw
    c, s = math.cos(float(ego_pose[0, 3])), math.sin(float(ego_pose[0, 3]))
    dx, dy = (boxes_g[0, :, 0] - ego_pose[0, 0]), (boxes_g[0, :, 1] - ego_pose[0, 1])
    torch.testing.assert_close(boxes_e[0, :, 0], c * dx + s * dy)
    torch.testing.assert_close(boxes_e[0, :, 1], -s * dx + c * dy)


def test_vehicles_beyond_the_road_tables_get_nan_boxes(make_vehicles) -> None:
    road = build_road(RoadConfig(length=1000.0))
    veh = make_vehicles(s=[0.0, 501.0, 40.0], d=[0.0, 0.0, 0.0])  # the first car is 499 m behind the ego
    _, boxes_g, boxes_e = vehicle_boxes(
        road, _world(veh), VehicleAppearance(torch.full((1, 3), 1.5), torch.zeros(1, 3, 3))
    )
    assert 499.0 > MARGIN  # at s = -499 it lies past the tables' reach before the section
    assert torch.isnan(boxes_g[0, 1, :2]).all() and torch.isnan(boxes_e[0, 1, :2]).all()
    assert torch.isfinite(boxes_g[0, 2]).all()


def test_box_projection_clips_at_the_near_plane_and_the_image() -> None:
    rig = camera_rig(CameraConfig(channels=("CAM_FRONT",), width=800, height=450))
    k = rig.intrinsic[0]
    # a box straight ahead, fully in front: the bbox is the corners' bbox
    box = torch.tensor([20.0, 0.0, 0.8, 2.0, 4.0, 1.6, 0.0])
    corners = box_corners(box)
    uv, _ = project_to_image(corners, rig)
    cam = torch.einsum("ji,kj->ki", rig.cam_to_ego[0, :3, :3], corners - rig.translation[0])
    bb = points_bbox(cam, k, BOX_EDGES)
    torch.testing.assert_close(bb, torch.cat([uv[:, 0].amin(0), uv[:, 0].amax(0)]))
    # a long box reaching behind the camera: clipped at the near plane, so it spans to the image edge
    long_box = torch.tensor([0.0, -3.0, 0.8, 2.0, 30.0, 1.6, 0.0])
    cam = torch.einsum("ji,kj->ki", rig.cam_to_ego[0, :3, :3], box_corners(long_box) - rig.translation[0])
    clipped = clip_to_image(points_bbox(cam, k, BOX_EDGES), 800, 450)
    assert torch.isfinite(clipped).all() and float(clipped[0]) > 400 and float(clipped[2]) == 800.0
    # entirely behind: NaN
    behind = torch.tensor([-20.0, 0.0, 0.8, 2.0, 4.0, 1.6, 0.0])
    cam = torch.einsum("ji,kj->ki", rig.cam_to_ego[0, :3, :3], box_corners(behind) - rig.translation[0])
    assert torch.isnan(points_bbox(cam, k, BOX_EDGES)).all()
    # in front but outside the image: NaN after clipping
    assert torch.isnan(clip_to_image(torch.tensor([900.0, 10.0, 950.0, 20.0]), 800, 450)).all()
