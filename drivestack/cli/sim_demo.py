"""`drivestack sim demo`: simulate one episode, write it as an MP4, and print the simulator's throughput."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from drivestack.bench.sim import measure_drivestack
from drivestack.common.artifacts import check_out_file
from drivestack.common.checks import check_number, require
from drivestack.common.host import resolve_device
from drivestack.planning.policy import make_policy
from drivestack.planning.scene import scene_from_world
from drivestack.release import resolve_policy_spec
from drivestack.sim.action import MetaAction
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.env import SCENARIOS
from drivestack.sim.video import write_mp4


@dataclass(frozen=True)
class DemoConfig:
    """Simulate one episode with a simple ego policy, write an MP4, then measure batched throughput."""

    scenario: str = "highway"
    """Scenario: highway or merge."""
    policy: str = "random"
    """Ego policy of the demo episode: rule, random, idle, release:<name>, a training run or checkpoint directory."""
    seconds: float = 30.0
    """[s] episode length of the demo (it ends earlier on a collision)."""
    seed: int = 0
    """Random seed."""
    out: Path = Path("runs/demo/episode.mp4")
    """Where the MP4 is written (a .mp4 file; its folder is created)."""
    throughput_envs: int = 1024
    """B of the throughput measurement printed at the end (0 skips it)."""
    throughput_seconds: float = 5.0
    """[s] length of the throughput measurement."""
    device: str = "cpu"
    """torch device of the throughput measurement: cpu, cuda, cuda:<index> or auto."""

    def validate(self) -> DemoConfig:
        """ValueError (one line, naming the option) for a value out of range; NaN and inf never pass."""
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; allowed: {', '.join(sorted(SCENARIOS))}")
        check_number("seconds", self.seconds, low=0.0, low_open=True)
        check_number("throughput_envs", self.throughput_envs, low=0, integer=True)
        check_number("throughput_seconds", self.throughput_seconds, low=0.0, low_open=True)
        resolve_device(self.device)  # an unknown name, or CUDA where there is none
        require(self.out.suffix.lower() == ".mp4", "out", "a file name ending in .mp4", str(self.out))
        return self


def run_demo(cfg: DemoConfig) -> dict:
    """Simulate and write the episode, then measure throughput; returns the video path, frames and figures."""
    check_out_file(cfg.out)  # before the episode is simulated: a folder there, or a parent that cannot be made
    cfg.validate()
    device = resolve_device(cfg.device)
    base = SCENARIOS[cfg.scenario]()
    # Render every simulation step: decisions every 1/policy_frequency s, IDLE in between.
    hold = base.substeps
    env_config = replace(base, policy_frequency=base.sim_frequency, duration=cfg.seconds)
    policy = make_policy(resolve_policy_spec(cfg.policy), base, seed=cfg.seed)
    env = BatchedDrivingEnv(env_config, num_envs=1, seed=cfg.seed, autoreset=False)
    env.reset()
    frames = [env.render(0)]
    total_reward = 0.0
    idle = torch.full((1,), int(MetaAction.IDLE), dtype=torch.long)
    info: dict = {}
    steps = env_config.max_policy_steps
    for t in tqdm(range(steps), desc=f"{cfg.scenario} episode", unit="step", leave=False):
        # a meta-action is a decision, not a held command: IDLE between decisions
        action = policy.act(scene_from_world(env.state, env.road)) if t % hold == 0 else idle
        _, reward, terminated, truncated, info = env.step(action)
        total_reward += float(reward[0])
        frames.append(env.render(0))
        if bool(terminated[0] | truncated[0]):
            break
    path = write_mp4(frames, cfg.out, fps=int(round(env_config.sim_frequency)))
    state = env.state
    outcome = "collision" if bool(state.crashed[0]) else "off road" if bool(state.off_road[0]) else "no collision"
    print(
        f"episode: {cfg.scenario}, {policy.name} policy, {float(state.time[0]):.1f} s, {outcome}, "
        f"{float(state.distance[0]):.0f} m driven, return {total_reward:.2f}"
    )
    print(f"video: {path} ({len(frames)} frames)")
    result = {"video": str(path), "frames": len(frames), "outcome": outcome}
    if cfg.throughput_envs > 0:
        r = measure_drivestack(base, cfg.throughput_envs, str(device), cfg.throughput_seconds, cfg.seed)
        print(
            f"throughput: {r['policy_steps_per_s']:,.0f} policy steps/s, {r['env_steps_per_s']:,.0f} env steps/s "
            f"({cfg.throughput_envs} {cfg.scenario} envs x {base.traffic.num_vehicles} vehicles, "
            f"{base.sim_frequency:g} Hz simulation, {base.policy_frequency:g} Hz policy, {device}, eager)"
        )
        result.update(r)
    return result
