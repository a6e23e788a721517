"""Batched driving simulator in PyTorch: road network, vehicles, traffic (IDM + MOBIL), collisions,
observations, rewards, rendering, and Gymnasium / stable-baselines3 environments.

Registered ids: `drivestack/Highway-v0`, `drivestack/Merge-v0` and their driver-action versions
`drivestack/HighwayDriver-v0`, `drivestack/MergeDriver-v0` (single env via `gym.make`, batched via
`gym.make_vec(..., vectorization_mode="vector_entry_point")`).
"""

from __future__ import annotations

from typing import Any

from drivestack.sim.registration import ENV_IDS, register_envs

# Heavy modules (torch) load on first attribute access: `import drivestack.sim` stays cheap.
_EXPORTS = {
    "BatchedDrivingEnv": "drivestack.sim.batched_env",
    **{
        name: "drivestack.sim.config"
        for name in (
            "ActionConfig",
            "ActionType",
            "DRIVER_SPEEDS",
            "EnvConfig",
            "NoiseConfig",
            "ObservationConfig",
            "ObservationType",
            "RewardConfig",
            "RoadConfig",
            "Scenario",
            "SpeedControl",
            "TrafficConfig",
            "VehicleConfig",
            "highway_config",
            "highway_driver_config",
            "merge_config",
            "merge_driver_config",
        )
    },
}

register_envs()

__all__ = ["ENV_IDS", "register_envs", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'drivestack.sim' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
