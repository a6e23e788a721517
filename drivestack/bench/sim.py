"""`drivestack bench sim`: simulator throughput side by side with highway-env, in one run.

Both simulators run the same scene complexity (lanes, vehicles, simulation and policy rates) under
uniformly random meta-actions, resets included. Figures are policy steps per second (what an RL
algorithm consumes), plus simulation steps and vehicle steps per second for drivestack.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from drivestack.bench.highway_env import measure_highway_sim
from drivestack.common.artifacts import check_out_file
from drivestack.common.checks import check_number
from drivestack.common.host import host_info, resolve_device, synchronize
from drivestack.report import write_json
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import EnvConfig, RoadConfig, TrafficConfig


@dataclass(frozen=True)
class BenchSimConfig:
    """Simulator throughput: drivestack versus highway-env `highway-v0` at the same scene complexity."""

    num_envs: int = 1024
    """B, environments stepped together by drivestack."""
    device: str = "cpu"
    """torch device for drivestack: cpu, cuda, cuda:<index> or auto."""
    lanes: int = 4
    """Lanes of the highway (both simulators)."""
    vehicles: int = 50
    """Vehicles per environment, the ego included (both simulators)."""
    sim_frequency: float = 15.0
    """[Hz] simulation rate (highway-env's default is 15)."""
    policy_frequency: float = 1.0
    """[Hz] decision rate (highway-env's default is 1)."""
    seconds: float = 10.0
    """[s] measuring time of each drivestack variant (after warm-up)."""
    eager: bool = True
    """Measure drivestack in eager mode."""
    compile: bool = True
    """Measure drivestack with the simulation step fused by torch.compile (compilation time reported)."""
    reference: bool = True
    """Run highway-env side by side (skipped with a note when it is not installed)."""
    reference_seconds: float = 20.0
    """[s] measuring time of highway-env."""
    seed: int = 0
    """Random seed (scenario sampling and random actions)."""
    out: Path = Path("runs/bench/sim.json")
    """JSON file the figures are written to."""

    def validate(self) -> BenchSimConfig:
        """ValueError (one line, naming the option) for a value out of range; NaN and inf never pass."""
        check_number("num_envs", self.num_envs, low=1, integer=True)
        check_number("seconds", self.seconds, low=0.0, low_open=True)
        check_number("reference_seconds", self.reference_seconds, low=0.0, low_open=True)
        if not (self.eager or self.compile):
            raise ValueError("nothing to measure: set --eager or --compile")
        resolve_device(self.device)  # an unknown name, or CUDA where there is none
        return self


def _config(cfg: BenchSimConfig) -> EnvConfig:
    return EnvConfig(
        road=RoadConfig(num_lanes=cfg.lanes),
        traffic=TrafficConfig(num_vehicles=cfg.vehicles),
        sim_frequency=cfg.sim_frequency,
        policy_frequency=cfg.policy_frequency,
    )


def measure_drivestack(
    env_config: EnvConfig, num_envs: int, device: str, seconds: float, seed: int, compile: bool = False
) -> dict[str, float]:
    """Step `num_envs` environments with random meta-actions for about `seconds` seconds.

    Returns policy steps/s, simulation (env) steps/s, vehicle steps/s, the warm-up time (which holds
    the compilation when `compile`), and the number of policy steps measured."""
    check_number("seconds", seconds, low=0.0, low_open=True)  # NaN would never end the loop below
    t0 = time.perf_counter()
    env = BatchedDrivingEnv(env_config, num_envs=num_envs, device=device, seed=seed, compile=compile)
    env.reset()
    gen = torch.Generator(device=env.device).manual_seed(seed)

    def actions() -> torch.Tensor:
        return torch.randint(0, 5, (num_envs,), generator=gen, device=env.device)

    for _ in range(2):  # warm-up: compilation, allocator, first MOBIL ticks in both directions
        env.step(actions())
    synchronize(env.device)  # time finished work only
    warmup = time.perf_counter() - t0
    steps = 0
    start = time.perf_counter()
    while True:
        env.step(actions())
        steps += 1
        if steps >= 3 and time.perf_counter() - start >= seconds:
            break
    synchronize(env.device)
    elapsed = time.perf_counter() - start
    policy_sps = num_envs * steps / elapsed
    return {
        "policy_steps_per_s": policy_sps,
        "env_steps_per_s": policy_sps * env_config.substeps,
        "vehicle_steps_per_s": policy_sps * env_config.substeps * env_config.traffic.num_vehicles,
        "warmup_s": warmup,
        "policy_steps": float(num_envs * steps),
    }


def run_bench(cfg: BenchSimConfig) -> dict:
    """Run the benchmark, print a table, write the JSON; returns the figures."""
    check_out_file(cfg.out)  # before minutes of measuring
    cfg.validate()
    device = resolve_device(cfg.device)
    env_config = _config(cfg).validate()
    results: dict = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "machine": host_info(device),
    }
    print(
        f"drivestack bench sim: {cfg.lanes} lanes, {cfg.vehicles} vehicles, {cfg.sim_frequency:g} Hz simulation, "
        f"{cfg.policy_frequency:g} Hz policy, random meta-actions, B={cfg.num_envs} on {device}"
    )
    if cfg.reference:
        print(f"  highway-env highway-v0: measuring for {cfg.reference_seconds:g} s ...", flush=True)
        ref = measure_highway_sim(
            cfg.lanes, cfg.vehicles, cfg.sim_frequency, cfg.policy_frequency, cfg.seed, cfg.reference_seconds
        )
        results["highway_env"] = ref
        if ref is None:
            print("  highway-env is not installed (pip install -e '.[dev]'): no reference figure")
    for variant, enabled in (("eager", cfg.eager), ("compiled", cfg.compile)):
        if not enabled:
            continue
        print(f"  drivestack ({variant}): measuring for {cfg.seconds:g} s ...", flush=True)
        results[f"drivestack_{variant}"] = measure_drivestack(
            env_config, cfg.num_envs, str(device), cfg.seconds, cfg.seed, compile=variant == "compiled"
        )

    ref_sps = (results.get("highway_env") or {}).get("policy_steps_per_s")
    print()
    print(f"{'simulator':<26}{'policy steps/s':>16}{'env steps/s':>14}{'vehicle steps/s':>17}{'ratio':>10}")
    if ref_sps:
        print(
            f"{'highway-env highway-v0':<26}{ref_sps:>16,.1f}{ref_sps * env_config.substeps:>14,.0f}"
            f"{ref_sps * env_config.substeps * cfg.vehicles:>17,.0f}{1.0:>9.0f}x"
        )
    for variant in ("eager", "compiled"):
        r = results.get(f"drivestack_{variant}")
        if not r:
            continue
        ratio = r["policy_steps_per_s"] / ref_sps if ref_sps else float("nan")
        r["ratio_vs_highway_env"] = ratio  # NaN without a reference: null in the JSON, "-" in the table
        ratio_text = f"{ratio:,.0f}x" if math.isfinite(ratio) else "-"
        print(
            f"{'drivestack ' + variant:<26}{r['policy_steps_per_s']:>16,.0f}{r['env_steps_per_s']:>14,.0f}"
            f"{r['vehicle_steps_per_s']:>17,.0f}{ratio_text:>10}   (warm-up {r['warmup_s']:.1f} s)"
        )
    write_json(cfg.out, results)
    print(f"\nwrote {cfg.out}")
    return results
