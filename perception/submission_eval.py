"""Scoring any detection submission (lidar, camera, anyone's) with the report our detector gets: its boxes moved
into each frame's ego frame, the devkit's sample rules checked, then `perception.evaluate`'s protocol and report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nuscenes.eval.common.config import config_factory
from nuscenes.nuscenes import NuScenes

from drivestack.common.submission import DETECTION_NAMES, write_submission
from drivestack.perception.config import sort_classes
from drivestack.perception.dataset import CameraFrame, global_to_ego_boxes, visible_mask
from drivestack.perception.evaluate import (
    ATTRIBUTE_NAMES,
    FULL_SCENE,
    FULL_SCENE_PROTOCOL,
    IN_IMAGE,
    detection_config,
    detection_report,
    gt_counts,
    load_protocol,
)
from drivestack.perception.infer import Detections


def submission_detections(frames: list[CameraFrame], data: dict[str, Any], in_image: bool = False) -> Detections:
    """The boxes of a validated detection submission as `Detections` in each frame's ego frame.

    Args:
        frames: N frames; frame i takes the boxes of its sample (several frames of one sample each take them all).
        data: a validated submission (`drivestack.common.submission.validate_submission`), global frame.
        in_image: keep only the boxes whose centre projects into the frame's image (the rest get score 0).
    Returns:
        (N, K) detections sorted by score, padded with score 0; labels index the ten nuScenes detection names;
        velocity (N, K, 2) [m/s] global as submitted (NaN unknown).
    """
    classes = tuple(DETECTION_NAMES)
    index = {c: i for i, c in enumerate(classes)}
    per_frame = []
    for frame in frames:  # a handful of boxes per frame, a few hundred frames: not a hot path
        rows = data["results"].get(frame.sample_token, [])
        boxes = global_to_ego_boxes(
            [b["translation"] for b in rows], [b["size"] for b in rows], [b["rotation"] for b in rows], frame.ego2global
        )
        scores = np.array([b["detection_score"] for b in rows], dtype=np.float64)
        labels = np.array([index[b["detection_name"]] for b in rows], dtype=np.int64)
        velocity = np.array([b.get("velocity", [math.nan, math.nan]) for b in rows], dtype=np.float64).reshape(-1, 2)
        keep = visible_mask(frame, boxes) if in_image else np.ones(len(rows), dtype=bool)
        order = np.argsort(-scores[keep], kind="stable")
        per_frame.append(tuple(a[keep][order] for a in (boxes, scores, labels, velocity)))
    K = max([1] + [len(p[1]) for p in per_frame])
    out = Detections(
        boxes=torch.zeros(len(frames), K, 7),
        scores=torch.zeros(len(frames), K),
        labels=torch.zeros(len(frames), K, dtype=torch.long),
        classes=classes,
        velocity=torch.full((len(frames), K, 2), math.nan),
    )
    for i, (boxes, scores, labels, velocity) in enumerate(per_frame):
        k = len(scores)
        out.boxes[i, :k], out.scores[i, :k] = torch.from_numpy(boxes).float(), torch.from_numpy(scores).float()
        out.labels[i, :k], out.velocity[i, :k] = torch.from_numpy(labels), torch.from_numpy(velocity).float()
    return out


def _in_image_submission(frames: list[CameraFrame], data: dict[str, Any], max_boxes: int) -> dict[str, Any]:
    """A validated submission cut to one camera's view: per sample, the boxes whose centre projects into the
    frame's image, the `max_boxes` highest-scoring of them, in their submitted order."""
    results = {}
    frame_of = {f.sample_token: f for f in frames}
    for token, rows in data["results"].items():
        if token not in frame_of:
            continue
        frame = frame_of[token]
        boxes = global_to_ego_boxes(
            [b["translation"] for b in rows], [b["size"] for b in rows], [b["rotation"] for b in rows], frame.ego2global
        )
        keep = np.flatnonzero(visible_mask(frame, boxes))
        scores = np.array([rows[k]["detection_score"] for k in keep])
        best = set(keep[np.argsort(-scores, kind="stable")[:max_boxes]].tolist())
        results[token] = [row for k, row in enumerate(rows) if k in best]
    return {"meta": data["meta"], "results": results}


def check_submission_samples(
    data: dict[str, Any], tokens: list[str], protocol: dict[str, Any], source: str | Path = "submission"
) -> None:
    """ValueError (one line) unless the validated submission `data` has an entry for every sample in `tokens`,
    nuScenes attribute names (or "") and, under a full-scene protocol, at most its max_boxes_per_sample boxes in
    each sample (the devkit's rules, which it asserts)."""
    missing = [t for t in tokens if t not in data["results"]]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(
            f"{source}: sample {missing[0]}{more} of the split has no entry; a submission holds one (possibly "
            f"empty) list of boxes per sample of the split ({len(tokens)} samples)"
        )
    for token in tokens:
        for i, box in enumerate(data["results"][token]):
            attribute = box.get("attribute_name", "")
            if not isinstance(attribute, str) or attribute not in ATTRIBUTE_NAMES:
                raise ValueError(
                    f"{source}: sample {token}: box {i}: field 'attribute_name' is {attribute!r}, not "
                    f'a nuScenes attribute (or ""): {", ".join(sorted(ATTRIBUTE_NAMES - {""}))}'
                )
    max_boxes = int(protocol["max_boxes_per_sample"])
    crowded = [t for t in tokens if len(data["results"][t]) > max_boxes]
    if crowded and protocol.get("gt_filter", IN_IMAGE) == FULL_SCENE:  # one camera's view keeps its best boxes
        raise ValueError(
            f"{source}: sample {crowded[0]} holds {len(data['results'][crowded[0]])} boxes; protocol "
            f"{protocol['name']} allows at most {max_boxes} per sample (keep the highest-scoring ones)"
        )


def evaluate_submission(
    nusc: NuScenes,
    frames: list[CameraFrame],
    data: dict[str, Any],
    out_dir: Path,
    protocol: str | Path | dict[str, Any] = FULL_SCENE_PROTOCOL,
    classes: tuple[str, ...] | None = None,
    plots: bool = True,
    images: list[CameraFrame] | None = None,
    source: str | Path = "submission",
) -> dict[str, Any]:
    """Score a nuScenes detection submission (anyone's: lidar, camera, ...) with the report of
    `evaluate_detections`, the devkit reading the submitted boxes as they are (no score threshold).

    Args:
        frames: one frame per sample of the split (full scene: `load_frames(..., ego_frame="sample")`, one
            camera; camera_front_v1: that camera's frames).
        data: the submission, validated against the split (`validate_submission` / `read_submission` with its
            sample tokens); every sample of `frames` must have an entry (ValueError naming the first without).
        protocol: full_scene_v1 (the official benchmark: every box as submitted) or camera_front_v1 (the boxes
            whose centre is in the camera's image, the protocol's max_boxes_per_sample highest-scoring of them).
        classes: classes scored (None: under the full scene the protocol's base config's, the official ten, so
            mAP is the devkit's; under camera_front_v1 those with scored ground truth in the camera's view).
        images: every camera's frame of the split (full scene), for the per-image 2D COCO AP of the boxes whose
            centre is in each image (None: no 2D AP).
        source: the file named in errors.
    Returns:
        The metric dict of `evaluate_detections`; its "submission" is the submission as scored (strict JSON).
    """
    protocol = protocol if isinstance(protocol, dict) else load_protocol(protocol)
    in_image = protocol.get("gt_filter", IN_IMAGE) != FULL_SCENE
    tokens = [f.sample_token for f in frames]
    check_submission_samples(data, tokens, protocol, source)
    base = config_factory(protocol["base"])
    if in_image:
        data = _in_image_submission(frames, data, int(protocol["max_boxes_per_sample"]))
    unknown = [c for c in classes or () if c not in base.class_range]
    if unknown:
        raise ValueError(
            f"classes: {unknown[0]!r} is not a class of {protocol['base']}; allowed: {', '.join(base.class_names)}"
        )
    counts = gt_counts(frames, base.class_range, in_image)
    if classes is None:  # the official ten (the devkit's mAP); one camera's view: those it has ground truth of
        classes = tuple(counts) if in_image else tuple(base.class_names)
    classes = sort_classes(classes)
    if not classes:
        raise ValueError(f"the split has no scored ground truth ({len(frames)} samples); choose another --split")
    config = detection_config(classes, protocol)
    wanted = set(tokens)  # the submission's own order: the devkit's, which breaks its score ties
    scored = {"meta": data["meta"], "results": {t: b for t, b in data["results"].items() if t in wanted}}
    path = write_submission(out_dir / "submission.json", scored, "detection", sample_tokens=tokens)
    dets = submission_detections(frames, scored)
    image_dets = None if images is None or in_image else (images, submission_detections(images, scored, True))
    return detection_report(nusc, frames, dets, protocol, config, counts, path, out_dir, plots, image_dets, scored)
