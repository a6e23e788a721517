"""The one hand-made nuScenes-format dataset builder of the test suite (no simulator involved).

`write_dataset` writes the 13 v1.0 tables (close enough to the schema for nuscenes-devkit's loader,
DetectionEval and TrackingEval), splits.json and, for camera channels, a JPEG per keyframe with every object
drawn as a shaded cuboid (painter's order), so a small CNN can learn them. Scenes are described by `SceneSpec`:
an ego driving straight along its heading at a constant speed and objects moving at constant velocity in the
ego frame. Two datasets are built from it:

- `make_dataset` (fixture `tiny_root`): 3 random scenes x 4 keyframes of cars and trucks, CAM_FRONT images,
  splits train (2 scenes) / val (1) / empty; the perception tests train and score detectors on it.
- `make_multicamera_dataset` (fixture `six_root`): 3 scenes x 3 keyframes of cars and trucks all around the
  ego, images of the six cameras (CAM_FRONT as in `make_dataset`, the others turned about the vertical, 64
  degree field of view each), splits train (2 scenes) / val (1); the six-camera tests train and score on it.
- `make_tiny_nuscenes` (fixture `tiny_nuscenes`): 2 scenes x 8 keyframes, ego parked, a car at 20 m/s, a
  parked car and a walking pedestrian, LIDAR_TOP only; splits tiny / other. The tracking metrics on it can
  be worked out by hand.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from drivestack.common.nuscenes import TABLES

VERSION = "v1.0-trainval"
T0 = 1_600_000_000_000_000  # [us] first keyframe of scene 0; scene s starts 100 s later per index
DT = 0.5  # [s] keyframe interval
CAR, TRUCK = "vehicle.car", "vehicle.truck"
PEDESTRIAN, BARRIER = "human.pedestrian.adult", "movable_object.barrier"
CATEGORIES = (CAR, TRUCK, PEDESTRIAN, BARRIER)
SIZES = {CAR: (1.9, 4.5, 1.6), TRUCK: (2.5, 8.0, 3.0)}  # w, l, h [m]
COLORS = {CAR: (200, 40, 40), TRUCK: (40, 60, 200)}  # RGB base colours (others: grey)
CAM_ROT = (0.5, -0.5, 0.5, -0.5)  # camera -> ego: z forward, x right, y down (nuScenes CAM_FRONT, level)
CAM_T = (1.7, 0.0, 1.5)
LIDAR_T = (0.0, 0.0, 1.8)
# [rad] heading of each camera's optical axis in the ego frame (nuScenes' layout, about); CAM_FRONT is CAM_ROT
CAMERA_YAWS = {
    "CAM_FRONT": 0.0,
    "CAM_FRONT_RIGHT": -math.radians(55.0),
    "CAM_FRONT_LEFT": math.radians(55.0),
    "CAM_BACK": math.pi,
    "CAM_BACK_LEFT": math.radians(110.0),
    "CAM_BACK_RIGHT": -math.radians(110.0),
}


@dataclass
class ObjectSpec:
    """One annotated object moving at constant velocity in the ego frame."""

    category: str  # nuScenes category name, one of CATEGORIES
    start: tuple[float, float, float]  # [m] ego-frame centre at the first keyframe
    velocity: tuple[float, float]  # [m/s] ego-frame velocity (relative to the ego)
    size: tuple[float, float, float]  # [m] w, l, h
    yaw: float  # [rad] ego-frame heading
    attribute: str = ""  # attribute name ("" for none)


@dataclass
class SceneSpec:
    """One scene: an ego driving straight at `ego_speed` along `ego_yaw` from `ego_origin`, and its objects."""

    name: str
    objects: list[ObjectSpec]
    num_frames: int = 4
    ego_origin: tuple[float, float] = (0.0, 0.0)  # [m] global
    ego_yaw: float = 0.0  # [rad] global
    ego_speed: float = 0.0  # [m/s]


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


def _camera_pose(channel: str) -> tuple[list[float], list[float]]:
    """(rotation quaternion, translation [m]) camera -> ego of a camera channel; CAM_FRONT: CAM_ROT, CAM_T."""
    yaw = CAMERA_YAWS[channel]
    if yaw == 0.0:
        return list(CAM_ROT), list(CAM_T)
    qz, (w, x, y, z) = _quat_yaw(yaw), CAM_ROT  # the front camera turned by yaw about the ego's z axis
    rot = [qz[0] * w - qz[3] * z, qz[0] * x - qz[3] * y, qz[0] * y + qz[3] * x, qz[0] * z + qz[3] * w]
    trans = [1.0 + 0.7 * math.cos(yaw), 0.7 * math.sin(yaw), CAM_T[2]]
    return rot, trans


def _render(
    objects: list[tuple[str, tuple[float, float, float], np.ndarray, float]],
    K: np.ndarray,
    size: tuple[int, int],
    channel: str = "CAM_FRONT",
) -> np.ndarray:
    """RGB image of ego-frame cuboids (category, size, centre, yaw) seen from the fixture camera `channel`."""
    width, height = size
    img = np.zeros((height, width, 3), np.uint8)
    horizon = int(K[1, 2])
    img[:horizon] = (150, 190, 230)
    img[horizon:] = (95, 95, 100)
    rot, trans = _camera_pose(channel)
    R, t = _rotmat(rot), np.array(trans)
    for category, box_size, center, yaw in sorted(objects, key=lambda o: -np.hypot(*o[2][:2])):  # far to near
        corners_cam = (_corners(center, box_size, yaw) - t) @ R  # ego -> camera
        if (corners_cam[:, 2] < 0.5).any():
            continue
        uv = corners_cam @ K.T
        uv = uv[:, :2] / uv[:, 2:]
        order = sorted(range(6), key=lambda f: -corners_cam[list(FACES[f]), 2].mean())
        for f in order:
            color = tuple(int(min(255, c * SHADE[f])) for c in COLORS.get(category, (128, 128, 128)))
            cv2.fillConvexPoly(img, np.round(uv[list(FACES[f])] * 16).astype(np.int32), color, cv2.LINE_AA, shift=4)
    return img


def _calibration(channel: str, K: np.ndarray) -> dict:
    if channel.startswith("CAM"):
        rot, trans = _camera_pose(channel)
        return {"translation": trans, "rotation": rot, "camera_intrinsic": K.tolist()}
    return {"translation": list(LIDAR_T), "rotation": [1.0, 0.0, 0.0, 0.0], "camera_intrinsic": []}


def write_dataset(
    root: Path,
    scenes: list[SceneSpec],
    splits: dict[str, list[str]],
    channels: tuple[str, ...] = ("CAM_FRONT",),
    image_size: tuple[int, int] = (320, 180),
    version: str = VERSION,
) -> Path:
    """Write `scenes` as a nuScenes-format dataset under `root/<version>` (+ splits.json, + images); returns root.

    Keyframe k of scene s is at T0 + (100 s) * s + DT * k; annotations have 10 lidar points.
    """
    width, height = image_size
    K = np.array([[0.8 * width, 0, width / 2], [0, 0.8 * width, height / 2], [0, 0, 1.0]])
    tab: dict[str, list[dict]] = {k: [] for k in TABLES}
    tab["category"] = [{"token": f"cat-{i}", "name": name, "description": ""} for i, name in enumerate(CATEGORIES)]
    category_token = {name: f"cat-{i}" for i, name in enumerate(CATEGORIES)}
    attributes = sorted({o.attribute for spec in scenes for o in spec.objects if o.attribute})
    tab["attribute"] = [{"token": f"attr-{name}", "name": name, "description": ""} for name in attributes]
    tab["visibility"] = [
        {"token": str(i), "level": lvl, "description": ""}
        for i, lvl in enumerate(("v0-40", "v40-60", "v60-80", "v80-100"), 1)
    ]
    for channel in channels:
        modality = "camera" if channel.startswith("CAM") else "lidar"
        tab["sensor"].append({"token": f"sensor-{channel}", "channel": channel, "modality": modality})
        tab["calibrated_sensor"].append(
            {"token": f"calib-{channel}", "sensor_token": f"sensor-{channel}", **_calibration(channel, K)}
        )
        (root / "samples" / channel).mkdir(parents=True, exist_ok=True)
    tab["map"] = [
        {
            "category": "semantic_prior",
            "token": "map-0",
            "filename": "",
            "log_tokens": [f"log-{s}" for s in range(len(scenes))],
        }
    ]
    for s, spec in enumerate(scenes):
        scene_token = f"scene-{s}"
        n = spec.num_frames
        tab["log"].append(
            {
                "token": f"log-{s}",
                "logfile": f"fixture{s}",
                "vehicle": "fx",
                "date_captured": "2020-01-01",
                "location": "singapore-onenorth",
            }
        )
        samples = [f"{scene_token}-s{k}" for k in range(n)]
        inst = [f"{scene_token}-i{j}" for j in range(len(spec.objects))]
        for j, obj in enumerate(spec.objects):
            tab["instance"].append(
                {
                    "token": inst[j],
                    "category_token": category_token[obj.category],
                    "nbr_annotations": n,
                    "first_annotation_token": f"{inst[j]}-a0",
                    "last_annotation_token": f"{inst[j]}-a{n - 1}",
                }
            )
        rot_e = _rotmat(_quat_yaw(spec.ego_yaw))
        for k, token in enumerate(samples):
            ts = T0 + s * 100_000_000 + k * 500_000
            ego_pos = np.array([*spec.ego_origin, 0.0]) + rot_e @ np.array([spec.ego_speed * DT * k, 0, 0])
            drawn = []
            for j, obj in enumerate(spec.objects):
                c = np.array(obj.start) + np.array([*obj.velocity, 0.0]) * (DT * k)  # ego frame
                drawn.append((obj.category, obj.size, c, obj.yaw))
                tab["sample_annotation"].append(
                    {
                        "token": f"{inst[j]}-a{k}",
                        "sample_token": token,
                        "instance_token": inst[j],
                        "visibility_token": "4",
                        "attribute_tokens": [f"attr-{obj.attribute}"] if obj.attribute else [],
                        "translation": (rot_e @ c + ego_pos).tolist(),
                        "size": list(obj.size),
                        "rotation": _quat_yaw(spec.ego_yaw + obj.yaw),
                        "prev": f"{inst[j]}-a{k - 1}" if k else "",
                        "next": f"{inst[j]}-a{k + 1}" if k < n - 1 else "",
                        "num_lidar_pts": 10,
                        "num_radar_pts": 0,
                    }
                )
            tab["ego_pose"].append(
                {
                    "token": f"{token}-ego",
                    "timestamp": ts,
                    "rotation": _quat_yaw(spec.ego_yaw),
                    "translation": ego_pos.tolist(),
                }
            )
            for channel in channels:
                camera = channel.startswith("CAM")
                filename = f"samples/{channel}/fixture{s}__{channel}__{ts}." + ("jpg" if camera else "pcd.bin")
                if camera:
                    cv2.imwrite(
                        str(root / filename),
                        cv2.cvtColor(_render(drawn, K, image_size, channel), cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95],
                    )
                tab["sample_data"].append(
                    {
                        "token": f"{token}-{channel}",
                        "sample_token": token,
                        "ego_pose_token": f"{token}-ego",
                        "calibrated_sensor_token": f"calib-{channel}",
                        "timestamp": ts,
                        "fileformat": "jpg" if camera else "pcd",
                        "is_key_frame": True,
                        "height": height if camera else 0,
                        "width": width if camera else 0,
                        "filename": filename,
                        "prev": f"{samples[k - 1]}-{channel}" if k else "",
                        "next": f"{samples[k + 1]}-{channel}" if k < n - 1 else "",
                    }
                )
            tab["sample"].append(
                {
                    "token": token,
                    "timestamp": ts,
                    "scene_token": scene_token,
                    "prev": samples[k - 1] if k else "",
                    "next": samples[k + 1] if k < n - 1 else "",
                }
            )
        tab["scene"].append(
            {
                "token": scene_token,
                "log_token": f"log-{s}",
                "nbr_samples": n,
                "first_sample_token": samples[0],
                "last_sample_token": samples[-1],
                "name": spec.name,
                "description": "fixture",
            }
        )
    folder = root / version
    folder.mkdir(parents=True, exist_ok=True)
    for table, rows in tab.items():
        (folder / f"{table}.json").write_text(json.dumps(rows))
    (folder / "splits.json").write_text(json.dumps(splits))
    return root


def make_dataset(
    root: Path,
    num_scenes: int = 3,
    frames_per_scene: int = 4,
    image_size: tuple[int, int] = (320, 180),
    seed: int = 0,
    val_scenes: int = 1,
) -> Path:
    """The perception dataset: random scenes of cars and trucks beside an ego at 10 m/s, CAM_FRONT images;
    splits train / val / empty. Returns root."""
    rng = np.random.default_rng(seed)
    scenes = []
    for s in range(num_scenes):
        ego_yaw, origin = rng.uniform(-np.pi, np.pi), rng.uniform(-500, 500, size=2)
        num_obj = int(rng.integers(2, 4))
        kinds = [CAR if rng.random() < 0.7 else TRUCK for _ in range(num_obj)]
        start = np.stack([rng.uniform(8, 35, num_obj), rng.uniform(-7, 7, num_obj)], 1)  # ego frame at t0
        start[:, 0] += 7.0 * np.arange(num_obj)  # spread along the road
        yaws = rng.normal(0, 0.15, num_obj) + np.where(rng.random(num_obj) < 0.2, np.pi, 0.0)
        speeds = rng.uniform(-2, 2, num_obj)  # relative to the ego, along x
        objects = [
            ObjectSpec(
                kinds[j],
                (float(start[j, 0]), float(start[j, 1]), SIZES[kinds[j]][2] / 2),
                (float(speeds[j]), 0.0),
                SIZES[kinds[j]],
                float(yaws[j]),
                "vehicle.moving",
            )
            for j in range(num_obj)
        ]
        scenes.append(
            SceneSpec(f"fixture-{s:04d}", objects, frames_per_scene, tuple(origin), float(ego_yaw), ego_speed=10.0)
        )
    names = [spec.name for spec in scenes]
    splits = {"train": names[: num_scenes - val_scenes], "val": names[num_scenes - val_scenes :], "empty": []}
    return write_dataset(root, scenes, splits, channels=("CAM_FRONT",), image_size=image_size)


def make_multicamera_dataset(
    root: Path,
    num_scenes: int = 3,
    frames_per_scene: int = 3,
    image_size: tuple[int, int] = (320, 180),
    seed: int = 1,
) -> Path:
    """The six-camera dataset: random scenes of cars and trucks all around an ego at 10 m/s (one car at the
    CAM_FRONT / CAM_FRONT_RIGHT seam in every scene), images of the six cameras; splits train / val (the last
    scene). Returns root."""
    rng = np.random.default_rng(seed)
    scenes = []
    for s in range(num_scenes):
        num_obj = int(rng.integers(5, 8))
        kinds = [CAR] + [CAR if rng.random() < 0.7 else TRUCK for _ in range(num_obj - 1)]
        bearing = np.concatenate([[-math.radians(28.0)], rng.uniform(-np.pi, np.pi, num_obj - 1)])  # [rad] ego frame
        dist = np.concatenate([[14.0], rng.uniform(10, 30, num_obj - 1)])  # [m]
        yaws = rng.normal(0, 0.15, num_obj) + np.where(rng.random(num_obj) < 0.2, np.pi, 0.0)
        objects = [
            ObjectSpec(
                kinds[j],
                (float(dist[j] * np.cos(bearing[j])), float(dist[j] * np.sin(bearing[j])), SIZES[kinds[j]][2] / 2),
                (float(rng.uniform(-1, 1)), 0.0),
                SIZES[kinds[j]],
                float(yaws[j]),
                "vehicle.moving",
            )
            for j in range(num_obj)
        ]
        origin = rng.uniform(-500, 500, size=2)
        ego_yaw = float(rng.uniform(-np.pi, np.pi))
        scenes.append(SceneSpec(f"six-{s:04d}", objects, frames_per_scene, tuple(origin), ego_yaw, ego_speed=10.0))
    names = [spec.name for spec in scenes]
    splits = {"train": names[:-1], "val": names[-1:]}
    return write_dataset(root, scenes, splits, channels=tuple(CAMERA_YAWS), image_size=image_size)


# per object of the tracking scenes: (category, start centre (x, y) [m], velocity (vx, vy) [m/s], size, yaw [rad])
TRACKING_OBJECTS = [
    (CAR, (10.0, 0.0), (20.0, 0.0), (1.9, 4.5, 1.6), 0.0),  # drives along +x at 20 m/s (10 m per keyframe)
    (CAR, (20.0, 8.0), (0.0, 0.0), (1.9, 4.5, 1.6), 1.0),  # parked
    (PEDESTRIAN, (5.0, -6.0), (0.0, 1.0), (0.6, 0.7, 1.8), math.pi / 2),  # walks along +y
]
TRACKING_FRAMES = 8


def make_tiny_nuscenes(
    root: Path,
    scene_names: tuple[str, ...] = ("scene-tiny-a", "scene-tiny-b"),
    splits: dict[str, list[str]] | None = None,
) -> Path:
    """The tracking dataset: scene i is TRACKING_OBJECTS around an ego parked at (100 m * i, 0), LIDAR_TOP only;
    splits tiny (the first scene) / other (the rest). Returns root."""
    scenes = [
        SceneSpec(
            name,
            [ObjectSpec(cat, (*start, 1.0), vel, size, yaw) for cat, start, vel, size, yaw in TRACKING_OBJECTS],
            TRACKING_FRAMES,
            ego_origin=(100.0 * s, 0.0),
        )
        for s, name in enumerate(scene_names)
    ]
    if splits is None:
        splits = {"tiny": [scene_names[0]], "other": list(scene_names[1:])}
    return write_dataset(root, scenes, splits, channels=("LIDAR_TOP",))
