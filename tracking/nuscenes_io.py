"""Tracking frames to and from nuScenes submissions: detection submissions in, tracking submissions out.

Opening the dataset, splits, scenes in time order and reading / validating / writing the submission files are
`drivestack.common.nuscenes` and `drivestack.common.submission`; this module turns validated submissions into
`FrameDetections` per scene (classes the tracker does not track are skipped) and tracker output into
submission dicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nuscenes import NuScenes

from drivestack.common.geometry import quaternion_to_yaw, yaw_to_quaternion
from drivestack.common.nuscenes import sample_ego_pose, sample_time, scene_samples
from drivestack.common.submission import drop_far_boxes, read_submission
from drivestack.tracking.data_classes import (
    NAME_TO_LABEL,
    TRACKING_NAMES,
    FrameDetections,
    FrameTracks,
)

MAX_BOXES_PER_SAMPLE = 500  # the devkit's limit (tracking_nips_2019 max_boxes_per_sample)
SUBMISSION_META = {"use_camera": False, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}


@dataclass
class SceneFrames:
    """The detections of one scene, one frame per keyframe in time order."""

    name: str  # scene name, e.g. "scene-0523"
    token: str  # scene token
    frames: list[FrameDetections]


def read_detection_submission(path: Path, nusc: NuScenes, scenes: list[dict[str, Any]]) -> list[SceneFrames]:
    """Detections per scene from a nuScenes detection submission (JSON: {"meta": ..., "results": {sample_token:
    [box, ...]}}), in the global frame. Classes the tracking benchmark does not track (barrier, traffic cone,
    construction vehicle) are skipped; samples of the split without an entry are empty frames; boxes more than
    500 m from the ego are dropped with one warning (`drivestack.common.submission.drop_far_boxes`)."""
    samples = {scene["token"]: scene_samples(nusc, scene) for scene in scenes}
    ego_xy = {s["token"]: sample_ego_pose(nusc, s)["translation"][:2] for ss in samples.values() for s in ss}
    submission = read_submission(
        path, "detection", sample_tokens=list(ego_xy), dataset_tokens=[s["token"] for s in nusc.sample]
    )
    results = drop_far_boxes(submission, ego_xy, path)["results"]  # a stray box far away is a fault, not a track
    out = []
    for scene in scenes:
        frames = [parse_sample(Path(path), s, results.get(s["token"], [])) for s in samples[scene["token"]]]
        out.append(SceneFrames(scene["name"], scene["token"], frames))
    return out


def parse_sample(path: Path, sample: dict[str, Any], boxes: list[dict[str, Any]]) -> FrameDetections:
    """One frame of the tracked classes from validated boxes (see `drivestack.common.submission`)."""
    token = sample["token"]
    boxes = [b for b in boxes if b["detection_name"] in NAME_TO_LABEL]  # barrier, traffic cone, ...: untracked
    translation = np.array([b["translation"] for b in boxes], dtype=np.float64).reshape(-1, 3)
    size = np.array([b["size"] for b in boxes], dtype=np.float64).reshape(-1, 3)
    rotation = np.array([b["rotation"] for b in boxes], dtype=np.float64).reshape(-1, 4)
    velocity = np.array([b.get("velocity", [math.nan, math.nan]) for b in boxes], dtype=np.float64).reshape(-1, 2)
    score = np.array([b["detection_score"] for b in boxes], dtype=np.float64)
    label = np.array([NAME_TO_LABEL[b["detection_name"]] for b in boxes], dtype=np.int64)
    try:
        return FrameDetections.from_boxes(
            token, sample_time(sample), translation, size, quaternion_to_yaw(rotation), score, label, velocity
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def detections_to_submission(scenes: list[SceneFrames]) -> dict[str, Any]:
    """A nuScenes detection submission holding these detections (for round trips and for other tools)."""
    results: dict[str, list[dict[str, Any]]] = {}
    for scene in scenes:
        for f in scene.frames:
            q = yaw_to_quaternion(f.yaw)
            results[f.token] = [
                {
                    "sample_token": f.token,
                    "translation": f.translation[i].tolist(),
                    "size": f.size[i].tolist(),
                    "rotation": q[i].tolist(),
                    "velocity": f.velocity[i].tolist(),  # NaN: unknown (written as null)
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
            q = yaw_to_quaternion(f.yaw)
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
