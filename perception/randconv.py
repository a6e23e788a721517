"""RandConv: random-convolution photometric augmentation, for training on renders and detecting in real images.

Xu et al., ICLR 2021, "Robust and Generalizable Visual Representation Learning via Random Convolutions", in the
paper's "mix" variant: an image x becomes a * x + (1 - a) * conv(x), with a ~ U(0, 1) and a 3 -> 3 convolution
without bias whose k x k kernel is drawn anew for every image (k uniform over a list; weights ~ N(0, 1 / (3 k^2)),
He init with fan-in 3 k^2, as the paper). A 1 x 1 kernel remaps colours; larger ones also blur and add random
edge and texture responses, while object shapes stay where they are. A network that cannot rely on the renderer's
colours and textures has to read shapes, which is what carries over to real images.

Each mixed image is then re-standardised per channel to the mean and std of its input and clamped to [0, 1], so
the exposure and contrast the photometric jitter chose survive and the network's input statistics do not drift.
Borders are reflect-padded by k // 2: zero padding would draw a dark frame no real image has.

Pixels only: the geometry and the labels do not change. Batched: one grouped convolution per kernel size (the
images that drew it stacked as groups), a Python loop over the kernel sizes only. The draws are made on the CPU
from the caller's generator (as `perception.augment`'s are), so a seed gives the same images on any device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

STD_FLOOR = 1e-6  # [0-1 pixel units] smallest std divided by: a constant channel (all black) stays constant


def mix_convolved(images: torch.Tensor, weight: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Mix each image with its own convolution of itself, re-standardised to the image's channel statistics.

    Args:
        images: (n, 3, H, W) float images in [0, 1].
        weight: (n, 3, 3, k, k) each image's kernel (out channel, in channel, k x k), k odd; same dtype and device.
        alpha: (n,) share of the image itself in the mix, in [0, 1].

    Returns:
        (n, 3, H, W) alpha * image + (1 - alpha) * conv(image) (reflect padding, no bias), shifted and scaled per
        channel to the image's own mean and std (over H, W), clamped to [0, 1]; the images' dtype.
    """
    n, c, H, W = images.shape
    k = weight.shape[-1]
    pad = k // 2
    if pad >= min(H, W):
        raise ValueError(
            f"aug.randconv_kernel_sizes has k={k}, too large for {W} x {H} images (reflect padding needs k // 2 < "
            "the image size); use smaller kernel sizes"
        )
    x = images.reshape(1, n * c, H, W)  # each image a group of 3 channels
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    conv = F.conv2d(x, weight.reshape(n * c, c, k, k), groups=n).view(n, c, H, W)
    a = alpha.view(n, 1, 1, 1)
    mixed = a * images + (1 - a) * conv
    std_in, mean_in = torch.std_mean(images, dim=(2, 3), correction=0, keepdim=True)  # (n, 3, 1, 1)
    std_mix, mean_mix = torch.std_mean(mixed, dim=(2, 3), correction=0, keepdim=True)
    out = (mixed - mean_mix) * (std_in / std_mix.clamp_min(STD_FLOOR)) + mean_in
    return out.clamp_(0.0, 1.0)


def random_convolution(
    images: torch.Tensor, prob: float, kernel_sizes: Sequence[int], generator: torch.Generator
) -> torch.Tensor:
    """RandConv ("mix") applied to each image of a batch with probability `prob`.

    Args:
        images: (B, 3, H, W) float images in [0, 1], on any device.
        prob: probability that an image is convolved; 0 returns `images` itself and draws nothing, so the
            generator's stream (and every later augmentation of the run) is what it would be without RandConv.
        kernel_sizes: odd kernel sizes [px] to draw from, uniformly per image.
        generator: CPU random generator (draws on the CPU, so runs repeat on any device).

    Returns:
        (B, 3, H, W) images of the input's dtype and device: the chosen ones mixed with a random convolution
        (`mix_convolved`), the others unchanged.
    """
    B = images.shape[0]
    if prob <= 0.0 or B == 0:
        return images
    device, dtype = images.device, images.dtype
    # Every image draws its choice, kernel size and mix weight (the stream does not depend on the outcomes).
    chosen = torch.rand(B, generator=generator) < prob  # (B,) bool, CPU: no device sync below
    size_index = torch.randint(len(kernel_sizes), (B,), generator=generator)  # (B,)
    alpha = torch.rand(B, generator=generator)  # (B,) in [0, 1)
    out = images.clone()
    for i, k in enumerate(kernel_sizes):
        idx = torch.nonzero(chosen & (size_index == i)).flatten()  # (n,) images convolved with a k x k kernel
        if len(idx) == 0:
            continue
        # He init: std = 1 / sqrt(fan_in), fan_in = 3 k^2
        weight = torch.randn(len(idx), 3, 3, k, k, generator=generator) * (3 * k * k) ** -0.5
        idx_dev = idx.to(device)
        mixed = mix_convolved(images[idx_dev], weight.to(device, dtype), alpha[idx].to(device, dtype))
        out.index_copy_(0, idx_dev, mixed)
    return out
