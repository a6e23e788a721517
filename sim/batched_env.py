"""The native batched environment: B driving environments stepped in one call on one device.

Tensors in, tensors out. It is the only place that holds mutable simulation state; everything it calls
is a pure function of state. Finished environments reset automatically in the same step (the
observation returned for them is the first of their next episode; the last one is in
`info["final_observation"]`), which is what both stable-baselines3 and gymnasium's SAME_STEP mode expect.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from gymnasium import spaces

from drivestack.common.checks import check_number
from drivestack.control import throttle_brake
from drivestack.sim.action import apply_meta, continuous_controls, to_action_tensor
from drivestack.sim.config import ActionType, EnvConfig
from drivestack.sim.observation import observation_space, observe
from drivestack.sim.randomness import EpisodeDraws
from drivestack.sim.reward import reward_terms, total_reward
from drivestack.sim.road import build_road
from drivestack.sim.scenario import initial_state
from drivestack.sim.state import WorldState
from drivestack.sim.traffic import idm_step
from drivestack.sim.world import advance, lqr_table, mobil_directions, sim_step

MAX_NUM_ENVS = 65_536  # the most environments one batch may hold: state and step temporaries grow with B


def action_space(config: EnvConfig) -> spaces.Space:
    """Gymnasium action space of one environment."""
    if config.action.type == ActionType.META:
        return spaces.Discrete(5)
    return spaces.Box(low=-1.0, high=1.0, shape=(2,), dtype=np.float32)


class BatchedDrivingEnv:
    """`num_envs` environments of one config on `device`, stepped together.

    Episodes have ids: after construction, `reset(seed)` or `seed(seed)` and `reset()`, environment i runs
    episode i, and each time it finishes it runs episode i + num_envs next (ids i, i + B, i + 2B, ...); a
    `reset()` without a seed starts fresh ids after the highest one so far. An episode's initial traffic is
    drawn by `sim.randomness.EpisodeDraws` from (seed, episode id) alone and its traffic decisions follow its
    own clock, so episode k of a seed plays out the same at any batch size and in any environment slot.
    `episode` holds the current ids, (B,) long; `info["episode_id"]` names the episodes that just ended.

    Args:
        config: environment config (validated here; a bad field raises ValueError naming it).
        num_envs: B, the number of environments.
        device: torch device ("cpu", "cuda", ...).
        seed: seed of the episodes' random draws (None: random).
        autoreset: reset finished environments inside `step` (True for training; the single-env
            gymnasium wrapper sets False).
        compile: fuse the simulation step with `torch.compile` (inductor): several times faster at large
            B, after a one-time compilation of 20-35 s on a 2-core CPU (needs a C++ compiler; CUDA uses
            Triton). Results agree with eager mode to float rounding, and are deterministic.
    """

    def __init__(
        self,
        config: EnvConfig | None = None,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        autoreset: bool = True,
        compile: bool = False,
    ) -> None:
        check_number("num_envs", num_envs, low=1, high=MAX_NUM_ENVS, integer=True)
        self.config = (config or EnvConfig()).validate()
        self.num_envs = num_envs
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but no CUDA GPU is available; use device='cpu'")
        self.autoreset = autoreset
        self.road = build_road(self.config.road, self.device)
        self._seed = int(seed) if seed is not None else int(torch.seed() % (2**63))
        self.single_observation_space = observation_space(self.config.observation)
        self.single_action_space = action_space(self.config)
        self.episode = torch.arange(num_envs, device=self.device)  # (B,) long: id of each environment's episode
        self._unstarted = True  # `episode` holds ids 0..B-1 of the seed, not handed out yet: reset() starts them
        self.state: WorldState = self._initial_state(self.episode)
        # MOBIL may tick on substeps j with j % _mobil_stride == 0: episodes start at policy steps, so their clocks
        # (sim_steps) are multiples of substeps there, and ticks fall every `every` steps of each clock.
        every = max(1, int(round(self.config.traffic.lane_change_interval * self.config.sim_frequency)))
        self._mobil_stride = math.gcd(self.config.substeps, every)
        self._episode_return = torch.zeros(num_envs, device=self.device)
        self._lqr = lqr_table(self.config, self.device)
        self._idm_fn, self._advance_fn = idm_step, advance
        if compile:
            # inductor's C++ backend logs a warning about CUDA_HOME on CPU-only machines: noise here
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            self._idm_fn = torch.compile(idm_step, dynamic=False)
            self._advance_fn = torch.compile(advance, dynamic=False)

    def seed(self, seed: int) -> None:
        """Reseed the episodes' draws; the next reset starts episodes 0..B-1 of `seed`."""
        self._seed = int(seed)
        self._unstarted = True

    def _initial_state(self, episodes: torch.Tensor) -> WorldState:
        return initial_state(self.config, self.road, self.num_envs, EpisodeDraws(self._seed, episodes))

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Start new episodes in all environments: ids 0..B-1 after a seed (given here or by `seed`), else the
        B ids after the highest so far. Returns (observation (B, ...), info)."""
        if seed is not None:
            self.seed(seed)
        first = 0 if self._unstarted else int(self.episode.max()) + 1
        self.episode = first + torch.arange(self.num_envs, device=self.device)
        self._unstarted = False
        self.state = self._initial_state(self.episode)
        self._episode_return.zero_()
        return self._observe(self.state), {}

    def step(
        self, action: object, on_substep: Callable[[int, WorldState], None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """One policy step (config.substeps simulation steps) in every environment.

        Args:
            action: (B,) meta-action integers or (B, 2) continuous actions; numpy or torch.
            on_substep: called as `on_substep(j, state)` after simulation step j = 0..substeps-1 of this policy
                step, before finished environments reset (what runs at the simulation rate inside a policy step:
                the closed loop's cameras and tracker). It observes; it cannot change the state.
        Returns:
            observation (B, ...), reward (B,), terminated (B,) bool, truncated (B,) bool, info: a dict of
            (B,) tensors: `rewards` (dict of the named terms), `crashed`, `off_road`, `action_invalid`,
            `speed` [m/s], `lane`, `throttle` and `brake` in [0, 1] (the ego's last acceleration split over
            its limits); and where an episode ended: `final_observation` (B, ...),
            `episode_return`, `episode_length` (policy steps), `episode_distance` [m], `episode_time` [s],
            `episode_lane_changes`, `episode_mean_abs_jerk` [m/s^3], `episode_id` (long) (valid where `done`).
        """
        cfg = self.config
        a = to_action_tensor(action, self.num_envs, cfg.action, self.device)
        state = self.state
        if cfg.action.type == ActionType.META:
            state, invalid = apply_meta(state, a, self.road, cfg)
            steer = accel = None
        else:
            steer, accel = continuous_controls(a, cfg.action)
            invalid = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        lane_changed = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self._unstarted = False
        for j in range(cfg.substeps):  # a loop over time, not over environments
            lane_before = state.vehicles.lane[:, 0]
            # each environment's MOBIL decision from its own episode clock (0 off its ticks)
            mobil = mobil_directions(state.sim_steps, cfg) if j % self._mobil_stride == 0 else 0
            state = sim_step(
                state,
                self.road,
                cfg,
                steer,
                accel,
                mobil,
                lqr=self._lqr,
                idm_fn=self._idm_fn,
                advance_fn=self._advance_fn,
            )
            lane_changed |= state.vehicles.lane[:, 0] != lane_before
            if on_substep is not None:
                on_substep(j, state)
        state = state.replace(policy_steps=state.policy_steps + 1)

        terms = reward_terms(state, lane_changed, self.road, cfg.reward)
        reward = total_reward(terms, cfg.reward)
        terminated = state.crashed | state.off_road
        truncated = (state.policy_steps >= cfg.max_policy_steps) & ~terminated
        obs = self._observe(state)
        self._episode_return += reward
        info: dict = {
            "rewards": terms,
            "crashed": state.crashed,
            "off_road": state.off_road,
            "action_invalid": invalid,
            "speed": state.vehicles.speed[:, 0],
            "lane": state.vehicles.lane[:, 0],
        }
        info["throttle"], info["brake"] = throttle_brake(
            state.vehicles.accel[:, 0], cfg.vehicle.max_accel, cfg.vehicle.max_brake, validate=False
        )
        done = terminated | truncated
        if self.autoreset and bool(done.any()):  # note: a CPU-GPU sync point, once per policy step
            info["final_observation"] = obs
            info["episode_return"] = self._episode_return.clone()
            info["episode_length"] = state.policy_steps.clone()
            info["episode_distance"] = state.distance.clone()
            info["episode_time"] = state.time.clone()
            info["episode_lane_changes"] = state.lane_changes.clone()
            info["episode_mean_abs_jerk"] = state.jerk_sum / state.sim_steps.clamp_min(1)
            info["episode_id"] = self.episode.clone()
            self.episode = torch.where(done, self.episode + self.num_envs, self.episode)  # slot i: i, i + B, ...
            fresh = self._initial_state(self.episode)
            state = state.select(done, fresh)
            obs = self._observe(state)
            self._episode_return = torch.where(done, 0.0, self._episode_return)
        self.state = state
        return obs, reward, terminated, truncated, info

    def _observe(self, state: WorldState) -> torch.Tensor:
        # the noise of episode k at policy step t is a function of (seed, k, t): the same in any batch
        return observe(state, self.road, self.config.observation, (self._seed, self.episode, state.policy_steps))

    def render(self, env_index: int = 0) -> np.ndarray:
        """Top-down RGB frame (H, W, 3) uint8 of one environment."""
        from drivestack.sim.render import render_topdown

        return render_topdown(self.road, self.state, env_index=env_index)
