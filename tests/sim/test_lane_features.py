"""Lane features (gaps and time-to-collision per lane) and the perception-shaped observation noise."""

from __future__ import annotations

import math

import pytest
import torch

from drivestack.planning.scene import encode_scene, scene_from_world
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import ObservationConfig, env_config
from drivestack.sim.lane_features import EGO_FEATURES, LANE_BLOCK, LANE_FEATURES, encode_lane_features
from drivestack.sim.observation_noise import perturb_agents

CONFIG = ObservationConfig(lane_features=True)  # x_range 100 m, v_range 80 m/s, ttc_horizon 10 s
G = len(LANE_FEATURES)


def _feature(block: torch.Tensor, side: int, name: str) -> float:
    """Value of a lane feature; side -1 right of, 0 at, +1 left of the target lane."""
    return float(block[0, len(EGO_FEATURES) + (side + 1) * G + LANE_FEATURES.index(name)])


def _ctx(**changes: object) -> dict[str, torch.Tensor]:
    """One ego at 20 m/s in the middle of three 4 m lanes (lane 1), set-point 20 m/s, 4 m long."""
    ctx = {
        "ego_speed": torch.tensor([20.0]),
        "ego_heading": torch.tensor([0.0]),
        "ego_lane": torch.tensor([1]),
        "ego_target_lane": torch.tensor([1]),
        "ego_length": torch.tensor([4.0]),
        "ego_speed_setpoint": torch.tensor([20.0]),
        "can_change_left": torch.tensor([True]),
        "can_change_right": torch.tensor([False]),
        "lane_offset": torch.tensor([[-4.0, 0.0, 4.0]]),
        "lane_width": torch.full((1, 3), 4.0),
        "lane_exists": torch.ones((1, 3), dtype=torch.bool),
        "lane_end": torch.tensor([[60.0, math.inf, math.inf]]),
    }
    ctx.update({k: torch.as_tensor(v) for k, v in changes.items()})
    return ctx


def test_gaps_and_time_to_collision_equal_hand_computed_values() -> None:
    # leader in the ego's lane 30 m ahead at 15 m/s (4 m long); follower in the left lane 20 m behind at 25 m/s
    # (5 m long); a vehicle in the right lane 50 m ahead pulling away at 25 m/s
    x = torch.tensor([[30.0, -20.0, 50.0]])
    y = torch.tensor([[0.3, 4.2, -3.9]])
    vx = torch.tensor([[15.0, 25.0, 25.0]])
    length = torch.tensor([[4.0, 5.0, 4.0]])
    present = torch.ones((1, 3), dtype=torch.bool)
    block = encode_lane_features(_ctx(), x, y, vx, length, present, CONFIG)
    assert block.shape == (1, LANE_BLOCK)
    # own lane: gap 30 - (4 + 4) / 2 = 26 m, closing 5 m/s -> TTC 5.2 s -> 0.52 of the 10 s horizon
    assert _feature(block, 0, "lead_gap") == pytest.approx(26.0 / 100.0)
    assert _feature(block, 0, "lead_dv") == pytest.approx(-5.0 / 80.0)
    assert _feature(block, 0, "lead_ttc") == pytest.approx(0.52)
    assert _feature(block, 0, "follow_gap") == pytest.approx(1.0)  # nobody behind in the ego's lane
    assert _feature(block, 0, "follow_ttc") == 1.0
    # left lane: follower gap 20 - (5 + 4) / 2 = 15.5 m, it closes at 5 m/s -> TTC 3.1 s
    assert _feature(block, 1, "follow_gap") == pytest.approx(0.155)
    assert _feature(block, 1, "follow_ttc") == pytest.approx(0.31)
    assert _feature(block, 1, "available") == 1.0
    # right lane: not allowed here, its vehicle pulls away (TTC 1), and the lane ends 60 - 2 = 58 m ahead
    assert _feature(block, -1, "available") == 0.0
    assert _feature(block, -1, "lead_ttc") == 1.0
    assert _feature(block, -1, "end") == pytest.approx(0.58)
    assert _feature(block, 0, "end") == 1.0
    assert float(block[0, 0]) == pytest.approx(20.0 / 80.0)  # the set-point


def test_vehicles_out_of_range_or_absent_are_not_seen() -> None:
    x, y = torch.tensor([[130.0, 10.0]]), torch.tensor([[0.0, 0.0]])
    vx, length = torch.tensor([[0.0, 0.0]]), torch.tensor([[4.0, 4.0]])
    block = encode_lane_features(_ctx(), x, y, vx, length, torch.tensor([[True, False]]), CONFIG)
    assert _feature(block, 0, "lead_gap") == 1.0 and _feature(block, 0, "lead_ttc") == 1.0


@pytest.mark.parametrize("env_id", ["drivestack/HighwayDriver-v0", "drivestack/MergeDriver-v0"])
def test_scene_encoding_reproduces_the_simulator_observation_bit_for_bit(env_id: str) -> None:
    config = env_config(env_id)
    env = BatchedDrivingEnv(config, num_envs=16, seed=0)
    obs, _ = env.reset()
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        assert torch.equal(encode_scene(scene_from_world(env.state, env.road), config.observation), obs)
        obs, *_ = env.step(torch.randint(0, 5, (16,), generator=generator))
    assert obs.shape == (16, config.observation.vehicles_count * len(config.observation.features) + LANE_BLOCK)


def _noisy_config(env_id: str = "drivestack/HighwayDriver-v0"):
    from dataclasses import replace

    config = env_config(env_id)
    noise = replace(config.observation.noise, enabled=True)
    return replace(config, observation=replace(config.observation, noise=noise)).validate()


def test_noise_is_deterministic_under_the_seed_and_independent_of_the_batch() -> None:
    config = _noisy_config()
    runs = []
    for num_envs in (4, 4, 8):
        env = BatchedDrivingEnv(config, num_envs=num_envs, seed=7)
        obs = [env.reset()[0][:4]]
        for _ in range(3):
            obs.append(env.step(torch.ones(num_envs, dtype=torch.long))[0][:4])
        runs.append(torch.stack(obs))
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    clean = BatchedDrivingEnv(env_config("drivestack/HighwayDriver-v0"), num_envs=4, seed=7).reset()[0]
    assert not torch.equal(clean, runs[0][0])
    other = BatchedDrivingEnv(config, num_envs=4, seed=8).reset()[0]
    assert not torch.equal(other, runs[0][0])


def test_noise_follows_the_bands_figures() -> None:
    cfg = _noisy_config().observation.noise
    B, M = 64, 256
    x = torch.tensor([10.0, 30.0, 60.0]).repeat_interleave(M // 3 + 1)[:M].expand(B, M).contiguous()
    zeros = torch.zeros_like(x)
    present = torch.ones_like(x, dtype=torch.bool)
    episodes, steps = torch.arange(B), torch.zeros(B, dtype=torch.long)
    nx, ny, nvx, _, seen = perturb_agents(x, zeros, zeros, zeros, present, cfg, 0, episodes, steps)
    for distance, recall, pos_std, vel_std in zip((10.0, 30.0, 60.0), cfg.recall, cfg.position_std, cfg.velocity_std):
        band = x == distance
        assert float(seen[band].float().mean()) == pytest.approx(recall, abs=0.03)
        assert float((nx - x)[band].std()) == pytest.approx(pos_std, rel=0.1)
        assert float(ny[band].std()) == pytest.approx(pos_std, rel=0.1)
        assert float(nvx[band].std()) == pytest.approx(vel_std, rel=0.1)
    # a miss is held for miss_duration policy steps (late and dropped tracks), then drawn afresh
    _, _, _, _, seen1 = perturb_agents(x, zeros, zeros, zeros, present, cfg, 0, episodes, steps + 1)
    _, _, _, _, seen2 = perturb_agents(x, zeros, zeros, zeros, present, cfg, 0, episodes, steps + 2)
    assert torch.equal(seen, seen1) and not torch.equal(seen, seen2)


def test_bad_noise_and_lane_feature_settings_name_the_option() -> None:
    from dataclasses import replace

    from drivestack.sim.config import NoiseConfig, ObservationType

    with pytest.raises(ValueError, match="observation.noise.recall"):
        ObservationConfig(noise=NoiseConfig(recall=(0.7, 1.2, 0.3))).validate()
    with pytest.raises(ValueError, match="observation.lane_features"):
        replace(CONFIG, type=ObservationType.OCCUPANCY).validate()
