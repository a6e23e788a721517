"""Reading detection submissions (and rejecting bad ones), oracle detections, writing tracking submissions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from drivestack.common.nuscenes import open_nuscenes, scene_samples, split_scenes
from drivestack.tracking.nuscenes_io import detections_to_submission, read_detection_submission, tracks_to_submission
from drivestack.tracking.oracle import OracleConfig, ground_truth_frames, oracle_detections
from drivestack.tracking.tracker import Tracker, track_scene


@pytest.fixture(scope="module")
def nusc(tiny_nuscenes: Path):
    return open_nuscenes(tiny_nuscenes)


def test_splits_and_missing_data(nusc, tmp_path: Path) -> None:
    assert [s["name"] for s in split_scenes(nusc, "tiny")] == ["scene-tiny-a"]
    with pytest.raises(ValueError, match="unknown split 'nope'.*available: other, tiny, all"):
        split_scenes(nusc, "nope")
    with pytest.raises(ValueError, match="split 'val' has no scene"):
        split_scenes(nusc, "val")
    with pytest.raises(FileNotFoundError, match="has no version folder"):
        open_nuscenes(tmp_path)


def test_oracle_without_corruption_is_the_ground_truth(nusc) -> None:
    scenes = split_scenes(nusc, "tiny")
    clean = OracleConfig(
        pos_std=0.0,
        yaw_std=0.0,
        size_std=0.0,
        drop=0.0,
        false_positive=0.0,
        score_jitter=0.0,
        velocity=True,
        velocity_std=0.0,
    )
    det = oracle_detections(nusc, scenes, clean)[0]
    gt = ground_truth_frames(nusc, scenes[0])
    assert len(det.frames) == 8 and [len(f) for f in det.frames] == [3] * 8
    for d, g in zip(det.frames, gt):
        assert d.translation == pytest.approx(g.translation) and d.yaw == pytest.approx(g.yaw)
        assert d.velocity == pytest.approx(g.velocity) and d.score == pytest.approx(0.8)
    assert gt[3].velocity[0] == pytest.approx([20.0, 0.0])  # the devkit's velocity of the moving car


def test_oracle_corruption_is_seeded_and_counted(nusc) -> None:
    scenes = split_scenes(nusc, "tiny")
    a = oracle_detections(nusc, scenes, OracleConfig(seed=5))[0]
    b = oracle_detections(nusc, scenes, OracleConfig(seed=5))[0]
    assert all(np.array_equal(x.box, y.box) for x, y in zip(a.frames, b.frames))
    dropped = oracle_detections(nusc, scenes, OracleConfig(drop=1.0, false_positive=0.0))[0]
    assert sum(len(f) for f in dropped.frames) == 0
    noisy = oracle_detections(nusc, scenes, OracleConfig(drop=0.0, false_positive=2.0))[0]
    assert sum(len(f) for f in noisy.frames) > 8 * 3 + 20  # about 6 false positives per frame on top of 3
    with pytest.raises(ValueError, match="oracle.drop must be in"):
        oracle_detections(nusc, scenes, OracleConfig(drop=1.5))


def _write(tmp_path: Path, results: dict) -> Path:
    path = tmp_path / "det.json"
    path.write_text(json.dumps({"meta": {}, "results": results}))
    return path


def test_detection_submission_round_trip(nusc, tmp_path: Path) -> None:
    scenes = split_scenes(nusc, "tiny")
    det = oracle_detections(nusc, scenes, OracleConfig(velocity=True))
    sub = detections_to_submission(det)
    token = det[0].frames[0].token
    sub["results"][token].append({**sub["results"][token][0], "detection_name": "barrier"})  # not tracked: skipped
    del sub["results"][det[0].frames[-1].token]  # a sample with no entry: an empty frame
    back = read_detection_submission(_write(tmp_path, sub["results"]), nusc, scenes)
    assert [len(f) for f in back[0].frames[:-1]] == [len(f) for f in det[0].frames[:-1]]
    assert len(back[0].frames[-1]) == 0
    for x, y in zip(back[0].frames[:-1], det[0].frames[:-1]):
        assert x.box == pytest.approx(y.box) and x.velocity == pytest.approx(y.velocity)
        assert np.array_equal(x.label, y.label) and x.timestamp == pytest.approx(y.timestamp)


def test_bad_submissions_name_the_sample(nusc, tmp_path: Path) -> None:
    scenes = split_scenes(nusc, "tiny")
    good = detections_to_submission(oracle_detections(nusc, scenes, OracleConfig()))["results"]
    token = next(iter(good))
    foreign = scene_samples(nusc, split_scenes(nusc, "other")[0])[0]["token"]
    with pytest.raises(ValueError, match=f"sample {foreign} is not in the split"):
        read_detection_submission(_write(tmp_path, {**good, foreign: []}), nusc, scenes)
    bad = json.loads(json.dumps(good))
    bad[token][0]["translation"][1] = math.nan
    with pytest.raises(ValueError, match=f"sample {token}: box 0: field 'translation' must be 3 finite"):
        read_detection_submission(_write(tmp_path, bad), nusc, scenes)
    bad = json.loads(json.dumps(good))
    bad[token][1]["detection_name"] = "spaceship"
    with pytest.raises(ValueError, match=f"sample {token}: box 1: field 'detection_name' is 'spaceship'"):
        read_detection_submission(_write(tmp_path, bad), nusc, scenes)
    bad = json.loads(json.dumps(good))
    del bad[token][0]["size"]
    with pytest.raises(ValueError, match=f"sample {token}: box 0 lacks field 'size'"):
        read_detection_submission(_write(tmp_path, bad), nusc, scenes)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not a nuScenes detection submission"):
        read_detection_submission(tmp_path / "broken.json", nusc, scenes)
    with pytest.raises(FileNotFoundError, match="no such detection submission"):
        read_detection_submission(tmp_path / "absent.json", nusc, scenes)


def test_tracking_submission_covers_every_sample(nusc) -> None:
    scenes = split_scenes(nusc, "tiny")
    det = oracle_detections(nusc, scenes, OracleConfig(drop=0.5, seed=1))
    tracks = [track_scene(Tracker(), s.frames) for s in det]
    sub = tracks_to_submission(tracks)
    assert set(sub["results"]) == {s["token"] for s in scene_samples(nusc, scenes[0])}
    boxes = [b for bs in sub["results"].values() for b in bs]
    assert boxes and all(isinstance(b["tracking_id"], str) and 0 <= b["tracking_score"] <= 1 for b in boxes)
    assert {b["tracking_name"] for b in boxes} <= {"car", "pedestrian"}
