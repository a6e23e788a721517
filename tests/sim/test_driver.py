"""The driver: lane-change reference paths and every lateral controller inside the simulator."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from drivestack.control import LateralController
from drivestack.sim.action import MetaAction
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import EnvConfig, RoadConfig, TrafficConfig
from drivestack.sim.driver import finish_lane_changes, start_lane_changes, tracking_errors

CURVED = EnvConfig(road=RoadConfig(max_curvature=1.0 / 500.0), traffic=TrafficConfig(num_vehicles=30), duration=20.0)


def _env(config: EnvConfig, num_envs: int = 1) -> BatchedDrivingEnv:
    env = BatchedDrivingEnv(config, num_envs=num_envs, seed=0, autoreset=False)
    env.reset()
    return env


def test_new_target_lane_starts_a_path_from_where_the_vehicle_is() -> None:
    env = _env(EnvConfig(traffic=TrafficConfig(num_vehicles=4)))
    veh = env.state.vehicles
    error_before, _, _ = tracking_errors(veh, env.road)
    target = (veh.target_lane + 1).clamp_max(env.road.num_lanes - 1)
    moved = target != veh.target_lane
    started = start_lane_changes(veh, target, env.road, env.config)
    error_after, _, _ = tracking_errors(started, env.road)
    # The reference starts at the vehicle: no jump of 4 m in the tracking error.
    torch.testing.assert_close(error_after, error_before, atol=1e-4, rtol=0)
    assert moved.sum() >= 3, "the scenario should give most vehicles a lane to their left"
    torch.testing.assert_close(
        started.lc_offset[moved], torch.full_like(started.lc_offset[moved], -4.0), atol=1e-3, rtol=0
    )
    expected_length = (veh.speed * env.config.control.lane_change_duration).clamp_min(
        env.config.control.min_lane_change_length
    )
    torch.testing.assert_close(started.lc_length[moved], expected_length[moved])
    assert torch.equal(started.lc_offset[~moved], veh.lc_offset[~moved])


def test_completed_paths_are_forgotten() -> None:
    env = _env(EnvConfig(traffic=TrafficConfig(num_vehicles=2)))
    veh = env.state.vehicles
    veh = replace(
        veh,
        lc_offset=torch.full_like(veh.d, -4.0),
        lc_length=torch.full_like(veh.d, 50.0),
        lc_start_s=env.road.wrap(veh.s - torch.tensor([[10.0, 60.0]])),
    )
    done = finish_lane_changes(veh, env.road)
    assert done.lc_offset[0, 0] == -4.0 and done.lc_offset[0, 1] == 0.0


@pytest.mark.parametrize("controller", list(LateralController))
def test_every_controller_changes_lane_smoothly_and_keeps_the_road(controller: LateralController) -> None:
    config = replace(CURVED, policy_frequency=CURVED.sim_frequency, control=replace(CURVED.control, lateral=controller))
    env = _env(config, num_envs=8)
    lane0 = env.state.vehicles.lane[:, 0].clone()
    action = torch.where(lane0 < env.road.num_lanes - 1, int(MetaAction.LANE_LEFT), int(MetaAction.LANE_RIGHT))
    env.step(action)
    errors = []
    for _ in range(60):  # 6 s
        env.step(torch.full((8,), int(MetaAction.IDLE)))
        errors.append(tracking_errors(env.state.vehicles, env.road)[0][:, 0].abs().max().item())
    lane = env.state.vehicles.lane[:, 0]
    ok = ~env.state.crashed
    assert not env.state.off_road.any()
    assert torch.all((lane - lane0).abs()[ok] == 1), "every ego that did not crash changed lanes"
    assert max(errors) < 0.5, f"{controller.value}: the ego strayed {max(errors):.2f} m from its reference path"


@pytest.mark.parametrize("controller", list(LateralController))
def test_traffic_drives_with_every_controller(controller: LateralController) -> None:
    config = replace(CURVED, control=replace(CURVED.control, lateral=controller))
    env = _env(config, num_envs=4)
    for _ in range(int(config.duration * config.policy_frequency)):
        env.step(np.full(4, int(MetaAction.SLOWER)))
    veh = env.state.vehicles
    error, heading, _ = tracking_errors(veh, env.road)
    assert error[:, 1:].abs().max() < 1.0 and heading[:, 1:].abs().max() < 0.2
    assert torch.isfinite(veh.steer).all()
