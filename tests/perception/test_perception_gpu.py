"""CUDA paths: float16 inference agrees with the CPU, and a training step runs with AMP (skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from drivestack.common.nuscenes import open_nuscenes
from drivestack.perception.config import ModelConfig
from drivestack.perception.dataset import load_frames
from drivestack.perception.infer import Detector, detect_frames
from drivestack.perception.model import CenterNet3D
from drivestack.perception.speed import measure_speed

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_cuda_amp_inference_matches_cpu(tiny_root: Path) -> None:
    torch.manual_seed(0)
    model = CenterNet3D(ModelConfig(classes=("car", "truck"), input_width=160, input_height=96)).eval()
    frames = load_frames(open_nuscenes(tiny_root), "all")
    cpu = detect_frames(Detector(model, device="cpu"), frames, batch_size=4, progress=False)
    gpu_detector = Detector(CenterNet3D(model.cfg).eval(), device="cuda")
    gpu_detector.model.load_state_dict(model.state_dict())
    assert gpu_detector.amp
    gpu = detect_frames(gpu_detector, frames, batch_size=4, progress=False)
    assert torch.allclose(gpu.scores, cpu.scores, atol=2e-2)
    speed = measure_speed(
        gpu_detector,
        torch.zeros(4, 3, 450, 800, dtype=torch.uint8),
        torch.eye(3).expand(4, 3, 3),
        torch.eye(4).expand(4, 4, 4),
        batch_size=64,
        iters=3,
    )
    assert speed["images_per_s"] > 0 and speed["device"].startswith("cuda")


@needs_cuda
def test_cuda_training_smoke(tiny_root: Path, tmp_path: Path) -> None:
    from drivestack.perception.train import TrainDetectorConfig, run_train

    result = run_train(
        TrainDetectorConfig(
            dataroot=tiny_root,
            epochs=2,
            batch_size=4,
            device="cuda",
            input_width=160,
            input_height=96,
            run_dir=tmp_path / "run",
            progress=False,
        )
    )
    assert result["step"] == 4 and (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
