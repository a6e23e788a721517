"""Detector configuration: the architecture a checkpoint is rebuilt from, and the constants of the box encoding.

`ModelConfig` is everything needed to rebuild a trained network (it is stored in every checkpoint); the
training and benchmark options live next to their code (`perception.train`, `drivestack.bench.perception`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from nuscenes.eval.detection.constants import DETECTION_NAMES

CAMERA = "CAM_FRONT"  # the default camera channel the detector reads (nuScenes sensor channel name)
# nuScenes' six camera channels, in the devkit's order (the simulator's export uses the same)
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
ALL_CAMERAS = "all"  # what --cameras takes for all six

# Mean box size (w, l, h) [m] per nuScenes detection class, about the nuScenes train-set averages. Sizes are
# regressed as log(size / prior), so these only centre the regression; they need not be exact.
SIZE_PRIORS: dict[str, tuple[float, float, float]] = {
    "car": (1.95, 4.62, 1.73),
    "truck": (2.51, 6.93, 2.84),
    "bus": (2.94, 10.50, 3.47),
    "trailer": (2.90, 12.29, 3.87),
    "construction_vehicle": (2.73, 6.37, 3.19),
    "pedestrian": (0.67, 0.73, 1.77),
    "motorcycle": (0.77, 2.11, 1.47),
    "bicycle": (0.60, 1.70, 1.28),
    "traffic_cone": (0.41, 0.41, 1.07),
    "barrier": (2.49, 0.48, 0.99),
}
REF_FOCAL = 500.0  # [px] depth is regressed as log(depth * REF_FOCAL / focal): the same network serves any camera
IMAGE_MEAN = (0.485, 0.456, 0.406)  # [0-1] RGB normalisation of the network input
IMAGE_STD = (0.229, 0.224, 0.225)
NUM_REG = 9  # regression channels per cell: offset (2), log depth (1), log size ratio (3), sin/cos alpha (2),
#              log depth uncertainty (1)
# [m] the centre distances at which nuScenes' DetectionEval matches a prediction to the ground truth. The detector
# ranks its boxes by heat-map confidence times the probability, under its own depth uncertainty, that the centre
# lies within these distances (averaged over them, as the AP is).
MATCH_DISTANCES = (0.5, 1.0, 2.0, 4.0)


class Backbone(str, Enum):
    SLIM = "slim"  # ResNet-18 layout at a configurable (small) width: the CPU default
    RESNET18 = "resnet18"  # torchvision's resnet18 trunk (widths 64-512, weights=None): ~4x the compute, for GPUs


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the monocular 3D detector (CenterNet-style heat-map + box regression)."""

    classes: tuple[str, ...] = ("car", "truck")
    """nuScenes detection names the heat-map has a channel for, in channel order."""
    input_width: int = 512
    """[px] width the camera image is resized to before the network (a multiple of 32)."""
    input_height: int = 288
    """[px] height the camera image is resized to (a multiple of 32); 512 x 288 keeps nuScenes' 16:9."""
    backbone: Backbone = Backbone.SLIM
    """Backbone: slim (ResNet-18 layout, `widths` channels) or resnet18 (torchvision's, weights=None)."""
    widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    """Channels of the slim backbone's four stages (strides 4, 8, 16, 32); resnet18 ignores it (64-512)."""
    blocks: tuple[int, int, int, int] = (1, 1, 1, 1)
    """Residual blocks per stage of the slim backbone (resnet18: 2 2 2 2)."""
    neck_channels: int = 64
    """Channels of the feature-pyramid neck and of the two heads."""
    head_stride: int = 8
    """[px] output stride of the heat-map (4 or 8): 8 costs a quarter of the head compute of 4."""
    max_detections: int = 100
    """Heat-map peaks kept per image (before the score threshold)."""
    ray_features: bool = True
    """Give the heads each cell's viewing-ray direction ((u - cx) / fx, (v - cy) / fy, from the intrinsic) as two
    extra channels (CoordConv with the camera's geometry). A fully convolutional network cannot otherwise tell
    how far below the horizon an object stands, the flat-ground depth cue that separates a small near car from
    a large far one."""

    def validate(self) -> ModelConfig:
        unknown = [c for c in self.classes if c not in DETECTION_NAMES]
        if not self.classes or unknown:
            raise ValueError(
                f"classes={list(self.classes)}: each must be a nuScenes detection name ({', '.join(DETECTION_NAMES)})"
            )
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes={list(self.classes)} repeats a name")
        for name in ("input_width", "input_height"):
            value = getattr(self, name)
            if value < 64 or value % 32:
                raise ValueError(f"{name}={value}; allowed: a multiple of 32, at least 64")
        if self.head_stride not in (4, 8):
            raise ValueError(f"head_stride={self.head_stride}; allowed: 4 or 8")
        if min(self.widths) < 4 or min(self.blocks) < 1 or self.neck_channels < 4 or self.max_detections < 1:
            raise ValueError(
                "widths, blocks, neck_channels and max_detections must be positive "
                f"(got {self.widths}, {self.blocks}, {self.neck_channels}, {self.max_detections})"
            )
        return self

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) [px] of the network input."""
        return self.input_width, self.input_height

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) [cells] of the heat-map."""
        return self.input_width // self.head_stride, self.input_height // self.head_stride

    def size_priors(self) -> list[tuple[float, float, float]]:
        """Prior (w, l, h) [m] of each class, in channel order."""
        return [SIZE_PRIORS[c] for c in self.classes]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["backbone"] = Backbone(self.backbone).value
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; ValueError naming an unknown field."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"model config has unknown fields {unknown}; was it written by a newer drivestack?")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        if "backbone" in kwargs:
            kwargs["backbone"] = Backbone(kwargs["backbone"])
        return cls(**kwargs).validate()


def sort_classes(names: set[str] | list[str]) -> tuple[str, ...]:
    """Detection names in the devkit's canonical order (car, truck, bus, ...)."""
    return tuple(n for n in DETECTION_NAMES if n in set(names))


def resolve_cameras(cameras: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Camera channels named by a `--cameras` option: nuScenes camera names (order kept, repeats dropped), or
    "all" for the six; ValueError (one line, listing the valid names) for anything else."""
    names = (cameras,) if isinstance(cameras, str) else tuple(cameras)
    if ALL_CAMERAS in names:
        if len(names) > 1:
            raise ValueError(f"cameras={list(names)}: give 'all' alone or camera names ({', '.join(CAMERAS)})")
        return CAMERAS
    unknown = [c for c in names if c not in CAMERAS]
    if not names or unknown:
        what = f"unknown camera {unknown[0]!r}" if unknown else "no camera given"
        raise ValueError(f"cameras={list(names)}: {what}; valid: {ALL_CAMERAS}, {', '.join(CAMERAS)}")
    return tuple(dict.fromkeys(names))
