"""`drivestack replay` with the camera detector on six cameras: detections merged per keyframe, DetectionEval on the
replayed scene, and the MP4 (one frame per keyframe, cameras beside the bird's-eye view)."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import pytest
from strict_json import strict_json_tree

from drivestack.cli import main
from drivestack.pipeline.video import frame_size


def test_detector_replay_writes_video_and_detection_metrics(
    six_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["replay", "--dataroot", str(six_root), "--split", "val", "--detections", "detector:release:detector-six"]
    assert main([*argv, "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    # camera-only data: the devkit's TrackingEval cannot run; one warning line says so
    assert "drivestack: warning: tracking eval skipped" in capsys.readouterr().err
    r = strict_json_tree(out)["replay.json"]
    assert r["source"] == "detector" and r["keyframes"] == 3
    assert r["samples_scored"] == 0 and r["samples_left_out"] == 3  # 1 s of keyframes: no full 3 s future
    assert r["planners"]["idm"]["l2_avg_3s"] is None  # no sample: no figure, written as null
    d = r["detection"]
    assert d["protocol"] == "full_scene_v1" and d["num_samples"] == 3 and 0.0 <= d["NDS"] <= 1.0
    assert len(d["cameras"]) == 6
    assert "error" in r["tracking"]["tracker"]
    video = out / "videos" / "six-0002.mp4"
    reader = imageio.get_reader(video)
    try:
        frames = list(reader.iter_data())  # not list(reader): its length hint is inf (an MP4 has no frame count)
    finally:
        reader.close()
    assert sorted(p.name for p in video.parent.iterdir()) == ["six-0002.mp4"]  # no temporaries left
    assert len(frames) == 3
    assert frames[0].shape[:2] == frame_size(320, 180)
    assert r["speed"]["stage_seconds"]["video"] > 0
