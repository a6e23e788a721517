"""`drivestack bench train`: stable-baselines3 PPO training throughput, drivestack versus highway-env.

Both sides run SB3 PPO end to end (rollouts and updates) for the same wall-clock budget, one after the
other in one command, and report environment steps per second:
- highway-env: `highway-fast-v0` with the setup of its own SB3 script (scripts/sb3_highway_ppo.py):
  6 SubprocVecEnv workers, n_steps 128, batch 64, 10 epochs, lr 5e-4, gamma 0.8, [256, 256] networks;
- drivestack: `drivestack/Highway-v0` on the native batched VecEnv with the PPO defaults of
  `drivestack train policy` (the settings a user gets), eager and (`--compile`) with the simulator step fused
  by torch.compile (`train policy --compile`).

Each side's time is split into rollout (collecting n_steps x num_envs samples: environment steps, policy
forward passes, buffer) and update (the PPO epochs over the rollout), so the figures say where the time goes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from drivestack.bench.highway_env import measure_highway_train
from drivestack.common.host import using_threads
from drivestack.report import write_json


@dataclass(frozen=True)
class BenchTrainConfig:
    """SB3 PPO training throughput (env steps/s including updates) on drivestack and on highway-env."""

    seconds: float = 60.0
    """[s] training time measured on each side (after a short warm-up)."""
    reference: bool = True
    """Also train on highway-env highway-fast-v0 (needs highway-env)."""
    reference_workers: int = 6
    """SubprocVecEnv workers for highway-env (its script uses 6)."""
    num_envs: int | None = None
    """drivestack environments (None: the `drivestack train policy` PPO default)."""
    compile: bool = True
    """Also measure drivestack with the compiled simulator step (`train policy --compile`; compilation, 30-45 s on
    a 2-core CPU, is not counted)."""
    device: str = "cpu"
    """torch device of the drivestack side (simulator and networks)."""
    seed: int = 0
    """Random seed."""
    out: Path = Path("runs/bench/train.json")
    """JSON file the figures are written to."""


class _StopAfter(BaseCallback):
    """Stops training `seconds` after the first rollout began, counting the env steps done by then and splitting
    the time into rollouts (collect_rollouts) and updates (between a rollout's end and the next one's start)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.start = 0.0
        self.start_steps = 0
        self.rollout_s = 0.0
        self.update_s = 0.0
        self._mark = 0.0
        self._rollout_end: float | None = None

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()
        self.start_steps = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        now = time.perf_counter()
        if self._rollout_end is not None:
            self.update_s += now - self._rollout_end
        self._mark = now

    def _on_rollout_end(self) -> None:
        now = time.perf_counter()
        self.rollout_s += now - self._mark
        self._rollout_end = now

    def _on_step(self) -> bool:
        return time.perf_counter() - self.start < self.seconds

    def rate(self) -> tuple[float, int, float]:
        elapsed = time.perf_counter() - self.start
        steps = self.model.num_timesteps - self.start_steps
        return steps / elapsed, steps, elapsed


def _measure(model: PPO, seconds: float) -> dict[str, float]:
    # warm-up: one short learn call (process start-up, first allocations) not counted
    model.learn(total_timesteps=1, reset_num_timesteps=True)
    stop = _StopAfter(seconds)
    model.learn(total_timesteps=10**12, callback=stop, reset_num_timesteps=False)
    sps, steps, elapsed = stop.rate()
    # training stops inside a rollout (the callback's on_step), which never reaches its on_rollout_end: the rest
    # of the time is that last, partial rollout
    rollout_s = elapsed - stop.update_s
    return {
        "env_steps_per_s": sps,
        "env_steps": float(steps),
        "seconds": elapsed,
        "rollout_s": rollout_s,
        "update_s": stop.update_s,
        "update_fraction": stop.update_s / max(elapsed, 1e-9),
    }


def measure_drivestack(cfg: BenchTrainConfig, compile: bool = False) -> dict[str, float]:
    """SB3 PPO on drivestack/Highway-v0 with the `drivestack train policy` defaults (and `--compile`)."""
    from drivestack.planning.train import TrainPolicyConfig, build_model, make_train_env

    train_cfg = TrainPolicyConfig(seed=cfg.seed, device=cfg.device, num_envs=cfg.num_envs, compile=compile)
    with using_threads(train_cfg.threads):  # what `drivestack train policy` does (1 thread by default)
        env = make_train_env(train_cfg)
        model = build_model(train_cfg, env)
        result = _measure(model, cfg.seconds)
    result["num_envs"] = float(env.num_envs)
    return result


def run_bench(cfg: BenchTrainConfig) -> dict:
    if cfg.seconds <= 0:
        raise ValueError(f"seconds={cfg.seconds}; allowed: > 0")
    torch.manual_seed(cfg.seed)
    results: dict = {"config": {k: str(v) for k, v in cfg.__dict__.items()}}
    print(f"drivestack bench train: SB3 PPO, {cfg.seconds:g} s of training on each side, env steps/s incl. updates")
    if cfg.reference:
        print(f"  highway-env highway-fast-v0 ({cfg.reference_workers} SubprocVecEnv workers) ...", flush=True)
        results["highway_env"] = measure_highway_train(cfg.seconds, cfg.reference_workers, cfg.seed, _measure)
        if results["highway_env"] is None:
            print("  highway-env is not installed (pip install -e '.[dev]'): no reference figure")
    print(f"  drivestack drivestack/Highway-v0 (batched VecEnv on {cfg.device}) ...", flush=True)
    results["drivestack"] = measure_drivestack(cfg)
    if cfg.compile:
        print(f"  drivestack drivestack/Highway-v0, compiled step (batched VecEnv on {cfg.device}) ...", flush=True)
        results["drivestack_compiled"] = measure_drivestack(cfg, compile=True)
    ref = (results.get("highway_env") or {}).get("env_steps_per_s")
    print()
    print(f"{'training on':<44}{'env steps/s':>12}{'ratio':>8}{'rollout':>10}{'update':>10}")
    rows = [("highway-env highway-fast-v0 (6 procs)", results.get("highway_env"))]
    n = int(results["drivestack"]["num_envs"])
    rows += [(f"drivestack Highway-v0 ({n} envs)", results["drivestack"])]
    rows += [(f"drivestack Highway-v0 ({n} envs, --compile)", results.get("drivestack_compiled"))]
    for name, r in rows:
        if not r:
            continue
        sps, elapsed = r["env_steps_per_s"], max(r["seconds"], 1e-9)
        ratio = sps / ref if ref else float("nan")
        split = (
            f"{100 * r['rollout_s'] / elapsed:>9.0f}%{100 * r['update_s'] / elapsed:>9.0f}%" if "rollout_s" in r else ""
        )
        print(f"{name:<44}{sps:>12,.1f}{ratio:>7,.0f}x{split}")
    results["ratio_vs_highway_env"] = results["drivestack"]["env_steps_per_s"] / ref if ref else float("nan")
    if "drivestack_compiled" in results:
        compiled = results["drivestack_compiled"]["env_steps_per_s"]
        results["ratio_compiled_vs_highway_env"] = compiled / ref if ref else float("nan")
    write_json(cfg.out, results)
    print(f"\nwrote {cfg.out}")
    return results
