"""Policy evaluation: metrics on hand-built episodes and on a road where the answer is known, exact episode
counts, JSON round trip, and `drivestack eval policy` end to end with one-line errors."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import tyro
from strict_json import load_strict_json, strict_json_tree

from drivestack.cli import eval_policy
from drivestack.cli.eval_policy import EvalPolicyConfig, run_eval
from drivestack.planning.baselines import IdlePolicy, RandomPolicy, RulePolicy
from drivestack.planning.evaluate import EvalResult, evaluate, seed_groups, seed_summary
from drivestack.planning.metrics import Episodes
from drivestack.planning.policy import make_policy
from drivestack.sim.action import MetaAction
from drivestack.sim.config import ActionConfig, RoadConfig, Scenario, TrafficConfig, env_config, highway_config


def _result(**arrays: list) -> EvalResult:
    n = len(next(iter(arrays.values())))
    base = dict(
        returns=[1.0] * n,
        lengths=[40.0] * n,
        distances=[800.0] * n,
        times=[40.0] * n,
        lane_changes=[0.0] * n,
        mean_abs_jerk=[0.0] * n,
        crashed=[False] * n,
        off_road=[False] * n,
    )
    base.update(arrays)
    return EvalResult(
        policy="test",
        **{k: np.asarray(v, dtype=bool if k in ("crashed", "off_road") else float) for k, v in base.items()},
    )


def test_summary_of_hand_built_episodes() -> None:
    # Four episodes: one crash after 10 s, one off road after 20 s, two full 40 s ones.
    r = _result(
        times=[10.0, 20.0, 40.0, 40.0],
        distances=[250.0, 400.0, 1000.0, 800.0],
        lane_changes=[1.0, 0.0, 4.0, 3.0],
        mean_abs_jerk=[2.0, 1.0, 0.5, 0.5],
        returns=[5.0, 10.0, 30.0, 35.0],
        crashed=[True, False, False, False],
        off_road=[False, True, False, False],
    )
    s = r.summary()
    assert s["episodes"] == 4
    assert s["collision_rate"] == 0.25 and s["off_road_rate"] == 0.25
    assert s["mean_speed"] == pytest.approx(2450.0 / 110.0)  # pooled distance over pooled time
    assert s["distance_per_episode"] == pytest.approx(612.5)
    assert s["lane_changes_per_minute"] == pytest.approx(8.0 / 110.0 * 60.0)
    assert s["mean_abs_jerk"] == pytest.approx((2.0 * 10 + 1.0 * 20 + 0.5 * 80) / 110.0)  # per second driven
    assert s["return_mean"] == pytest.approx(20.0) and s["return_std"] == pytest.approx(np.std([5, 10, 30, 35]))


def test_json_round_trip() -> None:
    r = _result(returns=[1.5, 2.5], crashed=[True, False])
    back = EvalResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back.policy == r.policy and back.summary() == r.summary()
    assert np.array_equal(back.crashed, r.crashed) and back.crashed.dtype == bool


def test_lone_vehicle_metrics_are_known() -> None:
    # The ego alone at its set-point: no collisions, distance = speed x time, no lane changes, no jerk.
    config = highway_config(
        traffic=TrafficConfig(num_vehicles=1),
        duration=2.0,
        ego_speed_range=(25.0, 25.0),
        action=ActionConfig(target_speeds=(25.0,)),
    )
    r = evaluate(IdlePolicy(), config, episodes=5, progress=False)
    s = r.summary()
    assert s["episodes"] == 5 and s["collision_rate"] == 0.0 and s["off_road_rate"] == 0.0
    np.testing.assert_allclose(r.times, 2.0, rtol=1e-5)
    np.testing.assert_allclose(r.lengths, 2.0)
    np.testing.assert_allclose(r.distances, 50.0, rtol=1e-3)
    assert s["mean_speed"] == pytest.approx(25.0, rel=1e-3)
    assert s["lane_changes_per_minute"] == 0.0 and s["mean_abs_jerk"] < 1e-3


@pytest.mark.parametrize("episodes, num_envs", [(7, None), (10, 4), (3, 8)])
def test_evaluate_counts_exactly_the_requested_episodes(episodes: int, num_envs: int | None) -> None:
    # dense traffic, short episodes: random driving crashes in about half of them, at different times
    config = highway_config(traffic=TrafficConfig(num_vehicles=40), road=RoadConfig(length=400.0), duration=6.0)
    r = evaluate(RandomPolicy(1), config, episodes=episodes, num_envs=num_envs, seed=5, progress=False)
    assert r.episodes == episodes
    assert all(len(getattr(r, k)) == episodes for k in ("returns", "times", "crashed", "lane_changes"))
    assert r.crashed.any() and not r.crashed.all()
    assert ((r.lengths >= 1) & (r.lengths <= 6)).all() and np.allclose(r.times, r.lengths, rtol=1e-4)
    again = evaluate(RandomPolicy(1), config, episodes=episodes, num_envs=num_envs, seed=5, progress=False)
    assert again.summary() | {"wall_time": 0} == r.summary() | {"wall_time": 0}, "deterministic under a seed"


def test_env_ids() -> None:
    assert env_config("drivestack/Merge-v0").road.scenario == Scenario.MERGE
    assert env_config("drivestack/Highway-v0") == highway_config()
    with pytest.raises(ValueError, match="unknown env id 'drivestack/Roundabout-v0'; allowed: drivestack/Highway"):
        env_config("drivestack/Roundabout-v0")


def test_eval_policy_writes_json_plot_and_videos(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    report = run_eval(EvalPolicyConfig(policies=("rule", "random"), episodes=16, videos=1, out=out, duration=3.0))
    assert set(strict_json_tree(out)) == {"eval.json"}  # NaN-free: any strict parser reads it
    data = load_strict_json(out / "eval.json")
    assert set(data["policies"]) == {"rule", "random"} and data["env"] == "drivestack/Highway-v0"
    for label in ("rule", "random"):
        summary = data["policies"][label]["summary"]
        assert summary["episodes"] == 16 and len(data["policies"][label]["episodes"]["returns"]) == 16
    assert (
        data["policies"]["rule"]["summary"]["collision_rate"] <= data["policies"]["random"]["summary"]["collision_rate"]
    )
    assert (out / "eval.png").stat().st_size > 20_000
    videos = sorted(out.glob("*.mp4"))
    assert [v.name for v in videos] == ["random_0.mp4", "rule_0.mp4"]
    assert len(iio.imread(out / "rule_0.mp4")) == 31  # 3 s at the 10 Hz simulation rate, plus the first frame
    assert report["files"]["videos"]["rule"] == [str(out / "rule_0.mp4")]


def test_bad_policy_and_options_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown policy 'ppo-best'.*rule, random, idle") as err:
        make_policy("ppo-best", highway_config())
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        run_eval(EvalPolicyConfig(policies=("rule", "nope"), episodes=2, videos=0, out=tmp_path))
    with pytest.raises(ValueError, match="unknown env id"):
        run_eval(EvalPolicyConfig(policies=("rule",), env="highway", episodes=2, out=tmp_path))
    with pytest.raises(ValueError, match="episodes=0"):
        run_eval(EvalPolicyConfig(episodes=0, out=tmp_path))
    assert not (tmp_path / "eval.json").exists(), "nothing is written before the inputs are checked"


def test_policies_option_takes_several_values() -> None:
    cfg = tyro.cli(EvalPolicyConfig, args=["--policies", "rule", "random", "runs/ppo", "--episodes", "8"])
    assert cfg.policies == ("rule", "random", "runs/ppo") and cfg.episodes == 8


def test_seed_groups_are_names_that_differ_only_by_a_trailing_seed() -> None:
    labels = ["rule", "runs/ppo-a-0", "runs/dqn-0", "runs/ppo-a-1/", "runs/ppo-a-b", "runs/ppo-a-2", "runs/ppo-a-1"]
    # dqn has one seed (no group); the repeated ppo-a-1 is not another seed; "ppo-a-b" has no seed
    assert seed_groups(labels) == {"runs/ppo-a": ["runs/ppo-a-0", "runs/ppo-a-1/", "runs/ppo-a-2"]}
    assert seed_groups(["rule", "random", "release:ppo-highway", "ppo-0#2", "-1", "-2"]) == {}


def test_seed_summary_is_mean_and_sample_std_of_the_per_seed_figures() -> None:
    # three seeds: 0, 2 and 1 crashes in 100 episodes; returns 30, 32, 34
    runs = [
        _result(crashed=[True] * k + [False] * (100 - k), returns=[r] * 100)
        for k, r in ((0, 30.0), (2, 32.0), (1, 34.0))
    ]
    s = seed_summary([r.summary() for r in runs])
    assert s["collision_rate"]["values"] == pytest.approx([0.0, 0.02, 0.01])
    assert s["collision_rate"]["mean"] == pytest.approx(0.01) and s["collision_rate"]["std"] == pytest.approx(0.01)
    assert s["return_mean"]["mean"] == pytest.approx(32.0) and s["return_mean"]["std"] == pytest.approx(2.0)
    assert s["mean_speed"]["mean"] == pytest.approx(20.0) and s["mean_speed"]["std"] == 0.0
    assert s["episodes"] == {"values": [100, 100, 100]}


def test_eval_policy_adds_a_row_per_group_of_seeds(tmp_path: Path, monkeypatch, capsys) -> None:
    # "runs/r-<k>" stand for three training seeds of one recipe: random policies seeded k
    monkeypatch.setattr(eval_policy, "resolve_policy_spec", lambda spec: spec)
    monkeypatch.setattr(
        eval_policy,
        "make_policy",
        lambda spec, *args: RulePolicy() if spec == "rule" else RandomPolicy(int(spec[-1]), name=spec),
    )
    specs = ("rule", "runs/r-0", "runs/r-1", "runs/r-2")
    cfg = EvalPolicyConfig(policies=specs, episodes=8, videos=0, out=tmp_path / "eval", duration=3.0)
    report = run_eval(cfg)
    data = load_strict_json(tmp_path / "eval" / "eval.json")
    assert list(data["groups"]) == ["runs/r (3 seeds)"] and report["groups"] == data["groups"]
    group = data["groups"]["runs/r (3 seeds)"]
    assert group["members"] == ["runs/r-0", "runs/r-1", "runs/r-2"]
    for key in ("collision_rate", "mean_speed", "return_mean"):
        values = [data["policies"][m]["summary"][key] for m in group["members"]]
        assert group["summary"][key]["values"] == values
        assert group["summary"][key]["mean"] == pytest.approx(np.mean(values))
        assert group["summary"][key]["std"] == pytest.approx(np.std(values, ddof=1))
    assert group["summary"]["return_mean"]["std"] > 0, "the seeds drive differently"
    row = next(line for line in capsys.readouterr().out.splitlines() if "runs/r (3" in line)  # the name may wrap
    mean, std = group["summary"]["return_mean"]["mean"], group["summary"]["return_mean"]["std"]
    assert "3x8" in row and f"{mean:.2f}±{std:.2f}" in row
    run_eval(replace(cfg, group_seeds=False, out=tmp_path / "plain"))
    assert load_strict_json(tmp_path / "plain" / "eval.json")["groups"] == {}
    assert not tyro.cli(EvalPolicyConfig, args=["--no-group-seeds"]).group_seeds


class _AlwaysFaster:
    """Deterministic and crash-prone: episodes end at different steps, so environments reset mid-batch."""

    name = "faster"

    def act(self, scene) -> torch.Tensor:
        return torch.full((scene.num_envs,), int(MetaAction.FASTER), device=scene.ego_speed.device)


@pytest.mark.parametrize("policy", [_AlwaysFaster(), RulePolicy()], ids=["faster", "rule"])
def test_result_does_not_depend_on_the_number_of_environments(policy) -> None:
    """Episode k of a seed plays out the same at 1, 2, 3 and 64 environments (each slot resets at its own time)."""
    config = replace(env_config("drivestack/Highway-v0"), duration=12.0)
    results = [evaluate(policy, config, 7, seed=3, num_envs=b, progress=False) for b in (1, 2, 3, 64)]
    if isinstance(policy, _AlwaysFaster):
        assert results[0].crashed.any() and len(set(results[0].lengths)) > 1  # mid-batch resets happened
    for result in results[1:]:
        for f in fields(Episodes):
            np.testing.assert_array_equal(getattr(result, f.name), getattr(results[0], f.name), err_msg=f.name)
