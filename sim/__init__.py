"""Batched driving simulator in PyTorch: road network, vehicles, traffic (IDM + MOBIL), collisions,
observations, rewards, rendering, and Gymnasium / stable-baselines3 environments.

Registered ids: `drivestack/Highway-v0`, `drivestack/Merge-v0` (single env via `gym.make`, batched via
`gym.make_vec(..., vectorization_mode="vector_entry_point")`).
"""

from __future__ import annotations

import gymnasium as gym

from sim.batched_env import BatchedDrivingEnv
from sim.config import (
    ActionConfig,
    ActionType,
    EnvConfig,
    ObservationConfig,
    ObservationType,
    RewardConfig,
    RoadConfig,
    Scenario,
    TrafficConfig,
    VehicleConfig,
    highway_config,
    merge_config,
)

ENV_IDS = ("drivestack/Highway-v0", "drivestack/Merge-v0")


def _register() -> None:
    for env_id, scenario in zip(ENV_IDS, ("highway", "merge")):
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="sim.env:DrivingEnv",
            vector_entry_point="sim.vector_env:DrivingVectorEnv",
            kwargs={"scenario": scenario},
            disable_env_checker=False,
        )


_register()

__all__ = [
    "ENV_IDS", "ActionConfig", "ActionType", "BatchedDrivingEnv", "EnvConfig", "ObservationConfig",
    "ObservationType", "RewardConfig", "RoadConfig", "Scenario", "TrafficConfig", "VehicleConfig",
    "highway_config", "merge_config",
]
