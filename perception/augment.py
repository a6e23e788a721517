"""Batched training augmentation that keeps image and 3D geometry consistent.

Each image of a batch gets its own horizontal flip, scaling about its principal point plus a small translation
(one `grid_sample` for the whole batch) and photometric jitter. The ground truth moves with the pixels in the
detector's image-space encoding (`perception.boxes`): a flip maps u -> W - u and alpha -> -alpha (the scene
mirrored about the optical axis, principal point mirrored with it); a scaling by s maps uv -> s * uv + t and
the focal length f -> s * f, so the depth target log(depth * REF_FOCAL / f) shifts by -log(s) while the metric
depth stays true. Boxes whose centre leaves the image are dropped from the batch's targets.

Opt-in, last: RandConv (`perception.randconv`, `randconv_prob` > 0), a random convolution mixed into the pixels
for sim-to-real transfer; it moves no pixel, so the ground truth is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from drivestack.common.geometry import wrap_angle
from drivestack.perception.dataset import TargetBoxes
from drivestack.perception.randconv import random_convolution


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation (every draw independent per image)."""

    flip_prob: float = 0.5
    """Probability of a horizontal flip."""
    scale_min: float = 0.85
    """Smallest image scale factor (< 1 zooms out and pads with black)."""
    scale_max: float = 1.2
    """Largest image scale factor (> 1 zooms in and crops)."""
    shift: float = 0.03
    """Random translation, as a fraction of the image size, on top of scaling about the principal point
    (which keeps the horizon where the camera puts it: depth stays readable from the image row)."""
    brightness: float = 0.3
    """Brightness factor drawn from [1 - brightness, 1 + brightness]."""
    contrast: float = 0.3
    """Contrast factor drawn from [1 - contrast, 1 + contrast]."""
    saturation: float = 0.3
    """Saturation factor drawn from [1 - saturation, 1 + saturation]."""
    randconv_prob: float = 0.0
    """Probability per image of RandConv (Xu et al., ICLR 2021; the "mix" variant): the image is mixed with a random
    convolution of itself, a * image + (1 - a) * conv(image), a ~ U(0, 1), then re-standardised per channel to its
    mean and std and clamped to [0, 1]. For sim-to-real transfer; 0 (default): off, training unchanged bit for bit."""
    randconv_kernel_sizes: tuple[int, ...] = (1, 3, 5, 7)
    """[px] Kernel sizes of RandConv's 3 -> 3 convolution (odd), one drawn uniformly per image; weights
    ~ N(0, 1 / (3 k^2)), no bias, reflect padding."""

    def validate(self) -> AugmentConfig:
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob={self.flip_prob}; allowed: 0 to 1")
        if not 0.0 < self.scale_min <= self.scale_max:
            raise ValueError(f"scale_min={self.scale_min}, scale_max={self.scale_max}; need 0 < min <= max")
        if not 0.0 <= self.shift < 0.5:
            raise ValueError(f"shift={self.shift}; allowed: 0 <= shift < 0.5")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)}; allowed: 0 <= value < 1")
        if not 0.0 <= self.randconv_prob <= 1.0:
            raise ValueError(f"randconv_prob={self.randconv_prob}; allowed: 0 to 1")
        sizes = tuple(self.randconv_kernel_sizes)
        if not sizes or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0 for k in sizes):
            raise ValueError(f"randconv_kernel_sizes={list(sizes)}; give positive odd integers, e.g. 1 3 5 7")
        return self


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator).to(device)


def augment(
    images: torch.Tensor, targets: TargetBoxes, intrinsic: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, TargetBoxes, torch.Tensor]:
    """Augment a batch.

    Args:
        images: (B, 3, H, W) uint8 network-input images.
        targets: their ground truth (B, M), on the images' device.
        intrinsic: (B, 3, 3) [px] intrinsics of the images; scaling is about their principal points.
        cfg: augmentation ranges.
        generator: CPU random generator (the draws are made on the CPU, so runs repeat on any device).

    Returns:
        (B, 3, H, W) float images in [0, 1], the moved ground truth and the intrinsics (B, 3, 3) of the augmented
        images (focal x s, principal point flipped, scaled and shifted with the pixels).
    """
    B, _, H, W = images.shape
    device = images.device
    principal = intrinsic[:, :2, 2]
    x = images.float().div_(255.0)
    flip = torch.rand(B, generator=generator).to(device) < cfg.flip_prob  # (B,)
    scale = _uniform(B, cfg.scale_min, cfg.scale_max, generator, device)  # (B,)
    cx = torch.where(flip, W - principal[:, 0], principal[:, 0])  # the flipped image's principal point
    tx = cx * (1 - scale) + _uniform(B, -cfg.shift, cfg.shift, generator, device) * W  # u' = s u + tx
    ty = principal[:, 1] * (1 - scale) + _uniform(B, -cfg.shift, cfg.shift, generator, device) * H

    # --- pixels: output u' = s * u + t of the (flipped) input; sampling grid in normalised coordinates
    if cfg.scale_min != 1.0 or cfg.scale_max != 1.0 or cfg.shift > 0 or bool(flip.any()):
        sign = torch.where(flip, -1.0, 1.0)
        theta = torch.zeros(B, 2, 3, device=device)
        theta[:, 0, 0] = sign / scale
        theta[:, 0, 2] = sign * (1.0 / scale - 1.0 - 2.0 * tx / (scale * W))
        theta[:, 1, 1] = 1.0 / scale
        theta[:, 1, 2] = 1.0 / scale - 1.0 - 2.0 * ty / (scale * H)
        grid = F.affine_grid(theta, [B, 3, H, W], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # --- photometric jitter (per image)
    gray_w = torch.tensor([0.299, 0.587, 0.114], device=device).view(1, 3, 1, 1)
    bright = _uniform(B, 1 - cfg.brightness, 1 + cfg.brightness, generator, device).view(B, 1, 1, 1)
    contrast = _uniform(B, 1 - cfg.contrast, 1 + cfg.contrast, generator, device).view(B, 1, 1, 1)
    sat = _uniform(B, 1 - cfg.saturation, 1 + cfg.saturation, generator, device).view(B, 1, 1, 1)
    x = x * bright
    gray = (x * gray_w).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    x = gray + (x - gray) * sat
    x = (x - gray.mean(dim=(2, 3), keepdim=True)) * contrast + gray.mean(dim=(2, 3), keepdim=True)
    x = x.clamp_(0.0, 1.0)

    # --- RandConv (opt-in; with randconv_prob 0 it draws nothing, so the rest of the run's stream is unchanged)
    x = random_convolution(x, cfg.randconv_prob, cfg.randconv_kernel_sizes, generator)

    # --- ground truth follows the pixels
    f2 = flip[:, None]
    u = torch.where(f2, W - targets.uv[..., 0], targets.uv[..., 0])
    x1 = torch.where(f2, W - targets.box2d[..., 2], targets.box2d[..., 0])
    x2 = torch.where(f2, W - targets.box2d[..., 0], targets.box2d[..., 2])
    alpha = torch.where(f2, wrap_angle(-targets.alpha), targets.alpha)
    s2, tx2, ty2 = scale[:, None], tx[:, None], ty[:, None]
    uv = torch.stack([s2 * u + tx2, s2 * targets.uv[..., 1] + ty2], dim=-1)
    box2d = torch.stack(
        [
            (s2 * x1 + tx2).clamp(0, W),
            (s2 * targets.box2d[..., 1] + ty2).clamp(0, H),
            (s2 * x2 + tx2).clamp(0, W),
            (s2 * targets.box2d[..., 3] + ty2).clamp(0, H),
        ],
        dim=-1,
    )
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H)
    labels = torch.where(inside, targets.labels, torch.full_like(targets.labels, -1))
    moved = TargetBoxes(
        uv=uv,
        box2d=box2d,
        depth=targets.depth,
        size=targets.size,
        alpha=alpha,
        labels=labels,
        focal=targets.focal * scale,
    )
    k = intrinsic.clone()
    k[:, 0, 0], k[:, 1, 1] = intrinsic[:, 0, 0] * scale, intrinsic[:, 1, 1] * scale
    k[:, 0, 2], k[:, 1, 2] = scale * cx + tx, scale * principal[:, 1] + ty
    return x, moved, k
