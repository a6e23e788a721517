"""Oracle detections: the ground-truth boxes with controlled corruption, to judge a tracker apart from a detector.

Each annotated box of a tracking class becomes a detection with Gaussian noise on its centre, yaw and size,
is dropped with a given probability, and gets a score around `tp_score`. False positives (a Poisson number
per frame, a given fraction of the frame's boxes on average) copy the class and size of a random box of the
frame and sit uniformly within `fp_range` of the ego vehicle, scored around `fp_score`. Deterministic under
the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from nuscenes import NuScenes
from nuscenes.eval.tracking.utils import category_to_tracking_name

from drivestack.common.geometry import quaternion_to_yaw, wrap_angle
from drivestack.common.nuscenes import sample_ego_pose, sample_time, scene_samples
from drivestack.tracking.data_classes import NAME_TO_LABEL, FrameDetections, FrameTracks
from drivestack.tracking.nuscenes_io import SceneFrames


@dataclass(frozen=True)
class OracleConfig:
    """Corruption of ground-truth boxes into oracle detections (defaults: the issue's 'moderate noise')."""

    pos_std: float = 0.3
    """[m] standard deviation of the Gaussian noise on each centre coordinate (x, y, z)."""
    yaw_std: float = 0.1
    """[rad] standard deviation of the yaw noise."""
    size_std: float = 0.05
    """Relative standard deviation of the size noise (0.05: 5 % of each dimension)."""
    drop: float = 0.1
    """Probability that a ground-truth box is not detected in a frame."""
    false_positive: float = 0.05
    """Mean number of false positives per frame, as a fraction of the frame's ground-truth boxes."""
    score_jitter: float = 0.1
    """Standard deviation of the Gaussian noise on the scores (clipped to [0.01, 1])."""
    tp_score: float = 0.8
    """Mean score of a true detection."""
    fp_score: float = 0.4
    """Mean score of a false positive."""
    velocity: bool = False
    """Give detections the annotation's velocity plus noise, as CenterPoint-style detectors do (else unknown)."""
    velocity_std: float = 0.5
    """[m/s] standard deviation of the velocity noise."""
    skip_empty: bool = True
    """Skip boxes with no lidar or radar point (the metric removes them from the ground truth)."""
    fp_range: float = 50.0
    """[m] false positives fall uniformly within this distance of the ego vehicle."""
    seed: int = 0
    """Random seed."""

    def validate(self) -> OracleConfig:
        for name in ("pos_std", "yaw_std", "size_std", "score_jitter", "velocity_std", "false_positive"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"oracle.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("drop", "tp_score", "fp_score"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"oracle.{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.fp_range > 0:
            raise ValueError(f"oracle.fp_range must be > 0, got {self.fp_range}")
        return self


def ground_truth_frames(nusc: NuScenes, scene: dict[str, Any], skip_empty: bool = True) -> list[FrameTracks]:
    """The annotated boxes of the tracking classes per keyframe, as tracks (track_id: instance index, score 1)."""
    out = []
    for sample in scene_samples(nusc, scene):
        anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
        names = [category_to_tracking_name(a["category_name"]) for a in anns]
        anns = [
            (a, n)
            for a, n in zip(anns, names)
            if n is not None and not (skip_empty and a["num_lidar_pts"] + a["num_radar_pts"] == 0)
        ]
        n = len(anns)
        velocity = np.array([nusc.box_velocity(a["token"])[:2] for a, _ in anns]).reshape(n, 2)
        out.append(
            FrameTracks(
                sample["token"],
                sample_time(sample),
                np.array([nusc.getind("instance", a["instance_token"]) for a, _ in anns], dtype=np.int64),
                np.array([a["translation"] for a, _ in anns], dtype=np.float64).reshape(n, 3),
                np.array([a["size"] for a, _ in anns], dtype=np.float64).reshape(n, 3),
                quaternion_to_yaw(np.array([a["rotation"] for a, _ in anns]).reshape(n, 4)),
                velocity,
                np.ones(n),
                np.array([NAME_TO_LABEL[name] for _, name in anns], dtype=np.int64),
            )
        )
    return out


def _ego_xy(nusc: NuScenes, sample: dict[str, Any]) -> np.ndarray:
    return np.array(sample_ego_pose(nusc, sample)["translation"][:2], dtype=np.float64)


def corrupt(gt: FrameTracks, ego_xy: np.ndarray, cfg: OracleConfig, rng: np.random.Generator) -> FrameDetections:
    """One frame of oracle detections from its ground-truth boxes (see the module docstring)."""
    n = len(gt)
    kept = rng.random(n) >= cfg.drop  # [n]
    m = int(kept.sum())
    translation = gt.translation[kept] + rng.normal(0.0, cfg.pos_std, (m, 3))
    yaw = wrap_angle(gt.yaw[kept] + rng.normal(0.0, cfg.yaw_std, m))
    size = gt.size[kept] * np.clip(1.0 + rng.normal(0.0, cfg.size_std, (m, 3)), 0.5, 1.5)
    score = cfg.tp_score + rng.normal(0.0, cfg.score_jitter, m)
    velocity = np.full((m, 2), np.nan)
    if cfg.velocity:
        velocity = gt.velocity[kept] + rng.normal(0.0, cfg.velocity_std, (m, 2))
        velocity[~np.isfinite(velocity).all(axis=1)] = np.nan
    label = gt.label[kept]
    num_fp = int(rng.poisson(cfg.false_positive * n)) if n else 0
    if num_fp:
        src = rng.integers(0, n, num_fp)  # false positives copy class and size of random boxes of the frame
        radius = cfg.fp_range * np.sqrt(rng.random(num_fp))  # uniform over the disc
        angle = rng.uniform(-np.pi, np.pi, num_fp)
        xy = ego_xy + radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        fp_translation = np.concatenate([xy, gt.translation[src, 2:]], axis=1)
        translation = np.concatenate([translation, fp_translation])
        yaw = np.concatenate([yaw, rng.uniform(-np.pi, np.pi, num_fp)])
        size = np.concatenate([size, gt.size[src]])
        score = np.concatenate([score, cfg.fp_score + rng.normal(0.0, cfg.score_jitter, num_fp)])
        velocity = np.concatenate(
            [velocity, np.full((num_fp, 2), np.nan) if not cfg.velocity else rng.normal(0.0, 1.0, (num_fp, 2))]
        )
        label = np.concatenate([label, gt.label[src]])
    return FrameDetections.from_boxes(
        gt.token, gt.timestamp, translation, size, yaw, np.clip(score, 0.01, 1.0), label, velocity
    )


def oracle_detections(nusc: NuScenes, scenes: list[dict[str, Any]], cfg: OracleConfig) -> list[SceneFrames]:
    """Oracle detections for every keyframe of `scenes` (global frame), deterministic under `cfg.seed`."""
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    out = []
    for scene in scenes:
        gt = ground_truth_frames(nusc, scene, cfg.skip_empty)
        ego = [_ego_xy(nusc, s) for s in scene_samples(nusc, scene)]
        out.append(SceneFrames(scene["name"], scene["token"], [corrupt(g, e, cfg, rng) for g, e in zip(gt, ego)]))
    return out
