"""CLI smoke runs with tiny budgets: `drivestack train detector` (incl. resume) and `drivestack bench perception`,
and the one-line errors a user's mistake gets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from strict_json import load_strict_json, strict_json_tree
from tiny_detector import TINY_TRAIN

from drivestack.cli import main
from drivestack.perception.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def run_dir(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch detector run on the fixture (validated every epoch)."""
    out = tmp_path_factory.mktemp("detector-run") / "run"
    torch.set_num_threads(1)
    assert (
        main(
            [
                "train",
                "detector",
                "--dataroot",
                str(tiny_root),
                "--epochs",
                "2",
                "--val-every",
                "1",
                "--run-dir",
                str(out),
                *TINY_TRAIN,
            ]
        )
        == 0
    )
    return out


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drivestack: error: ") and "\n" not in err, err
    return err


def test_train_writes_a_run_directory_and_resumes(
    run_dir: Path, tiny_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "config.json",
        "metrics.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "val/metrics.json",
        "val/submission.json",
        "val/pr_curves.png",
    ):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    written = strict_json_tree(run_dir)  # config, metrics, val/metrics and val/submission: NaN-free
    assert {"config.json", "metrics.json", "val/metrics.json", "val/submission.json"} <= set(written)
    config = written["config.json"]
    assert config["model"]["classes"] == ["car", "truck"] and config["num_train"] == 8 and config["num_val"] == 4
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["epoch"] == 2 and last["step"] == 4 and "optimizer" in last
    metrics = written["metrics.json"]
    assert metrics["final"]["NDS"] is not None and metrics["epoch"] == 2
    # The same run dir again without --resume is refused; with --resume it continues to epoch 3.
    err = _error(
        capsys,
        ["train", "detector", "--dataroot", str(tiny_root), "--epochs", "3", "--run-dir", str(run_dir), *TINY_TRAIN],
    )
    assert "already holds a run; continue it with --resume" in err
    err = _error(
        capsys,
        [
            "train",
            "detector",
            "--dataroot",
            str(tiny_root),
            "--epochs",
            "3",
            "--resume",
            "--run-dir",
            str(run_dir),
            TINY_TRAIN[0],
            "192",
            *TINY_TRAIN[2:],
        ],
    )
    assert "trained with input_width=160, but 192 was asked" in err
    assert (
        main(
            [
                "train",
                "detector",
                "--dataroot",
                str(tiny_root),
                "--epochs",
                "3",
                "--resume",
                "--val-split",
                "None",
                "--run-dir",
                str(run_dir),
                *TINY_TRAIN,
            ]
        )
        == 0
    )
    again = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert again["epoch"] == 3 and again["step"] == 6
    assert not torch.equal(again["model"]["heat_head.2.weight"], last["model"]["heat_head.2.weight"])


def test_bench_writes_metrics_summary_and_plots(
    run_dir: Path, tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    assert (
        main(
            [
                "bench",
                "perception",
                "--checkpoint",
                str(run_dir),
                "--dataroot",
                str(tiny_root),
                "--split",
                "val",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--num-workers",
                "0",
                "--speed-batch",
                "2",
                "--speed-iters",
                "2",
                "--threads",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| NDS |" in printed and "speed cpu batch 1" in printed
    written = strict_json_tree(out)
    assert set(written) == {"metrics.json", "submission.json"}
    metrics = written["metrics.json"]
    for key in ("mAP", "NDS", "AP", "tp_errors", "coco_2d", "detection_config", "protocol", "speed", "gt_counts"):
        assert key in metrics, key
    assert metrics["protocol"]["name"] == "camera_front_v1" and metrics["num_samples"] == 4
    assert [r["batch_size"] for r in metrics["speed"] if r["device"] == "cpu"] == [1, 2]
    assert all(r["images_per_s"] > 0 for r in metrics["speed"])
    assert (out / "summary.md").read_text().count("|") > 20 and (out / "pr_curves.png").is_file()
    sub = written["submission.json"]
    assert len(sub["results"]) == 4
    assert metrics["velocity"] == "tracker" and metrics["depth_confidence"] is True


def test_bench_opens_a_mini_folder_without_version(run_dir: Path, tiny_root: Path, tmp_path: Path) -> None:
    mini = tmp_path / "mini"
    shutil.copytree(tiny_root, mini)
    (mini / "v1.0-trainval").rename(mini / "v1.0-mini")
    out = tmp_path / "bench"
    argv = ["bench", "perception", "--checkpoint", str(run_dir), "--dataroot", str(mini), "--split", "val"]
    argv += ["--out", str(out), "--device", "cpu", "--num-workers", "0", "--no-speed", "--no-plots", "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_samples"] == 4 and metrics["dataroot"] == str(mini)


def test_bench_runs_on_the_real_scene(run_dir: Path, real_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "real"
    assert (
        main(
            [
                "bench",
                "perception",
                "--checkpoint",
                str(run_dir / "checkpoints" / "best.pt"),
                "--dataroot",
                str(real_root),
                "--split",
                "val",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--num-workers",
                "0",
                "--no-speed",
                "--no-plots",
                "--threads",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    metrics = load_strict_json(out / "metrics.json")
    assert metrics["num_samples"] == 40 and metrics["classes"] == ["car", "truck"]
    assert "barrier" in metrics["unscored_gt_classes"] and 0.0 <= metrics["NDS"] <= 1.0


def test_bad_input_gets_one_line(
    run_dir: Path, tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = [
        "bench",
        "perception",
        "--checkpoint",
        str(run_dir),
        "--dataroot",
        str(tiny_root),
        "--out",
        str(tmp_path / "b"),
        "--no-speed",
        "--no-progress",
        "--num-workers",
        "0",
    ]
    assert f"dataroot {tmp_path / 'nowhere'} does not exist" in _error(
        capsys, ["train", "detector", "--dataroot", str(tmp_path / "nowhere"), *TINY_TRAIN]
    )
    assert "split 'empty'" in _error(capsys, [*bench, "--split", "empty"])
    assert "velocity='fast'; allowed: tracker or zero" in _error(capsys, [*bench, "--velocity", "fast"])
    assert "unknown split 'test2'" in _error(capsys, [*bench, "--split", "test2"])
    assert "trained with classes=['car', 'truck'], but ['pedestrian'] was asked" in _error(
        capsys, [*bench, "--classes", "pedestrian"]
    )
    assert "trained with input_height=96, but 288 was asked" in _error(capsys, [*bench, "--input-height", "288"])
    assert f"checkpoint {tmp_path / 'x.pt'} does not exist" in _error(
        capsys, [*bench[:2], "--checkpoint", str(tmp_path / "x.pt"), *bench[4:]]
    )
    (tmp_path / "nover").mkdir()
    assert "has no version folder" in _error(
        capsys, ["train", "detector", "--dataroot", str(tmp_path / "nover"), *TINY_TRAIN]
    )
