"""`drivestack bench tracking` smoke runs on the hand-built dataset, and its one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from strict_json import load_strict_json, strict_json_tree

from drivestack.common.nuscenes import open_nuscenes, split_scenes
from drivestack.tracking.nuscenes_io import detections_to_submission
from drivestack.tracking.oracle import OracleConfig, oracle_detections

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "drivestack.cli", "bench", "tracking", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_bench_oracle_writes_everything(tiny_nuscenes: Path, tmp_path: Path) -> None:
    proc = _run(
        "--dataroot",
        str(tiny_nuscenes),
        "--split",
        "tiny",
        "--out",
        str(tmp_path),
        "--speed-frames",
        "40",
        "--oracle.seed",
        "1",
        "--seeds",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    written = strict_json_tree(tmp_path)  # every JSON of the run (ours and the devkit's), NaN-free
    assert {"tracking.json", "seed1/submission_tracker.json", "seed2/eval_baseline/metrics_details.json"} <= set(
        written
    )
    result = written["tracking.json"]
    tracker, baseline = (result["methods"][m]["metrics"] for m in ("tracker", "baseline"))
    # a car at 20 m/s moves 10 m per keyframe: beyond the naive tracker's 7.5 m gate, not beyond a motion model
    assert tracker["amota"] > baseline["amota"] and tracker["ids"] < baseline["ids"]
    assert tracker["fps_stream"] > 0 and tracker["fps_dataset"] > 0
    assert result["eval_config"]["tracking_names"] == ["car", "pedestrian"]
    assert result["config"]["tracker"]["metric"] == "nll" and result["seeds"] == [1, 2]
    per_seed = result["methods"]["tracker"]["per_seed"]
    assert len(per_seed) == 2 and tracker["amota"] == (per_seed[0]["amota"] + per_seed[1]["amota"]) / 2
    for name in (
        "tracking.md",
        "tracking.png",
        "seed1/submission_tracker.json",
        "seed2/submission_baseline.json",
        "seed1/eval_tracker/metrics_summary.json",
        "seed2/eval_baseline/metrics_details.json",
    ):
        assert (tmp_path / name).is_file(), name
    assert "| tracker |" in (tmp_path / "tracking.md").read_text() and "| baseline |" in proc.stdout
    assert not list(tmp_path.rglob("*.tmp*"))


def test_bench_reads_a_detection_submission(tiny_nuscenes: Path, tmp_path: Path) -> None:
    nusc = open_nuscenes(tiny_nuscenes)
    det = oracle_detections(nusc, split_scenes(nusc, "tiny"), OracleConfig(pos_std=0.1, drop=0.0))
    path = tmp_path / "det.json"
    path.write_text(json.dumps(detections_to_submission(det)))
    proc = _run(
        "--dataroot",
        str(tiny_nuscenes),
        "--split",
        "tiny",
        "--detections",
        str(path),
        "--out",
        str(tmp_path / "run"),
        "--speed-frames",
        "0",
        "--no-plot",
    )
    assert proc.returncode == 0, proc.stderr
    result = load_strict_json(tmp_path / "run" / "tracking.json")
    assert result["detections"] == "det" and result["methods"]["tracker"]["metrics"]["amota"] > 0.9


def test_bench_bad_input_is_one_line_error(tiny_nuscenes: Path, tmp_path: Path) -> None:
    for args, message in (
        (("--split", "nope"), "unknown split 'nope'"),
        (("--split", "tiny", "--detections", str(tmp_path / "x.json")), "no such detection"),
        (("--split", "tiny", "--tracker.min-hits", "0"), "tracker.min_hits must be >= 1"),
        (("--split", "tiny", "--detections", "det.json", "--seeds", "2"), "seeds must be"),
    ):
        proc = _run("--dataroot", str(tiny_nuscenes), "--out", str(tmp_path / "bad"), *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr


def test_bench_opens_a_mini_folder_without_version(tiny_nuscenes: Path, tmp_path: Path) -> None:
    from drivestack.bench.tracking import BenchTrackingConfig, run_bench

    mini = tmp_path / "mini"
    shutil.copytree(tiny_nuscenes, mini)
    (mini / "v1.0-trainval").rename(mini / "v1.0-mini")
    result = run_bench(
        BenchTrackingConfig(dataroot=mini, split="tiny", out=tmp_path / "run", speed_frames=0, plot=False)
    )
    assert result["scenes"] == 1 and result["frames"] == 8
    assert result["methods"]["tracker"]["metrics"]["amota"] > 0.5


def test_bench_ablation_and_multi_env_speed(tiny_nuscenes: Path, tmp_path: Path) -> None:
    from drivestack.bench.tracking import BenchTrackingConfig, ablations, run_bench
    from drivestack.tracking.tracker import TrackerConfig

    result = run_bench(
        BenchTrackingConfig(
            dataroot=tiny_nuscenes,
            split="tiny",
            out=tmp_path / "run",
            speed_frames=0,
            speed_envs=3,
            plot=False,
            ablation=True,
        )
    )
    rows = result["ablation"]["rows"]
    assert list(rows) == [label for label, _ in ablations(TrackerConfig())]
    # the first row is the tracker itself: the same figures as the main table
    assert rows["tracker (all stages)"]["amota"] == result["methods"]["tracker"]["metrics"]["amota"]
    assert "| - BEV NMS |" in (tmp_path / "run" / "ablation.md").read_text()
    speed = result["speed_envs"]
    assert speed["envs"] == 3 and speed["multi_env_frames_per_s"] > 0 and speed["loop_env_frames_per_s"] > 0


def test_ablation_rows_undo_one_stage_each() -> None:
    from dataclasses import asdict

    from drivestack.bench.tracking import ablations
    from drivestack.tracking.tracker import TrackerConfig

    base = asdict(TrackerConfig())
    rows = ablations(TrackerConfig())
    for label, cfg in rows[1:-1]:
        changed = {k for k, v in asdict(cfg).items() if v != base[k]}
        assert len(changed) == 1, (label, changed)
    undone = {k for k, v in asdict(rows[-1][1]).items() if v != base[k]}
    assert undone >= {"nms", "two_stage", "matcher", "heading_prior"}
