"""Frozen, typed configuration of the controllers. Every field carries its unit; the CLI is generated from
these dataclasses (through `sim.config.EnvConfig.control`), so the docstrings are also the `--help` text.

`validate()` raises a `ValueError` naming the field (as `control.<group>.<field>`) and its allowed range.
The lateral controller is chosen by name (`LateralController`); an unknown name is rejected as soon as the
config is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from functools import partial

from drivestack.common.checks import require


class LateralController(str, Enum):
    """Which steering law tracks the reference path."""

    CASCADE = "cascade"  # lateral P -> lateral-speed -> heading -> yaw-rate cascade (highway-env's structure)
    PURE_PURSUIT = "pure_pursuit"  # arc through a speed-scheduled look-ahead point (Coulter 1992)
    STANLEY = "stanley"  # front-axle cross-track + heading law (Hoffmann et al. 2007)
    LQR = "lqr"  # speed-scheduled discrete LQR on the kinematic lateral-error dynamics


_require = partial(require, what="control config")  # "invalid control config: <field>=<value>; allowed: <range>"


def _require_positive(config: object, prefix: str, names: tuple[str, ...], unit: str = "") -> None:
    for name in names:
        value = getattr(config, name)
        _require(math.isfinite(value) and value > 0.0, f"{prefix}.{name}", f"> 0{unit}", value)


@dataclass(frozen=True)
class LaneKeepingGains:
    """Gains of the cascaded lane-keeping controller (`LateralController.CASCADE`)."""

    lateral: float = 1.0
    """[1/s] lateral-offset gain: lateral-speed command per metre of error."""
    heading: float = 4.0
    """[1/s] heading gain: yaw-rate command per radian of heading error."""
    max_lateral_speed: float = 1.4
    """[m/s] bound on the commanded lateral speed (sets the lane-change duration, ~3 s for 4 m)."""
    max_heading: float = math.radians(15.0)
    """[rad] bound on the commanded heading relative to the lane."""

    def validate(self, prefix: str = "cascade") -> None:
        _require_positive(self, prefix, ("lateral", "heading", "max_lateral_speed"))
        _require(
            0.0 < self.max_heading < math.pi / 2, f"{prefix}.max_heading", "0 < value < pi/2 rad", self.max_heading
        )


@dataclass(frozen=True)
class PurePursuitGains:
    """Pure pursuit: steer on the arc through a look-ahead point `lookahead_time * speed` ahead.

    Linearised on a straight lane the rear-axle error obeys e'' + (2v/Ld) e' + 2(v/Ld)^2 e = 0: damping
    ratio 1/sqrt(2) whatever the look-ahead, natural frequency sqrt(2) / lookahead_time [rad/s].
    """

    lookahead_time: float = 0.5
    """[s] look-ahead distance per m/s of speed (0.5 s: natural frequency 2.8 rad/s; longer look-aheads cut
    the corners of a lane change more: 0.8 s overshoots a 3 s lane change by 0.15 m, 0.5 s by 0.09 m)."""
    min_lookahead: float = 5.0
    """[m] look-ahead floor at low speed (shorter ones overshoot: 3 m gives 0.5 m from a 1 m offset at 5 m/s)."""
    max_lookahead: float = 40.0
    """[m] look-ahead ceiling."""

    def validate(self, prefix: str = "pure_pursuit") -> None:
        _require_positive(self, prefix, ("lookahead_time", "min_lookahead", "max_lookahead"))
        _require(
            self.max_lookahead >= self.min_lookahead,
            f"{prefix}.max_lookahead",
            f">= min_lookahead = {self.min_lookahead} m",
            self.max_lookahead,
        )


@dataclass(frozen=True)
class StanleyGains:
    """Stanley steering: steer = -heading_gain * e_psi - atan(gain * e_front / (softening + v)) + atan(L kappa).

    With the heading term cancelled the front-axle error decays as e' = -gain * e (for v >> softening).
    """

    gain: float = 3.0
    """[1/s] cross-track gain: the front-axle error decays at about this rate."""
    softening: float = 1.0
    """[m/s] added to the speed in the cross-track term so the law stays bounded at standstill."""
    heading_gain: float = 0.8
    """[-] heading-error gain. 1 is the textbook law; the discrete heading loop's per-step pole is
    1 - heading_gain * v dt / L (-0.6 at 45 m/s, L = 2.5 m, dt = 0.1 s with 1), so 0.8 keeps it damped."""

    def validate(self, prefix: str = "stanley") -> None:
        _require_positive(self, prefix, ("gain", "softening", "heading_gain"))


@dataclass(frozen=True)
class LQRWeights:
    """Speed-scheduled discrete LQR on the kinematic lateral-error dynamics, input = curvature command.

    Cost per step: lateral * e_y^2 + heading * e_psi^2 + input * a_y^2 with a_y = v^2 (kappa_cmd - kappa_ref)
    the feedback lateral acceleration. Weighting the lateral acceleration (rather than the curvature) gives
    the same closed-loop bandwidth in time at every speed: natural frequency ~ (lateral / input)^(1/4), damping
    at least 1/sqrt(2).
    """

    lateral: float = 1.0
    """[1/m^2] weight on the lateral error."""
    heading: float = 10.0
    """[1/rad^2] weight on the heading error: damping at low speed, where the steering limit is near
    (it acts as a lateral-speed weight heading / v^2; below ~10 a 1 m offset at 2 m/s overshoots)."""
    input: float = 0.01
    """[s^4/m^2] weight on the feedback lateral acceleration (with lateral = 1: natural frequency about
    (1 / 0.01)^(1/4) = 3.2 rad/s; tuned with `drivestack bench control` to correct a 0.5 m offset as fast
    as highway-env's controller while keeping lateral acceleration and jerk below its own)."""
    min_speed: float = 1.0
    """[m/s] lowest speed of the gain table (slower vehicles use its gains)."""
    max_speed: float = 45.0
    """[m/s] highest speed of the gain table (faster vehicles use its gains)."""
    speed_step: float = 1.0
    """[m/s] spacing of the gain table; gains are interpolated linearly in between."""

    def validate(self, prefix: str = "lqr") -> None:
        _require_positive(self, prefix, ("lateral", "input", "min_speed", "max_speed", "speed_step"))
        _require(math.isfinite(self.heading) and self.heading >= 0.0, f"{prefix}.heading", ">= 0", self.heading)
        _require(
            self.max_speed > self.min_speed,
            f"{prefix}.max_speed",
            f"> min_speed = {self.min_speed} m/s",
            self.max_speed,
        )
        num_speeds = (self.max_speed - self.min_speed) / self.speed_step + 1
        _require(
            num_speeds <= 10_000,
            f"{prefix}.speed_step",
            "(max_speed - min_speed) / speed_step <= 9999",
            self.speed_step,
        )


@dataclass(frozen=True)
class PIDGains:
    """PID speed controller: accel = [target_accel] + kp e + ki int(e) - kd dv/dt, with e = target - speed."""

    kp: float = 1.5
    """[1/s] proportional gain: acceleration per m/s of speed error (highway-env uses 1.67)."""
    ki: float = 0.3
    """[1/s^2] integral gain. On the integrator plant v' = a the closed loop is (kp s + ki) / (s^2 + kp s + ki):
    poles -0.24 and -1.27 1/s, zero -0.2 1/s, 9 % overshoot on a small set-point step, settled in ~10 s."""
    kd: float = 0.0
    """[-] derivative gain on the measured acceleration (derivative on measurement: no kick at set-point
    steps). On the simulator's integrator plant it only rescales the other gains, hence 0 by default."""
    integral_limit: float = 1.0
    """[m/s^2] bound on the integral term's acceleration contribution."""
    feedforward: bool = True
    """Add the reference acceleration to the command (removes the lag when tracking a speed ramp)."""

    def validate(self, prefix: str = "speed") -> None:
        _require_positive(self, prefix, ("kp", "integral_limit"))
        for name in ("ki", "kd"):
            value = getattr(self, name)
            _require(math.isfinite(value) and value >= 0.0, f"{prefix}.{name}", ">= 0", value)


@dataclass(frozen=True)
class ControllerConfig:
    """Controllers that turn maneuvers (target lane, target speed) into steering and acceleration."""

    lateral: LateralController = LateralController.LQR
    """Steering law tracking the reference path: cascade, pure_pursuit, stanley or lqr."""
    cascade: LaneKeepingGains = field(default_factory=LaneKeepingGains)
    """Gains of the cascade controller."""
    pure_pursuit: PurePursuitGains = field(default_factory=PurePursuitGains)
    """Look-ahead of the pure-pursuit controller."""
    stanley: StanleyGains = field(default_factory=StanleyGains)
    """Gains of the Stanley controller."""
    lqr: LQRWeights = field(default_factory=LQRWeights)
    """Weights and speed grid of the LQR controller."""
    speed: PIDGains = field(default_factory=PIDGains)
    """Gains of the PID speed controller."""
    max_jerk: float = 10.0
    """[m/s^3] bound on the change of the commanded acceleration per second."""
    lane_change_duration: float = 3.0
    """[s] a lane change's reference path is speed * lane_change_duration long ..."""
    min_lane_change_length: float = 20.0
    """[m] ... but at least this long."""

    def __post_init__(self) -> None:
        # Accept the enum's string values (config files, CLI); reject unknown names right away.
        if not isinstance(self.lateral, LateralController):
            allowed = ", ".join(c.value for c in LateralController)
            try:
                object.__setattr__(self, "lateral", LateralController(self.lateral))
            except ValueError:
                raise ValueError(
                    f"invalid control config: control.lateral={self.lateral!r}; allowed: {allowed}"
                ) from None

    def validate(self) -> None:
        self.cascade.validate("control.cascade")
        self.pure_pursuit.validate("control.pure_pursuit")
        self.stanley.validate("control.stanley")
        self.lqr.validate("control.lqr")
        self.speed.validate("control.speed")
        _require_positive(self, "control", ("max_jerk", "lane_change_duration", "min_lane_change_length"))
