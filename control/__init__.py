"""Controllers that turn maneuvers into steering and acceleration, batched over any tensor shape.

Torch only: every function takes and returns tensors on the caller's device and is a pure function of
its inputs (controller state such as the PID integral or the lane-change path is passed in and returned).
No road types: callers pass tensors (lane offsets, headings, curvatures, speeds) measured on their own road
or map, so the simulator's traffic, the ego under meta-actions and a scene built from tracks and map lanes
drive with the same controllers.

A closed-loop tick: `apply_maneuvers` (maneuver -> target lane, speed set-point index) ->
`start_lane_change` for a new target lane -> `lane_change_reference` and `reference_errors` (or the pure-pursuit
look-ahead point) -> `ManeuverController` (-> `Command`: steer, accel, throttle, brake) -> `finish_lane_change`.

- `config`: `ControllerConfig` and the gains of each controller; `LateralController` names the steering law.
- `lateral`: cascade, pure pursuit, Stanley and LQR steering; steering limits.
- `longitudinal`: P and PID speed control; throttle/brake split.
- `maneuver`: `Maneuver` (highway-env's meta-actions) and `apply_maneuvers`; quintic lane-change reference
  paths (`LaneChangePath`) and the tracking errors with respect to them.
- `controller`: `ManeuverController` (and the pure `steer_command`, `speed_command`): tracking errors and a
  speed set-point -> `Command`.
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
from drivestack.control.controller import ManeuverController, speed_command, steer_command
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
from drivestack.control.maneuver import (
    LaneChangePath,
    Maneuver,
    apply_maneuvers,
    finish_lane_change,
    lane_change_length,
    lane_change_offset,
    lane_change_reference,
    quintic,
    reference_errors,
    start_lane_change,
)

__all__ = [
    "Command",
    "ControllerConfig",
    "LQRTable",
    "LQRWeights",
    "LaneChangePath",
    "LaneKeepingGains",
    "LateralController",
    "Maneuver",
    "ManeuverController",
    "PIDGains",
    "PurePursuitGains",
    "SpeedGains",
    "StanleyGains",
    "apply_maneuvers",
    "check_finite",
    "finish_lane_change",
    "lane_change_length",
    "lane_change_offset",
    "lane_change_reference",
    "lane_keeping_steer",
    "limit_steer",
    "lookahead_distance",
    "lqr_steer",
    "pid_speed_control",
    "pure_pursuit_steer",
    "quintic",
    "rear_axle_heading_error",
    "reference_errors",
    "speed_command",
    "speed_control",
    "stanley_steer",
    "start_lane_change",
    "steer_command",
    "throttle_brake",
]
