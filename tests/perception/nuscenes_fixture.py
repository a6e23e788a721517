"""A tiny hand-made nuScenes-format dataset for the perception tests (no simulator involved).

Scenes of a few keyframes: the ego drives along a rotated, offset global line; cars and trucks drive beside
it, each drawn into a CAM_FRONT JPEG as a shaded cuboid (painter's order), so a small CNN can learn them.
Tables follow the nuScenes v1.0 schema closely enough for nuscenes-devkit's loader and DetectionEval.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

CAR, TRUCK = "vehicle.car", "vehicle.truck"
SIZES = {CAR: (1.9, 4.5, 1.6), TRUCK: (2.5, 8.0, 3.0)}  # w, l, h [m]
COLORS = {CAR: (200, 40, 40), TRUCK: (40, 60, 200)}  # RGB base colours
CAM_ROT = (0.5, -0.5, 0.5, -0.5)  # camera -> ego: z forward, x right, y down (nuScenes CAM_FRONT, level)
CAM_T = (1.7, 0.0, 1.5)


def _quat_yaw(yaw: float) -> list[float]:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def _rotmat(q: tuple[float, ...] | list[float]) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _corners(center: np.ndarray, size: tuple[float, float, float], yaw: float) -> np.ndarray:
    w, length, h = size
    sx, sy, sz = np.array([1, 1, -1, -1, 1, 1, -1, -1]), np.array([1, -1, -1, 1, 1, -1, -1, 1]), np.repeat([1, -1], 4)
    local = np.stack([sx * length / 2, sy * w / 2, sz * h / 2], 1)
    rot = _rotmat(_quat_yaw(yaw))
    return local @ rot.T + center


FACES = ((0, 1, 2, 3), (4, 5, 6, 7), (0, 1, 5, 4), (2, 3, 7, 6), (1, 2, 6, 5), (0, 3, 7, 4))
SHADE = (1.15, 0.5, 1.0, 0.65, 0.8, 0.8)  # top, bottom, front, back, sides


def _render(objects: list[tuple[str, np.ndarray, float]], K: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """RGB image of ego-frame cuboids seen from the fixture camera."""
    width, height = size
    img = np.zeros((height, width, 3), np.uint8)
    horizon = int(K[1, 2])
    img[:horizon] = (150, 190, 230)
    img[horizon:] = (95, 95, 100)
    R, t = _rotmat(CAM_ROT), np.array(CAM_T)
    for name, center, yaw in sorted(objects, key=lambda o: -np.hypot(*o[1][:2])):  # far to near
        corners_cam = (_corners(center, SIZES[name], yaw) - t) @ R  # ego -> camera
        if (corners_cam[:, 2] < 0.5).any():
            continue
        uv = corners_cam @ K.T
        uv = uv[:, :2] / uv[:, 2:]
        order = sorted(range(6), key=lambda f: -corners_cam[list(FACES[f]), 2].mean())
        for f in order:
            color = tuple(int(min(255, c * SHADE[f])) for c in COLORS[name])
            cv2.fillConvexPoly(img, np.round(uv[list(FACES[f])] * 16).astype(np.int32), color, cv2.LINE_AA, shift=4)
    return img


def make_dataset(
    root: Path,
    num_scenes: int = 3,
    frames_per_scene: int = 4,
    image_size: tuple[int, int] = (320, 180),
    seed: int = 0,
    val_scenes: int = 1,
) -> Path:
    """Write the fixture dataset under `root` (version v1.0-trainval); returns root."""
    rng = np.random.default_rng(seed)
    width, height = image_size
    K = np.array([[0.8 * width, 0, width / 2], [0, 0.8 * width, height / 2], [0, 0, 1.0]])
    tab: dict[str, list[dict]] = {
        k: []
        for k in (
            "attribute",
            "calibrated_sensor",
            "category",
            "ego_pose",
            "instance",
            "log",
            "map",
            "sample",
            "sample_annotation",
            "sample_data",
            "scene",
            "sensor",
            "visibility",
        )
    }
    tab["category"] = [
        {"token": "cat-car", "name": CAR, "description": ""},
        {"token": "cat-truck", "name": TRUCK, "description": ""},
    ]
    tab["attribute"] = [{"token": "attr-moving", "name": "vehicle.moving", "description": ""}]
    tab["visibility"] = [
        {"token": str(i), "level": lvl, "description": ""}
        for i, lvl in enumerate(("v0-40", "v40-60", "v60-80", "v80-100"), 1)
    ]
    tab["sensor"] = [{"token": "sensor-cam", "channel": "CAM_FRONT", "modality": "camera"}]
    tab["calibrated_sensor"] = [
        {
            "token": "calib-cam",
            "sensor_token": "sensor-cam",
            "translation": list(CAM_T),
            "rotation": list(CAM_ROT),
            "camera_intrinsic": K.tolist(),
        }
    ]
    tab["log"] = [
        {
            "token": "log-0",
            "logfile": "fixture",
            "vehicle": "fx",
            "date_captured": "2024-01-01",
            "location": "singapore-onenorth",
        }
    ]
    tab["map"] = [{"category": "semantic_prior", "token": "map-0", "filename": "", "log_tokens": ["log-0"]}]
    (root / "samples" / "CAM_FRONT").mkdir(parents=True, exist_ok=True)
    names = []
    for s in range(num_scenes):
        scene_token, name = f"scene-{s}", f"fixture-{s:04d}"
        names.append(name)
        ego_yaw, origin = rng.uniform(-np.pi, np.pi), rng.uniform(-500, 500, size=2)
        num_obj = int(rng.integers(2, 4))
        kinds = [CAR if rng.random() < 0.7 else TRUCK for _ in range(num_obj)]
        start = np.stack([rng.uniform(8, 35, num_obj), rng.uniform(-7, 7, num_obj)], 1)  # ego frame at t0
        start[:, 0] += 7.0 * np.arange(num_obj)  # spread along the road
        yaws = rng.normal(0, 0.15, num_obj) + np.where(rng.random(num_obj) < 0.2, np.pi, 0.0)
        speeds = rng.uniform(-2, 2, num_obj)  # relative to the ego, along x
        samples = [f"{scene_token}-s{k}" for k in range(frames_per_scene)]
        inst = [f"{scene_token}-i{j}" for j in range(num_obj)]
        for j in range(num_obj):
            tab["instance"].append(
                {
                    "token": inst[j],
                    "category_token": "cat-car" if kinds[j] == CAR else "cat-truck",
                    "nbr_annotations": frames_per_scene,
                    "first_annotation_token": f"{inst[j]}-a0",
                    "last_annotation_token": f"{inst[j]}-a{frames_per_scene - 1}",
                }
            )
        rot_e = _rotmat(_quat_yaw(ego_yaw))
        for k, token in enumerate(samples):
            ts = 1_600_000_000_000_000 + s * 100_000_000 + k * 500_000
            ego_pos = np.array([*origin, 0.0]) + rot_e @ np.array([10.0 * 0.5 * k, 0, 0])
            objects = []
            for j in range(num_obj):
                c = np.array([start[j, 0] + speeds[j] * 0.5 * k, start[j, 1], SIZES[kinds[j]][2] / 2])
                objects.append((kinds[j], c, float(yaws[j])))
                glob = rot_e @ c + ego_pos
                tab["sample_annotation"].append(
                    {
                        "token": f"{inst[j]}-a{k}",
                        "sample_token": token,
                        "instance_token": inst[j],
                        "visibility_token": "4",
                        "attribute_tokens": ["attr-moving"],
                        "translation": glob.tolist(),
                        "size": list(SIZES[kinds[j]]),
                        "rotation": _quat_yaw(ego_yaw + yaws[j]),
                        "prev": f"{inst[j]}-a{k - 1}" if k else "",
                        "next": f"{inst[j]}-a{k + 1}" if k < frames_per_scene - 1 else "",
                        "num_lidar_pts": 10,
                        "num_radar_pts": 0,
                    }
                )
            filename = f"samples/CAM_FRONT/fixture__CAM_FRONT__{ts}.jpg"
            cv2.imwrite(
                str(root / filename),
                cv2.cvtColor(_render(objects, K, image_size), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 95],
            )
            tab["ego_pose"].append(
                {
                    "token": f"{token}-ego",
                    "timestamp": ts,
                    "rotation": _quat_yaw(ego_yaw),
                    "translation": ego_pos.tolist(),
                }
            )
            tab["sample_data"].append(
                {
                    "token": f"{token}-cam",
                    "sample_token": token,
                    "ego_pose_token": f"{token}-ego",
                    "calibrated_sensor_token": "calib-cam",
                    "timestamp": ts,
                    "fileformat": "jpg",
                    "is_key_frame": True,
                    "height": height,
                    "width": width,
                    "filename": filename,
                    "prev": f"{samples[k - 1]}-cam" if k else "",
                    "next": f"{samples[k + 1]}-cam" if k < frames_per_scene - 1 else "",
                }
            )
            tab["sample"].append(
                {
                    "token": token,
                    "timestamp": ts,
                    "scene_token": scene_token,
                    "prev": samples[k - 1] if k else "",
                    "next": samples[k + 1] if k < frames_per_scene - 1 else "",
                }
            )
        tab["scene"].append(
            {
                "token": scene_token,
                "log_token": "log-0",
                "nbr_samples": frames_per_scene,
                "first_sample_token": samples[0],
                "last_sample_token": samples[-1],
                "name": name,
                "description": "fixture",
            }
        )
    folder = root / "v1.0-trainval"
    folder.mkdir(parents=True, exist_ok=True)
    for table, rows in tab.items():
        (folder / f"{table}.json").write_text(json.dumps(rows))
    splits = {"train": names[: num_scenes - val_scenes], "val": names[num_scenes - val_scenes :], "empty": []}
    (folder / "splits.json").write_text(json.dumps(splits))
    return root
