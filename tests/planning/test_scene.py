"""The planning scene model: ground-truth scenes encode exactly like the simulator's observation; the
encoder on hand-built scenes (ordering, normalisation, absent agents); stable ids; validation."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from drivestack.planning.scene import Scene, encode_kinematics_scene, scene_from_world
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import ObservationConfig, RoadConfig, highway_config, merge_config
from drivestack.sim.observation import kinematics

ALL_FEATURES = ("presence", "x", "y", "vx", "vy", "cos_h", "sin_h")


CONFIGS = {
    "highway": (highway_config(), ObservationConfig()),
    "curved": (
        highway_config(road=RoadConfig(max_curvature=1.0 / 500.0)),
        ObservationConfig(vehicles_count=8, features=ALL_FEATURES, x_range=60.0),
    ),
    "merge": (merge_config(), ObservationConfig(vehicles_count=6, features=ALL_FEATURES, y_range=20.0)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_ground_truth_scene_encodes_exactly_like_the_simulator(name: str) -> None:
    config, obs_config = CONFIGS[name]
    env = BatchedDrivingEnv(replace(config, observation=obs_config), num_envs=16, seed=1)
    obs, _ = env.reset()
    g = torch.Generator().manual_seed(0)
    for _ in range(8):  # random driving: lane changes, crashes and autoresets included
        scene = scene_from_world(env.state, env.road).validate()
        encoded = encode_kinematics_scene(scene, obs_config)
        assert torch.equal(encoded, kinematics(env.state, env.road, obs_config))
        assert torch.equal(encoded, obs), "the env's own observation, bit for bit"
        default = ObservationConfig()  # and under a config the env was not built with
        assert torch.equal(encode_kinematics_scene(scene, default), kinematics(env.state, env.road, default))
        obs, *_ = env.step(torch.randint(0, 5, (16,), generator=g))


def _scene(
    x: list[float], y: list[float], vx: list[float], present: list[bool], ego_speed: float = 20.0, ego_d: float = 4.0
) -> Scene:
    M = len(x)

    def row(values: list[float]) -> torch.Tensor:
        return torch.tensor([values], dtype=torch.float32)

    one = torch.ones(1)
    return Scene(
        ego_speed=one * ego_speed,
        ego_heading=one * 0.0,
        ego_d=one * ego_d,
        ego_lane=torch.ones(1, dtype=torch.long),
        ego_length=one * 4.7,
        ego_width=one * 1.9,
        ego_target_lane=torch.ones(1, dtype=torch.long),
        ego_speed_setpoint=one * 20.0,
        ego_speed_index=torch.zeros(1, dtype=torch.long),
        can_change_left=torch.ones(1, dtype=torch.bool),
        can_change_right=torch.ones(1, dtype=torch.bool),
        x=row(x),
        y=row(y),
        vx=row(vx),
        vy=row([0.0] * M),
        heading=row([0.0] * M),
        length=row([4.5] * M),
        width=row([1.8] * M),
        id=torch.arange(10, 10 + M)[None],
        present=torch.tensor([present]),
        lane_offset=row([-4.0, 0.0, 4.0]),
        lane_exists=torch.ones(1, 3, dtype=torch.bool),
        lane_end=row([math.inf] * 3),
        lane_width=row([4.0] * 3),
    ).validate()


def test_encoder_orders_by_distance_normalises_and_pads() -> None:
    # agents: 40 m ahead, 8 m behind one lane left, absent (closest of all), 150 m ahead (out of range),
    # 12 m ahead one lane right
    scene = _scene(
        x=[40.0, -8.0, 1.0, 150.0, 12.0],
        y=[0.0, 4.0, 0.0, 0.0, -4.0],
        vx=[25.0, 18.0, 20.0, 30.0, 20.0],
        present=[True, True, False, True, True],
    )
    obs = encode_kinematics_scene(scene, ObservationConfig(vehicles_count=5))[0]  # presence, x, y, vx, vy
    expected = torch.tensor(
        [
            [1.0, 0.0, 4.0 / 12.0, 20.0 / 80.0, 0.0],  # ego: lateral position on the road, own velocity
            [1.0, -8.0 / 100.0, 4.0 / 12.0, -2.0 / 80.0, 0.0],  # nearest: 8.9 m
            [1.0, 12.0 / 100.0, -4.0 / 12.0, 0.0, 0.0],  # 12.6 m
            [1.0, 40.0 / 100.0, 0.0, 5.0 / 80.0, 0.0],  # 40 m
            [0.0, 0.0, 0.0, 0.0, 0.0],  # the absent agent and the one beyond x_range are not seen
        ]
    )
    torch.testing.assert_close(obs, expected)


def test_encoder_ignores_values_of_empty_slots() -> None:
    a = _scene(x=[10.0, 0.0], y=[0.0, 0.0], vx=[20.0, 0.0], present=[True, False])
    b = replace(a, x=torch.tensor([[10.0, math.nan]]), vx=torch.tensor([[20.0, math.inf]])).validate()
    config = ObservationConfig(vehicles_count=3, features=ALL_FEATURES)
    assert torch.equal(encode_kinematics_scene(a, config), encode_kinematics_scene(b, config))


def test_ids_are_vehicle_indices_and_stable_over_steps() -> None:
    env = BatchedDrivingEnv(highway_config(policy_frequency=10.0), num_envs=4, seed=2, autoreset=False)
    env.reset()
    N = env.config.traffic.num_vehicles
    before = scene_from_world(env.state, env.road)
    assert torch.equal(before.id, torch.arange(1, N).expand(4, N - 1))
    dt = 1.0 / env.config.sim_frequency
    for _ in range(20):  # simulation steps (policy_frequency = sim_frequency)
        env.step(torch.ones(4, dtype=torch.long))
        after = scene_from_world(env.state, env.road)
        assert torch.equal(after.id, before.id)
        # The same id is the same body, and it moved by its mean relative velocity over the step.
        assert torch.equal(after.length, before.length)
        rel_before = before.vx - before.ego_velocity[0][:, None]
        rel_after = after.vx - after.ego_velocity[0][:, None]
        predicted = before.x + 0.5 * (rel_before + rel_after) * dt
        near = before.x.abs() < 200.0  # away from the ring's half-length wrap of relative positions
        assert ((after.x - predicted).abs()[near] < 0.05).all()
        before = after


def test_merge_scene_lanes_and_lane_end() -> None:
    config = merge_config()
    env = BatchedDrivingEnv(config, num_envs=2, seed=0)
    env.reset()
    scene = scene_from_world(env.state, env.road)
    road = config.road
    ramp_end = road.ramp_start + road.ramp_approach + road.merge_length
    s0 = env.state.vehicles.s[:, 0]
    assert (scene.ego_lane == 0).all() and scene.lane_exists.all()
    torch.testing.assert_close(scene.lane_offset[:, 0], torch.zeros(2), atol=1e-4, rtol=0)  # on the ramp's centre
    torch.testing.assert_close(scene.lane_offset[:, 2] - scene.lane_offset[:, 1], torch.full((2,), road.lane_width))
    torch.testing.assert_close(scene.lane_end[:, 0], ramp_end - s0)
    assert torch.isinf(scene.lane_end[:, 1:]).all()
    # what the ego knows about itself: on the ramp, heading for it, its lane ends ahead, no lane to its right
    assert (scene.ego_target_lane == 0).all() and not scene.can_change_right.any()
    torch.testing.assert_close(scene.ego_lane_end, ramp_end - s0)
    speeds = torch.tensor(config.action.target_speeds)
    assert torch.equal(scene.ego_speed_setpoint, speeds[scene.ego_speed_index])
    assert (scene.lane_width == road.lane_width).all()


def test_validate_names_the_bad_field() -> None:
    good = _scene(x=[10.0], y=[0.0], vx=[20.0], present=[True])
    with pytest.raises(ValueError, match="Scene.y: expected shape"):
        replace(good, y=torch.zeros(1, 2)).validate()
    with pytest.raises(ValueError, match="Scene.present: expected dtype torch.bool"):
        replace(good, present=torch.ones(1, 1)).validate()
    with pytest.raises(ValueError, match="Scene.vx has NaN"):
        replace(good, vx=torch.tensor([[math.nan]])).validate()
    with pytest.raises(ValueError, match="Scene.ego_speed has negative"):
        replace(good, ego_speed=-torch.ones(1)).validate()
    with pytest.raises(ValueError, match="Scene.ego_target_lane: expected dtype torch.int64"):
        replace(good, ego_target_lane=torch.ones(1)).validate()
    with pytest.raises(ValueError, match=r"Scene.lane_width: expected shape \(1, 3\)"):
        replace(good, lane_width=torch.ones(1, 2)).validate()
