"""Shared fixtures and helpers of the simulator tests: the standard roads and hand-built vehicle states."""

from __future__ import annotations

import pytest
import torch

from drivestack.sim.camera_render import VehicleAppearance, vehicle_appearance
from drivestack.sim.config import EnvConfig, RoadConfig, TrafficConfig, merge_config
from drivestack.sim.road import RoadNetwork, build_road
from drivestack.sim.scenario import initial_state
from drivestack.sim.state import VehicleState, WorldState

CURVATURE = 1.0 / 500.0  # [1/m] peak curvature of the gently curved test highway

_DEFAULTS: dict[str, object] = dict(
    s=0.0,
    d=0.0,
    psi=0.0,
    speed=0.0,
    steer=0.0,
    accel=0.0,
    length=4.5,
    width=1.8,
    lane=0,
    target_lane=None,
    desired_speed=30.0,
    lc_start_s=0.0,
    lc_offset=0.0,
    lc_length=1.0,
    speed_integral=0.0,
    active=True,
)
_LONG = ("lane", "target_lane")


def _make_vehicles(B: int | None = None, N: int | None = None, **values: object) -> VehicleState:
    """A VehicleState from per-field values (scalars, lists or tensors), broadcast to (B, N).

    A 1-D value is one environment's row (N vehicles). Fields left out take `_DEFAULTS`;
    `target_lane` defaults to `lane` (keeping lane). B and N, when given, force the shape.
    """
    unknown = set(values) - set(_DEFAULTS)
    assert not unknown, f"unknown fields {unknown}"
    fields = {**_DEFAULTS, **values}
    if fields["target_lane"] is None:
        fields["target_lane"] = fields["lane"]
    tensors: dict[str, torch.Tensor] = {}
    for name, value in fields.items():
        dtype = torch.bool if name == "active" else torch.long if name in _LONG else torch.float32
        t = torch.as_tensor(value).to(dtype)
        if t.dim() == 1:
            t = t.unsqueeze(0)
        assert t.dim() in (0, 2), f"{name}: expected a scalar, a row or a (B, N) table"
        tensors[name] = t
    shape = torch.broadcast_shapes(*(t.shape for t in tensors.values()))
    if B is not None or N is not None:
        shape = torch.broadcast_shapes(shape, (B or 1, N or 1))
        shape = torch.Size((B or shape[0], N or shape[1]))
    if len(shape) < 2:
        shape = torch.Size((1, 1))
    return VehicleState(**{k: t.expand(shape).clone() for k, t in tensors.items()})


@pytest.fixture(scope="session")
def highway_road() -> RoadNetwork:
    """Default straight highway: 4 lanes of 4 m, 1000 m ring."""
    return build_road(RoadConfig())


@pytest.fixture(scope="session")
def curved_road() -> RoadNetwork:
    """Default highway with a sinusoidal curvature profile peaking at 1/500 1/m."""
    return build_road(RoadConfig(max_curvature=CURVATURE))


@pytest.fixture(scope="session")
def merge_road() -> RoadNetwork:
    """Default merge road: on-ramp (lane 0) plus 2 through lanes, 800 m ring."""
    return build_road(merge_config().road)


@pytest.fixture(scope="session")
def make_vehicles():
    """The hand-built state helper `_make_vehicles(B=None, N=None, **fields) -> VehicleState`."""
    return _make_vehicles


@pytest.fixture(scope="module")
def traffic() -> tuple[RoadNetwork, WorldState, VehicleAppearance]:
    """Three environments of gently curved highway traffic with trucks, and their vehicles' looks (camera tests)."""
    config = EnvConfig(road=RoadConfig(max_curvature=1 / 500), traffic=TrafficConfig(truck_fraction=0.2)).validate()
    road = build_road(config.road)
    gen = torch.Generator().manual_seed(3)
    world = initial_state(config, road, 3, gen)
    return road, world, vehicle_appearance(world, gen)


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a test module (bit-for-bit render comparisons), the previous count restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
