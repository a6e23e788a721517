"""Baseline policies: the rule policy stays on the road, crashes far less than random and always-IDLE driving,
passes slow leaders, never asks for a lane that is not there, merges off a lane that ends (rule decisions on
hand-built scenes). The random policy and the protocol: tests/planning/test_policy.py."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from drivestack.planning.baselines import IdlePolicy, RandomPolicy, RuleConfig, RulePolicy, rule_actions
from drivestack.planning.evaluate import evaluate
from drivestack.planning.scene import Scene, scene_from_world
from drivestack.sim.action import MetaAction
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import RoadConfig, highway_config, merge_config

SPEEDS = torch.tensor([20.0, 25.0, 30.0])


SCENARIOS = {
    "highway": highway_config(),
    "curved": highway_config(road=RoadConfig(max_curvature=1.0 / 500.0)),
    "merge": merge_config(),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_rule_policy_stays_on_the_road_and_asks_only_for_lanes_that_exist(name: str) -> None:
    config = SCENARIOS[name]
    env = BatchedDrivingEnv(config, num_envs=32, seed=0, autoreset=False)
    env.reset()
    policy = RulePolicy(target_speeds=config.action.target_speeds)
    off_road = torch.zeros(32, dtype=torch.bool)
    changes = 0
    for _ in range(config.max_policy_steps):  # one full episode in every environment
        action = policy.act(scene_from_world(env.state, env.road))
        assert action.dtype == torch.long and action.shape == (32,)
        _, _, _, _, info = env.step(action)
        lateral = (action == MetaAction.LANE_LEFT) | (action == MetaAction.LANE_RIGHT)
        assert not (info["action_invalid"] & lateral).any(), "a lane change into a lane that is not there"
        off_road |= info["off_road"]
        changes += int(lateral.sum())
    where = torch.nonzero(off_road).flatten().tolist()
    if name == "merge":
        # Known limit: the lowest set-point is a cruising speed (20 m/s), so an ego boxed in alongside traffic on a
        # short on-ramp sometimes cannot drop behind a gap in time (1 of these 32 episodes: README, policies).
        assert off_road.float().mean() <= 1 / 16, f"left the road in environments {where}"
    else:
        assert not off_road.any(), f"left the road in environments {where}"
    assert changes > 0
    if name == "merge":
        ramp = 0
        assert (env.state.vehicles.lane[:, 0] != ramp).all(), "every ego left the on-ramp"


def test_rule_policy_crashes_far_less_than_random_and_idle() -> None:
    config = highway_config()
    rates = {
        p.name: evaluate(p, config, episodes=64, seed=3, progress=False).summary()
        for p in (RulePolicy(), RandomPolicy(0), IdlePolicy())
    }
    rule, random, idle = (rates[k]["collision_rate"] for k in ("rule", "random", "idle"))
    # Measured on 500 episodes: rule ~0 %, idle ~37 %, random ~80 %.
    assert rule <= 0.03, rates
    assert idle >= rule + 0.15 and random >= rule + 0.4, rates
    assert rates["rule"]["mean_speed"] > rates["idle"]["mean_speed"], "passing slow traffic is faster"
    assert rates["rule"]["return_mean"] > max(rates["idle"]["return_mean"], rates["random"]["return_mean"])


def _scene(
    agents: list[tuple[float, float, float]],
    ego_lane: int = 1,
    ego_speed: float = 25.0,
    num_lanes: int = 3,
    lane_end: list[float] | None = None,
) -> Scene:
    """One environment; the ego at the centre of `ego_lane` (4 m lanes); agents (x, lane, speed)."""
    M = max(len(agents), 1)
    x = torch.full((1, M), 0.0)
    y, vx = x.clone(), x.clone()
    present = torch.zeros(1, M, dtype=torch.bool)
    for m, (ax, lane, speed) in enumerate(agents):
        x[0, m], y[0, m], vx[0, m], present[0, m] = ax, 4.0 * (lane - ego_lane), speed, True
    one = torch.ones(1)
    return Scene(
        ego_speed=one * ego_speed,
        ego_heading=0 * one,
        ego_d=one * 4.0 * ego_lane,
        ego_lane=torch.tensor([ego_lane]),
        ego_length=one * 4.7,
        ego_width=one * 1.9,
        ego_target_lane=torch.tensor([ego_lane]),
        ego_speed_setpoint=one * 25.0,
        ego_speed_index=torch.tensor([1]),
        can_change_left=torch.tensor([ego_lane < num_lanes - 1]),
        can_change_right=torch.tensor([ego_lane > 0]),
        x=x,
        y=y,
        vx=vx,
        vy=torch.zeros(1, M),
        heading=torch.zeros(1, M),
        length=torch.full((1, M), 4.5),
        width=torch.full((1, M), 1.8),
        id=torch.arange(M)[None],
        present=present,
        lane_offset=(4.0 * (torch.arange(num_lanes) - ego_lane)).float()[None],
        lane_exists=torch.ones(1, num_lanes, dtype=torch.bool),
        lane_end=torch.tensor([lane_end or [math.inf] * num_lanes]),
        lane_width=torch.full((1, num_lanes), 4.0),
    ).validate()


def _decide(
    scene: Scene, target_lane: int | None = None, speed_index: int = 1, can_left: bool = True, can_right: bool = True
) -> MetaAction:
    target = scene.ego_lane if target_lane is None else torch.tensor([target_lane])
    top = scene.num_lanes - 1
    scene = replace(
        scene,
        ego_target_lane=target,
        can_change_left=torch.tensor([can_left and int(target) < top]),
        can_change_right=torch.tensor([can_right and int(target) > 0]),
        ego_speed_index=torch.tensor([speed_index]),
        ego_speed_setpoint=SPEEDS[speed_index : speed_index + 1],
    ).validate()
    action = rule_actions(scene, SPEEDS, RuleConfig())
    return MetaAction(int(action[0]))


def test_rule_passes_a_slow_leader_on_the_free_side() -> None:
    slow = (30.0, 1, 15.0)  # 30 m ahead in the ego's lane, 10 m/s slower
    assert _decide(_scene([slow, (0.0, 0, 25.0)])) == MetaAction.LANE_LEFT  # right lane blocked alongside
    assert _decide(_scene([slow, (2.0, 2, 25.0)])) == MetaAction.LANE_RIGHT  # left lane blocked alongside
    # Both sides blocked: no lane change, slow down instead.
    assert _decide(_scene([slow, (0.0, 0, 25.0), (-3.0, 2, 25.0)])) == MetaAction.SLOWER
    # Left lane free but a fast car closing from behind would have to brake hard: not safe.
    assert _decide(_scene([slow, (0.0, 0, 25.0), (-15.0, 2, 35.0)])) == MetaAction.SLOWER


def test_rule_speed_keeping_and_keep_right() -> None:
    assert _decide(_scene([], ego_lane=0, ego_speed=25.0)) == MetaAction.FASTER  # free road, set-point below top
    assert _decide(_scene([], ego_lane=0, ego_speed=30.0), speed_index=2) == MetaAction.IDLE  # at the top
    assert (
        _decide(_scene([(15.0, 0, 20.0)], ego_lane=0, ego_speed=20.0), speed_index=0, can_left=False) == MetaAction.IDLE
    )  # lowest set-point: no SLOWER
    assert _decide(_scene([], ego_lane=2, ego_speed=25.0)) == MetaAction.LANE_RIGHT  # free right lane: keep right


def test_rule_never_asks_for_a_missing_or_forbidden_lane() -> None:
    slow = (25.0, 2, 12.0)
    assert _decide(_scene([slow], ego_lane=2)) == MetaAction.LANE_RIGHT  # the only way round it
    # The leftmost lane has no lane to its left; with the right one blocked the ego can only slow down.
    assert _decide(_scene([slow, (1.0, 1, 25.0)], ego_lane=2)) == MetaAction.SLOWER
    # A change the road forbids here is not requested.
    assert _decide(_scene([(25.0, 1, 12.0)]), can_left=False, can_right=False) == MetaAction.SLOWER
    # Mid-change (heading for lane 2 from lane 1): no new lane change, even with a slow leader.
    assert _decide(_scene([(25.0, 2, 12.0)], ego_lane=1), target_lane=2) not in (
        MetaAction.LANE_LEFT,
        MetaAction.LANE_RIGHT,
    )


def test_rule_merges_off_a_lane_that_ends() -> None:
    # On a ramp (lane 0) ending 80 m ahead, the lane to the left free: merge (no incentive needed).
    scene = _scene([], ego_lane=0, ego_speed=22.0, num_lanes=3, lane_end=[80.0, math.inf, math.inf])
    assert _decide(scene) == MetaAction.LANE_LEFT
    # A car right beside it in the target lane: no merge; line up with a gap by changing speed instead.
    beside = _scene([(0.5, 1, 22.0)], ego_lane=0, ego_speed=22.0, num_lanes=3, lane_end=[80.0, math.inf, math.inf])
    assert _decide(beside) in (MetaAction.FASTER, MetaAction.SLOWER)


def test_rule_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="idm_time_headway"):
        RulePolicy(RuleConfig(idm_time_headway=0.0))
    with pytest.raises(ValueError, match="politeness"):
        RuleConfig(politeness=2.0).validate()
    with pytest.raises(ValueError, match="target_speeds"):
        RulePolicy(target_speeds=(30.0, 20.0))
