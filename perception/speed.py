"""Inference speed of a detector: images/s and latency per batch, with the inputs already on the device.

What is timed is `Detector.__call__`: uint8 camera images (B, 3, H, W) at their native size in, ego-frame boxes
out — resize to the network input, normalisation, the network (float16 autocast on CUDA) and the decoding.
JPEG decoding and host-to-device copies are not part of it (a camera pipeline overlaps them with inference).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from drivestack.common.host import synchronize
from drivestack.perception.infer import Detector


def measure_speed(
    detector: Detector,
    images: torch.Tensor,
    intrinsic: torch.Tensor,
    cam2ego: torch.Tensor,
    batch_size: int,
    iters: int = 20,
    warmup: int = 3,
    min_seconds: float = 0.0,
) -> dict[str, Any]:
    """Time `detector` on batches of `batch_size` images drawn (cyclically) from `images`.

    Args:
        images: (N, 3, H, W) uint8; intrinsic: (N, 3, 3); cam2ego: (N, 4, 4). Moved to the detector's device
            once, before timing.
        iters: timed batches (at least); warmup: untimed batches first (allocator, cuDNN autotuning).
        min_seconds: keep timing past `iters` until this much time has passed (steadier figures on a GPU).

    Returns:
        batch_size, images_per_s, latency_ms (mean per batch), latency_ms_p50, latency_ms_p90, iters, device,
        image_size (W, H), input_size (W, H) and amp.
    """
    device = detector.device
    n = images.shape[0]
    idx = torch.arange(batch_size) % n
    x, k, t = images[idx].to(device), intrinsic[idx].to(device), cam2ego[idx].to(device)
    for _ in range(warmup):
        detector(x, k, t)
    synchronize(device)  # note: kernels are asynchronous; time only finished work
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iters or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        detector(x, k, t)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    times_sorted = sorted(times)
    mean = statistics.fmean(times)
    return {
        "device": str(device),
        "batch_size": batch_size,
        "images_per_s": batch_size / mean,
        "latency_ms": 1000 * mean,
        "latency_ms_p50": 1000 * times_sorted[len(times) // 2],
        "latency_ms_p90": 1000 * times_sorted[min(len(times) - 1, int(0.9 * len(times)))],
        "iters": len(times),
        "image_size": [int(images.shape[-1]), int(images.shape[-2])],
        "input_size": list(detector.cfg.input_size),
        "amp": detector.amp,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
    }
