"""Initial states: shapes, no overlaps, traffic placement, balance, determinism, the merge ego."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from drivestack.sim.collision import boxes_overlap
from drivestack.sim.config import (
    TRUCK_MIN_LENGTH,
    EnvConfig,
    RoadConfig,
    Scenario,
    TrafficConfig,
    VehicleConfig,
    merge_config,
)
from drivestack.sim.road import RoadNetwork, build_road
from drivestack.sim.scenario import EGO_CLEARANCE, MERGE_EGO_START, initial_state, is_truck
from drivestack.sim.state import WorldState

B = 64
CONFIGS = {
    "highway": EnvConfig(),
    "merge": merge_config(),
    "curved": EnvConfig(road=RoadConfig(max_curvature=1.0 / 500.0)),
    "crowded": EnvConfig(road=RoadConfig(num_lanes=3, length=400.0)),  # 49 cars on 3 x 400 m
    # at the capacity EnvConfig.validate() allows: 2 lanes x ((200 - 2 x 30 m ego clearance) // 10.2 m) + ego = 27
    "full": EnvConfig(road=RoadConfig(num_lanes=2, length=200.0), traffic=TrafficConfig(num_vehicles=27)),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def case(request: pytest.FixtureRequest) -> tuple[EnvConfig, RoadNetwork, WorldState]:
    config = CONFIGS[request.param].validate()
    road = build_road(config.road)
    return config, road, initial_state(config, road, B, torch.Generator().manual_seed(7))


def test_shapes_and_dtypes(case) -> None:
    config, _, world = case
    N = config.traffic.num_vehicles
    world.vehicles.validate()
    for f in fields(world.vehicles):
        t = getattr(world.vehicles, f.name)
        assert t.shape == (B, N), f.name
    assert world.vehicles.lane.dtype == torch.long and world.vehicles.active.dtype == torch.bool
    assert world.vehicles.active.all()
    for name in ("time", "policy_steps", "sim_steps", "ego_speed_index", "crashed", "off_road", "distance"):
        assert getattr(world, name).shape == (B,), name
    assert not world.crashed.any() and not world.off_road.any()
    assert torch.all(world.time == 0) and torch.all(world.distance == 0)


def test_no_two_vehicles_overlap(case) -> None:
    _, road, world = case
    v = world.vehicles
    # every pair compared in the road chart of the first: (B, N, 1) against (B, 1, N)
    dx = road.delta_s(v.s[:, None, :], v.s[:, :, None])
    dy = v.d[:, None, :] - v.d[:, :, None]
    zero = torch.zeros_like(dx)
    hit = boxes_overlap(
        zero,
        zero,
        v.psi[:, :, None],
        v.length[:, :, None],
        v.width[:, :, None],
        dx,
        dy,
        v.psi[:, None, :],
        v.length[:, None, :],
        v.width[:, None, :],
    )
    hit &= ~torch.eye(v.s.shape[1], dtype=torch.bool)
    assert not hit.any(), f"{int(hit.sum()) // 2} overlapping pairs"


def test_same_lane_spacing_and_ego_clearance(case) -> None:
    config, road, world = case
    v = world.vehicles
    ds = road.delta_s(v.s[:, None, :], v.s[:, :, None]).abs()  # (B, N, N) centre distances
    same = (v.lane[:, None, :] == v.lane[:, :, None]) & ~torch.eye(v.s.shape[1], dtype=torch.bool)
    min_spacing = config.vehicle.length_range[1] + config.traffic.idm_min_gap
    closest = ds[same].min().item()
    assert closest >= min_spacing - 1e-3, f"same-lane centres {closest:.2f} m apart < {min_spacing:.2f} m"
    ego_gap = ds[:, 0, 1:][same[:, 0, 1:]]
    assert torch.all(ego_gap >= EGO_CLEARANCE - 1e-3)


def test_traffic_only_on_through_lanes(case) -> None:
    _, road, world = case
    first_through = road.num_lanes - road.num_through_lanes
    lanes = world.vehicles.lane[:, 1:]
    assert torch.all((lanes >= first_through) & (lanes < road.num_lanes))


def test_traffic_lane_counts_are_balanced(case) -> None:
    _, road, world = case
    first_through = road.num_lanes - road.num_through_lanes
    lanes = world.vehicles.lane[:, 1:] - first_through
    counts = torch.stack([(lanes == k).sum(dim=1) for k in range(road.num_through_lanes)], dim=1)
    assert torch.all(counts.max(dim=1).values - counts.min(dim=1).values <= 1)


def test_vehicles_start_on_their_lane_centres(case) -> None:
    config, road, world = case
    v = world.vehicles
    assert torch.all((v.s >= 0) & (v.s < road.length))
    off, heading, _, exists = road.lane_frame(v.lane, v.s)
    assert exists.all()
    torch.testing.assert_close(v.d, off)
    torch.testing.assert_close(v.psi, heading)
    lane, on_road = road.nearest_lane(v.s, v.d)
    assert torch.equal(lane, v.lane) and on_road.all()
    assert torch.equal(v.target_lane, v.lane)
    lo, hi = config.traffic.desired_speed_range
    assert torch.all((v.speed[:, 1:] >= lo) & (v.speed[:, 1:] <= hi))
    lo, hi = config.ego_speed_range
    assert torch.all((v.speed[:, 0] >= lo) & (v.speed[:, 0] <= hi))
    lo, hi = config.vehicle.length_range
    assert torch.all((v.length >= lo) & (v.length <= hi))
    # the ego's set-point is the meta action's target speed it starts at
    speeds = torch.tensor(config.action.target_speeds)
    torch.testing.assert_close(v.desired_speed[:, 0], speeds[world.ego_speed_index])


def test_ego_lane(case) -> None:
    config, road, world = case
    ego = world.vehicles.lane[:, 0]
    if road.scenario == Scenario.MERGE:
        assert torch.all(ego == 0)  # the on-ramp
        torch.testing.assert_close(world.vehicles.s[:, 0], torch.full((B,), config.road.ramp_start + MERGE_EGO_START))
    else:
        assert torch.all((ego >= 0) & (ego < road.num_lanes))
        assert len(ego.unique()) == road.num_lanes  # 64 draws over 3-4 lanes hit every lane


@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_seed_same_state(name: str) -> None:
    config = CONFIGS[name]
    road = build_road(config.road)
    a = initial_state(config, road, 8, torch.Generator().manual_seed(123))
    b = initial_state(config, road, 8, torch.Generator().manual_seed(123))
    c = initial_state(config, road, 8, torch.Generator().manual_seed(124))
    for f in fields(a.vehicles):
        assert torch.equal(getattr(a.vehicles, f.name), getattr(b.vehicles, f.name)), f.name
    for f in fields(a):
        if f.name != "vehicles":
            assert torch.equal(getattr(a, f.name), getattr(b, f.name)), f.name
    assert not torch.equal(a.vehicles.s, c.vehicles.s)


def test_environments_differ_within_a_batch() -> None:
    config = EnvConfig()
    world = initial_state(config, build_road(config.road), 4, torch.Generator().manual_seed(0))
    s = world.vehicles.s
    assert not torch.equal(s[0], s[1]) and not torch.equal(s[2], s[3])


def test_one_vehicle_past_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match=r"traffic\.num_vehicles.*1\.\.27"):
        EnvConfig(road=RoadConfig(num_lanes=2, length=200.0), traffic=TrafficConfig(num_vehicles=28)).validate()


def test_trucks_in_traffic() -> None:
    base = EnvConfig(road=RoadConfig(length=2000.0))
    config = EnvConfig(road=base.road, traffic=TrafficConfig(truck_fraction=0.3)).validate()
    road = build_road(config.road)
    world = initial_state(config, road, 32, torch.Generator().manual_seed(1))
    v = world.vehicles
    truck = is_truck(v.length)
    assert not truck[:, 0].any()  # never the ego
    share = truck[:, 1:].float().mean().item()
    assert 0.25 < share < 0.35, share  # 32 x 49 draws at p = 0.3
    lo, hi = config.vehicle.truck_length_range
    assert torch.all((v.length[truck] >= lo) & (v.length[truck] <= hi)) and lo >= TRUCK_MIN_LENGTH
    lo, hi = config.vehicle.truck_width_range
    assert torch.all((v.width[truck] >= lo) & (v.width[truck] <= hi))
    lo, hi = config.traffic.truck_desired_speed_range
    assert torch.all((v.desired_speed[truck] >= lo) & (v.desired_speed[truck] <= hi))
    assert torch.all(v.length[~truck] <= config.vehicle.length_range[1])
    # spacing uses the longest possible body: same-lane centres at least a truck length plus the jam gap apart
    ds = road.delta_s(v.s[:, None, :], v.s[:, :, None]).abs()
    same = (v.lane[:, None, :] == v.lane[:, :, None]) & ~torch.eye(v.s.shape[1], dtype=torch.bool)
    assert ds[same].min().item() >= config.vehicle.truck_length_range[1] + config.traffic.idm_min_gap - 1e-3
    # the capacity check counts truck slots
    with pytest.raises(ValueError, match=r"traffic\.num_vehicles"):
        EnvConfig(
            road=RoadConfig(num_lanes=2, length=200.0), traffic=TrafficConfig(num_vehicles=27, truck_fraction=0.1)
        ).validate()
    with pytest.raises(ValueError, match=r"vehicle\.length_range"):
        EnvConfig(vehicle=VehicleConfig(length_range=(4.0, 7.0))).validate()
    with pytest.raises(ValueError, match=r"vehicle\.truck_length_range"):
        EnvConfig(vehicle=VehicleConfig(truck_length_range=(5.0, 9.0))).validate()
    with pytest.raises(ValueError, match=r"traffic\.truck_fraction"):
        EnvConfig(traffic=TrafficConfig(truck_fraction=1.5)).validate()


# Sums over the initial state (seed 9, 4 envs) and the generator's next two draws, recorded with the code
# before trucks existed: truck_fraction = 0 must keep every draw and every state bit-identical.
PINNED = {
    "highway": (
        [100471.42840576172, 940.7908563613892, 375.4064041376114, 4990.122882843018, 4993.485366821289, 294],
        [0.2774495482444763, 0.8598719835281372],
    ),
    "merge": (
        [30523.4130859375, 379.6959595680237, 149.45211946964264, 1984.916524887085, 1981.4986019134521, 112],
        [0.16213321685791016, 0.8842163681983948],
    ),
}


@pytest.mark.parametrize("name", list(PINNED))
def test_no_trucks_draws_exactly_as_before(name: str) -> None:
    config = CONFIGS[name]
    assert config.traffic.truck_fraction == 0.0
    road = build_road(config.road)
    gen = torch.Generator().manual_seed(9)
    v = initial_state(config, road, 4, gen).vehicles
    sums = [
        float(v.s.double().sum()),
        float(v.length.double().sum()),
        float(v.width.double().sum()),
        float(v.desired_speed.double().sum()),
        float(v.speed.double().sum()),
        int(v.lane.sum()),
    ]
    assert sums == PINNED[name][0]
    assert torch.rand(2, generator=gen).tolist() == PINNED[name][1]
