"""The batched simulator behind the two vector-env APIs people train with.

- `DrivingVectorEnv`: a `gymnasium.vector.VectorEnv` (autoreset mode SAME_STEP: the last observation
  of a finished episode is in `infos["final_obs"]`, masked by `infos["_final_obs"]`).
- `SB3DrivingVecEnv`: a stable-baselines3 `VecEnv` (fills `terminal_observation` and
  `TimeLimit.truncated` in the infos of finished environments, with the episode's outcome: `episode_return`,
  `episode_length`, `episode_distance` [m], `episode_time` [s], `episode_lane_changes`,
  `episode_mean_abs_jerk` [m/s^3], `off_road`).

Both step all B environments in one call of `BatchedDrivingEnv.step`, on any device; only the
conversion to numpy and, for SB3, its list of per-environment info dicts touch the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env import VecEnv

from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import EnvConfig
from drivestack.sim.env import SCENARIOS


def _numpy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _numpy(v) for k, v in tree.items()}
    if isinstance(tree, torch.Tensor):
        return tree.cpu().numpy()
    return tree


def _make_core(
    scenario: str, config: EnvConfig | None, num_envs: int, device: str, seed: int | None, compile: bool
) -> BatchedDrivingEnv:
    if config is None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; allowed: {sorted(SCENARIOS)}")
        config = SCENARIOS[scenario]()
    return BatchedDrivingEnv(config, num_envs=num_envs, device=device, seed=seed, compile=compile)


class DrivingVectorEnv(VectorEnv):
    """Gymnasium vector env of `num_envs` driving environments (numpy in and out).

    `gym.make_vec("drivestack/Highway-v0", num_envs=1024, vectorization_mode="vector_entry_point",
    device="cuda")` builds one.
    """

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        scenario: str = "highway",
        config: EnvConfig | None = None,
        device: str = "cpu",
        seed: int | None = None,
        compile: bool = False,
        render_mode: str | None = None,
    ) -> None:
        self.core = _make_core(scenario, config, num_envs, device, seed, compile)
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space = self.core.single_observation_space
        self.single_action_space = self.core.single_action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    def reset(
        self,
        *,
        seed: int | list[int] | None = None,
        options: dict | None = None,
    ) -> tuple[np.ndarray, dict]:
        if isinstance(seed, list):
            seed = seed[0]
        obs, info = self.core.reset(seed=seed)
        return obs.cpu().numpy(), _numpy(info)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, reward, terminated, truncated, info = self.core.step(actions)
        done = terminated | truncated
        infos = _numpy({k: v for k, v in info.items() if k != "final_observation"})
        if "final_observation" in info:
            infos["final_obs"] = info["final_observation"].cpu().numpy()
            infos["_final_obs"] = done.cpu().numpy()
        return (
            obs.cpu().numpy(),
            reward.cpu().numpy().astype(np.float64),
            terminated.cpu().numpy(),
            truncated.cpu().numpy(),
            infos,
        )

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode != "rgb_array":
            return None
        return (self.core.render(0),)


class SB3DrivingVecEnv(VecEnv):
    """stable-baselines3 `VecEnv` of `num_envs` driving environments stepped as one batch."""

    def __init__(
        self,
        num_envs: int = 1,
        scenario: str = "highway",
        config: EnvConfig | None = None,
        device: str = "cpu",
        seed: int | None = None,
        compile: bool = False,
    ) -> None:
        self.core = _make_core(scenario, config, num_envs, device, seed, compile)
        super().__init__(num_envs, self.core.single_observation_space, self.core.single_action_space)
        self._actions: Any = None
        self.render_mode = "rgb_array"

    def reset(self) -> np.ndarray:
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        obs, _ = self.core.reset(seed=seed)
        self._reset_seeds()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs.cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        obs, reward, terminated, truncated, info = self.core.step(self._actions)
        done = (terminated | truncated).cpu().numpy()
        obs_np = obs.cpu().numpy()
        terms = {k: v.cpu().numpy() for k, v in info["rewards"].items()}
        crashed = info["crashed"].cpu().numpy()
        # SB3's API is a list of dicts, one per environment: built in one comprehension.
        names = list(terms)
        infos = [
            {"rewards": dict(zip(names, row)), "crashed": bool(c)} for row, c in zip(zip(*terms.values()), crashed)
        ]
        if done.any():
            final = info["final_observation"].cpu().numpy()
            trunc = truncated.cpu().numpy()
            ep_ret = info["episode_return"].cpu().numpy()
            ep_len = info["episode_length"].cpu().numpy()
            ep_dist = info["episode_distance"].cpu().numpy()
            ep_time = info["episode_time"].cpu().numpy()
            ep_changes = info["episode_lane_changes"].cpu().numpy()
            ep_jerk = info["episode_mean_abs_jerk"].cpu().numpy()
            off_road = info["off_road"].cpu().numpy()
            for i in np.flatnonzero(done):  # finished environments only: a few per step
                infos[i]["terminal_observation"] = final[i]
                infos[i]["TimeLimit.truncated"] = bool(trunc[i])
                infos[i]["episode_distance"] = float(ep_dist[i])
                infos[i]["episode_return"] = float(ep_ret[i])
                infos[i]["episode_length"] = int(ep_len[i])
                infos[i]["episode_time"] = float(ep_time[i])
                infos[i]["episode_lane_changes"] = int(ep_changes[i])
                infos[i]["episode_mean_abs_jerk"] = float(ep_jerk[i])
                infos[i]["off_road"] = bool(off_road[i])
        return obs_np, reward.cpu().numpy().astype(np.float32), done, infos

    def close(self) -> None:
        pass

    def _indices(self, indices: None | int | Sequence[int]) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: None | int | Sequence[int] = None) -> list[Any]:
        if attr_name == "render_mode":
            return ["rgb_array" for _ in self._indices(indices)]
        value = getattr(self.core, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: None | int | Sequence[int] = None) -> None:
        setattr(self.core, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: None | int | Sequence[int] = None, **method_kwargs: Any
    ) -> list[Any]:
        method = getattr(self.core, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(
        self,
        wrapper_class: type[gym.Wrapper],
        indices: None | int | Sequence[int] = None,
    ) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [self.core.render(0)]
