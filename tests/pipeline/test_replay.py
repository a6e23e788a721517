"""`drivestack replay` end to end on hand-built nuScenes-format data: the oracle and a submission through the
tracker and the shadow planners, the figures on a straight drive, the MCAP hand-off, and the one-line errors."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from nuscenes_fixture import CAR, PEDESTRIAN, ObjectSpec, SceneSpec, write_dataset
from strict_json import strict_json_tree

from drivestack.cli import main
from drivestack.common.nuscenes import open_nuscenes, split_scenes
from drivestack.common.submission import write_submission
from drivestack.tracking.nuscenes_io import detections_to_submission
from drivestack.tracking.oracle import OracleConfig, oracle_detections

NUM_FRAMES = 10  # 4.5 s of keyframes: 4 with a full 3 s future, 6 without
FAST = ["--no-progress", "--no-video", "--threads", "1"]


@pytest.fixture(scope="module")
def drive_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scenes of an ego driving straight at 10 m/s (LIDAR_TOP only): a car keeping pace in the left lane and a
    pedestrian standing on the right, clear of the ego's path; splits a, b, bc (drive-c: 3 keyframes)."""
    objects = [
        ObjectSpec(CAR, (12.0, 3.5, 0.8), (0.0, 0.0), (1.9, 4.5, 1.6), 0.0),  # left lane, same speed
        ObjectSpec(PEDESTRIAN, (30.0, -6.0, 0.9), (-10.0, 0.0), (0.6, 0.7, 1.8), 1.5),  # standing on the right
    ]
    scenes = [
        SceneSpec("drive-a", objects, NUM_FRAMES, (500.0, 200.0), 0.3, ego_speed=10.0),
        SceneSpec("drive-b", objects, NUM_FRAMES, (900.0, 600.0), -1.0, ego_speed=10.0),
        SceneSpec("drive-c", objects[:1], 3, (1300.0, 600.0), 2.0, ego_speed=10.0),
    ]
    root = tmp_path_factory.mktemp("replay-drive")
    splits = {"a": ["drive-a"], "b": ["drive-b"], "bc": ["drive-b", "drive-c"]}
    return write_dataset(root, scenes, splits, channels=("LIDAR_TOP",))


def _run(argv: list[str]) -> int:
    return main(["replay", *argv])


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert _run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drivestack: error: ") and "\n" not in err, err
    return err


def test_oracle_replay_scores_a_straight_drive(drive_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # drive-a and drive-b: no split holds exactly these two, so TrackingEval scores them under a temporary one
    scenes = ["--scene", "drive-b", "--scene", "drive-a"]
    assert _run(["--dataroot", str(drive_root), *scenes, "--detections", "oracle", "--out", str(out), *FAST]) == 0
    written = strict_json_tree(out)
    r = written["replay.json"]
    assert r["scenes"] == ["drive-a", "drive-b"] and r["keyframes"] == 2 * NUM_FRAMES
    assert r["samples_scored"] == 2 * 4 and r["samples_left_out"] == 2 * 6
    for name in ("idm", "cv"):  # a straight drive at constant speed: both plans are the logged path
        p = r["planners"][name]
        for key in ("l2_avg_1s", "l2_avg_3s", "l2_at_1s", "l2_at_3s"):
            assert p[key] == pytest.approx(0.0, abs=1e-6), (name, key, p[key])
        assert p["collision_at_3s"] == 0.0 and p["samples_collision"] == 8
        assert p["off_drivable"] is None  # no map in this dataset
    assert r["ego_state_non_causal"] == 2  # each scene's first keyframe: its state from the next pose
    for method in ("tracker", "baseline"):
        assert 0.0 <= r["tracking"][method]["amota"] <= 1.0
    assert set(r["conventions"]) == {"avg", "at"}
    assert r["speed"]["keyframes_per_s"] > 0
    table = (out / "replay.md").read_text()
    assert "L2 3s (ST-P3) m" in table and "L2 3s (UniAD) m" in table and "coll. 3s (UniAD) %" in table


def test_submission_replay_and_mcap_frames(drive_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nusc = open_nuscenes(drive_root)
    scenes = split_scenes(nusc, "all")  # a submission for the whole dataset, replayed for one scene
    sub = tmp_path / "dets.json"
    write_submission(sub, detections_to_submission(oracle_detections(nusc, scenes, OracleConfig(seed=3))), "detection")
    calls = []
    fake = types.ModuleType("drivestack.pipeline.replay_mcap")
    fake.write_scene_mcap = lambda path, nusc, scene_token, frames: calls.append((Path(path), scene_token, frames))
    monkeypatch.setitem(sys.modules, "drivestack.pipeline.replay_mcap", fake)
    out = tmp_path / "out"
    argv = ["--dataroot", str(drive_root), "--scene", "drive-b", "--detections", str(sub), "--out", str(out), "--mcap"]
    assert _run([*argv, *FAST, "--no-perception-eval"]) == 0
    r = json.loads((out / "replay.json").read_text())
    assert r["source"] == "submission" and r["scenes"] == ["drive-b"] and r["samples_scored"] == 4
    ((path, token, frames),) = calls
    assert path == out / "mcap" / "drive-b.mcap" and token == nusc.scene[1]["token"]
    assert len(frames) == NUM_FRAMES
    stamps = [f["timestamp_us"] for f in frames]
    assert stamps == sorted(stamps) and all(isinstance(t, int) for t in stamps)
    some = [t for f in frames for t in f["tracks"]]
    assert some
    for track in some:
        assert isinstance(track["track_id"], int) and isinstance(track["name"], str)
        assert len(track["translation"]) == 3 and len(track["size"]) == 3 and len(track["velocity"]) == 2
        assert np.linalg.norm(track["rotation"]) == pytest.approx(1.0)
    for f in frames:
        assert set(f["plans"]) == {"idm", "cv"}
        assert np.asarray(f["plans"]["idm"]).shape == (6, 2)


def test_bad_input_is_one_line(drive_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    common = ["--detections", "oracle", "--out", str(out), *FAST]
    # a dataroot without its version folder
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "has no version folder" in _error(capsys, ["--dataroot", str(empty), "--split", "all", *common])
    # an unknown scene: the valid names are listed
    err = _error(capsys, ["--dataroot", str(drive_root), "--scene", "scene-0001", *common])
    assert "'scene-0001' is not in" in err and "drive-a, drive-b, drive-c" in err
    # neither or both of --scene and --split
    assert "--scene NAME" in _error(capsys, ["--dataroot", str(drive_root), *common])
    # a submission for samples of another dataset, and one for the other scene only
    sub = tmp_path / "other.json"
    box = {
        "sample_token": "elsewhere",
        "translation": [1.0, 2.0, 0.5],
        "size": [1.9, 4.5, 1.6],
        "rotation": [1.0, 0.0, 0.0, 0.0],
        "velocity": [0.0, 0.0],
        "detection_name": "car",
        "detection_score": 0.9,
        "attribute_name": "",
    }
    sub.write_text(json.dumps({"meta": {}, "results": {"elsewhere": [box]}}))
    err = _error(capsys, ["--dataroot", str(drive_root), "--scene", "drive-a", "--detections", str(sub), *FAST])
    assert str(sub) in err and "none of its 1 samples is in the dataset" in err
    nusc = open_nuscenes(drive_root)
    only_b = tmp_path / "only_b.json"
    dets = oracle_detections(nusc, split_scenes(nusc, "b"), OracleConfig())
    write_submission(only_b, detections_to_submission(dets), "detection")
    err = _error(capsys, ["--dataroot", str(drive_root), "--scene", "drive-a", "--detections", str(only_b), *FAST])
    assert "none of the 10 replayed keyframes has results" in err
    # --mcap without its writer module
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "drivestack.pipeline.replay_mcap", None)  # importing it raises ImportError
        err = _error(capsys, ["--dataroot", str(drive_root), "--split", "a", "--mcap", *common])
    assert "--mcap needs drivestack.pipeline.replay_mcap" in err
    # a missing submission file
    err = _error(capsys, ["--dataroot", str(drive_root), "--split", "a", "--detections", str(tmp_path / "no.json")])
    assert "no such submission file" in err
    # a map record whose mask file is missing
    broken = tmp_path / "broken"
    shutil.copytree(drive_root, broken)
    table = broken / "v1.0-trainval" / "map.json"
    records = json.loads(table.read_text())
    records[0]["filename"] = "maps/gone.png"
    table.write_text(json.dumps(records))
    err = _error(capsys, ["--dataroot", str(broken), "--split", "a", *common])
    assert "map mask" in err and "gone.png" in err and "map.json" in err
    assert not (out / "replay.json").exists()  # nothing half-written


def test_missing_camera_image_is_one_line(six_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "six"
    shutil.copytree(six_root, broken)
    nusc = open_nuscenes(broken)
    sample = nusc.get("sample", split_scenes(nusc, "val")[0]["first_sample_token"])
    (broken / nusc.get("sample_data", sample["data"]["CAM_BACK"])["filename"]).unlink()
    argv = ["--dataroot", str(broken), "--split", "val", "--detections", "detector:release:detector-six", *FAST]
    err = _error(capsys, [*argv, "--out", str(tmp_path / "out")])
    assert "image file" in err and "is missing" in err and "CAM_BACK" in err
