"""The monocular 3D detector network: a residual backbone, a small feature pyramid and CenterNet-style heads.

Why this design: a CenterNet-style head (one heat-map peak per object at its projected 3D centre, with depth,
size and allocentric yaw regressed at the peak; SMOKE / CenterNet-3D) needs no anchors, no 2D-box NMS and no
RoI stage, so inference is a single forward pass plus a 3x3 max-pool and a top-k: cheap on a 2-core CPU and
trivially batched on a GPU. Lifting a torchvision 2D detector (Faster R-CNN, RetinaNet) to 3D would add a
second stage and per-box post-processing, costing an order of magnitude more per image at no gain on the
simple scenes this project renders.

    image (B, 3, H, W) -> backbone: stem (stride 4) + 4 residual stages (strides 4, 8, 16, 32)
                       -> neck: top-down sum of 1x1 laterals (a small FPN) down to the head stride (4 or 8)
                       -> heads: heat-map (B, C, H/s, W/s) logits, regression (B, 9, H/s, W/s)

The backbone is torchvision's ResNet `BasicBlock` in the ResNet-18 layout at a configurable width ("slim",
the CPU default: 32-256 channels, 1 block per stage), or torchvision's resnet18 trunk itself. Everything is
built with weights=None: nothing downloads. Opt-in, `load_pretrained_backbone` starts the resnet18 trunk from
torchvision's ImageNet weights a user already has (a file, or the torch hub cache), read with weights_only=True.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock

from drivestack.perception.config import NUM_REG, Backbone, ModelConfig

HEAT_PRIOR = 0.1  # initial heat-map probability everywhere (CenterNet's focal-loss bias initialisation)
INITIAL_DEPTH = 30.0  # [m at REF_FOCAL] initial depth prediction
RAY_CHANNELS = 2  # (u - cx) / fx and (v - cy) / fy of each heat-map cell's centre
INITIAL_DEPTH_UNCERTAINTY = 0.2  # initial Laplace scale of the log-depth error (a relative depth error of 20 %)


def _stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return nn.Sequential(BasicBlock(cin, cout, stride, down), *(BasicBlock(cout, cout) for _ in range(blocks - 1)))


class SlimResNet(nn.Module):
    """ResNet-18 layout with configurable widths; returns the features of the four stages."""

    def __init__(self, widths: tuple[int, ...], blocks: tuple[int, ...]) -> None:
        super().__init__()
        w0 = widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, w0, 3, 2, 1, bias=False),
            nn.BatchNorm2d(w0),
            nn.ReLU(inplace=True),
            nn.Conv2d(w0, w0, 3, 2, 1, bias=False),
            nn.BatchNorm2d(w0),
            nn.ReLU(inplace=True),
        )  # stride 4
        cins = (w0, *widths[:-1])
        self.stages = nn.ModuleList(
            _stage(cin, cout, n, 1 if i == 0 else 2) for i, (cin, cout, n) in enumerate(zip(cins, widths, blocks))
        )
        self.channels = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats  # strides 4, 8, 16, 32


class ResNet18Trunk(nn.Module):
    """torchvision's resnet18 (weights=None) without its pooling and classifier."""

    def __init__(self) -> None:
        super().__init__()
        net = resnet18(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.channels = (64, 128, 256, 512)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def _head(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cin, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1))


class CenterNet3D(nn.Module):
    """Backbone + neck + heads; `forward` returns raw maps, `perception.infer` decodes them into boxes."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        self.backbone = (
            ResNet18Trunk() if Backbone(cfg.backbone) == Backbone.RESNET18 else SlimResNet(cfg.widths, cfg.blocks)
        )
        # Pyramid levels used: from stride 32 down to the head stride (4 -> all four stages, 8 -> the last three).
        self.first_level = 0 if cfg.head_stride == 4 else 1
        chans = self.backbone.channels[self.first_level :]
        c = cfg.neck_channels
        self.laterals = nn.ModuleList(nn.Conv2d(ch, c, 1) for ch in chans)
        self.smooth = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        head_in = c + (RAY_CHANNELS if cfg.ray_features else 0)
        self.heat_head = _head(head_in, len(cfg.classes))
        self.reg_head = _head(head_in, NUM_REG)
        nn.init.constant_(self.heat_head[-1].bias, -torch.log(torch.tensor((1 - HEAT_PRIOR) / HEAT_PRIOR)).item())
        nn.init.normal_(self.reg_head[-1].weight, std=1e-3)
        nn.init.zeros_(self.reg_head[-1].bias)
        with torch.no_grad():  # start depth at a typical object distance instead of 1 m: a faster start
            self.reg_head[-1].bias[2] = math.log(INITIAL_DEPTH)
            self.reg_head[-1].bias[8] = math.log(INITIAL_DEPTH_UNCERTAINTY)

    def forward(self, x: torch.Tensor, intrinsic: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (B, 3, H, W) -> heat-map logits (B, C, H/s, W/s) and regression (B, 9, H/s, W/s).

        `intrinsic` (B, 3, 3) [px] of the network-input images: needed when `cfg.ray_features` (the heads see each
        cell's viewing ray).

        Regression channels: 0-1 sub-cell offset of the projected centre [cells], 2 log depth (focal-normalised,
        see `perception.boxes.depth_to_target`), 3-5 log(size / class prior), 6-7 sin and cos of alpha, 8 log of
        the Laplace scale of the log-depth error (the network's own depth uncertainty, trained by likelihood).
        """
        feats = self.backbone(x)[self.first_level :]
        p = self.laterals[-1](feats[-1])
        for lateral, feat in zip(reversed(self.laterals[:-1]), reversed(feats[:-1])):
            p = F.interpolate(p, size=feat.shape[-2:], mode="nearest") + lateral(feat)
        p = self.smooth(p)
        if self.cfg.ray_features:
            if intrinsic is None:
                raise ValueError(
                    "this detector reads the camera geometry (ray_features): pass the network-input "
                    "intrinsic (B, 3, 3) to forward"
                )
            p = torch.cat([p, ray_maps(intrinsic, p.shape[-2:], self.cfg.head_stride).to(p.dtype)], dim=1)
        return self.heat_head(p), self.reg_head(p)


def ray_maps(intrinsic: torch.Tensor, size: tuple[int, int] | torch.Size, stride: int) -> torch.Tensor:
    """Viewing-ray directions (B, 2, Hf, Wf): (u - cx) / fx and (v - cy) / fy at the centre of each heat-map cell
    (pixel u of cell j is (j + 0.5) * stride, the convention of `perception.loss.build_targets`)."""
    Hf, Wf = size
    k = intrinsic.float()
    u = (torch.arange(Wf, device=k.device, dtype=torch.float32) + 0.5) * stride
    v = (torch.arange(Hf, device=k.device, dtype=torch.float32) + 0.5) * stride
    rx = (u.view(1, 1, Wf) - k[:, 0, 2, None, None]) / k[:, 0, 0, None, None]  # (B, 1, Wf)
    ry = (v.view(1, Hf, 1) - k[:, 1, 2, None, None]) / k[:, 1, 1, None, None]  # (B, Hf, 1)
    return torch.stack([rx.expand(-1, Hf, Wf), ry.expand(-1, Hf, Wf)], dim=1)


RESNET18_WEIGHTS = "resnet18-f37072fd.pth"  # torchvision's ImageNet resnet18 file name (ResNet18_Weights.IMAGENET1K_V1)
TORCH_CACHE = "torch-cache"  # the --pretrained value naming the torch hub cache


def pretrained_path(source: str | Path) -> Path:
    """The weights file `--pretrained` names: `torch-cache` (<torch hub dir>/checkpoints/resnet18-f37072fd.pth,
    where torchvision keeps what it downloaded) or a path. FileNotFoundError (one line, naming the file to place)
    when it is missing: nothing is ever downloaded."""
    if str(source) == TORCH_CACHE:
        path = Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(
                f"--pretrained torch-cache: {path} is missing; place torchvision's ImageNet resnet18 weights "
                f"({RESNET18_WEIGHTS}) there or give its path (nothing is downloaded)"
            )
        return path
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"--pretrained {source}: no such file; give torchvision's resnet18 weights ({RESNET18_WEIGHTS}) or "
            "torch-cache"
        )
    return path


def load_pretrained_backbone(model: CenterNet3D, source: str | Path) -> Path:
    """Load torchvision's resnet18 ImageNet weights (a state-dict file, read with weights_only=True) into the
    resnet18 backbone of `model`; its classifier (fc) is dropped. Returns the file read.

    Raises FileNotFoundError (see `pretrained_path`), ValueError (one line) for a backbone that is not resnet18 or
    a file that is not a resnet18 state dict.
    """
    path = pretrained_path(source)
    if not isinstance(model.backbone, ResNet18Trunk):
        raise ValueError(f"--pretrained {source}: the backbone is {model.cfg.backbone}; use --backbone resnet18")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle with code, a truncated file, another format: all one line
        raise ValueError(
            f"--pretrained {path}: not a torch weights file ({' '.join(str(err).split())[:200]})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"--pretrained {path}: not a state dict of tensors (torchvision's resnet18 .pth)")
    renamed = {"conv1.": "stem.0.", "bn1.": "stem.1.", **{f"layer{i}.": f"stages.{i - 1}." for i in range(1, 5)}}
    trunk = {}
    for key, value in state.items():
        prefix = next((p for p in renamed if key.startswith(p)), None)
        if prefix is not None:
            trunk[renamed[prefix] + key[len(prefix) :]] = value
    expected = model.backbone.state_dict()
    missing = [k for k in expected if k not in trunk]
    if missing:
        raise ValueError(f"--pretrained {path}: not resnet18 weights (no {missing[0]!r} of {len(expected)} tensors)")
    wrong = [k for k, v in expected.items() if trunk[k].shape != v.shape]
    if wrong:
        raise ValueError(
            f"--pretrained {path}: not resnet18 weights ({wrong[0]} is {tuple(trunk[wrong[0]].shape)}, "
            f"{tuple(expected[wrong[0]].shape)} expected)"
        )
    model.backbone.load_state_dict(trunk, strict=True)
    return path


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
