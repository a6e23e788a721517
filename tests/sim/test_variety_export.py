"""`drivestack data make --variety`: a varied dataset that the devkit and the detector's loader read, annotated
exactly like the default one from the same seed (clutter is never annotated), and saying how it was made."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from drivestack.cli import main
from drivestack.perception.dataset import load_frames, read_image
from drivestack.sim.nuscenes_rollout import VARIETY_NOTE

VERSION = "v1.0-trainval"
CAMERAS = ("CAM_FRONT", "CAM_BACK_LEFT")
SMALL = ["--scenes", "1", "--seconds", "2", "--seed", "3", "--width", "96", "--height", "54", "--lidar-azimuths", "64"]


def _table(root: Path, name: str) -> list[dict]:
    return json.loads((root / VERSION / f"{name}.json").read_text())


def test_data_make_variety_writes_a_dataset_the_loader_reads(tmp_path: Path) -> None:
    from nuscenes.nuscenes import NuScenes

    varied, plain = tmp_path / "varied", tmp_path / "plain"
    assert main(["data", "make", "--out", str(varied), "--variety", *SMALL, "--channels", *CAMERAS]) == 0
    assert main(["data", "make", "--out", str(plain), *SMALL, "--channels", *CAMERAS]) == 0

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning while loading fails the test
        nusc = NuScenes(version=VERSION, dataroot=str(varied), verbose=False)
    frames = load_frames(nusc, "val", CAMERAS)
    assert len(frames) == 4 * len(CAMERAS)
    for frame in frames:
        image = read_image(frame.image_path)
        assert image.shape == (3, 54, 96) and image.float().std() > 5

    # The dataset says how it was made; the default one does not change.
    assert all(scene["description"].endswith(VARIETY_NOTE) for scene in _table(varied, "scene"))
    assert not any(VARIETY_NOTE in scene["description"] for scene in _table(plain, "scene"))
    # Same traffic, same annotations: the variety only changes pixels, and clutter is never an object.
    a, b = _table(varied, "sample_annotation"), _table(plain, "sample_annotation")
    assert len(a) == len(b) > 0
    for key in ("translation", "size", "rotation", "instance_token"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    assert _table(varied, "instance") == _table(plain, "instance")
    files = sorted(p.relative_to(varied) for p in (varied / "samples" / "CAM_FRONT").iterdir())
    assert files and all((varied / f).read_bytes() != (plain / f).read_bytes() for f in files)
