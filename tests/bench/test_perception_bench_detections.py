"""`drivestack bench perception --detections`: anyone's detection submission scored with the bench's report, and
the figures equal to the devkit's own `DetectionEval` (on a hand-built dataset and on the real shared scene)."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nuscenes_fixture import BARRIER, CAR, PEDESTRIAN, SIZES, TRUCK, ObjectSpec, SceneSpec, write_dataset
from strict_json import strict_json_tree

from drivestack.cli import main
from drivestack.common.geometry import yaw_to_quaternion
from drivestack.common.nuscenes import devkit_split, open_nuscenes


def _devkit(root: Path, result: Path, out: Path) -> dict[str, Any]:
    """The devkit's own DetectionEval (detection_cvpr_2019, all ten classes) of `result` on split val."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    nusc = open_nuscenes(root)
    with (
        devkit_split(nusc, "val"),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        config = config_factory("detection_cvpr_2019")
        metrics, _ = DetectionEval(nusc, config, str(result), "val", str(out), verbose=False).evaluate()
    return metrics.serialize()


def _bench(root: Path, detections: Path, out: Path, *extra: str) -> dict[str, Any]:
    argv = ["bench", "perception", "--detections", str(detections), "--dataroot", str(root), "--out", str(out)]
    assert main([*argv, "--no-progress", *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def _assert_same(ours: dict[str, Any], devkit: dict[str, Any]) -> None:
    """Exactly the devkit's floats (NaN, written as null, equal to NaN)."""
    assert ours["mAP"] == devkit["mean_ap"] and ours["NDS"] == devkit["nd_score"]
    assert ours["AP"] == devkit["mean_dist_aps"] and list(ours["AP"]) == list(devkit["mean_dist_aps"])
    for name, value in devkit["tp_errors"].items():
        assert ours["tp_errors"][name] == (None if math.isnan(value) else value), name
    for name, by_dist in devkit["label_aps"].items():
        assert ours["label_aps"][name] == {str(d): v for d, v in by_dist.items()}, name


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drivestack: error: ") and "\n" not in err, err
    return err


# ----------------------------------------------------------------------------------------------- hand-built


@pytest.fixture(scope="module")
def hand_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One val scene of 3 keyframes (LIDAR_TOP + a 96x54 CAM_FRONT): cars ahead and behind, a truck, a pedestrian
    and a barrier around an ego at 5 m/s; a train scene of 2 keyframes."""
    objects = [
        ObjectSpec(CAR, (15.0, 2.0, 0.8), (1.0, 0.0), SIZES[CAR], 0.1, "vehicle.moving"),
        ObjectSpec(CAR, (-12.0, -3.0, 0.8), (0.0, 0.0), SIZES[CAR], math.pi, "vehicle.parked"),
        ObjectSpec(TRUCK, (30.0, -4.0, 1.5), (-1.0, 0.0), SIZES[TRUCK], 0.0, "vehicle.moving"),
        ObjectSpec(PEDESTRIAN, (8.0, 6.0, 0.9), (0.0, 1.0), (0.6, 0.7, 1.8), 1.5, "pedestrian.moving"),
        ObjectSpec(BARRIER, (5.0, -7.0, 0.5), (-5.0, 0.0), (2.0, 0.5, 1.0), 0.0),
    ]
    scenes = [
        SceneSpec("hand-train", objects[:2], 2, (50.0, 80.0), 0.3, 5.0),
        SceneSpec("hand-val", objects, 3, (-200.0, 40.0), -2.0, 5.0),
    ]
    splits = {"train": ["hand-train"], "val": ["hand-val"]}
    root = tmp_path_factory.mktemp("hand-built")
    return write_dataset(root, scenes, splits, channels=("LIDAR_TOP", "CAM_FRONT"), image_size=(96, 54))


def _hand_submission(root: Path) -> dict[str, Any]:
    """Per val sample: each annotation moved by 0.3 m to 3 m, resized and turned a little, scored with ties; a
    false positive per sample; velocities partly unknown (NaN); attributes partly wrong."""
    nusc = open_nuscenes(root)
    rng = np.random.default_rng(7)
    val = nusc.get("scene", nusc.field2token("scene", "name", "hand-val")[0])
    results: dict[str, list[dict[str, Any]]] = {}
    token = val["first_sample_token"]
    names = {"vehicle.car": "car", "vehicle.truck": "truck", "human.pedestrian.adult": "pedestrian"}
    names["movable_object.barrier"] = "barrier"
    while token:
        sample = nusc.get("sample", token)
        boxes = []
        for k, ann_token in enumerate(sample["anns"]):
            ann = nusc.get("sample_annotation", ann_token)
            category = nusc.get("category", nusc.get("instance", ann["instance_token"])["category_token"])["name"]
            shift = [0.3, 0.8, 1.5, 3.0, 0.1][k % 5]
            angle = rng.uniform(-math.pi, math.pi)
            translation = np.array(ann["translation"]) + shift * np.array([math.cos(angle), math.sin(angle), 0.0])
            yaw = 2.0 * math.atan2(ann["rotation"][3], ann["rotation"][0]) + rng.normal(0, 0.2)
            boxes.append(
                {
                    "sample_token": token,
                    "translation": translation.tolist(),
                    "size": (np.array(ann["size"]) * rng.uniform(0.8, 1.2, 3)).tolist(),
                    "rotation": yaw_to_quaternion(np.array(yaw)).tolist(),
                    "velocity": [math.nan, math.nan] if k % 2 else rng.normal(0, 1, 2).tolist(),
                    "detection_name": names[category],
                    "detection_score": [0.9, 0.5, 0.5, 0.7, 0.3][k % 5],  # ties: the devkit's order breaks them
                    "attribute_name": "vehicle.moving" if names[category] in ("car", "truck") else "",
                }
            )
        ego = np.array(boxes[0]["translation"]) + np.array([20.0, 20.0, 0.0])
        boxes.append({**boxes[0], "translation": ego.tolist(), "detection_score": 0.5})  # a false positive
        results[token] = boxes
        token = sample["next"]
    return {"meta": {"use_camera": False, "use_lidar": True}, "results": results}


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))  # NaN as the devkit reads it (Python's JSON)
    return path


def test_hand_built_submission_scores_as_devkit(hand_root: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "hand.json", _hand_submission(hand_root))
    ours = _bench(hand_root, path, tmp_path / "bench", "--no-plots")
    devkit = _devkit(hand_root, path, tmp_path / "devkit")
    _assert_same(ours, devkit)
    assert 0.0 < ours["mAP"] < 0.5 and ours["AP"]["car"] > 0  # AP 0 for the absent classes, as the devkit's
    assert ours["classes"] == list(devkit["mean_dist_aps"]) and len(ours["classes"]) == 10
    assert ours["gt_counts"]["car"] == 6 and ours["gt_counts"]["bus"] == 0
    written = strict_json_tree(tmp_path / "bench")  # metrics and the scored submission: no NaN
    assert written["submission.json"]["results"].keys() == json.loads(path.read_text())["results"].keys()
    assert ours["centre_errors"] and ours["coco_2d"] is not None and "speed" not in ours
    assert (tmp_path / "bench" / "summary.md").read_text().startswith("# perception benchmark: ")


def test_front_camera_protocol_keeps_the_boxes_in_view(hand_root: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "hand.json", _hand_submission(hand_root))
    ours = _bench(hand_root, path, tmp_path / "front", "--protocol", "camera_front_v1", "--no-plots")
    assert ours["cameras"] == ["CAM_FRONT"] and ours["protocol"]["name"] == "camera_front_v1"
    # in CAM_FRONT's view (90 degrees): the car ahead and the truck; the classes without ground truth in view
    # are not scored
    assert set(ours["classes"]) <= {"car", "truck"} and "car" in ours["classes"]
    kept = json.loads((tmp_path / "front" / "submission.json").read_text())["results"]
    total = json.loads(path.read_text())["results"]
    assert 0 < sum(map(len, kept.values())) < sum(map(len, total.values()))


def test_submission_mistakes_are_one_line(hand_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _hand_submission(hand_root)
    base = ["bench", "perception", "--dataroot", str(hand_root), "--out", str(tmp_path / "o"), "--no-progress"]
    assert "give --checkpoint" in _error(capsys, base)
    path = _write(tmp_path / "hand.json", data)
    err = _error(capsys, [*base, "--detections", str(path), "--checkpoint", "release:detector-six"])
    assert "--checkpoint and --detections both given" in err
    other = _write(tmp_path / "other.json", {**data, "results": {"not-a-sample": []}})
    err = _error(capsys, [*base, "--detections", str(other)])
    assert "none of its 1 samples is in the split" in err
    first = next(iter(data["results"]))
    fewer = _write(
        tmp_path / "fewer.json", {**data, "results": {t: b for t, b in data["results"].items() if t != first}}
    )
    assert f"sample {first} of the split has no entry" in _error(capsys, [*base, "--detections", str(fewer)])
    bad = json.loads(json.dumps(data))
    bad["results"][first][1]["size"] = [1.0, -2.0, 1.0]
    err = _error(capsys, [*base, "--detections", str(_write(tmp_path / "bad.json", bad))])
    assert f"sample {first}: box 1: field 'size' must be > 0" in err
    bad = json.loads(json.dumps(data))
    bad["results"][first][0]["attribute_name"] = "vehicle.flying"
    err = _error(capsys, [*base, "--detections", str(_write(tmp_path / "attr.json", bad))])
    assert f"sample {first}: box 0: field 'attribute_name' is 'vehicle.flying'" in err
    assert "no such file" in _error(capsys, [*base, "--detections", str(tmp_path / "absent.json")])
    err = _error(capsys, [*base, "--detections", str(path), "--input-width", "160"])
    assert "input-width applies to --checkpoint only" in err
    assert not (tmp_path / "o").exists()  # a refused run leaves no folder


# ----------------------------------------------------------------------------------------------- real scene


def test_centerpoint_on_the_real_scene_equals_devkit(real_root: Path, tmp_path: Path) -> None:
    """The real CenterPoint lidar submission on scene-0523: mAP, NDS, per-class AP and TP errors exactly the
    devkit's DetectionEval (detection_cvpr_2019, eval set val) of the same file."""
    path = real_root / "detections" / "centerpoint-lidar.json"
    ours = _bench(real_root, path, tmp_path / "bench")
    devkit = _devkit(real_root, path, tmp_path / "devkit")
    _assert_same(ours, devkit)
    assert ours["mAP"] > 0.5 and ours["AP"]["car"] > 0.7 and ours["num_samples"] == 40
    assert (
        ours["coco_2d"]["AP"] > 0.2 and len(ours["cameras"]) == 6 and (tmp_path / "bench" / "pr_curves.png").is_file()
    )
