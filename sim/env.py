"""Single-environment Gymnasium API over the batched simulator (B = 1, CPU by default)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import EnvConfig, highway_config, highway_driver_config, merge_config, merge_driver_config

SCENARIOS = {
    "highway": highway_config,
    "merge": merge_config,
    "highway_driver": highway_driver_config,  # drivestack/HighwayDriver-v0
    "merge_driver": merge_driver_config,  # drivestack/MergeDriver-v0
}


def _to_python(info: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = _to_python(value)
        elif isinstance(value, torch.Tensor):
            out[key] = value[0].item() if value.dim() == 1 else value[0].cpu().numpy()
        else:
            out[key] = value
    return out


class DrivingEnv(gym.Env):
    """`drivestack/Highway-v0`, `Merge-v0`, `HighwayDriver-v0` and `MergeDriver-v0`: one environment, numpy in/out.

    Args:
        scenario: "highway", "merge", "highway_driver" or "merge_driver" (selects the default config of
            Highway-v0, Merge-v0, HighwayDriver-v0, MergeDriver-v0) when `config` is None.
        config: a full EnvConfig (overrides `scenario`).
        render_mode: None or "rgb_array" (top-down frame).
        device: torch device of the underlying batched simulator.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        scenario: str = "highway",
        config: EnvConfig | None = None,
        render_mode: str | None = None,
        device: str = "cpu",
    ) -> None:
        if config is None:
            if scenario not in SCENARIOS:
                raise ValueError(f"unknown scenario {scenario!r}; allowed: {sorted(SCENARIOS)}")
            config = SCENARIOS[scenario]()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}; allowed: None, 'rgb_array'")
        self.render_mode = render_mode
        self.core = BatchedDrivingEnv(config, num_envs=1, device=device, seed=0, autoreset=False)
        self.config = self.core.config
        self.observation_space = self.core.single_observation_space
        self.action_space = self.core.single_action_space
        self.metadata = {**self.metadata, "render_fps": int(round(self.config.policy_frequency))}
        self._seeded = False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is None and not self._seeded:
            seed = int(self.np_random.integers(2**31))
        self._seeded = True
        obs, _ = self.core.reset(seed=seed)
        return obs[0].cpu().numpy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.core.step(np.asarray(action)[None])
        return (obs[0].cpu().numpy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), _to_python(info))

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.core.render(0)
