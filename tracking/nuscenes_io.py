"""nuScenes in and out: scenes of a split, detection submissions in, tracking submissions out.

Reads any nuScenes-format dataset through nuscenes-devkit (the real one, or the synthetic one `drivestack
data make` writes, whose custom split names live in `<dataroot>/<version>/splits.json`). Every user
mistake (a missing folder, an unknown split, a submission with boxes for samples outside the split, NaN
boxes, unknown class names) raises one ValueError / FileNotFoundError that names the file or sample.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nuscenes import NuScenes
from nuscenes.utils.splits import create_splits_scenes, get_scenes_of_split

from drivestack.tracking.data_classes import (
    NAME_TO_LABEL,
    TRACKING_NAMES,
    UNTRACKED_DETECTION_NAMES,
    FrameDetections,
    FrameTracks,
    quaternion_from_yaw,
    yaw_from_quaternion,
)

MAX_BOXES_PER_SAMPLE = 500  # the devkit's limit (tracking_nips_2019 max_boxes_per_sample)
SUBMISSION_META = {"use_camera": False, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}


@dataclass
class SceneFrames:
    """The detections of one scene, one frame per keyframe in time order."""

    name: str  # scene name, e.g. "scene-0523"
    token: str  # scene token
    frames: list[FrameDetections]


def load_nuscenes(dataroot: Path, version: str) -> NuScenes:
    """Open a nuScenes-format dataset; FileNotFoundError with a hint when the tables are not there."""
    tables = Path(dataroot) / version
    if not (tables / "sample.json").is_file():
        raise FileNotFoundError(
            f"{tables}: no nuScenes tables (sample.json); point --dataroot at the folder that "
            f"holds {version}/, or make one with `drivestack data make --out DIR`"
        )
    return NuScenes(version=version, dataroot=str(dataroot), verbose=False)


def split_scenes(nusc: NuScenes, split: str) -> list[dict[str, Any]]:
    """The scene records of `split` present in this dataset (a devkit split name, or one of splits.json)."""
    try:
        names = set(get_scenes_of_split(split_name=split, nusc=nusc))
    except ValueError as err:  # no splits.json, or the name is not in it
        custom = Path(nusc.dataroot) / nusc.version / "splits.json"
        known = sorted(json.loads(custom.read_text())) if custom.is_file() else []
        raise ValueError(
            f"split {split!r} is unknown: use a nuScenes split ({', '.join(create_splits_scenes())}) "
            f"or one from {custom} ({', '.join(known) or 'no such file'})"
        ) from err
    scenes = [s for s in nusc.scene if s["name"] in names]
    if not scenes:
        raise ValueError(
            f"split {split!r} has no scene in {nusc.dataroot} (scenes there: "
            f"{', '.join(s['name'] for s in nusc.scene[:5])}...); pick the split that holds them"
        )
    return scenes


def scene_samples(nusc: NuScenes, scene: dict[str, Any]) -> list[dict[str, Any]]:
    """The keyframe (sample) records of a scene in time order."""
    out, token = [], scene["first_sample_token"]
    while token:
        sample = nusc.get("sample", token)
        out.append(sample)
        token = sample["next"]
    return out


def read_detection_submission(path: Path, nusc: NuScenes, scenes: list[dict[str, Any]]) -> list[SceneFrames]:
    """Detections per scene from a nuScenes detection submission (JSON: {"meta": ..., "results": {sample_token:
    [box, ...]}}), in the global frame. Classes the tracking benchmark does not track (barrier, traffic cone,
    construction vehicle) are skipped; samples of the split without an entry are empty frames."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such detection submission; give a nuScenes detection JSON or 'oracle'")
    try:
        results = json.loads(path.read_text())["results"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(
            f"{path}: not a nuScenes detection submission (a JSON object with a 'results' dict of "
            f"sample token -> boxes): {err}"
        ) from err
    if not isinstance(results, dict):
        raise ValueError(f"{path}: 'results' must map sample tokens to lists of boxes")
    split_samples = {s["token"]: s for scene in scenes for s in scene_samples(nusc, scene)}
    outside = [t for t in results if t not in split_samples]
    if outside:
        more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
        raise ValueError(
            f"{path}: sample {outside[0]}{more} is not in the split ({len(split_samples)} samples); "
            "evaluate the split the detections were made for"
        )
    out = []
    for scene in scenes:
        frames = [_parse_sample(path, s, results.get(s["token"], [])) for s in scene_samples(nusc, scene)]
        out.append(SceneFrames(scene["name"], scene["token"], frames))
    return out


def _parse_sample(path: Path, sample: dict[str, Any], boxes: list[dict[str, Any]]) -> FrameDetections:
    token = sample["token"]
    names = [b.get("detection_name") for b in boxes]
    unknown = sorted({str(n) for n in names if n not in NAME_TO_LABEL and n not in UNTRACKED_DETECTION_NAMES})
    if unknown:
        raise ValueError(
            f"{path}: sample {token} has unknown detection_name {unknown[0]!r}; nuScenes classes are "
            f"{', '.join(TRACKING_NAMES + UNTRACKED_DETECTION_NAMES)}"
        )
    boxes = [b for b, n in zip(boxes, names) if n in NAME_TO_LABEL]
    try:
        translation = np.array([b["translation"] for b in boxes], dtype=np.float64).reshape(-1, 3)
        size = np.array([b["size"] for b in boxes], dtype=np.float64).reshape(-1, 3)
        rotation = np.array([b["rotation"] for b in boxes], dtype=np.float64).reshape(-1, 4)
        velocity = np.array([b.get("velocity", [math.nan, math.nan])[:2] for b in boxes], dtype=np.float64).reshape(
            -1, 2
        )
        score = np.array([b["detection_score"] for b in boxes], dtype=np.float64)
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(
            f"{path}: sample {token} has a malformed box ({err}); each box needs translation [3], "
            "size [3], rotation [4], detection_name and detection_score"
        ) from err
    if not np.isfinite(rotation).all():
        raise ValueError(f"{path}: sample {token} has a NaN or infinite rotation; drop or fix that box")
    velocity[~np.isfinite(velocity).all(axis=1)] = np.nan  # a half-known velocity counts as unknown
    label = np.array([NAME_TO_LABEL[b["detection_name"]] for b in boxes], dtype=np.int64)
    try:
        return FrameDetections.from_boxes(
            token, sample["timestamp"] * 1e-6, translation, size, yaw_from_quaternion(rotation), score, label, velocity
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def detections_to_submission(scenes: list[SceneFrames]) -> dict[str, Any]:
    """A nuScenes detection submission holding these detections (for round trips and for other tools)."""
    results: dict[str, list[dict[str, Any]]] = {}
    for scene in scenes:
        for f in scene.frames:
            q = quaternion_from_yaw(f.yaw)
            results[f.token] = [
                {
                    "sample_token": f.token,
                    "translation": f.translation[i].tolist(),
                    "size": f.size[i].tolist(),
                    "rotation": q[i].tolist(),
                    "velocity": f.velocity[i].tolist(),  # NaN (unknown) stays NaN, as in the devkit's own GT
                    "detection_name": TRACKING_NAMES[f.label[i]],
                    "detection_score": float(f.score[i]),
                    "attribute_name": "",
                }
                for i in range(len(f))
            ]
    return {"meta": dict(SUBMISSION_META), "results": results}


def tracks_to_submission(scene_tracks: list[list[FrameTracks]], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A nuScenes tracking submission: every sample of every scene (empty lists included), at most the
    devkit's 500 boxes per sample (the best-scoring), tracking ids as strings."""
    results: dict[str, list[dict[str, Any]]] = {}
    for frames in scene_tracks:
        for f in frames:
            keep = np.argsort(-f.score, kind="stable")[:MAX_BOXES_PER_SAMPLE]
            q = quaternion_from_yaw(f.yaw)
            results[f.token] = [
                {
                    "sample_token": f.token,
                    "translation": f.translation[i].tolist(),
                    "size": f.size[i].tolist(),
                    "rotation": q[i].tolist(),
                    "velocity": f.velocity[i].tolist(),
                    "tracking_id": str(int(f.track_id[i])),
                    "tracking_name": TRACKING_NAMES[f.label[i]],
                    "tracking_score": float(f.score[i]),
                }
                for i in keep.tolist()
            ]
    return {"meta": dict(meta or SUBMISSION_META), "results": results}


def write_json_atomic(path: Path, data: object) -> Path:
    """Write JSON to `path` through a temporary sibling and a rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return path
