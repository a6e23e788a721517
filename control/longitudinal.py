"""Longitudinal control: track a speed set-point with a bounded acceleration."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SpeedGains:
    """Gains of the proportional speed controller."""

    proportional: float = 1.0 / 0.6
    """[1/s] acceleration command per m/s of speed error (highway-env's KP_A)."""

    def validate(self) -> None:
        if not self.proportional > 0.0:
            raise ValueError(f"invalid SpeedGains.proportional={self.proportional!r}; allowed: > 0")


def speed_control(speed: torch.Tensor, target_speed: torch.Tensor | float,
                  gains: SpeedGains = SpeedGains()) -> torch.Tensor:
    """Acceleration command [m/s^2] that drives `speed` [m/s] to `target_speed` [m/s].

    Not clipped: the vehicle model applies its acceleration and braking limits.
    """
    return gains.proportional * (target_speed - speed)
