"""RandConv augmentation: off is bit for bit, on keeps statistics and geometry, seeded, batched like a loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from drivestack.perception.augment import AugmentConfig, augment
from drivestack.perception.dataset import TargetBoxes
from drivestack.perception.randconv import mix_convolved, random_convolution
from drivestack.perception.train import TrainDetectorConfig, validate_config

SIZES = (1, 3, 5, 7)


def smooth_images(
    B: int = 6, H: int = 24, W: int = 32, seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(B, 3, H, W) smooth random images in [0.2, 0.8] (little clamping after re-standardisation)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(B, 3, 4, 5, generator=g, dtype=torch.float64)
    x = F.interpolate(low, size=(H, W), mode="bilinear", align_corners=False)
    x = x + 0.05 * torch.rand(B, 3, H, W, generator=g, dtype=torch.float64)  # some fine texture
    return (0.2 + 0.6 * x / 1.05).to(dtype)


def restandardise(mixed: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    std_in, mean_in = images.std(dim=(2, 3), correction=0, keepdim=True), images.mean(dim=(2, 3), keepdim=True)
    std_m, mean_m = mixed.std(dim=(2, 3), correction=0, keepdim=True), mixed.mean(dim=(2, 3), keepdim=True)
    return ((mixed - mean_m) / std_m * std_in + mean_in).clamp(0, 1)


def test_prob_zero_is_bit_identical_and_draws_nothing() -> None:
    x = smooth_images()
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    out = random_convolution(x, 0.0, SIZES, gen)
    assert torch.equal(out, x)
    assert torch.equal(gen.get_state(), state)  # the rest of the run's augmentation stream is unchanged


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_prob_one_changes_every_image_and_keeps_channel_statistics(dtype: torch.dtype) -> None:
    x = smooth_images(dtype=dtype)
    out = random_convolution(x, 1.0, SIZES, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert bool(torch.isfinite(out).all()) and out.min() >= 0 and out.max() <= 1
    assert bool(((out - x).abs().amax(dim=(1, 2, 3)) > 1e-3).all())  # every image changed
    std_in, mean_in = torch.std_mean(x, dim=(2, 3), correction=0)
    std_out, mean_out = torch.std_mean(out, dim=(2, 3), correction=0)
    assert torch.allclose(mean_out, mean_in, atol=0.01)
    assert torch.allclose(std_out, std_in, rtol=0.05, atol=0.005)


def test_same_seed_same_images_other_seed_other_images() -> None:
    x = smooth_images()
    a = random_convolution(x, 0.7, SIZES, torch.Generator().manual_seed(5))
    b = random_convolution(x, 0.7, SIZES, torch.Generator().manual_seed(5))
    c = random_convolution(x, 0.7, SIZES, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_kernel_one_without_the_image_is_a_per_pixel_colour_mixing() -> None:
    x = smooth_images(B=3)
    weight = torch.randn(3, 3, 3, 1, 1, generator=torch.Generator().manual_seed(1)) / math.sqrt(3)
    out = mix_convolved(x, weight, torch.zeros(3))
    mixed = torch.einsum("noc,nchw->nohw", weight[..., 0, 0], x)  # each pixel's RGB times the image's 3 x 3 matrix
    assert torch.allclose(out, restandardise(mixed, x), atol=1e-5)


def test_grouped_convolution_equals_a_loop_over_images() -> None:
    x = smooth_images(B=4)
    weight = torch.randn(4, 3, 3, 5, 5, generator=torch.Generator().manual_seed(2)) / math.sqrt(75)
    alpha = torch.tensor([0.0, 0.3, 0.6, 0.9])
    out = mix_convolved(x, weight, alpha)
    for i in range(4):
        conv = F.conv2d(F.pad(x[i : i + 1], (2, 2, 2, 2), mode="reflect"), weight[i])
        expected = restandardise(alpha[i] * x[i : i + 1] + (1 - alpha[i]) * conv, x[i : i + 1])
        assert torch.allclose(out[i : i + 1], expected, atol=1e-5)


def test_augment_leaves_geometry_and_labels_alone() -> None:
    B, H, W = 4, 32, 48
    g = torch.Generator().manual_seed(0)
    images = (255 * smooth_images(B, H, W)).to(torch.uint8)
    targets = TargetBoxes(
        uv=torch.rand(B, 2, 2, generator=g) * torch.tensor([W, H]),
        box2d=torch.tensor([[4.0, 4.0, 20.0, 20.0]]).expand(B, 2, 4).clone(),
        depth=torch.full((B, 2), 10.0),
        size=torch.ones(B, 2, 3),
        alpha=torch.zeros(B, 2),
        labels=torch.tensor([0, -1]).expand(B, 2).clone(),
        focal=torch.full((B,), 40.0),
    )
    k = torch.tensor([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]]).expand(B, 3, 3)
    off, t_off, k_off = augment(images, targets, k, AugmentConfig(), torch.Generator().manual_seed(9))
    on, t_on, k_on = augment(images, targets, k, AugmentConfig(randconv_prob=1.0), torch.Generator().manual_seed(9))
    assert torch.equal(k_on, k_off)
    for name in ("uv", "box2d", "depth", "size", "alpha", "labels", "focal"):
        assert torch.equal(getattr(t_on, name), getattr(t_off, name)), name
    assert on.shape == off.shape and on.dtype == off.dtype and not torch.equal(on, off)


@pytest.mark.parametrize(
    ("fields", "option"),
    [
        ({"randconv_prob": -0.1}, "randconv_prob"),
        ({"randconv_prob": 1.5}, "randconv_prob"),
        ({"randconv_prob": float("nan")}, "randconv_prob"),
        ({"randconv_kernel_sizes": ()}, "randconv_kernel_sizes"),
        ({"randconv_kernel_sizes": (3, 4)}, "randconv_kernel_sizes"),
        ({"randconv_kernel_sizes": (0,)}, "randconv_kernel_sizes"),
        ({"randconv_kernel_sizes": (-3,)}, "randconv_kernel_sizes"),
        ({"randconv_kernel_sizes": (3.0,)}, "randconv_kernel_sizes"),
    ],
)
def test_bad_randconv_options_raise_one_line(fields: dict, option: str) -> None:
    with pytest.raises(ValueError, match=option) as err:
        AugmentConfig(**fields).validate()
    assert "\n" not in str(err.value)


def test_randconv_without_augmentation_is_refused() -> None:
    with pytest.raises(ValueError, match="randconv_prob"):
        validate_config(TrainDetectorConfig(augment=False, aug=AugmentConfig(randconv_prob=0.5)))
    validate_config(TrainDetectorConfig(augment=False))  # off stays allowed


def test_kernel_larger_than_the_image_raises() -> None:
    with pytest.raises(ValueError, match="randconv_kernel_sizes"):
        random_convolution(smooth_images(B=2, H=4, W=4), 1.0, (9,), torch.Generator().manual_seed(0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    x = smooth_images()
    cpu = random_convolution(x, 0.8, SIZES, torch.Generator().manual_seed(4))
    gpu = random_convolution(x.cuda(), 0.8, SIZES, torch.Generator().manual_seed(4))
    assert gpu.is_cuda and torch.allclose(gpu.cpu(), cpu, atol=1e-4)
