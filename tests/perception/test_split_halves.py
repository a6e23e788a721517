"""`<split>:first-half` / `<split>:second-half`: each scene's keyframes cut in two in time (the real-data
development protocol trains on one half of a scene and scores the other)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivestack.common.nuscenes import open_nuscenes, split_sample_tokens
from drivestack.perception.dataset import load_frames, split_tokens


def test_halves_split_each_scene_in_time(tiny_root: Path) -> None:
    nusc = open_nuscenes(tiny_root)
    for split in ("train", "val", "all"):
        whole = split_sample_tokens(nusc, split)
        first, second = split_tokens(nusc, f"{split}:first-half"), split_tokens(nusc, f"{split}:second-half")
        assert sorted(first + second) == sorted(whole) and not set(first) & set(second)
    first, second = split_tokens(nusc, "val:first-half"), split_tokens(nusc, "val:second-half")
    assert first + second == split_sample_tokens(nusc, "val") and len(first) == len(second) == 2  # 4 keyframes
    stamps = {s["token"]: s["timestamp"] for s in nusc.sample}
    assert max(stamps[t] for t in first) < min(stamps[t] for t in second)
    assert [f.sample_token for f in load_frames(nusc, "val:second-half")] == second
    with pytest.raises(ValueError, match="must be one of first-half, second-half"):
        split_tokens(nusc, "val:middle")
    with pytest.raises(ValueError, match="unknown split 'nope'"):
        split_tokens(nusc, "nope:first-half")
