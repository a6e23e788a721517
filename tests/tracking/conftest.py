"""A hand-built nuScenes-format dataset: two tiny scenes, three objects each, written as the 13 tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

VERSION = "v1.0-trainval"
NUM_FRAMES = 8
DT = 0.5  # [s] keyframe interval
T0 = 1_600_000_000_000_000  # [us]
CATEGORIES = {"car": "vehicle.car", "pedestrian": "human.pedestrian.adult", "barrier": "movable_object.barrier"}
# per object: (category, start centre (x, y) [m], velocity (vx, vy) [m/s], size (w, l, h) [m], yaw [rad])
OBJECTS = [
    ("car", (10.0, 0.0), (20.0, 0.0), (1.9, 4.5, 1.6), 0.0),  # drives along +x at 20 m/s (10 m per keyframe)
    ("car", (20.0, 8.0), (0.0, 0.0), (1.9, 4.5, 1.6), 1.0),  # parked
    ("pedestrian", (5.0, -6.0), (0.0, 1.0), (0.6, 0.7, 1.8), math.pi / 2),  # walks along +y
]


def _tok(*parts: object) -> str:
    return "tok_" + "_".join(str(p) for p in parts)


def make_tiny_nuscenes(
    root: Path,
    scene_names: tuple[str, ...] = ("scene-tiny-a", "scene-tiny-b"),
    splits: dict[str, list[str]] | None = None,
) -> Path:
    """Write the dataset under `root`; scene i is OBJECTS shifted by 100 m * i, ego parked at its origin."""
    tables: dict[str, list[dict]] = {
        k: []
        for k in (
            "category",
            "attribute",
            "visibility",
            "instance",
            "sensor",
            "calibrated_sensor",
            "ego_pose",
            "log",
            "scene",
            "sample",
            "sample_data",
            "sample_annotation",
            "map",
        )
    }
    tables["category"] = [{"token": _tok("cat", k), "name": v, "description": ""} for k, v in CATEGORIES.items()]
    tables["visibility"] = [{"token": "4", "level": "v80-100", "description": ""}]
    tables["sensor"] = [{"token": _tok("sensor"), "channel": "LIDAR_TOP", "modality": "lidar"}]
    tables["calibrated_sensor"] = [
        {
            "token": _tok("calib"),
            "sensor_token": _tok("sensor"),
            "translation": [0, 0, 1.8],
            "rotation": [1, 0, 0, 0],
            "camera_intrinsic": [],
        }
    ]
    tables["map"] = [
        {
            "token": _tok("map"),
            "category": "semantic_prior",
            "filename": "",
            "log_tokens": [_tok("log", s) for s in range(len(scene_names))],
        }
    ]
    for s, name in enumerate(scene_names):
        origin = np.array([100.0 * s, 0.0])
        tables["log"].append(
            {
                "token": _tok("log", s),
                "logfile": f"log{s}",
                "vehicle": "v",
                "date_captured": "2020-01-01",
                "location": "singapore-onenorth",
            }
        )
        samples = [_tok("sample", s, k) for k in range(NUM_FRAMES)]
        tables["scene"].append(
            {
                "token": _tok("scene", s),
                "log_token": _tok("log", s),
                "nbr_samples": NUM_FRAMES,
                "first_sample_token": samples[0],
                "last_sample_token": samples[-1],
                "name": name,
                "description": "",
            }
        )
        for k, token in enumerate(samples):
            t = T0 + int(1e6 * (100 * s + DT * k))
            tables["sample"].append(
                {
                    "token": token,
                    "timestamp": t,
                    "scene_token": _tok("scene", s),
                    "prev": samples[k - 1] if k else "",
                    "next": samples[k + 1] if k + 1 < NUM_FRAMES else "",
                }
            )
            tables["ego_pose"].append(
                {
                    "token": _tok("pose", s, k),
                    "timestamp": t,
                    "rotation": [1, 0, 0, 0],
                    "translation": [origin[0], origin[1], 0.0],
                }
            )
            tables["sample_data"].append(
                {
                    "token": _tok("sd", s, k),
                    "sample_token": token,
                    "ego_pose_token": _tok("pose", s, k),
                    "calibrated_sensor_token": _tok("calib"),
                    "timestamp": t,
                    "fileformat": "pcd",
                    "is_key_frame": True,
                    "height": 0,
                    "width": 0,
                    "filename": f"samples/LIDAR_TOP/{s}_{k}.pcd.bin",
                    "prev": _tok("sd", s, k - 1) if k else "",
                    "next": _tok("sd", s, k + 1) if k + 1 < NUM_FRAMES else "",
                }
            )
        for i, (cat, start, vel, size, yaw) in enumerate(OBJECTS):
            anns = [_tok("ann", s, i, k) for k in range(NUM_FRAMES)]
            tables["instance"].append(
                {
                    "token": _tok("inst", s, i),
                    "category_token": _tok("cat", cat),
                    "nbr_annotations": NUM_FRAMES,
                    "first_annotation_token": anns[0],
                    "last_annotation_token": anns[-1],
                }
            )
            for k in range(NUM_FRAMES):
                xy = origin + np.array(start) + DT * k * np.array(vel)
                tables["sample_annotation"].append(
                    {
                        "token": anns[k],
                        "sample_token": samples[k],
                        "instance_token": _tok("inst", s, i),
                        "visibility_token": "4",
                        "attribute_tokens": [],
                        "translation": [xy[0], xy[1], 1.0],
                        "size": list(size),
                        "rotation": [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)],
                        "prev": anns[k - 1] if k else "",
                        "next": anns[k + 1] if k + 1 < NUM_FRAMES else "",
                        "num_lidar_pts": 20,
                        "num_radar_pts": 0,
                    }
                )
    folder = root / VERSION
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (folder / f"{name}.json").write_text(json.dumps(rows))
    if splits is None:
        splits = {"tiny": [scene_names[0]], "other": list(scene_names[1:])}
    (folder / "splits.json").write_text(json.dumps(splits))
    return root


@pytest.fixture(scope="session")
def tiny_nuscenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dataroot of the hand-built dataset: split 'tiny' = scene-tiny-a, split 'other' = scene-tiny-b."""
    return make_tiny_nuscenes(tmp_path_factory.mktemp("tiny_nuscenes"))
