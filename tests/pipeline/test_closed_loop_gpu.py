"""The closed loop on CUDA takes the CPU's decisions (oracle perception, one short episode; skipped without CUDA)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from drivestack.pipeline.closed_loop import LoopConfig, drive
from drivestack.planning.policy import make_policy
from drivestack.sim.config import env_config

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

HIGHWAY = replace(env_config("drivestack/Highway-v0"), duration=4.0)  # [s]: 4 decisions, 8 camera frames


def decisions_on(device: str) -> tuple[torch.Tensor, dict]:
    """Every policy step's (B,) maneuvers of a short oracle-perception run on `device`, and its perception
    figures."""
    policy = make_policy("rule", HIGHWAY, torch.device(device))
    cfg = LoopConfig(perception="oracle", width=192, height=108)
    decisions: list[torch.Tensor] = []
    result = drive(
        policy, HIGHWAY, cfg, episodes=2, num_envs=2, seed=0, device=device, progress=False, decisions=decisions
    )
    assert result.episodes.count == 2
    return torch.stack(decisions).cpu(), result.perception


@needs_cuda
def test_cuda_closed_loop_decides_as_the_cpu() -> None:
    cpu, cpu_perception = decisions_on("cpu")
    cuda, cuda_perception = decisions_on("cuda")
    assert torch.equal(cuda, cpu)
    assert cuda_perception["camera_frames"] == cpu_perception["camera_frames"]
    assert abs(cuda_perception["recall"] - cpu_perception["recall"]) <= 0.05
