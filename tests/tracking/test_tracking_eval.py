"""The devkit metric pipeline on the hand-built scene: values that can be worked out by hand."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from drivestack.common.nuscenes import open_nuscenes, split_scenes
from drivestack.tracking.data_classes import FrameTracks
from drivestack.tracking.evaluate import classes_with_ground_truth, evaluate_submission, restricted_config
from drivestack.tracking.nuscenes_io import tracks_to_submission
from drivestack.tracking.oracle import ground_truth_frames

FIELDS = ("track_id", "translation", "size", "yaw", "velocity", "score", "label")


@pytest.fixture(scope="module")
def scene(tiny_nuscenes: Path):
    nusc = open_nuscenes(tiny_nuscenes)
    scenes = split_scenes(nusc, "tiny")
    return nusc, scenes, ground_truth_frames(nusc, scenes[0])


def test_perfect_tracks_score_one(scene, tmp_path: Path) -> None:
    nusc, scenes, gt = scene
    m = evaluate_submission(tracks_to_submission([gt]), nusc, "tiny", scenes, tmp_path)
    assert m["amota"] == pytest.approx(1.0) and m["mota"] == pytest.approx(1.0)
    assert m["ids"] == 0 and m["frag"] == 0 and m["recall"] == pytest.approx(1.0)
    # the protocol is recorded: tracking_nips_2019 restricted to the classes with ground truth
    assert m["eval_config"]["tracking_names"] == ["car", "pedestrian"]
    assert m["eval_config"]["dist_th_tp"] == 2.0 and m["eval_config_base"] == "tracking_nips_2019"
    assert json.loads((tmp_path / "metrics_summary.json").read_text())["eval_split"] == "tiny"


def test_swapped_identities_count_two_switches(scene, tmp_path: Path) -> None:
    nusc, scenes, gt = scene
    swapped = copy.deepcopy(gt)
    a, b = gt[0].track_id[:2]  # the two cars
    for f in swapped[2:]:
        ids = f.track_id.copy()
        f.track_id[ids == a], f.track_id[ids == b] = b, a
    m = evaluate_submission(tracks_to_submission([swapped]), nusc, "tiny", scenes, tmp_path)
    assert m["ids"] == 2
    # MOTA per class, then averaged: cars 1 - 2 / 12 (the moving car leaves the 50 m car range after 4 frames,
    # so 4 + 8 car boxes are scored), pedestrian 1
    assert m["mota"] == pytest.approx((1 - 2 / 12 + 1.0) / 2)
    assert m["amota"] < 1.0


def test_missing_class_scores_zero_and_extra_class_is_ignored(scene, tmp_path: Path) -> None:
    nusc, scenes, gt = scene
    cars_only = [FrameTracks(f.token, f.timestamp, *(getattr(f, k)[f.label == 2] for k in FIELDS)) for f in gt]
    for f in cars_only:  # a truck that has no ground truth class in the split: not scored, no crash
        f.track_id = np.append(f.track_id, 99)
        f.translation = np.vstack([f.translation, [5.0, 5.0, 1.0]])
        f.size, f.yaw = np.vstack([f.size, [2.5, 8.0, 3.0]]), np.append(f.yaw, 0.0)
        f.velocity, f.score, f.label = (
            np.vstack([f.velocity, [0.0, 0.0]]),
            np.append(f.score, 0.5),
            np.append(f.label, 6),
        )
    m = evaluate_submission(tracks_to_submission([cars_only]), nusc, "tiny", scenes, tmp_path)
    assert m["label_metrics"]["amota"] == {"car": pytest.approx(1.0), "pedestrian": pytest.approx(0.0)}
    assert m["amota"] == pytest.approx(0.5)


def test_config_restriction(scene) -> None:
    nusc, scenes, _ = scene
    cfg = restricted_config(["car"])
    assert cfg.class_names == ["car"] and cfg.class_range == {"car": 50}
    with pytest.raises(ValueError, match="not tracking classes"):
        restricted_config(["barrier"])
    from nuscenes.eval.common.config import config_factory

    assert classes_with_ground_truth(nusc, scenes, config_factory("tracking_nips_2019")) == ["car", "pedestrian"]


def test_the_devkit_scores_exactly_our_split(tmp_path: Path) -> None:
    # splits.json redefines val as scene-0001 (an official *train* scene); the official val holds scene-0003, also
    # in the dataset. The devkit must score our val (before: it took its own list and refused the submission).
    from nuscenes_fixture import make_tiny_nuscenes

    root = make_tiny_nuscenes(tmp_path / "ds", ("scene-0001", "scene-0003"), {"val": ["scene-0001"]})
    nusc = open_nuscenes(root)
    for split in ("val", "all"):  # "all" is not a devkit split at all
        scenes = split_scenes(nusc, split)
        gt = [ground_truth_frames(nusc, s) for s in scenes]
        m = evaluate_submission(tracks_to_submission(gt), nusc, split, scenes, tmp_path / split)
        assert m["amota"] == pytest.approx(1.0) and m["ids"] == 0
        # ground truth scored, mean over the two classes: per scene 12 car boxes (the moving car leaves the range
        # after 4 frames) and 8 pedestrian ones
        assert m["gt"] == pytest.approx(10 * len(scenes)), split


def test_an_annotated_class_without_ground_truth_in_range_is_not_scored(tmp_path: Path) -> None:
    # a truck annotated 80 m away (tracking_nips_2019 scores trucks to 50 m): the devkit must still know the class
    # (before: "Unknown tracking_name truck"), and it is neither scored nor reported nor in the means
    from nuscenes_fixture import CAR, PEDESTRIAN, TRUCK, ObjectSpec, SceneSpec, write_dataset

    objects = [
        ObjectSpec(CAR, (10.0, 0.0, 1.0), (5.0, 0.0), (1.9, 4.5, 1.6), 0.0),
        ObjectSpec(PEDESTRIAN, (5.0, -6.0, 1.0), (0.0, 1.0), (0.6, 0.7, 1.8), 0.0),
        ObjectSpec(TRUCK, (80.0, 0.0, 1.0), (0.0, 0.0), (2.5, 8.0, 3.0), 0.0),
    ]
    scene = SceneSpec("scene-far-truck", objects, 6)
    root = write_dataset(tmp_path / "ds", [scene], {"val": ["scene-far-truck"]}, channels=("LIDAR_TOP",))
    nusc = open_nuscenes(root)
    scenes = split_scenes(nusc, "val")
    gt = ground_truth_frames(nusc, scenes[0])
    assert 6 in set(np.concatenate([f.label for f in gt]).tolist())  # the truck is in the tracks (label 6)
    m = evaluate_submission(tracks_to_submission([gt]), nusc, "val", scenes, tmp_path / "eval")
    assert m["eval_config"]["tracking_names"] == ["car", "pedestrian"]
    assert set(m["label_metrics"]["amota"]) == {"car", "pedestrian"}
    assert m["amota"] == pytest.approx(1.0) and m["ids"] == 0
    assert m["gt"] == pytest.approx((6 + 6) / 2)  # mean over the two scored classes, not three
    details = json.loads((tmp_path / "eval" / "metrics_details.json").read_text())
    assert set(details) == {"car", "pedestrian"}


def test_scored_metrics_follow_the_devkit_rule() -> None:
    from drivestack.tracking.evaluate import scored_metrics

    summary = {
        "label_metrics": {
            "amota": {"car": 0.8, "pedestrian": 0.4, "truck": float("nan")},
            "ids": {"car": 3.0, "pedestrian": 1.0, "truck": float("nan")},
        },
        "amota": 0.6,
        "ids": 4.0,
    }
    m = scored_metrics(summary, ["car", "pedestrian"])
    assert m["amota"] == pytest.approx(0.6) and m["ids"] == 4.0  # averaged / summed over the scored classes
    assert m["label_metrics"]["amota"] == {"car": 0.8, "pedestrian": 0.4}
    m = scored_metrics(summary, ["car"])
    assert m["amota"] == pytest.approx(0.8) and m["ids"] == 3.0
