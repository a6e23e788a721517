"""Tracker velocities for single-frame detections (drivestack.pipeline.detection_velocity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from drivestack.common.nuscenes import open_nuscenes
from drivestack.perception.dataset import load_frames
from drivestack.perception.infer import Detections
from drivestack.pipeline.detection_velocity import scene_order, tracker_velocities


def test_ground_truth_detections_get_the_true_velocity(tiny_root: Path) -> None:
    nusc = open_nuscenes(tiny_root)
    frames = load_frames(nusc, "all")
    groups = scene_order(nusc, frames)
    assert len(groups) == 3 and all(len(g) == 4 for g in groups)
    assert all(a[1] < b[1] for g in groups for a, b in zip(g, g[1:]))
    classes = ("car", "truck")
    K = max(len(f.boxes) for f in frames) + 1  # one padding row below the threshold in every frame
    boxes, scores = torch.zeros(len(frames), K, 7), torch.zeros(len(frames), K)
    labels = torch.zeros(len(frames), K, dtype=torch.int64)
    truth = np.full((len(frames), K, 2), np.nan)
    for i, f in enumerate(frames):
        m = len(f.boxes)
        boxes[i, :m] = torch.from_numpy(f.boxes).float()
        scores[i, :m] = 0.9
        labels[i, :m] = torch.tensor([classes.index(n) for n in f.names])
        for j, ann in enumerate(nusc.get("sample", f.sample_token)["anns"][:m]):
            truth[i, j] = nusc.box_velocity(ann)[:2]
    dets = tracker_velocities(nusc, frames, Detections(boxes, scores, labels, classes), score_threshold=0.5)
    assert dets.velocity is not None and dets.velocity.shape == (len(frames), K, 2)
    assert torch.equal(dets.boxes, boxes) and torch.equal(dets.scores, scores)  # only velocities change
    v = dets.velocity.numpy()
    for group in groups:
        first, last = group[0][0], group[-1][0]
        assert np.all(v[first] == 0)  # newborn tracks: the prior
        m = len(frames[last].boxes)
        # the fixture's cars move at 8-12 m/s: after three updates the tracker knows it to within 1 m/s
        assert np.all(np.linalg.norm(truth[last, :m] - v[last, :m], axis=1) < 1.0), (truth[last, :m], v[last, :m])
        assert np.all(v[last, m:] == 0)  # below the threshold: untouched
