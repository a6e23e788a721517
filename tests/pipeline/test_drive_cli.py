"""`drivestack drive`: a tiny smoke run writes strict drive.json with both paths; mistakes are one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from strict_json import load_strict_json

from drivestack.cli import main

TINY = ["--episodes", "2", "--num-envs", "2", "--seconds", "2", "--width", "128", "--height", "72"]
ORACLE_RULE = ["--perception", "oracle", "--policy", "rule"]


def test_drive_writes_both_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "drive"
    assert main(["drive", *TINY, *ORACLE_RULE, "--cameras", "CAM_FRONT", "CAM_BACK", "--out", str(out)]) == 0
    data = load_strict_json(out / "drive.json")
    assert set(data["paths"]) == {"privileged", "oracle"} and not data["interrupted"]
    for path in data["paths"].values():
        summary = path["summary"]
        assert summary["episodes"] == 2
        for key in (
            "collision_rate",
            "off_road_rate",
            "mean_speed",
            "distance_per_episode",
            "lane_changes_per_minute",
            "mean_abs_jerk",
        ):
            assert key in summary
        assert path["timing"]["ticks"] == 20 and path["timing"]["ticks_per_s"] > 0
    oracle = data["paths"]["oracle"]
    assert oracle["perception_in_loop"]["camera_frames"] == 5
    assert set(oracle["perception_in_loop"]["bands"]) == {"0-20m", "20-40m", "40m+"}
    bands = oracle["perception_in_loop"]["bands"].values()
    assert sum(b["visible_vehicles"] for b in bands) == oracle["perception_in_loop"]["visible_vehicles"] > 0
    assert all(b["recall"] == 1.0 for b in bands if b["visible_vehicles"])  # oracle boxes find every vehicle
    assert data["loop"]["cameras"] == ["CAM_FRONT", "CAM_BACK"]
    printed = capsys.readouterr().out
    assert "privileged" in printed and "render" in printed and "recall" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--camera-hz", "3"], "--camera-hz=3.0; allowed: a rate that divides the simulation rate"),
        (["--cameras", "CAM_UP"], "--cameras=['CAM_UP']"),
        (["--perception", "detector", "--detector", "/no/such/detector.pt"], "no such checkpoint"),
        (["--perception", "privileged"], "--perception='privileged'; allowed: oracle, detector"),
        (["--seconds", "nan"], "--seconds=nan"),
    ],
)
def test_mistakes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["drive", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("drivestack: error:") and message in err, err
    assert not (tmp_path / "out").exists()


class _InterruptedRule:
    """The rule policy, with a Ctrl-C at its `stop_at`-th decision."""

    def __init__(self, stop_at: int) -> None:
        from drivestack.planning.policy import make_policy
        from drivestack.sim.config import env_config

        self.name, self.calls, self.stop_at = "rule", 0, stop_at
        self._rule = make_policy("rule", env_config("drivestack/Highway-v0"))

    def act(self, scene):  # noqa: ANN001, ANN201
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return self._rule.act(scene)


def test_ctrl_c_writes_what_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import drivestack.cli.drive as drive_cli

    # 1 s episodes: one decision each; 2 environments finish episodes 0 and 1 at the first policy step (2 calls: the
    # decision and its shadow on the ground-truth scene), then Ctrl-C at the next decision
    monkeypatch.setattr(drive_cli, "make_policy", lambda *args, **kwargs: _InterruptedRule(stop_at=3))
    out = tmp_path / "drive"
    args = ["--episodes", "4", "--num-envs", "2", "--seconds", "1", "--no-privileged", *ORACLE_RULE]
    assert main(["drive", *args, "--width", "64", "--height", "36", "--out", str(out)]) == 130
    data = load_strict_json(out / "drive.json")
    assert data["interrupted"] and data["paths"]["oracle"]["summary"]["episodes"] == 2
    assert "interrupted" in capsys.readouterr().err


def test_defaults_run_the_whole_stack(tmp_path: Path) -> None:
    # no perception or policy flag: the release detector on six cameras and the release PPO policy
    out = tmp_path / "drive"
    args = ["--episodes", "1", "--num-envs", "1", "--seconds", "1", "--videos", "0", "--out", str(out)]
    assert main(["drive", *args]) == 0
    data = load_strict_json(out / "drive.json")
    assert set(data["paths"]) == {"privileged", "detector"} and data["policy"] == "release:ppo-highway"
    assert data["loop"]["detector"].endswith("detector-six-v2") and len(data["loop"]["cameras"]) == 6
    detector = data["paths"]["detector"]
    assert detector["summary"]["episodes"] == 1 and detector["timing"]["ms_per_tick"]["detect"] > 0


def test_first_episode_drives_a_part_of_a_run(tmp_path: Path) -> None:
    # episode 1 driven alone (--first-episode 1) is episode 1 of the two-episode run: parts of a run add up to it
    args = [*TINY[2:], *ORACLE_RULE, "--cameras", "CAM_FRONT", "--videos", "0", "--no-privileged"]
    assert main(["drive", "--episodes", "2", *args, "--out", str(tmp_path / "whole")]) == 0
    assert main(["drive", "--episodes", "1", "--first-episode", "1", *args, "--out", str(tmp_path / "part")]) == 0
    whole = load_strict_json(tmp_path / "whole" / "drive.json")["paths"]["oracle"]["episodes"]
    part = load_strict_json(tmp_path / "part" / "drive.json")
    assert part["first_episode"] == 1
    episodes = part["paths"]["oracle"]["episodes"]
    assert set(episodes) == set(whole) and episodes
    for key, values in episodes.items():
        assert values == whole[key][1:], key
