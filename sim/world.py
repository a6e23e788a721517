"""The stateless simulation step: `sim_step(state, ego_steer, ego_accel, ...) -> state`.

One step at the simulation rate, for all B environments at once:
  1. traffic: IDM acceleration from a (lane, s) sort; MOBIL target lanes on decision ticks;
  2. lateral control: every vehicle steers towards its target lane (the ego too, under meta actions;
     under continuous actions the ego's steering command is given);
  3. kinematic bicycle with actuator limits;
  4. lane bookkeeping (nearest lane), ego collision and off-road checks (latched until reset).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from drivestack.control import LateralController, LQRTable
from drivestack.sim.collision import ego_collisions
from drivestack.sim.config import EnvConfig
from drivestack.sim.driver import (
    ego_speed_command,
    ego_speed_limit,
    finish_lane_changes,
    start_lane_changes,
    steering,
)
from drivestack.sim.dynamics import bicycle_step
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import WorldState
from drivestack.sim.traffic import idm_step, mobil_targets


def mobil_direction(global_step: int, config: EnvConfig) -> int:
    """MOBIL decision of this simulation step: +1 (left), -1 (right) or 0 (none).

    Decisions happen every `lane_change_interval` seconds, alternating left and right so that two
    vehicles never move into the same gap from both sides at once.
    """
    every = max(1, int(round(config.traffic.lane_change_interval * config.sim_frequency)))
    if global_step % every:
        return 0
    return 1 if (global_step // every) % 2 == 0 else -1


def mobil_directions(sim_steps: torch.Tensor, config: EnvConfig) -> torch.Tensor:
    """`mobil_direction` of each environment's own episode clock: (B,) long from its `sim_steps` (B,).

    An episode's traffic then makes the same decisions whenever it started (an environment that reset
    mid-batch is not out of phase with one that started with the batch).
    """
    every = max(1, int(round(config.traffic.lane_change_interval * config.sim_frequency)))
    left = (sim_steps // every) % 2 == 0
    return torch.where(sim_steps % every == 0, torch.where(left, 1, -1), 0)


def advance(
    state: WorldState,
    accel: torch.Tensor,
    road: RoadNetwork,
    config: EnvConfig,
    ego_steer: torch.Tensor | None = None,
    ego_accel: torch.Tensor | None = None,
    lqr: LQRTable | None = None,
) -> WorldState:
    """Everything after the traffic decisions: controls, dynamics, lanes, collisions, counters.

    accel: [m/s^2] (B, N) IDM acceleration of every vehicle (the ego's entry is replaced).
    lqr: gain table of the LQR lateral controller (when it is the configured one).
    """
    veh = state.vehicles
    steer = steering(veh, road, config, lqr)
    integral = veh.speed_integral
    if ego_steer is not None:
        steer = torch.cat([ego_steer[:, None], steer[:, 1:]], dim=1)
    if ego_accel is not None:
        ego_a = ego_accel
    else:
        ego_a, ego_integral = ego_speed_command(veh, config)
        limit = ego_speed_limit(veh, road, config)  # None on Highway-v0: the set-point alone, as highway-env
        if limit is not None:
            capped = limit < ego_a
            ego_a = torch.where(capped, limit, ego_a)
            ego_integral = torch.where(capped, veh.speed_integral[:, 0], ego_integral)  # no wind-up while capped
        integral = torch.cat([ego_integral[:, None], integral[:, 1:]], dim=1)
    accel = torch.cat([ego_a[:, None], accel[:, 1:]], dim=1)

    new = bicycle_step(veh, steer, accel, road, config.vehicle, config.dt)
    new = finish_lane_changes(replace(new, speed_integral=integral), road)
    lane, on_road = road.nearest_lane(new.s, new.d)
    target = new.target_lane
    if ego_steer is not None:  # a continuous-action ego has no target lane: it is where it is
        target = torch.cat([lane[:, :1], target[:, 1:]], dim=1)
    new = replace(new, lane=lane, target_lane=target)

    crashed = state.crashed | ego_collisions(new, road)
    off_road = state.off_road | ~on_road[:, 0]
    progress = road.delta_s(new.s[:, 0], veh.s[:, 0])
    return WorldState(
        vehicles=new,
        time=state.time + config.dt,
        policy_steps=state.policy_steps,
        sim_steps=state.sim_steps + 1,
        ego_speed_index=state.ego_speed_index,
        crashed=crashed,
        off_road=off_road,
        distance=state.distance + progress,
        jerk_sum=state.jerk_sum + (new.accel[:, 0] - veh.accel[:, 0]).abs() / config.dt,
        lane_changes=state.lane_changes + (lane[:, 0] != veh.lane[:, 0]).long(),
    )


def sim_step(
    state: WorldState,
    road: RoadNetwork,
    config: EnvConfig,
    ego_steer: torch.Tensor | None = None,
    ego_accel: torch.Tensor | None = None,
    mobil: int | torch.Tensor = 0,
    *,
    lqr: LQRTable | None = None,
    idm_fn=idm_step,
    advance_fn=advance,
) -> WorldState:
    """Advance B environments by one simulation step of `config.dt` seconds.

    Args:
        state: current state.
        road: road tables on the state's device.
        config: environment config.
        ego_steer: [rad] (B,) ego steering command; None: follow the ego's target lane.
        ego_accel: [m/s^2] (B,) ego acceleration command; None: track the ego's speed set-point.
        mobil: MOBIL decision direction of this step (see `mobil_direction`), or (B,) long, one per
            environment (see `mobil_directions`; 0 where it makes none).
        lqr: gain table of the LQR lateral controller (built by `lqr_table(config)` when None).
        idm_fn, advance_fn: the two phases, replaceable by their `torch.compile`d versions (MOBIL
            stays eager: it runs on decision ticks only, and keeping it out avoids one graph per direction).
    Returns:
        The new state (time, counters, latched crash/off-road flags updated).
    """
    veh = state.vehicles
    accel, index, acc_sorted = idm_fn(veh, road, config.traffic)
    if isinstance(mobil, torch.Tensor) or mobil != 0:
        target = mobil_targets(veh, road, index, acc_sorted, accel, mobil, config.traffic)
        state = state.replace(vehicles=start_lane_changes(veh, target, road, config))
    if lqr is None:
        lqr = lqr_table(config, road.device)
    return advance_fn(state, accel, road, config, ego_steer, ego_accel, lqr)


def lqr_table(config: EnvConfig, device: torch.device | str = "cpu") -> LQRTable | None:
    """The LQR gain table for this config's time step, or None when another controller is selected."""
    if config.control.lateral != LateralController.LQR:
        return None
    return LQRTable(config.control.lqr, config.dt).to(device)
