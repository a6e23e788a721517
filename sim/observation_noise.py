"""Perception-shaped observation noise: the other vehicles as a tracker would report them (opt-in, training).

`perturb_agents` adds Gaussian position and velocity errors and drops vehicles (missed tracks) with the
per-distance-band figures of `NoiseConfig` (defaults: the tracker's measured errors on the synthetic
dataset: position 0.6-1.0 m, velocity 1.1-1.8 m/s, recall 0.75 within 20 m, 0.69 at 20-40 m, 0.37 beyond).
A miss is drawn once per `miss_duration` policy steps and held, so tracks come late and drop out for a while
rather than flicker. The numbers are counter-based hashes (`sim.randomness.EpisodeDraws`) of (seed, episode
id, policy step, vehicle slot): the same seed gives the same noisy observations at any batch size, and
training stays reproducible. It works on the road-frame tensors both the simulator's observation and the
planning scene are made of, so a perceived-path policy can be trained against the errors it will meet.
"""

from __future__ import annotations

import math

import torch

from drivestack.sim.config import NoiseConfig
from drivestack.sim.randomness import EpisodeDraws

NOISE_SEED = 0x5EED_0B5  # mixed into the seed: noise draws never coincide with the episodes' traffic draws
STEP_STRIDE = 1 << 20  # stream id = episode id * STEP_STRIDE + policy step (episodes shorter than 2^20 steps)


def _stream(seed: int, salt: int, episode: torch.Tensor, step: torch.Tensor) -> EpisodeDraws:
    return EpisodeDraws(seed ^ NOISE_SEED ^ salt, episode.to(torch.int64) * STEP_STRIDE + step.to(torch.int64))


def perturb_agents(
    x: torch.Tensor,
    y: torch.Tensor,
    vx: torch.Tensor,
    vy: torch.Tensor,
    present: torch.Tensor,
    config: NoiseConfig,
    seed: int,
    episode: torch.Tensor,
    step: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The M other vehicles as a tracker would report them.

    Args:
        x, y: [m] (B, M) positions relative to the ego (its road frame); vx, vy: [m/s] (B, M) velocities
            (absolute or relative: the error is the same); present: (B, M) bool.
        config: the noise figures (used whatever `config.enabled` says: the caller decides).
        seed: the environments' seed; episode: (B,) long episode ids; step: (B,) long policy step in the episode.
    Returns:
        x, y, vx, vy with errors added and present with the missed vehicles removed, shaped as given.
    """
    B, M = x.shape
    dist = torch.hypot(x, y)
    edges = torch.tensor(config.band_edges, device=x.device, dtype=x.dtype)
    band = torch.bucketize(dist, edges, right=True)  # (B, M) 0, 1, 2
    table = torch.tensor([config.position_std, config.velocity_std, config.recall], device=x.device, dtype=x.dtype)
    pos_std, vel_std, recall = table[0][band], table[1][band], table[2][band]

    draws = _stream(seed, 0, episode, step)
    u = draws.rand((B, 2, 2, M)).to(x.dtype)  # two Box-Muller pairs -> four standard normals per vehicle
    radius = torch.sqrt(-2.0 * torch.log1p(-u[:, 0]))  # (B, 2, M); log1p(-u): u < 1 always, so finite
    angle = 2.0 * math.pi * u[:, 1]
    normal = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)  # (B, 4, M)
    held = _stream(seed, 1, episode, torch.div(step, config.miss_duration, rounding_mode="floor"))
    missed = held.rand((B, M)).to(x.dtype) >= recall
    return (
        x + pos_std * normal[:, 0],
        y + pos_std * normal[:, 1],
        vx + vel_std * normal[:, 2],
        vy + vel_std * normal[:, 3],
        present & ~missed,
    )
