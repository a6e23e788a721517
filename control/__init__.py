"""Controllers that turn maneuvers into steering and acceleration, batched over any tensor shape.

Torch only: every function takes and returns tensors on the caller's device and is a pure function of
its inputs (controller state such as the PID integral is passed in and returned). The simulator's
traffic and the ego under meta-actions drive with the same controllers.

- `config`: `ControllerConfig` and the gains of each controller; `LateralController` names the steering law.
- `lateral`: cascade, pure pursuit, Stanley and LQR steering; steering limits.
- `longitudinal`: P and PID speed control; throttle/brake split.
- `maneuver`: quintic lane-change reference paths.
- `command`: the `Command` output and the finiteness check every controller runs when `validate=True`.
"""

from drivestack.control.command import Command, check_finite
from drivestack.control.config import (
    ControllerConfig,
    LaneKeepingGains,
    LateralController,
    LQRWeights,
    PIDGains,
    PurePursuitGains,
    StanleyGains,
)
from drivestack.control.lateral import (
    LQRTable,
    lane_keeping_steer,
    limit_steer,
    lookahead_distance,
    lqr_steer,
    pure_pursuit_steer,
    rear_axle_heading_error,
    stanley_steer,
)
from drivestack.control.longitudinal import SpeedGains, pid_speed_control, speed_control, throttle_brake
from drivestack.control.maneuver import lane_change_length, lane_change_offset, quintic

__all__ = [
    "Command",
    "ControllerConfig",
    "LQRTable",
    "LQRWeights",
    "LaneKeepingGains",
    "LateralController",
    "PIDGains",
    "PurePursuitGains",
    "SpeedGains",
    "StanleyGains",
    "check_finite",
    "lane_change_length",
    "lane_change_offset",
    "lane_keeping_steer",
    "limit_steer",
    "lookahead_distance",
    "lqr_steer",
    "pid_speed_control",
    "pure_pursuit_steer",
    "quintic",
    "rear_axle_heading_error",
    "speed_control",
    "stanley_steer",
    "throttle_brake",
]
