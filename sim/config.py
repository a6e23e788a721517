"""Frozen, typed configuration of the simulator. Every field carries its unit; the CLI is generated
from these dataclasses (tyro), so the docstrings below are also the `--help` text.

`validate()` raises a `ValueError` naming the field and its allowed range for anything a user can
get wrong; the environment calls it once at construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING

from drivestack.common.checks import check_number, require
from drivestack.control.config import ControllerConfig

if TYPE_CHECKING:
    import torch


class Scenario(str, Enum):
    """Road layout generator."""

    HIGHWAY = "highway"  # straight or gently curved multi-lane highway
    MERGE = "merge"  # highway with an on-ramp joining from the right; the ego starts on the ramp


class CurveProfile(str, Enum):
    """Curvature of a curved highway's reference line along its length."""

    SINE = "sine"  # gently curved: max_curvature * sin(2 pi s / curve_wavelength), left and right bends
    ARC = "arc"  # one constant-curvature left-hand arc of radius 1 / max_curvature (controller benchmarks)


class ObservationType(str, Enum):
    KINEMATICS = "kinematics"  # ego + K nearest vehicles, highway-env "Kinematics" meaning
    OCCUPANCY = "occupancy"  # BEV grid around the ego, highway-env "OccupancyGrid" meaning


class ActionType(str, Enum):
    CONTINUOUS = "continuous"  # (steer, acceleration) in [-1, 1]^2, scaled to the vehicle limits
    META = "meta"  # LANE_LEFT, IDLE, LANE_RIGHT, FASTER, SLOWER executed by the controllers


class SpeedControl(str, Enum):
    """How the ego's low-level controller holds the speed set-point of meta actions."""

    SETPOINT = "setpoint"  # PID to the set-point, leaders ignored (highway-env's DiscreteMetaAction)
    FOLLOW = "follow"  # adaptive cruise: PID to the set-point, capped by IDM following of the leader


DRIVER_SPEEDS = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)  # [m/s] set-points of the driver action space (Driver ids)
DRIVER_MIN_LANE_CHANGE = 40.0  # [m] shortest lane-change path of the Driver ids (speed * 3 s above 13.3 m/s, as v0)


EGO_CLEARANCE = 30.0  # [m] at the start, traffic in the ego's lane is at least this far from it (centres)
TRUCK_MIN_LENGTH = 6.0  # [m] a vehicle at least this long is a truck; cars are shorter


def is_truck(length: torch.Tensor) -> torch.Tensor:
    """Whether vehicles of body length `length` [m] (any shape) are trucks: bool, same shape."""
    return length >= TRUCK_MIN_LENGTH


_require = partial(require, what="config")  # "invalid config: <field>=<value>; allowed: <range>"


@dataclass(frozen=True)
class RoadConfig:
    """Road section. Traffic lives on a ring of `length` metres: a vehicle leaving the section at its
    end re-enters at its start in the same lane (the section's geometry is continued smoothly past
    both ends, so nothing jumps near the ego)."""

    scenario: Scenario = Scenario.HIGHWAY
    """Road layout generator."""
    num_lanes: int = 4
    """Number of through lanes (the merge scenario adds its on-ramp on top)."""
    length: float = 1000.0
    """[m] length of the road section (the ring traffic circulates on)."""
    lane_width: float = 4.0
    """[m] lane width."""
    max_curvature: float = 0.0
    """[1/m] peak curvature of a gently curved highway (0 = straight; 1/500 is gentle)."""
    curve_profile: CurveProfile = CurveProfile.SINE
    """Curvature profile when max_curvature > 0."""
    curve_wavelength: float = 800.0
    """[m] wavelength of the sinusoidal curvature profile of a curved highway."""
    ramp_start: float = 100.0
    """[m] merge: arc length where the on-ramp begins."""
    ramp_approach: float = 150.0
    """[m] merge: length over which the ramp converges onto the highway."""
    ramp_offset: float = 12.0
    """[m] merge: lateral distance of the ramp from the highway where it begins."""
    merge_length: float = 120.0
    """[m] merge: length of the acceleration lane, where merging is allowed; the ramp ends after it."""
    grid_step: float = 1.0
    """[m] spacing of the lookup tables along the reference line."""

    def validate(self) -> None:
        _require(
            self.scenario in {sc.value for sc in Scenario},
            "road.scenario",
            ", ".join(sc.value for sc in Scenario),
            self.scenario,
        )
        _require(1 <= self.num_lanes <= 8, "road.num_lanes", "1..8", self.num_lanes)
        check_number("road.length", self.length, low=200.0, what="config")  # [m] finite: a ring of inf m never closes
        _require(2.5 <= self.lane_width <= 6.0, "road.lane_width", "2.5..6.0 m", self.lane_width)
        _require(0.0 <= self.max_curvature <= 1.0 / 150.0, "road.max_curvature", "0..1/150 1/m", self.max_curvature)
        _require(
            self.curve_profile in {c.value for c in CurveProfile},
            "road.curve_profile",
            ", ".join(c.value for c in CurveProfile),
            self.curve_profile,
        )
        _require(self.curve_wavelength >= 100.0, "road.curve_wavelength", ">= 100 m", self.curve_wavelength)
        _require(0.1 <= self.grid_step <= 5.0, "road.grid_step", "0.1..5 m", self.grid_step)
        if self.scenario == Scenario.MERGE:
            _require(self.ramp_start >= 0.0, "road.ramp_start", ">= 0 m", self.ramp_start)
            _require(self.ramp_approach > 0.0, "road.ramp_approach", "> 0 m", self.ramp_approach)
            _require(self.merge_length > 0.0, "road.merge_length", "> 0 m", self.merge_length)
            _require(self.ramp_offset >= 0.0, "road.ramp_offset", ">= 0 m", self.ramp_offset)
            end = self.ramp_start + self.ramp_approach + self.merge_length
            _require(
                end < self.length - 50.0,
                "road.merge_length",
                f"ramp_start + ramp_approach + merge_length < length - 50 = {self.length - 50.0} m",
                self.merge_length,
            )


@dataclass(frozen=True)
class VehicleConfig:
    """Vehicle bodies and actuator limits (shared by the ego and traffic)."""

    length_range: tuple[float, float] = (4.2, 5.2)
    """[m] body length, drawn uniformly per vehicle (the ego takes the midpoint)."""
    width_range: tuple[float, float] = (1.75, 2.0)
    """[m] body width, drawn uniformly per vehicle."""
    truck_length_range: tuple[float, float] = (8.0, 12.0)
    """[m] body length of trucks (traffic.truck_fraction of the traffic), drawn uniformly per truck."""
    truck_width_range: tuple[float, float] = (2.4, 2.6)
    """[m] body width of trucks, drawn uniformly per truck."""
    wheelbase_ratio: float = 0.6
    """[-] wheelbase as a fraction of body length (centre of gravity at mid-wheelbase)."""
    max_steer: float = math.pi / 6
    """[rad] steering-angle limit."""
    max_steer_rate: float = 0.6
    """[rad/s] steering-rate limit."""
    max_accel: float = 4.0
    """[m/s^2] acceleration limit."""
    max_brake: float = 8.0
    """[m/s^2] deceleration limit (positive number)."""
    max_speed: float = 40.0
    """[m/s] speed cap; speeds are never negative (no reversing)."""

    def validate(self) -> None:
        for name, (lo, hi) in (
            ("vehicle.length_range", self.length_range),
            ("vehicle.width_range", self.width_range),
            ("vehicle.truck_length_range", self.truck_length_range),
            ("vehicle.truck_width_range", self.truck_width_range),
        ):
            _require(0.5 <= lo <= hi <= 20.0, name, "0.5 <= low <= high <= 20 m", (lo, hi))
        # Cars and trucks are told apart by length alone (is_truck), so the two ranges must not meet.
        _require(
            self.length_range[1] < TRUCK_MIN_LENGTH,
            "vehicle.length_range",
            f"cars shorter than TRUCK_MIN_LENGTH = {TRUCK_MIN_LENGTH} m (high < {TRUCK_MIN_LENGTH})",
            self.length_range,
        )
        _require(
            self.truck_length_range[0] >= TRUCK_MIN_LENGTH,
            "vehicle.truck_length_range",
            f"trucks at least TRUCK_MIN_LENGTH = {TRUCK_MIN_LENGTH} m long (low >= {TRUCK_MIN_LENGTH})",
            self.truck_length_range,
        )
        _require(0.2 <= self.wheelbase_ratio <= 1.0, "vehicle.wheelbase_ratio", "0.2..1.0", self.wheelbase_ratio)
        _require(0.0 < self.max_steer < math.pi / 2, "vehicle.max_steer", "0..pi/2 rad", self.max_steer)
        _require(self.max_steer_rate > 0.0, "vehicle.max_steer_rate", "> 0 rad/s", self.max_steer_rate)
        _require(self.max_accel > 0.0, "vehicle.max_accel", "> 0 m/s^2", self.max_accel)
        _require(self.max_brake > 0.0, "vehicle.max_brake", "> 0 m/s^2", self.max_brake)
        _require(self.max_speed > 0.0, "vehicle.max_speed", "> 0 m/s", self.max_speed)


@dataclass(frozen=True)
class TrafficConfig:
    """Traffic: IDM car following and MOBIL lane changes (defaults are highway-env's)."""

    num_vehicles: int = 50
    """Vehicles per environment, the ego included."""
    desired_speed_range: tuple[float, float] = (20.0, 30.0)
    """[m/s] desired (free-road) speed of each traffic vehicle, drawn uniformly."""
    truck_fraction: float = 0.0
    """[-] probability that a traffic vehicle is a truck (never the ego); 0 keeps the traffic cars only."""
    truck_desired_speed_range: tuple[float, float] = (20.0, 26.0)
    """[m/s] desired (free-road) speed of each truck, drawn uniformly."""
    idm_accel: float = 3.0
    """[m/s^2] IDM maximum (comfortable) acceleration a."""
    idm_decel: float = 5.0
    """[m/s^2] IDM comfortable deceleration b."""
    idm_min_gap: float = 5.0
    """[m] IDM jam distance s0 (bumper to bumper)."""
    idm_time_headway: float = 1.5
    """[s] IDM desired time headway T."""
    idm_delta: float = 4.0
    """[-] IDM acceleration exponent."""
    mobil_politeness: float = 0.0
    """[-] MOBIL politeness factor p."""
    mobil_threshold: float = 0.2
    """[m/s^2] MOBIL minimum acceleration gain for a lane change."""
    mobil_max_braking: float = 2.0
    """[m/s^2] MOBIL safety: largest braking a change may impose on the new follower."""
    mobil_keep_right: float = 0.1
    """[m/s^2] MOBIL bias towards the right lane (added to the incentive of moving right)."""
    lane_change_interval: float = 1.0
    """[s] time between MOBIL decisions (left and right are decided on alternate ticks)."""

    def validate(self) -> None:
        _require(1 <= self.num_vehicles <= 1024, "traffic.num_vehicles", "1..1024", self.num_vehicles)
        lo, hi = self.desired_speed_range
        _require(0.0 < lo <= hi, "traffic.desired_speed_range", "0 < low <= high m/s", (lo, hi))
        lo, hi = self.truck_desired_speed_range
        _require(0.0 < lo <= hi, "traffic.truck_desired_speed_range", "0 < low <= high m/s", (lo, hi))
        _require(0.0 <= self.truck_fraction <= 1.0, "traffic.truck_fraction", "0..1", self.truck_fraction)
        for name in (
            "idm_accel",
            "idm_decel",
            "idm_min_gap",
            "idm_time_headway",
            "idm_delta",
            "mobil_max_braking",
            "lane_change_interval",
        ):
            value = getattr(self, name)
            _require(value > 0.0, f"traffic.{name}", "> 0", value)
        _require(0.0 <= self.mobil_politeness <= 1.0, "traffic.mobil_politeness", "0..1", self.mobil_politeness)
        _require(self.mobil_threshold >= 0.0, "traffic.mobil_threshold", ">= 0 m/s^2", self.mobil_threshold)


@dataclass(frozen=True)
class NoiseConfig:
    """Perception-shaped observation noise (opt-in, for training): the errors of the tracker's output, by
    distance band (centre distance from the ego). Each policy step, every other vehicle's position and velocity
    get Gaussian errors and it is missed (absent from the observation) with probability 1 - recall; a miss lasts
    `miss_duration` policy steps (tracks that come late or drop out for a while, not single-frame flicker).
    Draws are a function of (seed, episode id, policy step, vehicle) alone: deterministic under the seed."""

    enabled: bool = False
    """Perturb the observation (False: the exact ground truth)."""
    band_edges: tuple[float, float] = (20.0, 40.0)
    """[m] distance bands: [0, 20), [20, 40), [40, inf) by default."""
    position_std: tuple[float, float, float] = (0.6, 0.8, 1.0)
    """[m] standard deviation of the position error (x and y each) per band (measured: 0.6-1.0 m)."""
    velocity_std: tuple[float, float, float] = (1.1, 1.4, 1.8)
    """[m/s] standard deviation of the velocity error (vx and vy each) per band (measured: 1.1-1.8 m/s)."""
    recall: tuple[float, float, float] = (0.75, 0.69, 0.37)
    """[-] probability that a vehicle is observed, per band (measured tracker recall)."""
    miss_duration: int = 2
    """[policy steps] a miss is drawn once per this many steps and held (late and dropped tracks)."""

    def validate(self) -> None:
        lo, hi = self.band_edges
        _require(0.0 < lo < hi, "observation.noise.band_edges", "0 < near < far m", self.band_edges)
        for name in ("position_std", "velocity_std", "recall"):
            values = getattr(self, name)
            _require(len(values) == 3, f"observation.noise.{name}", "three values, one per band", values)
            _require(all(v >= 0.0 for v in values), f"observation.noise.{name}", ">= 0", values)
        _require(all(r <= 1.0 for r in self.recall), "observation.noise.recall", "0..1", self.recall)
        _require(self.miss_duration >= 1, "observation.noise.miss_duration", ">= 1 policy step", self.miss_duration)


@dataclass(frozen=True)
class ObservationConfig:
    """What the policy sees."""

    type: ObservationType = ObservationType.KINEMATICS
    """Observation type."""
    vehicles_count: int = 5
    """kinematics: rows (the ego first, then the nearest vehicles by distance)."""
    features: tuple[str, ...] = ("presence", "x", "y", "vx", "vy")
    """kinematics: columns; any of presence, x, y, vx, vy, cos_h, sin_h."""
    x_range: float = 100.0
    """[m] kinematics/occupancy: longitudinal half-range used for normalisation and visibility."""
    y_range: float = 12.0
    """[m] kinematics: lateral half-range used for normalisation."""
    v_range: float = 80.0
    """[m/s] kinematics: speed half-range used for normalisation."""
    grid_shape: tuple[int, int] = (11, 11)
    """occupancy: (rows along x, columns along y) cells centred on the ego."""
    grid_step: tuple[float, float] = (5.0, 5.0)
    """[m] occupancy: cell size along (x, y)."""
    lane_features: bool = False
    """kinematics: also observe the ego's set-point and, for the lanes right of, at and left of the lane it is
    heading for, whether it may go there, the gap, relative speed and time-to-collision of the nearest vehicle
    ahead and behind, and the distance to the lane's end (`sim.lane_features`); the observation is then flat."""
    ttc_horizon: float = 10.0
    """[s] lane features: time-to-collision is reported as min(TTC, this) / this (1: no conflict)."""
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    """Perception-shaped noise on the other vehicles (opt-in; `train policy --perception-noise`)."""

    def validate(self) -> None:
        allowed = {"presence", "x", "y", "vx", "vy", "cos_h", "sin_h"}
        bad = [f for f in self.features if f not in allowed]
        _require(
            not bad and len(self.features) > 0, "observation.features", f"subset of {sorted(allowed)}", self.features
        )
        _require(self.vehicles_count >= 1, "observation.vehicles_count", ">= 1", self.vehicles_count)
        for name in ("x_range", "y_range", "v_range"):
            _require(getattr(self, name) > 0.0, f"observation.{name}", "> 0", getattr(self, name))
        _require(min(self.grid_shape) >= 1, "observation.grid_shape", ">= 1 cells", self.grid_shape)
        _require(min(self.grid_step) > 0.0, "observation.grid_step", "> 0 m", self.grid_step)
        _require(self.ttc_horizon > 0.0, "observation.ttc_horizon", "> 0 s", self.ttc_horizon)
        _require(
            not self.lane_features or self.type == ObservationType.KINEMATICS,
            "observation.lane_features",
            "False with the occupancy observation (lane features extend kinematics)",
            self.lane_features,
        )
        self.noise.validate()
        _require(
            not self.noise.enabled or self.type == ObservationType.KINEMATICS,
            "observation.noise.enabled",
            "False with the occupancy observation (the noise perturbs the kinematics rows)",
            self.noise.enabled,
        )


@dataclass(frozen=True)
class ActionConfig:
    """How the policy's action reaches the ego's actuators."""

    type: ActionType = ActionType.META
    """Action type."""
    target_speeds: tuple[float, ...] = (20.0, 25.0, 30.0)
    """[m/s] meta: the speeds FASTER and SLOWER step through (highway-env's defaults)."""
    steer_range: float = math.pi / 6
    """[rad] continuous: steer action +1 maps to this steering angle (clipped to the vehicle limit)."""
    accel_range: float = 5.0
    """[m/s^2] continuous: acceleration action +1 maps to this (clipped to the vehicle limits)."""
    speed_control: SpeedControl = SpeedControl.SETPOINT
    """meta: setpoint holds the set-point whatever is ahead (highway-env); follow is adaptive cruise control: the
    set-point is a cap, and the ego follows its leader with IDM (`follow_time_headway`, `follow_min_gap`)."""
    follow_time_headway: float = 1.2
    """[s] follow: IDM desired time headway to the leader."""
    follow_min_gap: float = 4.0
    """[m] follow: IDM jam distance (bumper to bumper, standing)."""

    def validate(self) -> None:
        speeds = self.target_speeds
        _require(
            len(speeds) >= 1 and all(v >= 0 for v in speeds) and list(speeds) == sorted(speeds),
            "action.target_speeds",
            "non-empty, increasing, >= 0 m/s",
            speeds,
        )
        _require(self.steer_range > 0.0, "action.steer_range", "> 0 rad", self.steer_range)
        _require(self.accel_range > 0.0, "action.accel_range", "> 0 m/s^2", self.accel_range)
        _require(
            self.speed_control in {c.value for c in SpeedControl},
            "action.speed_control",
            ", ".join(c.value for c in SpeedControl),
            self.speed_control,
        )
        _require(self.follow_time_headway > 0.0, "action.follow_time_headway", "> 0 s", self.follow_time_headway)
        _require(self.follow_min_gap > 0.0, "action.follow_min_gap", "> 0 m", self.follow_min_gap)


@dataclass(frozen=True)
class RewardConfig:
    """Reward weights; the reward is the sum of the weighted named terms, each reported in `info`."""

    speed: float = 0.4
    """Weight of the speed term: 0 at `speed_range[0]`, 1 at `speed_range[1]` (linear, clipped)."""
    speed_range: tuple[float, float] = (20.0, 30.0)
    """[m/s] speeds mapped to 0 and 1 by the speed term."""
    collision: float = -1.0
    """Weight of the collision term (1 when the ego collided during the step)."""
    right_lane: float = 0.1
    """Weight of the right-lane term (1 in the rightmost lane, 0 in the leftmost)."""
    lane_change: float = 0.0
    """Weight of the lane-change term (1 when the ego's lane changed during the step)."""
    off_road: float = -1.0
    """Weight of the off-road term (1 when the ego left the drivable area)."""
    normalize: bool = True
    """Rescale the sum to [0, 1] over its attainable range (highway-env's `normalize_reward`)."""

    def validate(self) -> None:
        lo, hi = self.speed_range
        _require(lo < hi, "reward.speed_range", "low < high m/s", self.speed_range)


@dataclass(frozen=True)
class EnvConfig:
    """A driving environment: road, traffic, timing, observation, action and reward."""

    road: RoadConfig = field(default_factory=RoadConfig)
    vehicle: VehicleConfig = field(default_factory=VehicleConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    control: ControllerConfig = field(default_factory=ControllerConfig)
    sim_frequency: float = 10.0
    """[Hz] simulation rate (time step 1/sim_frequency s)."""
    policy_frequency: float = 1.0
    """[Hz] decision rate; must divide sim_frequency."""
    duration: float = 40.0
    """[s] episode length; the episode is truncated after it."""
    ego_speed_range: tuple[float, float] = (20.0, 25.0)
    """[m/s] initial ego speed, drawn uniformly."""

    @property
    def dt(self) -> float:
        """[s] simulation time step."""
        return 1.0 / self.sim_frequency

    @property
    def substeps(self) -> int:
        """Simulation steps per policy step."""
        return int(round(self.sim_frequency / self.policy_frequency))

    @property
    def max_policy_steps(self) -> int:
        return int(round(self.duration * self.policy_frequency))

    @property
    def max_body_length(self) -> float:
        """[m] longest body a vehicle can have: the truck range's high end when trucks are drawn."""
        trucks = self.traffic.truck_fraction > 0.0
        return self.vehicle.truck_length_range[1] if trucks else self.vehicle.length_range[1]

    def validate(self) -> EnvConfig:
        self.road.validate()
        self.vehicle.validate()
        self.traffic.validate()
        self.observation.validate()
        self.action.validate()
        self.reward.validate()
        self.control.validate()
        _require(1.0 <= self.sim_frequency <= 1000.0, "sim_frequency", "1..1000 Hz", self.sim_frequency)
        _require(
            0.0 < self.policy_frequency <= self.sim_frequency,
            "policy_frequency",
            f"0 < policy_frequency <= sim_frequency ({self.sim_frequency} Hz)",
            self.policy_frequency,
        )
        ratio = self.sim_frequency / self.policy_frequency
        _require(
            abs(ratio - round(ratio)) < 1e-6,
            "policy_frequency",
            "a divisor of sim_frequency (sim_frequency / policy_frequency an integer)",
            self.policy_frequency,
        )
        check_number("duration", self.duration, low=0.0, low_open=True, what="config")  # [s] finite, > 0
        _require(self.duration * self.policy_frequency >= 1.0, "duration", ">= one policy step", self.duration)
        lo, hi = self.ego_speed_range
        _require(
            0.0 <= lo <= hi <= self.vehicle.max_speed,
            "ego_speed_range",
            f"0 <= low <= high <= vehicle.max_speed ({self.vehicle.max_speed} m/s)",
            (lo, hi),
        )
        # Room on the ring: traffic is dealt round-robin over the through lanes, so the fullest lane holds
        # ceil((N - 1) / lanes) vehicles, each needing a body length plus the jam gap; on the highway one
        # lane also keeps the ego's clearance free.
        slot = self.max_body_length + self.traffic.idm_min_gap
        lanes = self.road.num_lanes
        free = self.road.length - (2.0 * EGO_CLEARANCE if self.road.scenario == Scenario.HIGHWAY else 0.0)
        capacity = lanes * int(free // slot)
        _require(
            0 <= self.traffic.num_vehicles - 1 <= capacity,
            "traffic.num_vehicles",
            f"1..{capacity + 1} for {lanes} lanes of {self.road.length} m (one slot of {slot:.1f} m per vehicle)",
            self.traffic.num_vehicles,
        )
        return self


def highway_config(**overrides: object) -> EnvConfig:
    """Default `drivestack/Highway-v0` configuration (4 lanes, 50 vehicles, 40 s)."""
    return EnvConfig(**overrides)  # type: ignore[arg-type]


def merge_config(**overrides: object) -> EnvConfig:
    """Default `drivestack/Merge-v0` configuration: 2 through lanes plus an on-ramp the ego starts on."""
    base: dict[str, object] = dict(
        road=RoadConfig(scenario=Scenario.MERGE, num_lanes=2, length=800.0),
        traffic=TrafficConfig(num_vehicles=20),
        duration=30.0,
        ego_speed_range=(18.0, 22.0),
    )
    base.update(overrides)
    return EnvConfig(**base)  # type: ignore[arg-type]


def driver_options(config: EnvConfig) -> EnvConfig:
    """`config` with the driver action space and the lane-feature observation (the Driver ids): set-points from
    standstill to 30 m/s held by adaptive cruise control, and gaps / time-to-collision per lane observed."""
    action = replace(config.action, target_speeds=DRIVER_SPEEDS, speed_control=SpeedControl.FOLLOW)
    # Lane changes at least DRIVER_MIN_LANE_CHANGE m long (v0: 20 m): below ~13 m/s a 20 m path is too tight for the
    # LQR under the steering-rate limit, which overshoots (random driving left the road in 3.5 % of merge episodes).
    control = replace(config.control, min_lane_change_length=DRIVER_MIN_LANE_CHANGE)
    return replace(config, action=action, control=control, observation=replace(config.observation, lane_features=True))


def highway_driver_config(**overrides: object) -> EnvConfig:
    """`drivestack/HighwayDriver-v0`: Highway-v0's road and traffic, the driver action space and lane features."""
    return driver_options(highway_config(**overrides))


def merge_driver_config(**overrides: object) -> EnvConfig:
    """`drivestack/MergeDriver-v0`: Merge-v0's road and traffic, the driver action space and lane features."""
    return driver_options(merge_config(**overrides))


ENV_CONFIGS = {
    "drivestack/Highway-v0": highway_config,
    "drivestack/Merge-v0": merge_config,
    "drivestack/HighwayDriver-v0": highway_driver_config,
    "drivestack/MergeDriver-v0": merge_driver_config,
}
"""Registered environment ids and their default configs (the gymnasium registration uses the same ids)."""


def env_config(env_id: str) -> EnvConfig:
    """The validated default EnvConfig of a registered environment id (ValueError listing the ids otherwise)."""
    if env_id not in ENV_CONFIGS:
        raise ValueError(f"unknown env id {env_id!r}; allowed: {', '.join(ENV_CONFIGS)}")
    return ENV_CONFIGS[env_id]().validate()
