"""`drivestack bench control`: the controllers driven closed loop through scripted scenarios.

Every lateral controller drives the ego (alone on the road) in drivestack's simulator through lane
keeping on a straight and on left-hand arcs of radius 500 m and 150 m at 10, 20 and 30 m/s, a lane change
at 30 m/s, and stop-and-go speed tracking; highway-env's own vehicle controller drives the matching
maneuvers inside highway-env in the same run. One function turns every trace into the same metrics.
Lane keeping starts 0.5 m off the lane centre (the same in both simulators), so the figures include
the correction of that step as well as the steady state on the curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from drivestack.bench.highway_env import (
    Trace,
    highway_env_available,
    keep_lane_trace,
    lane_change_trace,
    stop_and_go_trace,
)
from drivestack.common.artifacts import check_out_dir
from drivestack.control import LateralController
from drivestack.report import format_number, make_run_dir, markdown_table, save_figure, write_json, write_text
from drivestack.sim.action import MetaAction
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import ActionConfig, CurveProfile, EnvConfig, RoadConfig, TrafficConfig

SETTLE_BAND = 0.1  # [m] a lane change has settled once it stays within this distance of the target centre
# Stop-and-go target speed: knots (time [s], speed [m/s]) joined by 2 m/s^2 ramps, with holds and a full stop.
# Ramps, not steps: a step asks for unbounded acceleration, so it would measure actuator authority
# (highway-env's P controller has none: 42 m/s^2 on a 25 -> 0 step), not tracking quality.
STOP_AND_GO = (
    (0.0, 20.0),
    (5.0, 20.0),
    (12.5, 5.0),
    (17.5, 5.0),
    (27.5, 25.0),
    (32.5, 25.0),
    (45.0, 0.0),
    (50.0, 0.0),
    (57.5, 15.0),
    (67.5, 15.0),
)
LANE_CHANGE_AT = 1.0  # [s]
TRANSIENT = 5.0  # [s] lane keeping's max CTE is taken after this much time (RMS covers the whole run)
KEEP_OFFSET = 0.5  # [m] lane keeping starts this far left of the lane centre: the step the controller corrects


@dataclass(frozen=True)
class ControlScenario:
    """One scripted maneuver."""

    name: str
    kind: str  # "keep", "lane_change" or "stop_and_go"
    speed: float = 20.0  # [m/s]
    radius: float | None = None  # [m] left-hand arc; None: straight
    duration: float = 20.0  # [s]


def scenarios() -> list[ControlScenario]:
    out = []
    for radius, label in ((None, "straight"), (500.0, "R500"), (150.0, "R150")):
        for speed in (10.0, 20.0, 30.0):
            out.append(ControlScenario(f"keep {label} {speed:.0f} m/s", "keep", speed, radius))
    out.append(ControlScenario("lane change 30 m/s", "lane_change", 30.0, None, 10.0))
    out.append(ControlScenario("stop-and-go", "stop_and_go", STOP_AND_GO[0][1], None, STOP_AND_GO[-1][0]))
    return out


@dataclass(frozen=True)
class BenchControlConfig:
    """Controllers closed loop in scripted scenarios, side by side with highway-env's controller."""

    controllers: tuple[LateralController, ...] = tuple(LateralController)
    """Lateral controllers to benchmark."""
    reference: bool = True
    """Also drive the matching maneuvers with highway-env's controller (needs highway-env)."""
    out: Path = Path("runs/bench/control")
    """Directory for control.json, control.md and the trace plot control.png."""


def _target_speed(t: float) -> float:
    times, speeds = zip(*STOP_AND_GO)
    return float(np.interp(t, times, speeds))


def drivestack_trace(scenario: ControlScenario, controller: LateralController) -> Trace:
    """Drive one scenario in drivestack's simulator with one lateral controller; sampled every sim step."""
    base = EnvConfig()
    road = RoadConfig(num_lanes=2, length=2000.0)
    if scenario.radius is not None:
        road = replace(road, max_curvature=1.0 / scenario.radius, curve_profile=CurveProfile.ARC)
    config = replace(
        base,
        road=road,
        traffic=TrafficConfig(num_vehicles=1),
        policy_frequency=base.sim_frequency,
        duration=scenario.duration,
        ego_speed_range=(scenario.speed, scenario.speed),
        action=ActionConfig(target_speeds=tuple(sorted({0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0}))),
        control=replace(base.control, lateral=controller),
    )
    env = BatchedDrivingEnv(config, num_envs=1, seed=0, autoreset=False)
    env.reset()
    v = env.state.vehicles
    lane = torch.zeros_like(v.lane)  # the right lane
    centre, heading, kappa, _ = env.road.lane_frame(lane, v.s)
    wheelbase = config.vehicle.wheelbase_ratio * v.length
    offset = KEEP_OFFSET if scenario.kind == "keep" else 0.0
    v = replace(
        v,
        lane=lane,
        target_lane=lane.clone(),
        d=centre + offset,
        psi=heading,
        steer=torch.atan(wheelbase * kappa),  # already driving the arc: start in steady state
        speed=torch.full_like(v.speed, scenario.speed),
        desired_speed=torch.full_like(v.speed, scenario.speed),
    )
    env.state = env.state.replace(vehicles=v)
    dt = config.dt
    rows = []
    for k in range(int(round(scenario.duration / dt)) + 1):
        t = k * dt
        v = env.state.vehicles
        target = v.target_lane if scenario.kind != "lane_change" else torch.ones_like(v.target_lane)
        centre, heading, _, _ = env.road.lane_frame(target, v.s)
        _, _, yaw = env.road.to_global(v.s, v.d, v.psi)
        rows.append(
            (
                t,
                float(v.d[0, 0] - centre[0, 0]),
                float(v.psi[0, 0] - heading[0, 0]),
                float(v.speed[0, 0]),
                float(v.desired_speed[0, 0]),
                float(yaw[0, 0]),
                float(v.steer[0, 0]),
            )
        )
        if k == int(round(scenario.duration / dt)):
            break
        action = MetaAction.IDLE
        if scenario.kind == "lane_change" and abs(t - LANE_CHANGE_AT) < 0.5 * dt:
            action = MetaAction.LANE_LEFT
        if scenario.kind == "stop_and_go":
            desired = v.desired_speed.clone()
            desired[:, 0] = _target_speed(t)
            env.state = env.state.replace(vehicles=replace(v, desired_speed=desired))
        _, _, terminated, _, info = env.step(torch.tensor([int(action)]))
        if bool(terminated[0]):
            raise RuntimeError(f"{scenario.name}: the ego left the road with {controller.value}")
    t, cte, he, speed, target, yaw, steer = (np.array(c) for c in zip(*rows))
    yaw = np.unwrap(yaw)
    yaw_rate = np.append(np.diff(yaw), yaw[-1] - yaw[-2]) / dt  # forward difference, as highway_env_control
    return Trace(
        t=t,
        cross_track=cte,
        heading_error=np.angle(np.exp(1j * he)),
        speed=speed,
        target_speed=target,
        lateral_accel=speed * yaw_rate,
        steer=steer,
    )


def trace_metrics(trace: Trace, kind: str) -> dict[str, float]:
    """The benchmark's columns from one trace (the same function for every simulator)."""
    dt = float(trace.t[1] - trace.t[0])
    jerk = np.gradient(trace.lateral_accel, dt)
    out = {
        "rms_cte": float(np.sqrt(np.mean(trace.cross_track**2))),
        # after the correction of the initial offset: the sustained worst case (the first 5 s max is the 0.5 m step)
        "max_cte": float(np.max(np.abs(trace.cross_track[trace.t >= TRANSIENT]))),
        "rms_heading": float(np.sqrt(np.mean(trace.heading_error**2))),
        "rms_speed": float(np.sqrt(np.mean((trace.speed - trace.target_speed) ** 2))),
        "peak_lat_accel": float(np.max(np.abs(trace.lateral_accel))),
        "peak_lat_jerk": float(np.max(np.abs(jerk))),
        # sustained oscillation: the largest swing of the lateral error over the last quarter of the run
        "late_cte_swing": float(np.ptp(trace.cross_track[int(0.75 * len(trace.t)) :])),
        "lc_duration": math.nan,
        "lc_overshoot": math.nan,
    }
    if kind == "lane_change":
        outside = np.abs(trace.cross_track) > SETTLE_BAND
        after = trace.t >= LANE_CHANGE_AT - 1e-9
        last_out = trace.t[outside & after]
        out["lc_duration"] = float(last_out[-1] - LANE_CHANGE_AT + dt) if len(last_out) else 0.0
        out["lc_overshoot"] = float(max(0.0, np.max(trace.cross_track[after])))  # beyond the target centre
        # lane-keeping errors are meaningless while the lane changes: report them once it has settled
        settled = trace.t >= LANE_CHANGE_AT + out["lc_duration"]
        out["rms_cte"] = float(np.sqrt(np.mean(trace.cross_track[settled] ** 2))) if settled.any() else math.nan
        out["max_cte"] = float(np.max(np.abs(trace.cross_track[settled]))) if settled.any() else math.nan
    return out


def _reference_trace(scenario: ControlScenario) -> Trace:
    if scenario.kind == "keep":
        return keep_lane_trace(scenario.speed, scenario.radius, duration=scenario.duration, initial_offset=KEEP_OFFSET)
    if scenario.kind == "lane_change":
        return lane_change_trace(scenario.speed, command_time=LANE_CHANGE_AT, duration=scenario.duration)
    # highway_env_control takes piecewise-constant set-points and holds the last one for 10 s: sample the
    # ramps at its own step so both simulators see the same target.
    dt = 1.0 / 15.0
    times = np.arange(0.0, STOP_AND_GO[-1][0] - 10.0 + 1e-9, dt)
    return stop_and_go_trace([(float(t), _target_speed(float(t))) for t in times], dt=dt)


COLUMNS = (
    ("rms_cte", "RMS CTE m", 3),
    ("max_cte", "max CTE (t>5s) m", 3),
    ("rms_heading", "RMS hdg rad", 4),
    ("rms_speed", "RMS speed m/s", 3),
    ("lc_duration", "LC settle s", 2),
    ("lc_overshoot", "LC overshoot m", 3),
    ("peak_lat_accel", "peak a_lat m/s2", 2),
    ("peak_lat_jerk", "peak jerk m/s3", 2),
    ("late_cte_swing", "late swing m", 3),
)


def _table(results: dict) -> str:
    header = ["scenario", "controller", *(label for _, label, _ in COLUMNS)]
    rows = (
        [name, controller, *(format_number(m[key], f".{digits}f") for key, _, digits in COLUMNS)]
        for name, by_controller in results.items()
        for controller, m in by_controller.items()
    )
    return markdown_table(header, rows)


def _plot(traces: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(traces)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names)), sharex=False)
    for ax, name in zip(np.atleast_1d(axes), names):
        for controller, trace in traces[name].items():
            y = trace.speed - trace.target_speed if "stop" in name else trace.cross_track
            ax.plot(trace.t, y, label=controller, lw=1.2, ls="--" if controller == "highway-env" else "-")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("speed error m/s" if "stop" in name else "CTE m", fontsize=8)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=7, ncol=5)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def run_bench(cfg: BenchControlConfig) -> dict:
    """Run every scenario for every controller (and highway-env), print and write the table and plots."""
    if not cfg.controllers:
        raise ValueError("controllers: give at least one of " + ", ".join(c.value for c in LateralController))
    check_out_dir(cfg.out)  # before the runs: a file there, or a parent that cannot be made
    use_ref = cfg.reference and highway_env_available()
    if cfg.reference and not use_ref:
        print("highway-env is not installed (pip install -e '.[dev]'): no reference rows")
    results: dict[str, dict[str, dict[str, float]]] = {}
    traces: dict[str, dict[str, Trace]] = {}
    jobs = [(sc, c) for sc in scenarios() for c in cfg.controllers]
    for sc, controller in tqdm(jobs, desc="bench control", unit="run"):
        trace = drivestack_trace(sc, LateralController(controller))
        results.setdefault(sc.name, {})[LateralController(controller).value] = trace_metrics(trace, sc.kind)
        traces.setdefault(sc.name, {})[LateralController(controller).value] = trace
    if use_ref:
        for sc in tqdm(scenarios(), desc="highway-env", unit="run"):
            trace = _reference_trace(sc)
            results[sc.name]["highway-env"] = trace_metrics(trace, sc.kind)
            traces[sc.name]["highway-env"] = trace
    table = _table(results)
    print(table)
    make_run_dir(cfg.out)
    write_json(cfg.out / "control.json", results)
    write_text(cfg.out / "control.md", table + "\n")
    _plot(traces, cfg.out / "control.png")
    print(f"\nwrote {cfg.out / 'control.json'}, {cfg.out / 'control.md'}, {cfg.out / 'control.png'}")
    return results
