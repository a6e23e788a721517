"""Reward as named terms. Each term is a number in [0, 1] reported in `info["rewards"]` (the meaning
highway-env gives `info["rewards"]`); the reward is their weighted sum, optionally rescaled to [0, 1]."""

from __future__ import annotations

import torch

from drivestack.sim.config import RewardConfig
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import WorldState

TERMS = ("speed", "collision", "right_lane", "lane_change", "off_road")


def reward_terms(
    state: WorldState,
    lane_changed: torch.Tensor,
    road: RoadNetwork,
    config: RewardConfig,
) -> dict[str, torch.Tensor]:
    """Unweighted terms (B,) at the end of a policy step.

    speed: forward speed mapped linearly from speed_range to [0, 1] (clipped); collision and off_road:
    1 when the ego collided / left the road; right_lane: 1 in the rightmost through lane (the on-ramp
    counts as rightmost), 0 in the leftmost; lane_change: 1 when the ego's lane changed in the step.
    """
    veh = state.vehicles
    lo, hi = config.speed_range
    forward = veh.speed[:, 0] * torch.cos(veh.psi[:, 0])
    rank = road.lane_rank[veh.lane[:, 0]].float()
    lanes = max(road.num_through_lanes - 1, 1)
    return {
        "speed": ((forward - lo) / (hi - lo)).clamp(0.0, 1.0),
        "collision": state.crashed.float(),
        "right_lane": 1.0 - rank / lanes if road.num_through_lanes > 1 else torch.ones_like(rank),
        "lane_change": lane_changed.float(),
        "off_road": state.off_road.float(),
    }


def total_reward(terms: dict[str, torch.Tensor], config: RewardConfig) -> torch.Tensor:
    """Weighted sum of the terms; with `normalize`, mapped linearly onto [0, 1] (see below) and clipped."""
    weights = {name: getattr(config, name) for name in TERMS}
    reward = sum(weights[name] * terms[name] for name in TERMS)
    if config.normalize:
        # Collision and off-road both end the episode, so at most one of them counts in practice:
        # the floor is the worse of the two plus any other negative weight (highway-env's mapping of
        # [collision_reward, high_speed_reward + right_lane_reward] onto [0, 1]).
        terminal = min(weights["collision"], weights["off_road"], 0.0)
        others = [w for name, w in weights.items() if name not in ("collision", "off_road")]
        lo = terminal + sum(min(w, 0.0) for w in others)
        hi = sum(max(w, 0.0) for w in weights.values())
        if hi > lo:
            reward = ((reward - lo) / (hi - lo)).clamp(0.0, 1.0)
    return reward
