"""Policies act on scenes: the scene-based rule policy reproduces the env-reading one it replaced, the random
policy is reproducible under a seed, the registry builds every spec and names what a wrong one is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from drivestack.planning.baselines import IdlePolicy, RandomPolicy, RulePolicy
from drivestack.planning.policy import BASELINES, Policy, make_policy
from drivestack.planning.scene import scene_from_world
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import ActionConfig, RoadConfig, highway_config, merge_config
from drivestack.sim.scenario import initial_state

DATA = Path(__file__).parent / "data"
SCENARIOS = {
    "highway": highway_config(),
    "curved": highway_config(road=RoadConfig(max_curvature=1.0 / 500.0)),
    "merge": merge_config(),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scene_rule_policy_repeats_the_env_reading_rule_policy(name: str) -> None:
    """Compares `RulePolicy().act(scene_from_world(state, road))` with the actions the rule policy chose
    before it acted on scenes, when it read `env.state` / `env.road` (target lane, set-point index,
    `road.change_allowed`, `road.lane_width`) itself: data/rule_actions_env_reading.json holds those, for 16
    environments over 40 decisions of random driving (env seed 11, actions from torch generator seed 5,
    autoreset on), one string of digits (MetaAction values) per step.

    The recording's environment drew its scenarios from one torch generator (seed 11: one draw at construction,
    one per reset) and ran MOBIL on the batch's clock; the environment now draws each episode from (seed, episode
    id) and runs MOBIL on each episode's own clock. So the states are rebuilt from that generator here, and the
    actions are compared in every environment's first episode (where both clocks agree): 16 x 40 decisions
    less those after a crash."""
    expected = json.loads((DATA / "rule_actions_env_reading.json").read_text())[name]
    B = len(expected[0])
    config = SCENARIOS[name]
    env = BatchedDrivingEnv(config, num_envs=B, seed=11)
    recorded = torch.Generator().manual_seed(11)
    initial_state(env.config, env.road, B, recorded)  # the recording env's construction draw
    env._initial_state = lambda _episodes: initial_state(env.config, env.road, B, recorded)
    env.reset()
    g = torch.Generator().manual_seed(5)
    policy = RulePolicy()
    compared = 0
    guarded = torch.zeros(B, dtype=torch.bool)
    for t, row in enumerate(expected):
        scene = scene_from_world(env.state, env.road).validate()
        actions = "".join(str(int(a)) for a in policy.act(scene))
        # The lane-end guards of `sim.driver` (added after the recording: a stop before the ramp's end, lane
        # changes off it shortened to finish before it) change the dynamics near the ramp's end: an environment
        # is compared until its ego first comes within their reach (a lane change's length plus a stop's).
        v = scene.ego_speed
        end = torch.minimum(scene.ego_lane_end, scene.lane_end.gather(1, scene.ego_lane[:, None]).squeeze(1))
        guarded |= end < v * env.config.control.lane_change_duration + v * v / 8.0 + 30.0
        first = ((env.episode < B) & ~guarded).tolist()  # still in its first episode, away from the ramp's end
        assert [a for a, f in zip(actions, first) if f] == [e for e, f in zip(row, first) if f], f"step {t}"
        compared += sum(first)
        env.step(torch.randint(0, 5, (B,), generator=g))
    assert compared >= 4 * B  # a good share of the recording is checked


def test_scene_ego_fields_are_the_simulators_own() -> None:
    env = BatchedDrivingEnv(merge_config(), num_envs=16, seed=2)
    env.reset()
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        state, road = env.state, env.road
        veh, scene = state.vehicles, scene_from_world(env.state, env.road)
        target, s = veh.target_lane[:, 0], veh.s[:, 0]
        assert torch.equal(scene.ego_target_lane, target)
        assert torch.equal(scene.ego_speed_index, state.ego_speed_index)
        speeds = torch.tensor(env.config.action.target_speeds)
        assert torch.equal(scene.ego_speed_setpoint, speeds[state.ego_speed_index])
        top = road.num_lanes - 1
        # what the simulator lets a LANE_LEFT / LANE_RIGHT do when keeping lane (sim.action.apply_meta)
        assert torch.equal(scene.can_change_left, road.change_allowed(target, s, +1) & (target < top))
        assert torch.equal(scene.can_change_right, road.change_allowed(target, s, -1) & (target > 0))
        assert (scene.lane_width == road.lane_width).all()
        assert torch.equal(scene.ego_lane_end, scene.lane_end.gather(1, target[:, None]).squeeze(1))
        env.step(torch.randint(0, 5, (16,), generator=g))


def test_random_policy_is_reproducible_under_a_seed_and_takes_b_from_the_scene() -> None:
    env = BatchedDrivingEnv(highway_config(), num_envs=64, seed=0)
    env.reset()
    scene = scene_from_world(env.state, env.road)
    a, b, c = RandomPolicy(7), RandomPolicy(7), RandomPolicy(8)
    runs = [torch.stack([p.act(scene) for _ in range(5)]) for p in (a, b, c)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert runs[0].shape == (5, 64) and runs[0].dtype == torch.long
    assert set(runs[0].unique().tolist()) == {0, 1, 2, 3, 4}
    # a caller's generator: the same stream as a policy seeded alike
    given = RandomPolicy(generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.stack([given.act(scene) for _ in range(5)]), runs[0])


def test_baselines_act_on_scenes_and_implement_the_protocol() -> None:
    env = BatchedDrivingEnv(highway_config(), num_envs=4, seed=0)
    env.reset()
    scene = scene_from_world(env.state, env.road)
    for policy in (RulePolicy(), RandomPolicy(0), IdlePolicy()):
        assert isinstance(policy, Policy) and isinstance(policy.name, str)
        actions = policy.act(scene)
        assert actions.shape == (4,) and actions.dtype == torch.long
    assert (IdlePolicy().act(scene) == 1).all()


def test_registry_builds_the_baselines() -> None:
    config = highway_config(action=ActionConfig(target_speeds=(15.0, 20.0)))
    rule = make_policy("rule", config)
    assert isinstance(rule, RulePolicy) and rule.target_speeds == (15.0, 20.0)
    random = make_policy("random", config, seed=3)
    assert isinstance(random, RandomPolicy) and random.seed == 3
    assert isinstance(make_policy("idle", config), IdlePolicy)
    assert set(BASELINES) == {"rule", "random", "idle"}


def test_registry_errors_name_the_choices_and_what_a_folder_is(tmp_path: Path) -> None:
    config = highway_config()
    with pytest.raises(ValueError, match=r"unknown policy 'ppo-best'.*rule, random, idle") as err:
        make_policy("ppo-best", config)
    assert "\n" not in str(err.value)
    detector = tmp_path / "det"
    (detector / "checkpoints").mkdir(parents=True)
    (detector / "checkpoints" / "best.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="a detector training run"):
        make_policy(str(detector), config)
    evals = tmp_path / "eval"
    evals.mkdir()
    (evals / "eval.json").write_text("{}")
    with pytest.raises(ValueError, match="a policy evaluation output"):
        make_policy(str(evals), config)
    with pytest.raises(ValueError, match="no training run or checkpoint"):
        make_policy(str(tmp_path), config)
    with pytest.raises(ValueError, match="is a file"):
        make_policy(str(evals / "eval.json"), config)
