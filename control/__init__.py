"""Controllers that turn maneuvers into steering and acceleration, batched over any tensor shape.

Torch only: every function takes and returns tensors on the caller's device. The simulator's traffic
and the ego under meta-actions drive with the same controllers.
"""

from control.lateral import LaneKeepingGains, lane_keeping_steer
from control.longitudinal import SpeedGains, speed_control

__all__ = ["LaneKeepingGains", "SpeedGains", "lane_keeping_steer", "speed_control"]
