"""`drivestack train detector` on several datasets (--dataroot A --dataroot B, --mix, --class-balance, per-dataset
splits incl. halves of scenes) and from ImageNet weights (--backbone resnet18 --pretrained), with the one-line errors
of both; tiny runs of seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from nuscenes_fixture import make_dataset
from tiny_detector import TINY_TRAIN

from drivestack.cli import main
from drivestack.perception.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def second_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another fixture dataset (other scenes, other seed): 2 scenes x 3 keyframes, 1 trained on."""
    return make_dataset(tmp_path_factory.mktemp("nuscenes-second"), num_scenes=2, frames_per_scene=3, seed=5)


def test_train_on_two_datasets_with_mixing_and_class_balance(
    tiny_root: Path, second_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "detector", "--dataroot", str(tiny_root), "--dataroot", str(second_root), "--epochs", "1"]
    argv += ["--mix", "0.7", "0.3", "--class-balance", "--val-split", "None", "--run-dir", str(run), *TINY_TRAIN]
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["num_train"] == 8 + 3 and config["train"]["mix"] == [0.7, 0.3] and config["train"]["class_balance"]
    assert config["train"]["dataroot"] == [str(tiny_root), str(second_root)]
    # per-dataset training splits: the second dataset's first half in time
    run2 = tmp_path / "run2"
    argv2 = ["train", "detector", "--dataroot", str(tiny_root), "--dataroot", str(second_root), "--epochs", "1"]
    argv2 += ["--train-split", "train", "all:first-half", "--val-split", "None", "--run-dir", str(run2), *TINY_TRAIN]
    assert main(argv2) == 0
    assert json.loads((run2 / "config.json").read_text())["num_train"] == 8 + 2  # 1 of 3 keyframes in each of 2 scenes
    # fine-tuning the first run's detector (its architecture and classes, a new schedule) on the second dataset
    run3 = tmp_path / "run3"
    argv3 = ["train", "detector", "--dataroot", str(second_root), "--init", str(run), "--epochs", "1", "--lr", "1e-9"]
    assert main([*argv3, "--val-split", "None", "--run-dir", str(run3), "--threads", "1", "--no-progress"]) == 0
    config3 = json.loads((run3 / "config.json").read_text())
    assert config3["model"] == config["model"] and config3["train"]["init"] == str(run)
    before = load_checkpoint(run / "checkpoints" / "best.pt")["model"]["heat_head.2.weight"]
    after = load_checkpoint(run3 / "checkpoints" / "last.pt")["model"]["heat_head.2.weight"]
    assert torch.allclose(before, after, atol=1e-6)
    resumed = [*argv3[:-4], "--epochs", "2", "--lr", "1e-9", "--resume"]  # a fine-tuning run continues as it began
    assert main([*resumed, "--val-split", "None", "--run-dir", str(run3), "--threads", "1", "--no-progress"]) == 0
    assert load_checkpoint(run3 / "checkpoints" / "last.pt")["epoch"] == 2
    # --blocks deeper than the checkpoint's grows it; shallower is refused before any work
    run4 = tmp_path / "run4"
    assert (
        main([*argv3, "--blocks", "2", "1", "1", "2", "--val-split", "None", "--run-dir", str(run4), *TINY_TRAIN]) == 0
    )
    assert json.loads((run4 / "config.json").read_text())["model"]["blocks"] == [2, 1, 1, 2]
    grown = load_checkpoint(run4 / "checkpoints" / "last.pt")
    assert grown["model_config"]["blocks"] == [2, 1, 1, 2] and "backbone.stages.3.1.bn2.weight" in grown["model"]
    capsys.readouterr()
    for extra, message in (
        (["--mix", "1"], "give one weight per --dataroot (2)"),
        (["--train-split", "a", "b", "c"], "one per --dataroot (2)"),
        (["--train-split", "all:middle"], "must be one of first-half, second-half"),
        (["--init", str(run4), "--blocks", "1", "1", "1", "3"], "can only grow deeper than its [2, 1, 1, 2]"),
    ):
        bad = ["train", "detector", "--dataroot", str(tiny_root), "--dataroot", str(second_root), *extra]
        assert main([*bad, "--run-dir", str(tmp_path / "bad"), *TINY_TRAIN]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("drivestack: error: ") and "\n" not in err and message in err, err


def test_train_from_imagenet_weights(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from torchvision.models import resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    base = ["train", "detector", "--dataroot", str(tiny_root), "--epochs", "1", "--val-split", "None", *TINY_TRAIN]
    for extra, message in (
        (["--backbone", "resnet18", "--pretrained", "torch-cache"], "hub/checkpoints/resnet18-f37072fd.pth is missing"),
        (["--pretrained", "torch-cache"], "add --backbone resnet18"),
    ):
        assert main([*base, *extra, "--run-dir", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("drivestack: error: ") and "\n" not in err and message in err, err
    assert not (tmp_path / "bad").exists()
    torch.manual_seed(0)
    weights = resnet18(weights=None).state_dict()
    torch.save(weights, tmp_path / "r18.pth")
    run = tmp_path / "run"
    argv = [*base, "--backbone", "resnet18", "--pretrained", str(tmp_path / "r18.pth"), "--lr", "1e-9"]
    assert main([*argv, "--run-dir", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["pretrained"] == str(tmp_path / "r18.pth")
    trained = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    # two steps at lr 1e-9 barely move the weights: the backbone started from the file
    assert torch.allclose(trained["backbone.stem.0.weight"], weights["conv1.weight"], atol=1e-6)
