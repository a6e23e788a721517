"""Environment APIs: gymnasium single env, batched core, gymnasium VectorEnv, SB3 VecEnv."""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import drivestack.sim as sim
from drivestack.sim.action import MetaAction
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import (
    ActionConfig,
    ActionType,
    EnvConfig,
    ObservationConfig,
    ObservationType,
    RoadConfig,
    TrafficConfig,
    merge_config,
)
from drivestack.sim.scenario import initial_state
from drivestack.sim.state import concat
from drivestack.sim.vector_env import SB3DrivingVecEnv
from drivestack.sim.world import sim_step

SMALL = EnvConfig(traffic=TrafficConfig(num_vehicles=12), road=RoadConfig(length=400.0), duration=6.0)


@pytest.mark.parametrize("env_id", sim.ENV_IDS)
def test_check_env_every_registered_id(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=False)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("obs_type", list(ObservationType))
@pytest.mark.parametrize("action_type", list(ActionType))
def test_check_env_every_observation_and_action_type(obs_type: ObservationType, action_type: ActionType) -> None:
    config = replace(SMALL, observation=ObservationConfig(type=obs_type), action=ActionConfig(type=action_type))
    env = gym.make("drivestack/Highway-v0", config=config)
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, reward, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert 0.0 <= reward <= 1.0


def test_batched_step_equals_independent_single_environment_steps() -> None:
    config = EnvConfig(traffic=TrafficConfig(num_vehicles=20), road=RoadConfig(length=500.0))
    env = BatchedDrivingEnv(config, num_envs=1, seed=0)
    road = env.road
    state = initial_state(config, road, 6, torch.Generator().manual_seed(5))
    singles = [state.index(slice(i, i + 1)) for i in range(6)]
    for step in range(12):
        mobil = (0, 1, 0, -1)[step % 4]  # decision ticks in both directions
        state = sim_step(state, road, config, mobil=mobil)
        singles = [sim_step(s, road, config, mobil=mobil) for s in singles]
    stacked = concat(singles)
    for name in ("s", "d", "psi", "speed", "steer", "lane", "target_lane"):
        assert torch.equal(getattr(state.vehicles, name), getattr(stacked.vehicles, name)), name
    assert torch.equal(state.crashed, stacked.crashed)


def test_same_seed_same_trajectories_and_different_seed_differs() -> None:
    def rollout(seed: int) -> torch.Tensor:
        env = BatchedDrivingEnv(SMALL, num_envs=8, seed=seed)
        env.reset()
        gen = torch.Generator().manual_seed(1)
        for _ in range(8):  # crosses episode ends: autoreset draws from the seeded generator too
            env.step(torch.randint(0, 5, (8,), generator=gen))
        v = env.state.vehicles
        return torch.stack([v.s, v.d, v.speed])

    assert torch.equal(rollout(7), rollout(7))
    assert not torch.equal(rollout(7), rollout(8))


def test_nan_and_out_of_range_actions() -> None:
    cont = replace(SMALL, action=ActionConfig(type=ActionType.CONTINUOUS))
    env = BatchedDrivingEnv(cont, num_envs=2, seed=0)
    env.reset()
    before = env.state.vehicles.s.clone()
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(np.array([[0.0, np.nan], [0.0, 0.0]]))
    assert torch.equal(env.state.vehicles.s, before), "a rejected action must not touch the state"
    with pytest.raises(ValueError, match=r"expected shape \(2, 2\)"):
        env.step(np.zeros(3))
    # Out of range is clipped: +5 acts like +1.
    a, b = BatchedDrivingEnv(cont, num_envs=2, seed=0), BatchedDrivingEnv(cont, num_envs=2, seed=0)
    a.reset()
    b.reset()
    a.step(np.array([[5.0, -7.0]] * 2))
    b.step(np.array([[1.0, -1.0]] * 2))
    assert torch.equal(a.state.vehicles.s, b.state.vehicles.s)
    meta = BatchedDrivingEnv(SMALL, num_envs=2, seed=0)
    with pytest.raises(ValueError, match="allowed 0..4"):
        meta.step(np.array([1, 7]))
    with pytest.raises(ValueError, match="NaN"):
        meta.step(np.array([1.0, np.nan]))


@pytest.mark.parametrize(
    ("field", "config"),
    [
        ("road.num_lanes", EnvConfig(road=RoadConfig(num_lanes=0))),
        ("traffic.num_vehicles", EnvConfig(traffic=TrafficConfig(num_vehicles=500), road=RoadConfig(length=300.0))),
        ("duration", EnvConfig(duration=-1.0)),
        ("policy_frequency", EnvConfig(sim_frequency=10.0, policy_frequency=3.0)),
        ("road.scenario", None),
    ],
)
def test_invalid_configs_name_the_field(field: str, config: EnvConfig | None) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        if config is None:
            EnvConfig(road=RoadConfig(scenario="roundabout")).validate()  # type: ignore[arg-type]
        BatchedDrivingEnv(config, num_envs=1)


def test_unknown_scenario_in_gym_make() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        gym.make("drivestack/Highway-v0", scenario="roundabout")


def test_meta_action_edge_cases() -> None:
    env = BatchedDrivingEnv(SMALL, num_envs=1, seed=0, autoreset=False)
    env.reset()
    v = env.state.vehicles
    top = env.road.num_lanes - 1
    lane = torch.full_like(v.lane, 0)
    lane[:, 0] = top
    env.state = env.state.replace(
        vehicles=replace(v, lane=lane, target_lane=lane.clone()),
        ego_speed_index=torch.tensor([len(SMALL.action.target_speeds) - 1]),
    )
    _, _, _, _, info = env.step(np.array([MetaAction.LANE_LEFT]))
    assert bool(info["action_invalid"][0]), "LANE_LEFT from the leftmost lane is impossible"
    assert int(env.state.vehicles.target_lane[0, 0]) == top
    _, _, _, _, info = env.step(np.array([MetaAction.FASTER]))
    assert bool(info["action_invalid"][0]), "FASTER at the top speed is a no-op"
    _, _, _, _, info = env.step(np.array([MetaAction.LANE_RIGHT]))
    assert not bool(info["action_invalid"][0])
    assert int(env.state.vehicles.target_lane[0, 0]) == top - 1


def test_merge_ego_must_merge_left_before_the_ramp_ends() -> None:
    config = replace(merge_config(), traffic=TrafficConfig(num_vehicles=2))
    env = BatchedDrivingEnv(config, num_envs=1, seed=0, autoreset=False)
    env.reset()
    _, _, _, _, info = env.step(np.array([MetaAction.LANE_LEFT]))  # still on the ramp's approach
    assert bool(info["action_invalid"][0])
    idle_env = BatchedDrivingEnv(config, num_envs=1, seed=0, autoreset=False)
    idle_env.reset()
    for _ in range(config.max_policy_steps):
        _, _, term, _, info = idle_env.step(np.array([MetaAction.IDLE]))
        assert not bool(term[0]), "staying on the ramp stops before its end (the controller's lane-end guard)"
    veh = idle_env.state.vehicles
    assert int(veh.lane[0, 0]) == 0 and float(veh.speed[0, 0]) < 0.5  # standing on the ramp, waiting to merge
    merging = BatchedDrivingEnv(config, num_envs=1, seed=0, autoreset=False)
    merging.reset()
    for _ in range(config.max_policy_steps):
        _, _, term, _, info = merging.step(np.array([MetaAction.LANE_LEFT]))
        assert not bool(info["off_road"][0])
    assert int(merging.state.vehicles.lane[0, 0]) >= 1


def test_reward_terms_reported_and_weighted() -> None:
    env = BatchedDrivingEnv(SMALL, num_envs=4, seed=0)
    env.reset()
    _, reward, _, _, info = env.step(np.ones(4, dtype=np.int64))
    terms = info["rewards"]
    assert set(terms) == {"speed", "collision", "right_lane", "lane_change", "off_road"}
    cfg = SMALL.reward
    raw = sum(getattr(cfg, k) * terms[k] for k in terms)
    expected = ((raw - (-1.0)) / (0.5 - (-1.0))).clamp(0, 1)  # floor: the worse terminal penalty
    assert torch.allclose(reward, expected)


def test_autoreset_returns_final_observation_and_episode_stats() -> None:
    config = replace(SMALL, duration=2.0)
    env = BatchedDrivingEnv(config, num_envs=3, seed=0)
    env.reset()
    env.step(np.ones(3, dtype=np.int64))
    obs, _, term, trunc, info = env.step(np.ones(3, dtype=np.int64))
    done = term | trunc
    assert bool(done.all())
    assert "final_observation" in info and info["final_observation"].shape == obs.shape
    assert torch.all(info["episode_length"] == 2)
    assert torch.all(env.state.policy_steps == 0) and torch.all(env.state.time == 0)


def test_gymnasium_vector_env() -> None:
    venv = gym.make_vec(
        "drivestack/Highway-v0",
        num_envs=4,
        vectorization_mode="vector_entry_point",
        config=replace(SMALL, duration=2.0),
    )
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (4, 5, 5) and venv.observation_space.contains(obs)
    venv.step(venv.action_space.sample())
    obs, reward, term, trunc, infos = venv.step(venv.action_space.sample())
    assert reward.shape == (4,) and term.dtype == bool
    assert (term | trunc).all()
    assert infos["_final_obs"].all() and infos["final_obs"].shape == (4, 5, 5)
    assert set(infos["rewards"]) >= {"speed", "collision"}


def test_sb3_vec_env_contract() -> None:
    from stable_baselines3.common.vec_env import VecEnv

    venv = SB3DrivingVecEnv(num_envs=4, config=replace(SMALL, duration=2.0), seed=0)
    assert isinstance(venv, VecEnv)
    venv.seed(3)
    obs = venv.reset()
    assert obs.shape == (4, 5, 5) and obs.dtype == np.float32
    venv.step_async(np.ones(4, dtype=np.int64))
    obs, rewards, dones, infos = venv.step_wait()
    assert rewards.shape == (4,) and dones.shape == (4,) and not dones.any()
    assert len(infos) == 4 and "terminal_observation" not in infos[0]
    obs, rewards, dones, infos = venv.step(np.ones(4, dtype=np.int64))
    assert dones.all()
    for info in infos:
        assert info["terminal_observation"].shape == (5, 5)
        assert info["TimeLimit.truncated"] is True or info["crashed"]
    assert venv.get_attr("num_envs") == [4] * 4
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * 4
    assert venv.env_method("seed", 1, indices=[0]) == [None]
    venv.close()


def test_render_rgb_array_through_gym() -> None:
    env = gym.make("drivestack/Highway-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_closely() -> None:
    cpu = BatchedDrivingEnv(SMALL, num_envs=16, seed=0)
    gpu = BatchedDrivingEnv(SMALL, num_envs=16, seed=0, device="cuda")
    gpu.state = cpu.state.to("cuda")
    for _ in range(2):
        cpu.step(np.ones(16, dtype=np.int64))
        gpu.step(np.ones(16, dtype=np.int64))
    assert torch.allclose(cpu.state.vehicles.s, gpu.state.vehicles.s.cpu(), atol=1e-2)
