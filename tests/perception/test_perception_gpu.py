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


@needs_cuda
def test_cuda_merge_of_cameras_matches_cpu() -> None:
    from drivestack.perception.infer import Detections, merge_detections

    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(48, 30, 7, generator=g) * 10.0  # 8 samples x 6 cameras, 30 boxes each
    scores, labels = torch.rand(48, 30, generator=g), torch.randint(0, 2, (48, 30), generator=g)
    sample = torch.arange(8).repeat_interleave(6)
    cpu = merge_detections(Detections(boxes, scores, labels, ("car", "truck")), sample, 8, score_threshold=0.2)
    dets = Detections(boxes.cuda(), scores.cuda(), labels.cuda(), ("car", "truck"))
    gpu = merge_detections(dets, sample.cuda(), 8, score_threshold=0.2).to("cpu")
    assert torch.equal(gpu.scores, cpu.scores) and torch.equal(gpu.labels, cpu.labels)
    assert torch.allclose(gpu.boxes, cpu.boxes)
