"""The camera's sensor, opt-in (`camera_variety.RenderVariety`): Gaussian blur (defocus, motion), vignetting, a tone
curve (gamma), extra per-pixel noise and JPEG compression (YCbCr, 8 x 8 DCT, quantisation with libjpeg's quality
scaling), drawn per image. Off by default: default renders never pass through here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from drivestack.sim.camera_shading import hash01, hash32

if TYPE_CHECKING:
    from drivestack.sim.camera_variety import VarietyDraw

JPEG_BLOCK = 8  # [px] JPEG's DCT block
# JPEG's standard luminance quantisation table (ITU T.81 Annex K), the base of every quality setting
JPEG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)


def _gaussian_blur(image: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Images (B, K, 3, H, W) float blurred with a per-image Gaussian of sigma (B,) [px] (0: unchanged)."""
    B, K, _, H, W = image.shape
    radius = int(math.ceil(3.0 * float(sigma.max()))) if sigma.numel() else 0
    if radius < 1:
        return image
    x = torch.arange(-radius, radius + 1, device=image.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma.clamp_min(1e-3).unsqueeze(1)) ** 2)  # (B, 2r + 1)
    kernel = torch.where(sigma.unsqueeze(1) > 1e-3, kernel, (x == 0).float())  # sigma 0: identity
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    # one grouped convolution per axis: the group of a channel is its image's kernel
    flat = image.reshape(1, B * K * 3, H, W)
    weight = kernel.repeat_interleave(K * 3, dim=0)  # (B * K * 3, 2r + 1)
    flat = torch.nn.functional.pad(flat, (radius, radius, 0, 0), mode="replicate")
    flat = torch.nn.functional.conv2d(flat, weight.view(-1, 1, 1, 2 * radius + 1), groups=B * K * 3)
    flat = torch.nn.functional.pad(flat, (0, 0, radius, radius), mode="replicate")
    flat = torch.nn.functional.conv2d(flat, weight.view(-1, 1, 2 * radius + 1, 1), groups=B * K * 3)
    return flat.view(B, K, 3, H, W)


def _dct_matrix(device: torch.device) -> torch.Tensor:
    n = torch.arange(JPEG_BLOCK, dtype=torch.float32, device=device)
    m = torch.cos((2 * n.view(1, -1) + 1) * n.view(-1, 1) * math.pi / (2 * JPEG_BLOCK))  # (k, n)
    m[0] *= 1.0 / math.sqrt(2.0)
    return m * math.sqrt(2.0 / JPEG_BLOCK)


def _jpeg(image: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG's lossy step on images (B, K, 3, H, W) in 0-255: YCbCr, 8 x 8 DCT, quantisation with the standard
    luminance table at per-image `quality` (B,) (libjpeg's scaling; chroma with twice the step), and back."""
    B, K, _, H, W = image.shape
    ph, pw = (-H) % JPEG_BLOCK, (-W) % JPEG_BLOCK
    x = torch.nn.functional.pad(image.reshape(B * K, 3, H, W), (0, pw, 0, ph), mode="replicate")
    r, g, b = x.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    ycc = torch.stack([y - 128.0, 0.564 * (b - y), 0.713 * (r - y)], dim=1)  # (BK, 3, H', W')
    Hp, Wp = ycc.shape[-2:]
    blocks = ycc.view(B * K, 3, Hp // 8, 8, Wp // 8, 8).transpose(3, 4)  # (BK, 3, h, w, 8, 8)
    d = _dct_matrix(image.device)
    coeff = d @ blocks @ d.T
    q = quality.clamp(1.0, 100.0)
    scale = torch.where(q < 50, 50.0 / q, 2.0 - q / 50.0)  # libjpeg's quality scaling
    table = torch.tensor(JPEG_LUMA, dtype=torch.float32, device=image.device)
    step = (table * scale.view(-1, 1, 1)).clamp_min(1.0)  # (B, 8, 8)
    step = step.repeat_interleave(K, dim=0).view(B * K, 1, 1, 1, 8, 8)
    step = step * torch.tensor([1.0, 2.0, 2.0], device=image.device).view(1, 3, 1, 1, 1, 1)
    coeff = torch.round(coeff / step) * step
    blocks = d.T @ coeff @ d
    y, cb, cr = blocks.transpose(3, 4).reshape(B * K, 3, Hp, Wp).unbind(1)
    y = y + 128.0
    rgb = torch.stack([y + 1.403 * cr, y - 0.344 * cb - 0.714 * cr, y + 1.773 * cb], dim=1)
    return rgb[..., :H, :W].reshape(B, K, 3, H, W)


def sensor_effects(images: torch.Tensor, draw: VarietyDraw) -> torch.Tensor:
    """Images (B, K, 3, H, W) uint8 (K cameras) through a per-image sensor: blur, vignetting, gamma, extra noise
    (a hash of pixel and image seed), JPEG compression; uint8 again."""
    B, K, _, H, W = images.shape
    dev = images.device
    x = _gaussian_blur(images.float(), draw.blur)
    v = (torch.arange(H, device=dev, dtype=torch.float32) + 0.5) / H - 0.5
    u = (torch.arange(W, device=dev, dtype=torch.float32) + 0.5) / W - 0.5
    r2 = (u.view(1, -1) ** 2 + v.view(-1, 1) ** 2) / 0.5  # (H, W) 1 in the corners
    x = x * (1.0 - draw.vignetting.view(B, 1, 1, 1, 1) * r2)
    x = 255.0 * (x / 255.0).clamp(0.0, 1.0) ** draw.gamma.view(B, 1, 1, 1, 1)
    pixel = torch.arange(K * 3 * H * W, device=dev, dtype=torch.int32).view(1, -1)
    uniform = hash01(pixel ^ hash32(draw.seed.int() + 3).view(B, 1)).view(B, K, 3, H, W)
    x = x + (uniform - 0.5) * math.sqrt(12.0) * draw.noise_std.view(B, 1, 1, 1, 1)
    x = _jpeg(x.clamp(0.0, 255.0), draw.jpeg_quality)
    return x.round().clamp(0.0, 255.0).to(torch.uint8)
