"""Batched simulator state: typed dataclasses of tensors, B environments by N vehicles.

Vehicle poses are held in road coordinates (arc length s on the ring, lateral offset d, heading psi
relative to the reference line). That makes every lane query an O(1) table lookup and lets a
vehicle leave the section's end and re-enter at its start without a jump in the traffic logic;
`RoadNetwork.to_global` turns them into global poses (x, y, yaw) exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


def _map(obj, fn):
    return type(obj)(**{f.name: fn(f.name, getattr(obj, f.name)) for f in fields(obj)})


@dataclass(frozen=True)
class VehicleState:
    """Vehicles of B environments; tensors shaped (B, N). Index 0 is the ego."""

    s: torch.Tensor  # [m] arc length along the reference line, wrapped to [0, road length)
    d: torch.Tensor  # [m] lateral offset from the reference line, positive to the left
    psi: torch.Tensor  # [rad] heading relative to the reference line's heading at s
    speed: torch.Tensor  # [m/s] >= 0
    steer: torch.Tensor  # [rad] front-wheel steering angle
    accel: torch.Tensor  # [m/s^2] acceleration applied in the last step
    length: torch.Tensor  # [m] body length
    width: torch.Tensor  # [m] body width
    lane: torch.Tensor  # long: lane whose centre is nearest
    target_lane: torch.Tensor  # long: lane the vehicle is steering to (== lane when keeping lane)
    desired_speed: torch.Tensor  # [m/s] IDM free-road speed (traffic) / speed set-point (ego)
    lc_start_s: torch.Tensor  # [m] arc length where the current lane-change reference path starts
    lc_offset: torch.Tensor  # [m] offset from the target lane centre when it started (0: keeping lane)
    lc_length: torch.Tensor  # [m] length of the lane-change reference path
    speed_integral: torch.Tensor  # [m/s^2] integral term of the ego's PID speed controller
    active: torch.Tensor  # bool; False for padding

    @property
    def shape(self) -> torch.Size:
        return self.s.shape

    def validate(self) -> None:
        """Check shapes, dtypes and finiteness (internal invariant; raises AssertionError)."""
        for f in fields(self):
            t = getattr(self, f.name)
            assert t.shape == self.s.shape, f"{f.name}: shape {tuple(t.shape)} != {tuple(self.s.shape)}"
            if t.is_floating_point():
                assert torch.isfinite(t).all(), f"{f.name} has non-finite values"
        assert (self.speed >= 0).all(), "negative speed"


@dataclass(frozen=True)
class WorldState:
    """Everything that evolves in B environments. Per-environment tensors are shaped (B,)."""

    vehicles: VehicleState
    time: torch.Tensor  # [s] simulated time since the episode started
    policy_steps: torch.Tensor  # long: decisions taken in this episode
    sim_steps: torch.Tensor  # long: simulation steps taken in this episode (drives MOBIL ticks)
    ego_speed_index: torch.Tensor  # long: index into ActionConfig.target_speeds (meta actions)
    crashed: torch.Tensor  # bool: the ego collided (latched until reset)
    off_road: torch.Tensor  # bool: the ego left the drivable area (latched until reset)
    distance: torch.Tensor  # [m] distance the ego travelled along the road this episode
    jerk_sum: torch.Tensor  # [m/s^3] sum over simulation steps of the ego's |d accel / dt|
    lane_changes: torch.Tensor  # long: times the ego's lane changed this episode

    @property
    def num_envs(self) -> int:
        return int(self.time.shape[0])

    def select(self, mask: torch.Tensor, other: WorldState) -> WorldState:
        """Take `other` where mask [B] is True, self elsewhere (used to reset finished envs)."""

        def pick(_name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            m = mask.view(-1, *([1] * (a.dim() - 1)))
            return torch.where(m, b, a)

        veh = type(self.vehicles)(
            **{
                f.name: pick(f.name, getattr(self.vehicles, f.name), getattr(other.vehicles, f.name))
                for f in fields(self.vehicles)
            }
        )
        rest = {
            f.name: pick(f.name, getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)
            if f.name != "vehicles"
        }
        return WorldState(vehicles=veh, **rest)

    def index(self, idx: torch.Tensor | slice) -> WorldState:
        """The environments at `idx` (a view for slices)."""
        veh = _map(self.vehicles, lambda _n, t: t[idx])
        rest = {f.name: getattr(self, f.name)[idx] for f in fields(self) if f.name != "vehicles"}
        return WorldState(vehicles=veh, **rest)

    def to(self, device: torch.device | str) -> WorldState:
        veh = _map(self.vehicles, lambda _n, t: t.to(device))
        rest = {f.name: getattr(self, f.name).to(device) for f in fields(self) if f.name != "vehicles"}
        return WorldState(vehicles=veh, **rest)

    def replace(self, **changes: object) -> WorldState:
        return replace(self, **changes)


def concat(states: list[WorldState]) -> WorldState:
    """Stack environments of several states along B (used by tests: batched == loop of singles)."""
    first = states[0]
    veh = type(first.vehicles)(
        **{f.name: torch.cat([getattr(s.vehicles, f.name) for s in states]) for f in fields(first.vehicles)}
    )
    rest = {f.name: torch.cat([getattr(s, f.name) for s in states]) for f in fields(first) if f.name != "vehicles"}
    return WorldState(vehicles=veh, **rest)
