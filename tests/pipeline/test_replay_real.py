"""`drivestack replay` on the real nuScenes scene-0523 with the real CenterPoint lidar detections (skipped without
the shared data folder): the IDM shadow planner against the constant-velocity baseline, as the issue targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivestack.pipeline.replay import ReplayConfig, run_replay


def test_real_scene_with_centerpoint(real_root: Path, tmp_path: Path) -> None:
    submission = real_root / "detections" / "centerpoint-lidar.json"
    if not submission.is_file():
        pytest.skip(f"the CenterPoint detections are not at {submission}")
    cfg = ReplayConfig(
        dataroot=real_root,
        scene=("scene-0523",),
        detections=str(submission),
        out=tmp_path / "out",
        video=False,
        perception_eval=False,  # TrackingEval takes half a minute here; the CLI runs it by default
        progress=False,
        threads=1,
    )
    r = run_replay(cfg)
    assert r["keyframes"] == 40 and r["samples_scored"] == 34 and r["samples_left_out"] == 6
    assert r["map"] and r["version"] == "v1.0-trainval"
    idm, cv = r["planners"]["idm"], r["planners"]["cv"]
    # the targets: fewer collisions at 3 s than the baseline, L2 no worse than 10 % above it
    assert idm["collision_at_3s"] < cv["collision_at_3s"]
    assert idm["collision_avg_3s"] < cv["collision_avg_3s"]
    for key in ("l2_avg", "l2_at_avg", "l2_avg_3s", "l2_at_3s"):
        assert idm[key] <= 1.1 * cv[key], key
    # sane magnitudes for a 3 s horizon in a city (the published ego-status baselines: 0.3-1 m)
    assert 0.1 < cv["l2_avg"] < 3.0 and cv["l2_at_3s"] > cv["l2_avg_3s"]
    assert idm["off_drivable"] <= cv["off_drivable"]
