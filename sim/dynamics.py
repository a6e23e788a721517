"""Kinematic bicycle dynamics in road coordinates, with actuator limits.

The model is the centre-of-gravity kinematic bicycle (the one highway-env uses) with the centre of
gravity at mid-wheelbase:

    beta     = atan(tan(steer) / 2)                       slip angle at the CoG
    yaw_rate = v cos(beta) tan(steer) / wheelbase
    ds/dt    = v cos(psi + beta) / (1 - kappa_ref d)      (exact Frenet kinematics)
    dd/dt    = v sin(psi + beta)
    dpsi/dt  = yaw_rate - kappa_ref ds/dt                  (psi is relative to the reference line)
    dv/dt    = a

integrated with forward Euler at the simulation step. Limits: |steer| <= max_steer,
|d steer/dt| <= max_steer_rate, -max_brake <= a <= max_accel, 0 <= v <= max_speed.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from drivestack.common.geometry import wrap_angle
from drivestack.sim.config import VehicleConfig
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import VehicleState


def apply_limits(
    state: VehicleState, steer_cmd: torch.Tensor, accel_cmd: torch.Tensor, limits: VehicleConfig, dt: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steering angle [rad], acceleration [m/s^2] and new speed [m/s] after all actuator limits."""
    steer_target = steer_cmd.clamp(-limits.max_steer, limits.max_steer)
    max_delta = limits.max_steer_rate * dt
    steer = state.steer + (steer_target - state.steer).clamp(-max_delta, max_delta)
    accel = accel_cmd.clamp(-limits.max_brake, limits.max_accel)
    speed = (state.speed + accel * dt).clamp(0.0, limits.max_speed)
    return steer, (speed - state.speed) / dt, speed


def bicycle_step(
    state: VehicleState,
    steer_cmd: torch.Tensor,
    accel_cmd: torch.Tensor,
    road: RoadNetwork,
    limits: VehicleConfig,
    dt: float,
) -> VehicleState:
    """Advance all vehicles by one step of dt [s] under steering [rad] and acceleration [m/s^2]
    commands shaped (B, N). Returns the new state; lanes are not updated here."""
    steer, accel, new_speed = apply_limits(state, steer_cmd, accel_cmd, limits, dt)
    v = state.speed
    wheelbase = limits.wheelbase_ratio * state.length
    tan_steer = torch.tan(steer)
    beta = torch.atan(0.5 * tan_steer)
    _, _, _, kappa = road.reference(state.s)
    course = state.psi + beta
    s_dot = v * torch.cos(course) / (1.0 - kappa * state.d).clamp_min(0.1)
    d_dot = v * torch.sin(course)
    yaw_rate = v * torch.cos(beta) * tan_steer / wheelbase
    psi = state.psi + (yaw_rate - kappa * s_dot) * dt
    psi = wrap_angle(psi)
    return replace(
        state,
        s=road.wrap(state.s + s_dot * dt),
        d=state.d + d_dot * dt,
        psi=psi,
        speed=new_speed,
        steer=steer,
        accel=accel,
    )
