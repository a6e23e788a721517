"""`scene_from_agents` with the true boxes is `scene_from_world`: same ego and lanes, same agents to rounding."""

from __future__ import annotations

from dataclasses import replace

import torch

from drivestack.planning.scene import scene_from_agents, scene_from_world
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import env_config
from drivestack.sim.raycast import VehicleAppearance, vehicle_boxes


def test_true_boxes_give_the_ground_truth_scene() -> None:
    config = replace(env_config("drivestack/Highway-v0"), duration=5.0)
    env = BatchedDrivingEnv(config, num_envs=3, seed=4)
    env.reset()
    for _ in range(3):
        env.step(torch.tensor([0, 1, 3]))
    state = env.state
    B, N = state.vehicles.shape
    looks = VehicleAppearance(height=torch.full((B, N), 1.5), color=torch.zeros(B, N, 3))
    s_ego = state.vehicles.s[:, 0] + 0.1 * env.road.length  # unwrapped: a global frame shifted along the road
    _, boxes, _ = vehicle_boxes(env.road, state, looks, s_ego)
    yaw, speed = boxes[..., 6], state.vehicles.speed
    velocity = torch.stack([speed * torch.cos(yaw), speed * torch.sin(yaw)], dim=-1)
    ids = torch.arange(N).expand(B, -1)
    truth = scene_from_world(state, env.road)
    near = torch.zeros(B, N, dtype=torch.bool)
    # within 200 m, and inside the road's tables from the shifted frame (vehicle_boxes gives NaN boxes beyond them)
    near[:, 1:] = state.vehicles.active[:, 1:] & (truth.x.abs() < 200) & torch.isfinite(boxes[:, 1:]).all(dim=-1)
    got = scene_from_agents(state, env.road, boxes[:, 1:], velocity[:, 1:], ids[:, 1:], near[:, 1:], s_ego)
    got.validate()
    for name in ("ego_speed", "ego_lane", "ego_target_lane", "can_change_left", "can_change_right", "lane_offset"):
        assert torch.equal(getattr(got, name), getattr(truth, name)), name
    m = near[:, 1:]
    for name, tol in (("x", 0.05), ("y", 0.02), ("vx", 1e-3), ("vy", 1e-3), ("heading", 1e-4), ("length", 0)):
        assert torch.allclose(getattr(got, name)[m], getattr(truth, name)[m], atol=tol, rtol=0), name
    assert torch.equal(got.id[m], truth.id[m]) and bool((got.id[~m] == -1).all())


def test_a_scene_from_true_boxes_carries_the_ground_truth_lane_features() -> None:
    # the perceived loop's scene (scene_from_agents) gets the same gaps and time-to-collision per lane
    from drivestack.planning.scene import encode_scene

    config = replace(env_config("drivestack/HighwayDriver-v0"), duration=5.0)
    env = BatchedDrivingEnv(config, num_envs=4, seed=2)
    env.reset()
    for _ in range(3):
        env.step(torch.tensor([0, 1, 3, 4]))
    state = env.state
    B, N = state.vehicles.shape
    looks = VehicleAppearance(height=torch.full((B, N), 1.5), color=torch.zeros(B, N, 3))
    _, boxes, _ = vehicle_boxes(env.road, state, looks, state.vehicles.s[:, 0])
    yaw, speed = boxes[..., 6], state.vehicles.speed
    velocity = torch.stack([speed * torch.cos(yaw), speed * torch.sin(yaw)], dim=-1)
    present = state.vehicles.active[:, 1:] & torch.isfinite(boxes[:, 1:]).all(dim=-1)
    truth = scene_from_world(state, env.road)
    present &= truth.x.abs() < 200
    ids = torch.arange(1, N).expand(B, -1)
    got = scene_from_agents(state, env.road, boxes[:, 1:], velocity[:, 1:], ids, present)
    truth = replace(truth, present=truth.present & present)
    expected, observed = encode_scene(truth, config.observation), encode_scene(got, config.observation)
    assert observed.shape == (B, 51)
    torch.testing.assert_close(observed, expected, atol=2e-3, rtol=0)
