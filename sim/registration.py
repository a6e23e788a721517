"""Gymnasium ids of the simulator, registered by `import drivestack` without importing torch."""

from __future__ import annotations

import gymnasium as gym

ENV_IDS: tuple[str, ...] = (
    "drivestack/Highway-v0",
    "drivestack/Merge-v0",
    # the same roads and traffic with the driver action space (set-points down to standstill held by adaptive cruise
    # control) and the lane features (gaps, time-to-collision per lane) in the observation
    "drivestack/HighwayDriver-v0",
    "drivestack/MergeDriver-v0",
)
SCENARIOS: tuple[str, ...] = ("highway", "merge", "highway_driver", "merge_driver")


def register_envs() -> None:
    """Register `drivestack/Highway-v0`, `drivestack/Merge-v0` and their Driver versions (idempotent).

    The entry points are strings, so nothing heavy is imported until an env is made. Batched
    vectorisation: `gym.make_vec(id, num_envs=..., vectorization_mode="vector_entry_point")`.
    """
    for env_id, scenario in zip(ENV_IDS, SCENARIOS):
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="drivestack.sim.env:DrivingEnv",
            vector_entry_point="drivestack.sim.vector_env:DrivingVectorEnv",
            kwargs={"scenario": scenario},
            disable_env_checker=False,
        )
