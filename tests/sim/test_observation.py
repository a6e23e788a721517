"""Observations on hand-built scenes: ordering, normalisation, absent vehicles, occupancy cells."""

from __future__ import annotations

import torch

from drivestack.sim.config import ObservationConfig, RoadConfig
from drivestack.sim.observation import encode_kinematics, kinematics, occupancy
from drivestack.sim.road import build_road
from drivestack.sim.state import VehicleState, WorldState


def _state(s: list[float], d: list[float], speed: list[float], active: list[bool] | None = None) -> WorldState:
    n = len(s)

    def row(values: list[float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.tensor([values], dtype=dtype)

    lane = row([round(x / 4.0) for x in d], torch.long)
    veh = VehicleState(
        s=row(s),
        d=row(d),
        psi=row([0.0] * n),
        speed=row(speed),
        steer=row([0.0] * n),
        accel=row([0.0] * n),
        length=row([5.0] * n),
        width=row([2.0] * n),
        lane=lane,
        target_lane=lane.clone(),
        desired_speed=row(speed),
        lc_start_s=row(s),
        lc_offset=row([0.0] * n),
        lc_length=row([1.0] * n),
        speed_integral=row([0.0] * n),
        active=row(active if active is not None else [True] * n, torch.bool),
    )
    z = torch.zeros(1)
    zl = torch.zeros(1, dtype=torch.long)
    return WorldState(
        vehicles=veh,
        time=z,
        policy_steps=zl,
        sim_steps=zl,
        ego_speed_index=zl,
        crashed=z.bool(),
        off_road=z.bool(),
        distance=z,
        jerk_sum=z,
        lane_changes=zl,
    )


ROAD = build_road(RoadConfig(num_lanes=3, length=1000.0))


def test_kinematics_rows_sorted_by_distance_normalised_and_padded() -> None:
    # ego at s=2 in lane 1; others: 30 m ahead in the same lane, 10 m behind in lane 0 and 5 m behind in
    # lane 2 (both across the ring seam at s=1000), 150 m ahead (out of range), and an inactive one.
    state = _state(
        s=[2.0, 32.0, 992.0, 152.0, 997.0, 3.0],
        d=[4.0, 4.0, 0.0, 8.0, 8.0, 4.0],
        speed=[20.0, 25.0, 20.0, 30.0, 10.0, 20.0],
        active=[True] * 5 + [False],
    )
    config = ObservationConfig(vehicles_count=5)
    obs = kinematics(state, ROAD, config)[0]  # (5, 5): presence, x, y, vx, vy
    expected = torch.tensor(
        [
            [1.0, 0.0, 4.0 / 12.0, 20.0 / 80.0, 0.0],  # ego: lateral position on the road, own velocity
            [1.0, -5.0 / 100.0, 4.0 / 12.0, -10.0 / 80.0, 0.0],  # 5 m behind, one lane left, 10 m/s slower
            [1.0, -10.0 / 100.0, -4.0 / 12.0, 0.0, 0.0],  # 10 m behind, one lane right
            [1.0, 30.0 / 100.0, 0.0, 5.0 / 80.0, 0.0],  # 30 m ahead, 5 m/s faster
            [0.0, 0.0, 0.0, 0.0, 0.0],  # absent: 150 m is beyond x_range and the last one is inactive
        ]
    )
    torch.testing.assert_close(obs, expected)


def test_kinematics_clips_to_unit_range_and_honours_feature_order() -> None:
    state = _state(s=[100.0, 190.0], d=[0.0, 30.0], speed=[20.0, 200.0])
    config = ObservationConfig(vehicles_count=2, features=("vx", "y", "presence"))
    obs = kinematics(state, ROAD, config)[0]
    torch.testing.assert_close(obs[1], torch.tensor([1.0, 1.0, 1.0]))  # clipped vx and y


def test_encoder_batches_like_single_scenes() -> None:
    g = torch.Generator().manual_seed(0)
    B, M = 6, 9
    args = [torch.randn(B, generator=g) for _ in range(4)] + [30 * torch.randn(B, M, generator=g) for _ in range(5)]
    present = torch.rand(B, M, generator=g) > 0.3
    config = ObservationConfig(features=("presence", "x", "y", "vx", "vy", "cos_h", "sin_h"))
    batched = encode_kinematics(*args, present, config)
    for b in range(B):
        single = encode_kinematics(*[a[b : b + 1] for a in args], present[b : b + 1], config)
        torch.testing.assert_close(batched[b : b + 1], single)


def test_occupancy_marks_cells_and_on_road() -> None:
    state = _state(s=[100.0, 112.0, 100.0], d=[4.0, 4.0, 0.0], speed=[20.0, 25.0, 20.0])
    config = ObservationConfig(grid_shape=(11, 11), grid_step=(5.0, 5.0))
    grid = occupancy(state, ROAD, config)[0]  # (4, 11, 11), ego in the centre cell (5, 5)
    presence, vx, on_road = grid[0], grid[1], grid[3]
    assert presence[7, 5] == 1.0  # 12 m ahead -> row 5 + floor(12 / 5 + 0.5) = 7 (cell centres at 0, 5, 10, ...)
    assert presence[5, 4] == 1.0  # 4 m to the right -> column 4
    assert presence.sum() == 2.0, "the ego itself is not an obstacle"
    assert torch.isclose(vx[7, 5], torch.tensor(5.0 / 80.0))
    # Road: lanes at d = 0, 4, 8 with 4 m width -> d in [-2, 10] from the ego at d=4 -> offsets -6..+6 m.
    assert on_road[5, 5] == 1.0 and on_road[5, 4] == 1.0 and on_road[5, 6] == 1.0
    assert on_road[5, 0] == 0.0 and on_road[5, 10] == 0.0
