"""Six cameras through the CLI with tiny budgets: `drivestack train detector --cameras all` and `drivestack bench
perception` under the full-scene protocol (the cameras merged per sample, every annotation the devkit keeps),
and the one-line errors for unknown, missing and mismatched cameras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from strict_json import strict_json_tree
from tiny_detector import TINY_TRAIN

from drivestack.cli import main
from drivestack.common.nuscenes import open_nuscenes
from drivestack.perception.checkpoint import load_checkpoint
from drivestack.perception.config import CAMERAS
from drivestack.perception.dataset import load_frames, visible_mask

BENCH = ["--device", "cpu", "--num-workers", "0", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def six_run(six_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch detector run on the six cameras of the fixture (validated every epoch)."""
    out = tmp_path_factory.mktemp("detector-six") / "run"
    torch.set_num_threads(1)
    argv = ["train", "detector", "--dataroot", str(six_root), "--cameras", "all", "--epochs", "2"]
    assert main([*argv, "--val-every", "1", "--run-dir", str(out), *TINY_TRAIN]) == 0
    return out


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drivestack: error: ") and "\n" not in err, err
    return err


def test_train_on_six_cameras_validates_the_full_scene(six_run: Path) -> None:
    written = strict_json_tree(six_run)
    config = written["config.json"]
    assert config["train"]["cameras"] == ["all"]
    assert config["num_train"] == 2 * 3 * 6 and config["num_val"] == 3 * 6  # every camera image is a sample
    val = written["val/metrics.json"]
    assert val["protocol"]["name"] == "full_scene_v1" and val["num_samples"] == 3
    assert set(written["val/submission.json"]["results"]) == {f"scene-2-s{k}" for k in range(3)}
    assert val["coco_2d"] is not None and 0.0 <= val["NDS"] <= 1.0
    assert load_checkpoint(six_run / "checkpoints" / "last.pt")["info"]["cameras"] == list(CAMERAS)


def test_bench_scores_the_merged_cameras_over_the_full_scene(
    six_run: Path, six_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    argv = ["bench", "perception", "--checkpoint", str(six_run), "--dataroot", str(six_root), "--split", "val"]
    assert main([*argv, "--cameras", "all", "--out", str(out), "--speed-batch", "2", "--speed-iters", "2", *BENCH]) == 0
    printed = capsys.readouterr().out
    assert "| protocol / cameras | full_scene_v1 / CAM_FRONT, CAM_FRONT_RIGHT, CAM_FRONT_LEFT, CAM_BACK" in printed
    written = strict_json_tree(out)
    metrics, sub = written["metrics.json"], written["submission.json"]
    assert metrics["protocol"]["name"] == "full_scene_v1" and metrics["cameras"] == list(CAMERAS)
    assert metrics["num_samples"] == 3 and metrics["num_images"] == 18
    assert "protocol full_scene_v1, cameras CAM_FRONT, CAM_FRONT_RIGHT" in (out / "summary.md").read_text()
    assert "| ego distance m |" in printed
    # Ground truth: every annotation around the ego (all within the 50 m class range, all with points), far more
    # than the camera_front_v1 protocol's (centre in the CAM_FRONT image).
    nusc = open_nuscenes(six_root)
    samples = load_frames(nusc, "val")
    every = sum(len(f.names) for f in samples)
    in_front = sum(int(visible_mask(f).sum()) for f in samples)
    assert sum(metrics["gt_counts"].values()) == every > in_front
    # The submission: one entry per sample, the merged boxes, all above the protocol's score threshold.
    assert set(sub["results"]) == {f.sample_token for f in samples}
    for rows in sub["results"].values():
        assert rows and all(r["detection_score"] >= 0.05 for r in rows)
    # --protocol full_scene_v1 alone reads all six cameras; with --cameras CAM_FRONT it scores the front camera's
    # boxes over the full scene.
    out2 = tmp_path / "bench2"
    assert main([*argv, "--protocol", "full_scene_v1", "--out", str(out2), "--no-speed", "--no-plots", *BENCH]) == 0
    again = strict_json_tree(out2)["metrics.json"]
    assert again["cameras"] == list(CAMERAS) and again["mAP"] == metrics["mAP"]
    out3 = tmp_path / "bench3"
    argv3 = [*argv, "--protocol", "full_scene_v1", "--cameras", "CAM_FRONT", "--out", str(out3), "--no-speed"]
    assert main([*argv3, "--no-plots", *BENCH]) == 0
    front = strict_json_tree(out3)["metrics.json"]
    assert front["num_images"] == 3 and front["gt_counts"] == metrics["gt_counts"]
    assert np.isfinite(front["mAP"])


def test_camera_mistakes_are_one_line(
    six_run: Path, six_root: Path, tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = ["bench", "perception", "--checkpoint", str(six_run), "--out", str(tmp_path / "b"), "--no-speed", *BENCH]
    err = _error(capsys, ["train", "detector", "--dataroot", str(six_root), "--cameras", "CAM_SIDE", *TINY_TRAIN])
    assert "unknown camera 'CAM_SIDE'; valid: all, CAM_FRONT, CAM_FRONT_RIGHT, CAM_FRONT_LEFT, CAM_BACK" in err
    err = _error(capsys, [*bench, "--dataroot", str(tiny_root), "--cameras", "all"])
    assert "has no camera CAM_FRONT_RIGHT (its cameras: CAM_FRONT)" in err
    err = _error(capsys, [*bench, "--dataroot", str(six_root), "--cameras", "all", "--protocol", "camera_front_v1"])
    assert "eval protocol camera_front_v1 scores CAM_FRONT alone" in err and "--protocol full_scene_v1" in err
    err = _error(capsys, [*bench, "--dataroot", str(six_root), "--cameras", "CAM_BACK", "all"])
    assert "give 'all' alone" in err
    assert not (tmp_path / "b").exists()
