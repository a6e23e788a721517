"""Network shapes, target construction, losses, and a few optimisation steps that lower the loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from drivestack.common.nuscenes import open_nuscenes
from drivestack.perception.augment import AugmentConfig, augment
from drivestack.perception.config import Backbone, ModelConfig
from drivestack.perception.dataset import TargetBoxes, cache_frames, load_frames
from drivestack.perception.infer import normalize
from drivestack.perception.loss import build_targets, detection_loss, focal_loss, gaussian_radius
from drivestack.perception.model import CenterNet3D

TINY = dict(input_width=160, input_height=96, widths=(8, 16, 32, 64), neck_channels=16)


@pytest.mark.parametrize("stride,backbone", [(4, Backbone.SLIM), (8, Backbone.SLIM), (8, Backbone.RESNET18)])
def test_output_shapes(stride: int, backbone: Backbone) -> None:
    cfg = ModelConfig(classes=("car", "truck", "pedestrian"), head_stride=stride, backbone=backbone, **TINY)
    model = CenterNet3D(cfg).eval()
    with torch.no_grad():
        k = torch.tensor([[100.0, 0, 80], [0, 100, 48], [0, 0, 1]]).expand(2, 3, 3)
        heat, reg = model(torch.randn(2, 3, 96, 160), k)
    assert heat.shape == (2, 3, 96 // stride, 160 // stride) and reg.shape == (2, 9, 96 // stride, 160 // stride)
    assert torch.allclose(torch.sigmoid(heat).mean(), torch.tensor(0.1), atol=0.05)  # the focal-loss prior
    with pytest.raises(ValueError, match="pass the network-input intrinsic"):
        model(torch.randn(2, 3, 96, 160))


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="input_width=100"):
        ModelConfig(input_width=100).validate()
    with pytest.raises(ValueError, match="nuScenes detection name"):
        ModelConfig(classes=("cat",)).validate()
    with pytest.raises(ValueError, match="head_stride=16"):
        ModelConfig(head_stride=16).validate()
    cfg = ModelConfig(classes=("car",), **TINY)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown fields"):
        ModelConfig.from_dict({**cfg.to_dict(), "wings": 2})


def test_gaussian_radius_grows_with_the_box() -> None:
    r = gaussian_radius(torch.tensor([2.0, 8.0, 32.0]), torch.tensor([2.0, 8.0, 32.0]))
    assert (r[1:] > r[:-1]).all() and (r > 0).all()


def test_targets_and_focal_loss() -> None:
    t = TargetBoxes(
        uv=torch.tensor([[[41.0, 22.0], [100.0, 60.0], [0.0, 0.0]]]),
        box2d=torch.tensor([[[30.0, 10.0, 52.0, 34.0], [90.0, 50.0, 110.0, 70.0], [0, 0, 0, 0]]]),
        depth=torch.tensor([[10.0, 20.0, 1.0]]),
        size=torch.tensor([[[2.0, 4.5, 1.6]] * 3]),
        alpha=torch.tensor([[0.3, -1.0, 0.0]]),
        labels=torch.tensor([[0, 1, -1]]),
        focal=torch.tensor([200.0]),
    )
    dense = build_targets(t, torch.tensor([[1.95, 4.62, 1.73], [2.51, 6.93, 2.84]]), (40, 24), 4)
    assert dense.heatmap.shape == (1, 2, 24, 40)
    assert dense.heatmap[0, 0, 5, 10] == 1.0 and dense.heatmap[0, 1, 15, 25] == 1.0  # floor(uv / 4)
    assert int((dense.heatmap == 1).sum()) == 2 and dense.mask.tolist() == [[True, True, False]]
    assert dense.index[0, :2].tolist() == [5 * 40 + 10, 15 * 40 + 25]
    assert torch.allclose(dense.regression[0, 0, :2], torch.tensor([0.25, 0.5]))
    # A perfect heat-map scores far lower than a uniform guess.
    perfect = torch.logit(dense.heatmap.clamp(1e-4, 1 - 1e-4))
    assert focal_loss(perfect, dense.heatmap) < 0.05 * focal_loss(torch.zeros_like(perfect), dense.heatmap)


def test_loss_decreases_on_a_tiny_set(tiny_root: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(classes=("car", "truck"), head_stride=4, **TINY)
    cache = cache_frames(load_frames(open_nuscenes(tiny_root), "train"), cfg.classes, cfg.input_size, progress=False)
    model = CenterNet3D(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    priors = torch.tensor(cfg.size_priors())
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        x, t, k_in = augment(cache.images, cache.targets, cache.intrinsic, AugmentConfig(), gen)
        heat, reg = model(normalize(x), k_in)
        loss, terms = detection_loss(heat, reg, build_targets(t, priors, cfg.output_size, cfg.head_stride))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


def test_depth_likelihood_is_least_where_the_predicted_scale_is_the_error() -> None:
    """The depth term is the Laplace NLL |e| / b + log b: minimal at b = |e|; the other terms ignore b."""
    from drivestack.perception.loss import DenseTargets, detection_loss

    target = torch.zeros(1, 1, 8)
    target[0, 0, 2] = 3.0
    dense = DenseTargets(
        heatmap=torch.zeros(1, 1, 2, 2), index=torch.tensor([[1]]), mask=torch.tensor([[True]]), regression=target
    )
    reg = torch.zeros(1, 9, 2, 2)
    reg[0, 2, 0, 1] = 3.2  # a log-depth error of 0.2 at the object cell
    nll = []
    for scale in (0.05, 0.1, 0.2, 0.4, 0.8):
        reg[0, 8, 0, 1] = torch.log(torch.tensor(scale))
        _, terms = detection_loss(torch.zeros(1, 1, 2, 2), reg, dense)
        nll.append(terms["depth"].item())
        assert abs(terms["depth_l1"].item() - 0.2) < 1e-6
    assert min(range(5), key=nll.__getitem__) == 2, nll


def test_ray_maps_are_the_cell_centres_viewing_rays() -> None:
    """Cell (i, j) of the ray maps holds ((u - cx) / fx, (v - cy) / fy) at its centre pixel; the principal point's
    cell reads about zero, and a doubled focal length halves the rays."""
    from drivestack.perception.model import ray_maps

    k = torch.tensor([[[200.0, 0, 64], [0, 100, 32], [0, 0, 1]]])
    k2 = k.clone()
    k2[:, 0, 0], k2[:, 1, 1] = 400.0, 200.0
    rays = ray_maps(torch.cat([k, k2]), (8, 16), 8)
    assert rays.shape == (2, 2, 8, 16)
    assert torch.allclose(rays[0, :, 3, 7], torch.tensor([(60 - 64) / 200, (28 - 32) / 100]))
    assert torch.allclose(rays[0, :, 7, 15], torch.tensor([(124 - 64) / 200, (60 - 32) / 100]))
    assert torch.allclose(rays[1], rays[0] / 2)
