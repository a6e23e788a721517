"""Fixtures shared by every test folder: one torch thread, the hand-made nuScenes-format datasets and the real
scene (when ../shared is present)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nuscenes_fixture import make_dataset, make_multicamera_dataset, make_tiny_nuscenes

REAL_SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuscenes-scene-0523"


@pytest.fixture(autouse=True)
def _one_thread():
    # small batches: one thread is fastest, and on a shared 2-core machine it avoids OpenMP spin-wait thrash
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 scenes x 4 keyframes (train: 2 scenes, val: 1), 320 x 180 CAM_FRONT JPEGs."""
    return make_dataset(tmp_path_factory.mktemp("nuscenes-fixture"))


@pytest.fixture(scope="session")
def six_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 scenes x 3 keyframes (train: 2 scenes, val: 1), 320 x 180 JPEGs of each of the six cameras."""
    return make_multicamera_dataset(tmp_path_factory.mktemp("nuscenes-six"))


@pytest.fixture(scope="session")
def tiny_nuscenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dataroot of the hand-built tracking dataset: split 'tiny' = scene-tiny-a, split 'other' = scene-tiny-b."""
    return make_tiny_nuscenes(tmp_path_factory.mktemp("tiny_nuscenes"))


@pytest.fixture(scope="session")
def real_root() -> Path:
    if not (REAL_SCENE / "v1.0-trainval" / "sample.json").is_file():
        pytest.skip(f"the real nuScenes scene is not at {REAL_SCENE}")
    return REAL_SCENE
