"""The controllers' output and the finiteness check on their inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Command:
    """Actuator commands of a batch of vehicles; tensors of one shape (any, e.g. (B, N))."""

    steer: torch.Tensor  # [rad] steering angle, positive to the left
    accel: torch.Tensor  # [m/s^2] longitudinal acceleration, negative when braking
    throttle: torch.Tensor  # [0, 1] accel / max_accel when accelerating, else 0
    brake: torch.Tensor  # [0, 1] -accel / max_brake when braking, else 0 (see `throttle_brake`)


def check_finite(**named: torch.Tensor | float) -> None:
    """Raise ValueError naming the first input (in argument order) that holds a NaN or an infinity.

    Each check is a device sync on CUDA; hot paths that guarantee finiteness at their boundary call the
    controllers with `validate=False` instead.
    """
    for name, value in named.items():
        if isinstance(value, torch.Tensor):
            bad = ~torch.isfinite(value)
            if bool(bad.any()):
                count = int(bad.sum())
                raise ValueError(
                    f"non-finite {name} ({count} of {value.numel()} values are NaN or inf): "
                    "controller inputs must be finite (check the state and the reference)"
                )
        elif not math.isfinite(float(value)):
            raise ValueError(
                f"non-finite {name} ({value!r}): controller inputs must be finite (check the state and the reference)"
            )
