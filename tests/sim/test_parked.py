"""Parked vehicles of a nuScenes-format export (sim.parked, `drivestack data make --parked-per-km`): on the roadsides,
never overlapping, in every orientation, annotated, and invisible to the traffic."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from drivestack.sim.nuscenes_export import DatasetConfig
from drivestack.sim.nuscenes_rollout import env_config, simulate_batch
from drivestack.sim.parked import CELL, parked_vehicles
from drivestack.sim.road import build_road


def _config(**kw: object) -> DatasetConfig:
    params: dict = {"scenes": 2, "seconds": 1.0, "seed": 3, "width": 96, "height": 54, "lidar_azimuths": 64, **kw}
    return DatasetConfig(out=Path("unused"), **params).validate()


def test_parked_vehicles_stand_beside_the_road_one_per_cell() -> None:
    env = env_config(_config())
    road = build_road(env.road)
    parked = parked_vehicles(env, road, 8, 40.0, torch.Generator().manual_seed(0))
    on = parked.active
    assert abs(on.float().mean().item() - 40.0 * CELL / 1000.0) < 0.08  # the density asked for
    psi = parked.psi[on]
    along = (parked.length * torch.cos(parked.psi)).abs() + (parked.width * torch.sin(parked.psi)).abs()
    across = (parked.length * torch.sin(parked.psi)).abs() + (parked.width * torch.cos(parked.psi)).abs()
    # each in its own cell along the road (so none overlaps another), near side beyond the outer edge line
    cells = parked.s.shape[1] // 2
    cell = torch.arange(parked.s.shape[1]) % cells
    assert bool((parked.s - 0.5 * along >= cell * CELL - 1e-3)[on].all())
    assert bool((parked.s + 0.5 * along <= (cell + 1) * CELL + 1e-3)[on].all())
    offsets, _ = road.all_lane_offsets(parked.s)
    left = torch.arange(parked.s.shape[1]) >= cells  # slots: right roadside, then left
    gap = torch.where(
        left,
        parked.d - 0.5 * across - (offsets.amax(-1) + 0.5 * road.lane_width),
        offsets.amin(-1) - 0.5 * road.lane_width - (parked.d + 0.5 * across),
    )  # [m] from the outer edge line to the near side
    assert bool((gap[on] >= 0.19).all() and (gap[on] <= 0.91).all())
    assert bool((parked.speed == 0).all())
    # every orientation: along the road either way, across it, at an angle; trucks only along it
    turn = torch.remainder(psi, math.pi)  # 0: along the road, pi/2: across it
    assert bool((turn < 1e-6).any() and ((turn - 0.5 * math.pi).abs() < 1e-6).any())
    assert bool(((turn > 0.3) & (turn < 1.2)).any() and ((turn > 1.9) & (turn < 2.9)).any())
    assert bool(((psi - math.pi).abs() < 1e-6).any())
    truck = parked.length >= 6.0
    assert bool(truck[on].any()) and bool((parked.psi[truck & on] == 0).all())


def test_the_traffic_never_sees_them_and_the_sensors_do() -> None:
    def run(cfg: DatasetConfig):
        env = env_config(cfg)
        road = build_road(env.road)
        return simulate_batch(cfg, env, road, np.zeros(2), 0, cfg.scenes, lambda *args: None)

    plain, parked = run(_config()), run(_config(parked_per_km=60.0))
    n = plain.frames.boxes.shape[2]
    assert parked.frames.boxes.shape[2] > n
    np.testing.assert_array_equal(plain.frames.ego_pose, parked.frames.ego_pose)  # the same traffic
    xy_yaw = [0, 1, 6]  # heights are drawn with the looks, so they differ
    np.testing.assert_array_equal(plain.frames.boxes[..., xy_yaw], parked.frames.boxes[:, :, :n][..., xy_yaw])
    np.testing.assert_array_equal(plain.frames.speed, parked.frames.speed[:, :, :n])
    seen = parked.frames.annotated[:, :, n:] & (parked.frames.visibility[:, :, n:] > 0)
    assert seen.sum() > 0 and (parked.frames.num_lidar_pts[:, :, n:][seen] > 0).all()  # in view: annotated
    assert (parked.frames.speed[:, :, n:] == 0).all()
    assert parked.is_truck.shape == (parked.frames.boxes.shape[0], parked.frames.boxes.shape[2])
    assert "parked vehicles on the roadsides" in parked.descriptions[0]


@pytest.mark.parametrize("value", [-1.0, 100.0, math.nan])
def test_a_wrong_density_is_one_line(value: float) -> None:
    with pytest.raises(ValueError, match="parked_per_km") as err:
        _config(parked_per_km=value)
    assert "\n" not in str(err.value)
