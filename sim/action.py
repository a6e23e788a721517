"""Actions: how the policy's choice becomes the ego's steering and acceleration commands.

- `continuous`: an array (steer, acceleration) in [-1, 1]^2 per environment, scaled by
  `ActionConfig.steer_range` [rad] and `accel_range` [m/s^2]. Out-of-range values are clipped to
  [-1, 1]; NaN or infinite values raise a ValueError (they never reach the state).
- `meta`: an integer per environment, highway-env's DiscreteMetaAction order (`MetaAction`, an alias of
  `control.Maneuver`). Lane changes are relative to the lane the ego is currently heading for and are
  ignored (reported as `action_invalid` in info) when there is no lane on that side or the change is not
  allowed there; FASTER and SLOWER step through `ActionConfig.target_speeds` and are no-ops (also
  reported) at either end. The rules are `control.apply_maneuvers`; this module only asks the road which
  lane changes it allows and turns the speed index into the ego's set-point.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from drivestack.control import Maneuver, apply_maneuvers
from drivestack.sim.config import ActionConfig, ActionType, EnvConfig
from drivestack.sim.driver import start_lane_changes
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import WorldState

MetaAction = Maneuver  # the name planning and the benches use; highway-env's DiscreteMetaAction order


def to_action_tensor(action: object, num_envs: int, config: ActionConfig, device: torch.device) -> torch.Tensor:
    """Validate a batch of actions and return it as a tensor: (B,) long for meta, (B, 2) float for
    continuous. Raises ValueError naming the problem for wrong shapes, NaN/inf or unknown meta actions."""
    if config.type == ActionType.META:
        a = torch.as_tensor(np.asarray(action) if not isinstance(action, torch.Tensor) else action, device=device)
        a = a.reshape(-1)
        if a.numel() != num_envs:
            raise ValueError(
                f"meta action: expected {num_envs} integers (one per environment), got shape {tuple(np.shape(action))}"
            )
        if a.is_floating_point():
            if not torch.isfinite(a).all():
                raise ValueError("meta action contains NaN or inf; expected integers 0..4")
            if (a != a.round()).any():
                raise ValueError("meta action must be integers 0..4 (LANE_LEFT, IDLE, LANE_RIGHT, FASTER, SLOWER)")
        a = a.long()
        if ((a < 0) | (a > 4)).any():
            raise ValueError(
                f"meta action out of range: got {a.min().item()}..{a.max().item()}, allowed 0..4 "
                "(LANE_LEFT, IDLE, LANE_RIGHT, FASTER, SLOWER)"
            )
        return a
    a = torch.as_tensor(
        action if isinstance(action, torch.Tensor) else np.asarray(action, dtype=np.float32),
        device=device,
        dtype=torch.float32,
    )
    if a.numel() != 2 * num_envs:
        raise ValueError(
            f"continuous action: expected shape ({num_envs}, 2) as (steer, acceleration), got {tuple(a.shape)}"
        )
    a = a.reshape(num_envs, 2)
    if not torch.isfinite(a).all():
        bad = torch.nonzero(~torch.isfinite(a).all(dim=1)).flatten()[:5].tolist()
        raise ValueError(
            f"continuous action contains NaN or inf (environments {bad}); actions must be finite numbers in [-1, 1]"
        )
    return a.clamp(-1.0, 1.0)


def apply_meta(
    state: WorldState,
    action: torch.Tensor,
    road: RoadNetwork,
    env_config: EnvConfig,
) -> tuple[WorldState, torch.Tensor]:
    """Apply meta actions (B,) to the ego's target lane and speed set-point. Returns the new state and
    a (B,) bool mask of actions that were impossible and therefore ignored. A new target lane starts a
    smooth lane-change reference path (see `sim.driver`)."""
    config = env_config.action
    veh = state.vehicles
    lane, target, s = veh.lane[:, 0], veh.target_lane[:, 0], veh.s[:, 0]
    can_left = road.change_allowed(target, s, +1) & (target < road.num_lanes - 1)  # a lane left of the target
    can_right = road.change_allowed(target, s, -1) & (target > 0)
    idx = state.ego_speed_index
    new_target, new_idx, invalid = apply_maneuvers(
        action, lane, target, idx, can_left, can_right, len(config.target_speeds), validate=False
    )
    speeds = torch.tensor(config.target_speeds, device=idx.device)
    target_lane = veh.target_lane.clone()
    target_lane[:, 0] = new_target
    desired = veh.desired_speed.clone()
    desired[:, 0] = torch.where(new_idx != idx, speeds[new_idx], desired[:, 0])  # only FASTER/SLOWER move it
    vehicles = start_lane_changes(replace(veh, desired_speed=desired), target_lane, road, env_config)
    return state.replace(vehicles=vehicles, ego_speed_index=new_idx), invalid


def continuous_controls(action: torch.Tensor, config: ActionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Ego steering [rad] and acceleration [m/s^2] from continuous actions (B, 2) in [-1, 1]."""
    return action[:, 0] * config.steer_range, action[:, 1] * config.accel_range
