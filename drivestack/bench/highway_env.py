"""highway-env, the reference every benchmark measures drivestack against: the one place that imports it.

- `measure_highway_sim`: `highway-v0` policy steps/s at a given scene complexity (`drivestack bench sim`).
- `measure_highway_train`: SB3 PPO on `highway-fast-v0` with highway-env's own script settings, env steps/s
  including updates (`drivestack bench train`).
- `run_*` traces: highway-env's own vehicle controller driven closed loop on scripted maneuvers
  (`drivestack bench control`).
`highway_env_available()` is the one check; without highway-env each bench skips its reference with a note.

The controller traces compare drivestack's controllers with highway-env's
`highway_env.vehicle.controller.ControlledVehicle` (the `steering_control` cascade: lateral P ->
heading reference -> heading P -> steering, and the `speed_control` P controller, as used by
`MDPVehicle` / `IDMVehicle`). This module only runs highway-env and returns its time series; all
metrics are computed from `Trace`s elsewhere, by the same function for both stacks.

The road and vehicle are built directly (no gym env): a `RoadNetwork` with the lanes, a `Road`, and a
`ControlledVehicle` stepped with `vehicle.act(action_or_None); vehicle.step(dt)` at highway-env's
default simulation rate of 15 Hz.

Frames. highway-env's lateral axis points to the RIGHT of the direction of travel: `StraightLane`'s
lateral unit vector is the direction rotated by +90 deg in (x, y), lanes of `straight_road_network`
sit at y = index * width, and `act("LANE_LEFT")` DEcreases the lane index, i.e. moves to smaller y.
Its heading therefore grows when turning right. drivestack uses the nuScenes ego convention (x
forward, y left, yaw counter-clockwise), so every lateral quantity here is negated on the way out:
cross_track = -lateral, heading_error = -(heading - lane heading), steer = -steering, and the yaw
rate is minus the rate of highway-env's heading. Positive values in a `Trace` all mean "to the left".

highway_env is imported lazily, inside functions, so that this module imports without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from highway_env.road.lane import AbstractLane
    from highway_env.vehicle.controller import ControlledVehicle

SIM_DT = 1.0 / 15.0  # [s] highway-env's default simulation step (simulation_frequency = 15 Hz)
LANE_MARGIN = 100.0  # [m] extra lane length beyond the distance the run can cover
STOP_AND_GO_TAIL = 10.0  # [s] a stop-and-go run ends this long after the last profile switch
HIGHWAY_ENV_MAX_SPEED = 40.0  # [m/s] highway-env's Vehicle.MAX_SPEED; targets above it cannot be reached


@dataclass(frozen=True)
class Trace:
    """Time series of one closed-loop run; every array is shaped (T,) and sampled every dt from t = 0.

    Sample k holds the state at t[k] and the commands computed from it (applied over [t[k], t[k] + dt]).
    Lateral quantities follow drivestack's convention: positive = to the left of the direction of travel.
    """

    t: np.ndarray  # [s] (T,) sample times, t[k] = k * dt
    cross_track: np.ndarray  # [m] (T,) signed offset from the reference lane centre; positive = left of it
    heading_error: np.ndarray  # [rad] (T,) vehicle heading minus lane heading, wrapped to [-pi, pi]; positive = left
    speed: np.ndarray  # [m/s] (T,)
    target_speed: np.ndarray  # [m/s] (T,) speed the controller tracks at t[k]
    lateral_accel: np.ndarray  # [m/s^2] (T,) speed * yaw rate; positive = turning left
    steer: np.ndarray  # [rad] (T,) front-wheel steering command (after highway-env's clipping); positive = left

    def validate(self) -> None:
        """Check that all arrays are 1-D, finite and of the same length (internal invariant)."""
        num_samples = self.t.shape[0]
        for name in ("t", "cross_track", "heading_error", "speed", "target_speed", "lateral_accel", "steer"):
            value = getattr(self, name)
            assert value.shape == (num_samples,), f"{name} has shape {value.shape}, expected ({num_samples},)"
            assert np.all(np.isfinite(value)), f"{name} has non-finite values"


def highway_env_available() -> bool:
    """Whether highway-env can be imported (the traces below need it)."""
    try:
        import highway_env  # noqa: F401
    except ImportError:
        return False
    return True


def measure_highway_sim(
    lanes: int, vehicles: int, sim_frequency: float, policy_frequency: float, seed: int, seconds: float
) -> dict[str, float] | None:
    """highway-env `highway-v0` policy steps/s under random meta-actions (resets included).

    Args:
        lanes: number of lanes; vehicles: vehicles including the ego; sim_frequency, policy_frequency: [Hz];
        seed: seeds the env and the random actions; seconds: [s] wall-clock time to measure (at least 3 steps).
    Returns:
        {"policy_steps_per_s", "policy_steps"}, or None when highway-env is not installed.
    """
    if not highway_env_available():
        return None
    import gymnasium as gym
    import highway_env  # noqa: F401  (registers highway-v0)

    env = gym.make(
        "highway-v0",
        config={
            "lanes_count": lanes,
            "vehicles_count": vehicles - 1,
            "simulation_frequency": sim_frequency,
            "policy_frequency": policy_frequency,
        },
    )
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    steps = 0
    start = time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(int(rng.integers(5)))
        steps += 1
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return {"policy_steps_per_s": steps / elapsed, "policy_steps": float(steps)}


def make_highway_fast() -> Any:  # module level: SubprocVecEnv workers unpickle it in fresh processes
    """One `highway-fast-v0` env (registers highway-env in the worker process)."""
    import gymnasium as gym
    import highway_env  # noqa: F401  (registers highway-fast-v0 in the worker)

    return gym.make("highway-fast-v0")


def measure_highway_train(
    seconds: float, workers: int, seed: int, measure: Callable[[Any, float], dict[str, float]]
) -> dict[str, float] | None:
    """SB3 PPO on `highway-fast-v0` with highway-env's own training-script settings.

    Args:
        seconds: [s] training time to measure; workers: SubprocVecEnv processes; seed: env and PPO seed;
        measure: the caller's timing function `measure(model, seconds) -> figures`, the same one it uses
            for drivestack, so both sides are timed alike.
    Returns:
        the figures of `measure` plus "workers", or None when highway-env is not installed.
    """
    if not highway_env_available():
        return None
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    batch_size = 64
    env = make_vec_env(make_highway_fast, n_envs=workers, vec_env_cls=SubprocVecEnv, seed=seed)
    try:
        model = PPO(
            "MlpPolicy",
            env,
            policy_kwargs=dict(net_arch=dict(pi=[256, 256], vf=[256, 256])),
            n_steps=batch_size * 12 // workers,
            batch_size=batch_size,
            n_epochs=10,
            learning_rate=5e-4,
            gamma=0.8,
            verbose=0,
            seed=seed,
            device="cpu",
        )
        result = measure(model, seconds)
    finally:
        env.close()
    result["workers"] = float(workers)
    return result


def _check_positive(name: str, value: float) -> None:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_speed(name: str, value: float) -> None:
    if not (np.isfinite(value) and 0.0 <= value <= HIGHWAY_ENV_MAX_SPEED):
        raise ValueError(
            f"{name} must be in [0, {HIGHWAY_ENV_MAX_SPEED}] m/s (highway-env's speed limits), got {value!r}"
        )


def _num_steps(duration: float, dt: float) -> int:
    return int(round(duration / dt))


def _make_vehicle(lanes: list[AbstractLane], lane_id: int, speed: float, offset: float = 0.0) -> ControlledVehicle:
    """A `ControlledVehicle` `offset` [m] left of the centre of lanes[lane_id] at longitudinal 0, aligned with
    the lane, at `speed`."""
    from highway_env.road.road import Road, RoadNetwork
    from highway_env.vehicle.controller import ControlledVehicle

    network = RoadNetwork()
    for lane in lanes:
        network.add_lane("a", "b", lane)
    road = Road(network=network, np_random=np.random.RandomState(0), record_history=False)
    lane = lanes[lane_id]
    vehicle = ControlledVehicle(
        road,
        lane.position(0.0, -offset),
        heading=lane.heading_at(0.0),
        speed=speed,
        target_lane_index=("a", "b", lane_id),
        target_speed=speed,
    )
    vehicle.target_speed = speed  # the constructor's `target_speed or speed` would drop a target of 0
    return vehicle


def _simulate(
    vehicle: ControlledVehicle,
    reference: AbstractLane,
    num_steps: int,
    dt: float,
    command: Callable[[float], Any] | None = None,
) -> Trace:
    """Run the vehicle for num_steps steps of dt and record num_steps + 1 samples (t = 0 included).

    Args:
        vehicle: the highway-env vehicle, already placed on the road.
        reference: lane the lateral errors are measured against.
        num_steps: number of dt steps; the trace has num_steps + 1 samples.
        dt: [s] integration step.
        command: called with t [s] before each control step; may change `vehicle.target_speed` and
            returns the high-level action passed to `vehicle.act` ("LANE_LEFT", ...) or None.
    Returns:
        The trace, in drivestack's sign convention.
    """
    from highway_env.utils import wrap_to_pi

    num_samples = num_steps + 1
    rows = np.zeros((num_samples, 5))  # (T, [cross_track, heading_error, speed, target_speed, steer])
    # One extra step so that the yaw rate of the last sample is a forward difference like the others.
    headings = np.zeros(num_samples + 1)  # [rad] highway-env headings (not wrapped by its step)
    for k in range(num_samples):
        t = k * dt
        action = command(t) if command is not None else None
        vehicle.act(action)  # high-level action (if any), then steering_control + speed_control
        longitudinal, lateral = reference.local_coordinates(vehicle.position)
        heading_error = wrap_to_pi(vehicle.heading - reference.heading_at(longitudinal))
        rows[k] = (-lateral, -heading_error, vehicle.speed, vehicle.target_speed, -vehicle.action["steering"])
        headings[k] = vehicle.heading
        vehicle.step(dt)
    headings[num_samples] = vehicle.heading
    # Forward difference: the yaw rate applied over [t_k, t_k + dt], which equals highway-env's bicycle-model
    # yaw rate speed * sin(beta) / (LENGTH / 2) at step k exactly. Negated: its heading grows turning right.
    yaw_rate = -wrap_to_pi(np.diff(headings)) / dt  # [rad/s] (T,)
    trace = Trace(
        t=np.arange(num_samples) * dt,
        cross_track=rows[:, 0],
        heading_error=rows[:, 1],
        speed=rows[:, 2],
        target_speed=rows[:, 3],
        lateral_accel=rows[:, 2] * yaw_rate,
        steer=rows[:, 4],
    )
    trace.validate()
    return trace


def keep_lane_trace(
    speed: float, radius: float | None, duration: float = 20.0, dt: float = SIM_DT, initial_offset: float = 0.0
) -> Trace:
    """highway-env's ControlledVehicle keeping a straight lane or a left-hand curve at constant target speed.

    The vehicle starts `initial_offset` left of the lane centre, aligned with the lane, at `speed`, with
    target speed `speed`.
    A curve is a highway-env `CircularLane` with `clockwise=False`: with its y axis pointing right, this
    makes highway-env's heading decrease along the lane, i.e. a counter-clockwise (left) turn in
    drivestack's y-left frame, with the centre of the circle on the vehicle's left. Checked numerically
    (tests/cli/test_highway_env_control.py): at 20 m/s on R = 150 m the steady-state lateral_accel is
    +v^2 / R = +2.67 m/s^2, and the steady-state steer is positive.

    Args:
        speed: [m/s] initial and target speed, in [0, 40].
        radius: [m] curve radius (turning left), or None for a straight lane.
        duration: [s] simulated time; the trace has round(duration / dt) + 1 samples.
        dt: [s] simulation step (highway-env's default: 1/15 s).
        initial_offset: [m] initial lateral offset from the lane centre, positive to the left.
    Returns:
        The trace; cross_track and heading_error are relative to the lane followed.
    """
    from highway_env.road.lane import CircularLane, StraightLane

    _check_speed("speed", speed)
    _check_positive("duration", duration)
    _check_positive("dt", dt)
    num_steps = _num_steps(duration, dt)
    length = speed * (num_steps + 1) * dt + LANE_MARGIN  # [m] more than the run can cover
    if radius is None:
        lane = StraightLane([0.0, 0.0], [length, 0.0])
    else:
        _check_positive("radius", radius)
        # Starts at (0, R) heading along +x (start_phase pi/2, heading_at(0) = 0); the phase then decreases.
        # The extent may exceed 2 pi: local_coordinates wraps the longitudinal coordinate to within pi * R of
        # the start, but lateral offset and heading_at are exact, and the lane end is never reached.
        lane = CircularLane([0.0, 0.0], radius, np.pi / 2, np.pi / 2 - length / radius, clockwise=False)
    vehicle = _make_vehicle([lane], 0, speed, initial_offset)
    return _simulate(vehicle, lane, num_steps, dt)


def _lane_change_run(
    speed: float, lane_width: float, command_time: float, duration: float, dt: float
) -> tuple[Trace, ControlledVehicle]:
    from highway_env.road.lane import StraightLane

    _check_speed("speed", speed)
    _check_positive("lane_width", lane_width)
    _check_positive("duration", duration)
    _check_positive("dt", dt)
    if not (np.isfinite(command_time) and 0.0 <= command_time < duration):
        raise ValueError(f"command_time must be in [0, duration) = [0, {duration}) s, got {command_time!r}")
    num_steps = _num_steps(duration, dt)
    length = speed * (num_steps + 1) * dt + LANE_MARGIN  # [m]
    # Index 0 at y = 0 is the LEFT lane (highway-env's y points right; LANE_LEFT decreases the index).
    lanes = [StraightLane([0.0, i * lane_width], [length, i * lane_width], width=lane_width) for i in range(2)]
    left_lane, right_lane_id = lanes[0], 1
    vehicle = _make_vehicle(lanes, right_lane_id, speed)
    is_commanded = False

    def command(t: float) -> str | None:
        nonlocal is_commanded
        if is_commanded or t < command_time - 1e-9:
            return None
        is_commanded = True
        return "LANE_LEFT"

    trace = _simulate(vehicle, left_lane, num_steps, dt, command)
    if vehicle.target_lane_index[2] != 0:
        raise RuntimeError(f"highway-env refused the left lane change (target lane {vehicle.target_lane_index})")
    return trace, vehicle


def lane_change_trace(
    speed: float = 30.0, lane_width: float = 4.0, command_time: float = 1.0, duration: float = 10.0, dt: float = SIM_DT
) -> Trace:
    """highway-env's ControlledVehicle changing one lane to the left on a straight two-lane road.

    The vehicle starts on the right lane's centre at `speed` (target speed `speed`); at the first sample
    with t >= command_time it receives highway-env's `act("LANE_LEFT")`, which switches its target lane
    from index 1 (y = lane_width, right) to index 0 (y = 0, left) in highway-env's numbering.

    Args:
        speed: [m/s] initial and target speed.
        lane_width: [m] width of both lanes, i.e. the lateral distance between their centres.
        command_time: [s] when the lane change is commanded, in [0, duration).
        duration: [s] simulated time; the trace has round(duration / dt) + 1 samples.
        dt: [s] simulation step (highway-env's default: 1/15 s).
    Returns:
        The trace; cross_track and heading_error are relative to the TARGET (left) lane for the whole run,
        so cross_track starts at -lane_width (the vehicle is right of the target) and converges to 0.
    """
    return _lane_change_run(speed, lane_width, command_time, duration, dt)[0]


def stop_and_go_trace(profile: list[tuple[float, float]], dt: float = SIM_DT) -> Trace:
    """highway-env's ControlledVehicle on a straight lane tracking a piecewise-constant target speed.

    The vehicle starts on the lane centre at the first profile speed; `vehicle.target_speed` is set to
    each profile speed from its start time on (highway-env's speed_control is a P controller,
    acceleration = (target - speed) / 0.6 s, without acceleration limits).

    Args:
        profile: [(start_time [s], target_speed [m/s]), ...] with strictly increasing start times >= 0
            and speeds in [0, 40]; the first speed holds from t = 0.
        dt: [s] simulation step (highway-env's default: 1/15 s).
    Returns:
        The trace, ending at the last start time + 10 s.
    """
    from highway_env.road.lane import StraightLane

    _check_positive("dt", dt)
    if not profile:
        raise ValueError("profile is empty; give at least one (start_time [s], target_speed [m/s]) pair")
    starts = np.array([float(start) for start, _ in profile])
    targets = np.array([float(target) for _, target in profile])
    if not (np.all(np.isfinite(starts)) and starts[0] >= 0.0 and np.all(np.diff(starts) > 0)):
        raise ValueError(f"profile start times must be finite, >= 0 and strictly increasing, got {starts.tolist()}")
    for target in targets:
        _check_speed("profile target_speed", float(target))
    duration = float(starts[-1]) + STOP_AND_GO_TAIL
    num_steps = _num_steps(duration, dt)
    length = float(targets.max()) * (num_steps + 1) * dt + LANE_MARGIN  # [m]
    lane = StraightLane([0.0, 0.0], [length, 0.0])
    vehicle = _make_vehicle([lane], 0, float(targets[0]))

    def command(t: float) -> None:
        segment = max(int(np.searchsorted(starts, t + 1e-9, side="right")) - 1, 0)
        vehicle.target_speed = float(targets[segment])

    return _simulate(vehicle, lane, num_steps, dt, command)
