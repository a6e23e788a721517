"""Bad input and faults of the data commands: `data make`, `train detector`, `bench perception`.

Every bad case is one line `drivestack: error: ...` before any work (no training on a malformed dataset, no
DataLoader traceback for a corrupt JPEG) and leaves the output folder as it was; the clean cases pass.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_faults import assert_one_line_error, tree

from drivestack.perception.checkpoint import save_checkpoint
from drivestack.perception.config import ModelConfig
from drivestack.perception.model import CenterNet3D

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")

MAKE = ["data", "make", "--scenes", "1", "--seconds", "1", "--width", "32", "--height", "18", "--lidar-beams", "1"]
MAKE += ["--lidar-azimuths", "8", "--batch-scenes", "1", "--vehicles-per-km", "2"]
SMALL = dict(input_width=160, input_height=96, widths=(8, 16, 32, 32), neck_channels=16)
TRAIN = ["train", "detector", "--epochs", "1", "--batch-size", "4", "--threads", "1", "--no-progress"]
TRAIN += ["--input-width", "160", "--input-height", "96", "--widths", "8", "16", "32", "32", "--neck-channels", "16"]

# (id, arguments; "{tmp}" is the test's folder, holding `afile` and a non-empty `adir`, strings the error must name)
MAKE_BAD = [
    ("seconds-inf", [*MAKE, "--seconds", "inf", "--out", "{tmp}/ds"], ["seconds=inf", "finite"]),
    ("seconds-nan", [*MAKE, "--seconds", "nan", "--out", "{tmp}/ds"], ["seconds=nan"]),
    ("density-inf", [*MAKE, "--vehicles-per-km", "inf", "--out", "{tmp}/ds"], ["vehicles_per_km=inf"]),
    ("road-length-inf", [*MAKE, "--road-length", "inf", "--out", "{tmp}/ds"], ["road_length=inf"]),
    ("device-tpu", [*MAKE, "--device", "tpu", "--out", "{tmp}/ds"], ["device", "tpu"]),
    ("out-file", [*MAKE, "--out", "{tmp}/afile"], ["--out", "afile", "is a file"]),
    ("out-under-file", [*MAKE, "--out", "{tmp}/afile/ds"], ["--out", "afile is a file"]),
    ("out-not-empty", [*MAKE, "--out", "{tmp}/adir"], ["--out", "adir", "--overwrite"]),
    ("train-device-tpu", [*TRAIN, "--device", "tpu", "--run-dir", "{tmp}/run"], ["device", "tpu"]),
]
CUDA_BAD = [
    ("device-cuda", [*MAKE, "--device", "cuda", "--out", "{tmp}/ds"], ["cuda", "not available"]),
    ("train-cuda", [*TRAIN, "--device", "cuda", "--run-dir", "{tmp}/run"], ["cuda", "not available"]),
]


def _setup(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "afile").write_text("keep me")
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "inside.txt").write_text("keep me too")
    return tree(tmp_path)


@pytest.mark.parametrize(
    "args, contains",
    [pytest.param(a, c, id=i) for i, a, c in MAKE_BAD]
    + [pytest.param(a, c, id=i, marks=NO_CUDA) for i, a, c in CUDA_BAD],
)
def test_bad_options_are_one_line_and_write_nothing(run_cli, tmp_path: Path, args: list[str], contains: list[str]):
    before = _setup(tmp_path)
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert_one_line_error(result, *contains)
    assert tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]


def test_data_make_cleans_a_killed_run_and_writes_plain_permissions(run_cli, tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".ds.tmp-{int(dead.stdout)}-0123abcd"  # what a SIGKILLed `data make` leaves
    (stale / "samples").mkdir(parents=True)
    old = os.umask(0o022)
    try:
        result = run_cli(*MAKE, "--out", tmp_path / "ds")
    finally:
        os.umask(old)
    assert result.code == 0, result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # the stale temporary is gone
    ds = tmp_path / "ds"
    assert stat.S_IMODE(ds.stat().st_mode) == 0o755  # not a temporary directory's 0700
    assert stat.S_IMODE((ds / "v1.0-trainval" / "sample.json").stat().st_mode) == 0o644
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in ds.rglob("*.jpg"))


# --- malformed datasets: refused before any training, nothing written


def _sample_object(root: Path) -> None:
    path = root / "v1.0-trainval" / "sample.json"
    path.write_text(json.dumps({r["token"]: r for r in json.loads(path.read_text())}))


def _no_timestamps(root: Path) -> None:
    path = root / "v1.0-trainval" / "sample.json"
    path.write_text(
        json.dumps([{k: v for k, v in r.items() if k != "timestamp"} for r in json.loads(path.read_text())])
    )


def _corrupt_jpeg(root: Path) -> None:
    sorted((root / "samples" / "CAM_FRONT").glob("*.jpg"))[0].write_bytes(b"not a jpeg")


BAD_DATASETS = [
    ("sample-object", _sample_object, ["v1.0-trainval"]),  # the wording is common.nuscenes'
    ("no-timestamp", _no_timestamps, ["sample", "timestamp"]),
    ("corrupt-jpeg", _corrupt_jpeg, [".jpg", "could not be decoded"]),
]


@pytest.fixture
def bad_root(tiny_root: Path, tmp_path: Path):
    """A copy of the tiny fixture dataset, broken by a given function."""

    def make(corrupt) -> Path:
        root = tmp_path / "data"
        shutil.copytree(tiny_root, root)
        corrupt(root)
        return root

    return make


@pytest.mark.parametrize("corrupt, contains", [pytest.param(f, c, id=i) for i, f, c in BAD_DATASETS])
def test_train_detector_refuses_a_malformed_dataset_before_training(
    run_cli, bad_root, tmp_path: Path, corrupt, contains: list[str]
) -> None:
    root = bad_root(corrupt)
    result = run_cli(*TRAIN, "--dataroot", root, "--run-dir", tmp_path / "run")
    assert_one_line_error(result, *contains)
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("workers", [0, 2])
def test_bench_perception_names_a_corrupt_jpeg_in_one_line(run_cli, bad_root, tmp_path: Path, workers: int) -> None:
    root = bad_root(_corrupt_jpeg)
    checkpoint = save_checkpoint(
        tmp_path / "ckpt.pt", CenterNet3D(ModelConfig(**SMALL).validate()), {"car": "", "truck": ""}
    )
    out = tmp_path / "bench"
    args = ["bench", "perception", "--checkpoint", checkpoint, "--dataroot", root, "--split", "all"]
    result = run_cli(*args, "--out", out, "--no-speed", "--no-progress", "--num-workers", workers, "--device", "cpu")
    line = assert_one_line_error(result, ".jpg", "could not be decoded")
    assert "DataLoader" not in line and "Traceback" not in line
    assert not out.exists()
