"""A small detector overfits a handful of images to near-perfect AP (the whole train -> detect -> score path)."""

from __future__ import annotations

from pathlib import Path

import torch

from drivestack.common.nuscenes import open_nuscenes
from drivestack.perception.config import ModelConfig
from drivestack.perception.dataset import cache_frames, load_frames
from drivestack.perception.evaluate import evaluate_detections
from drivestack.perception.infer import Detector, detect_frames, normalize
from drivestack.perception.loss import build_targets, detection_loss
from drivestack.perception.model import CenterNet3D
from drivestack.perception.train import detect_cached, learning_rate

STEPS = 160


def test_overfits_a_handful_of_images(tiny_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        classes=("car", "truck"),
        input_width=160,
        input_height=96,
        widths=(16, 32, 64, 64),
        neck_channels=32,
        head_stride=4,
    )
    nusc = open_nuscenes(tiny_root)
    frames = load_frames(nusc, "train")[:6]
    cache = cache_frames(frames, cfg.classes, cfg.input_size, progress=False)
    model = CenterNet3D(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    x = normalize(cache.images.float() / 255)
    dense = build_targets(cache.targets, torch.tensor(cfg.size_priors()), cfg.output_size, cfg.head_stride)
    for step in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, STEPS, 5e-3)
        heat, reg = model(x, cache.intrinsic)
        loss, terms = detection_loss(heat, reg, dense)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert terms["heatmap"] < 0.1 and terms["depth"] < 0.05, {k: float(v) for k, v in terms.items()}

    dets = detect_cached(model, cache, 8, torch.device("cpu"), amp=False)
    result = evaluate_detections(nusc, frames, dets, {}, tmp_path, plots=False)
    for name in result["classes"]:
        by_dist = result["label_aps"][name]
        assert by_dist["2.0"] > 0.9 and by_dist["4.0"] > 0.9, result["label_aps"]
    assert result["mAP"] > 0.7, result["AP"]
    assert result["coco_2d"]["AP50"] > 0.9, result["coco_2d"]
    assert result["tp_errors"]["orient_err"] < 0.1 and result["tp_errors"]["scale_err"] < 0.05

    # The file-reading inference path (JPEG decode in the loader, resize in the detector) agrees with the cache's.
    detector = Detector(model, device="cpu")
    again = detect_frames(detector, frames, batch_size=3, progress=False)
    top = dets.scores > 0.3
    assert torch.equal(again.scores > 0.3, top)
    assert torch.allclose(again.boxes[top], dets.boxes[top], atol=0.05)
