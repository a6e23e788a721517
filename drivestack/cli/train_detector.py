"""`drivestack train detector`: train the camera 3D detector from scratch on nuScenes-format datasets.

The options are `perception.train.TrainDetectorConfig`'s fields. Without --dataroot it trains on the embedded
synthetic dataset (`sim.nuscenes_export.default_dataset`, generated on first use); several --dataroot options are
mixed (`--mix` weights, default in proportion to their sizes; `--class-balance` for class-balanced sampling), e.g.
synthetic data with a user's real nuScenes. `--backbone resnet18 --pretrained torch-cache` (or a .pth path) starts
from torchvision's ImageNet weights the user already has; nothing is downloaded. `--init CHECKPOINT` (or
release:<name>) fine-tunes a trained detector. `--cameras` chooses the camera
images trained on (CAM_FRONT by default, `all` for the six; each image a sample of its own). The run directory holds
config.json, TensorBoard logs under tb/, checkpoints/last.pt (resumable) and checkpoints/best.pt, which
`drivestack bench perception --checkpoint` reads back with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os

# Before torch loads: OpenMP threads that spin while waiting starve each other when the 2 cores are shared
# (measured: 2 threads 9x slower than 1 under load); passive waiting costs nothing measurable when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from drivestack.perception.train import TrainDetectorConfig, dataroots, validate_config  # noqa: E402
from drivestack.perception.train import run_train as _run_train  # noqa: E402

__all__ = ["TrainDetectorConfig", "run_train"]


def run_train(cfg: TrainDetectorConfig) -> dict[str, Any]:
    """Fill in the embedded dataset when no --dataroot is given, then train."""
    validate_config(cfg)  # a mistake is one line before the embedded dataset is generated
    if cfg.init is not None:  # release:<name> or a run directory -> the checkpoint file
        from drivestack.release import resolve_checkpoint_path

        cfg = replace(cfg, init=Path(resolve_checkpoint_path(cfg.init)))
    if not dataroots(cfg):
        from drivestack.sim.nuscenes_export import default_dataset

        cfg = replace(cfg, dataroot=(default_dataset(progress=cfg.progress),))
    return _run_train(cfg)
