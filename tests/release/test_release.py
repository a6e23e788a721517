"""Shipped release checkpoints: files match the manifest sha256, load safely and act; tampering is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from drivestack.release import ROOT, package_release, read_manifest, release_names, release_path, resolve_policy_spec


def test_every_release_matches_its_manifest() -> None:
    for name in release_names():
        folder = release_path(name)
        entry = read_manifest()["releases"][name]
        assert entry["command"] and entry["metrics"] and entry["files"]
        assert {p.name for p in folder.iterdir() if p.is_file()} >= set(entry["files"])


@pytest.mark.parametrize("name", [n for n in release_names() if read_manifest()["releases"][n]["kind"] == "policy"])
def test_policy_releases_load_with_weights_only_and_drive(name: str) -> None:
    from drivestack.planning.policy import make_policy
    from drivestack.planning.scene import scene_from_world
    from drivestack.sim.batched_env import BatchedDrivingEnv
    from drivestack.sim.config import highway_config

    folder = release_path(name)
    # The files hold tensors only: the strict loader accepts them.
    for pt in folder.glob("*.pt"):
        torch.load(pt, weights_only=True)
    config = highway_config()
    policy = make_policy(resolve_policy_spec(f"release:{name}"), config)
    env = BatchedDrivingEnv(config, num_envs=4, seed=0, autoreset=False)
    env.reset()
    action = policy.act(scene_from_world(env.state, env.road))
    assert action.shape == (4,) and action.dtype == torch.long and ((action >= 0) & (action <= 4)).all()


@pytest.mark.parametrize("name", [n for n in release_names() if read_manifest()["releases"][n]["kind"] == "detector"])
def test_detector_releases_load_with_weights_only_and_detect(name: str) -> None:
    from drivestack.perception.infer import Detector

    folder = release_path(name)
    for pt in folder.glob("*.pt"):
        assert "optimizer" not in torch.load(pt, weights_only=True)  # only what inference needs ships
    detector = Detector.from_checkpoint(resolve_policy_spec(f"release:{name}"))
    images = torch.full((2, 3, 288, 512), 128, dtype=torch.uint8)
    intrinsic = torch.tensor([[400.0, 0.0, 256.0], [0.0, 400.0, 144.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    cam2ego = torch.eye(4).expand(2, 4, 4)
    dets = detector(images, intrinsic, cam2ego)
    assert dets.boxes.shape[0] == 2 and dets.boxes.shape[-1] == 7 and torch.isfinite(dets.boxes).all()


def test_a_modified_or_unknown_release_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "run"
    source.mkdir()
    (source / "meta.json").write_text('{"a": 1}')
    (source / "policy.pt").write_bytes(b"\x00" * 64)
    (source / "optimizer.pt").write_bytes(b"\x01" * 64)
    root = tmp_path / "release"
    package_release("toy", source, ["meta.json", "policy.pt"], "policy", "cmd", {"m": 1.0}, root=root)
    assert release_path("toy", root=root) == root / "toy"
    assert not (root / "toy" / "optimizer.pt").exists()  # only what acting needs ships
    assert json.loads((root / "manifest.json").read_text())["releases"]["toy"]["files"]["policy.pt"]["bytes"] == 64
    (root / "toy" / "policy.pt").write_bytes(b"\x00" * 63 + b"\x01")
    with pytest.raises(ValueError, match="does not match its sha256"):
        release_path("toy", root=root)
    with pytest.raises(ValueError, match="unknown release 'nope'"):
        release_path("nope", root=root)
    shutil.rmtree(root / "toy")
    with pytest.raises(ValueError, match="is missing"):
        release_path("toy", root=root)
    assert resolve_policy_spec("rule") == "rule"
    assert ROOT.name == "release"
