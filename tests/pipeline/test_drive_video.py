"""`drivestack drive --videos`: one readable MP4 per recorded episode, a frame per camera frame; none with 0."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import pytest
from strict_json import load_strict_json

from drivestack.cli import main
from drivestack.pipeline.video import frame_size

WIDTH, HEIGHT = 64, 36  # [px] camera images
SECONDS, CAMERA_HZ = 2.0, 2.0  # [s], [Hz]: the default camera rate, 4 camera frames per episode
TINY = ["--perception", "oracle", "--seconds", str(SECONDS), "--width", str(WIDTH), "--height", str(HEIGHT)]


def _frames(path: Path) -> list:
    reader = imageio.get_reader(path)
    try:
        return list(reader.iter_data())  # not list(reader): its length hint is inf (an MP4 has no frame count)
    finally:
        reader.close()


def test_one_video_per_recorded_episode(tmp_path: Path) -> None:
    out = tmp_path / "drive"
    assert main(["drive", *TINY, "--episodes", "1", "--num-envs", "1", "--videos", "1", "--out", str(out)]) == 0
    data = load_strict_json(out / "drive.json")
    assert data["videos"] == ["videos/oracle_episode000.mp4"]
    assert data["paths"]["oracle"]["videos"] == [str(out / "videos" / "oracle_episode000.mp4")]
    assert data["paths"]["privileged"]["videos"] == []
    frames = _frames(out / data["videos"][0])
    assert len(frames) == round(SECONDS * CAMERA_HZ)  # the episode's camera frames: t = 0, 0.5, 1, 1.5 s
    assert frames[0].shape == (*frame_size(WIDTH, HEIGHT), 3)
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["oracle_episode000.mp4"]  # no temporaries left


def test_slots_that_run_a_second_episode_record_it_too(tmp_path: Path) -> None:
    # 2 environments, 3 episodes: slot 0 runs episodes 0 and 2, slot 1 episode 1; episodes past --videos are not
    # recorded
    out = tmp_path / "drive"
    args = ["--episodes", "3", "--num-envs", "2", "--videos", "3", "--no-privileged", "--out", str(out)]
    assert main(["drive", *TINY, *args]) == 0
    data = load_strict_json(out / "drive.json")
    assert data["videos"] == [f"videos/oracle_episode{k:03d}.mp4" for k in range(3)]
    for name in data["videos"]:
        assert len(_frames(out / name)) == round(SECONDS * CAMERA_HZ)


def test_no_videos(tmp_path: Path) -> None:
    out = tmp_path / "drive"
    args = ["--episodes", "2", "--num-envs", "2", "--videos", "0", "--no-privileged", "--out", str(out)]
    assert main(["drive", *TINY, *args]) == 0
    data = load_strict_json(out / "drive.json")
    assert data["videos"] == [] and data["paths"]["oracle"]["videos"] == []
    assert not (out / "videos").exists()
    assert "video" not in data["paths"]["oracle"]["timing"]["calls"]  # the hook never ran


def test_negative_videos_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drive", "--videos", "-1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drivestack: error:") and "--videos=-1" in err and err.count("\n") == 0, err
