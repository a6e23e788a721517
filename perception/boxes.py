"""Box geometry and the detector's box encoding, batched in torch.

A box is (x, y, z, w, l, h, yaw): centre [m], size [m] in nuScenes order (w across, l along the heading,
h up) and yaw [rad] counter-clockwise from +x, in the ego frame (x forward, y left, z up). The detector does not
regress that directly: a monocular network sees where the box centre lands in the image, how far away it is and
how it looks from there, so a box is encoded in image space (CenterNet / SMOKE style):

    uv      [px]   the projection of the 3D centre into the (network-input) image
    depth   [m]    the centre's distance along the optical axis (camera z)
    size    [m]    w, l, h
    alpha   [rad]  the allocentric yaw, yaw - azimuth of the ray from the camera to the centre (ego ground
                   plane): what the object's appearance depends on, unlike its yaw

and decoded back exactly through the intrinsic K and the camera-to-ego transform. Horizontal flips and
scalings of the image (augmentation) act on this encoding simply: u -> W - u and alpha -> -alpha for a flip;
uv -> s * uv + t and focal -> s * focal for a scaling. All functions broadcast over leading dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drivestack.common.geometry import apply_transform, box_corners, wrap_angle
from drivestack.perception.config import REF_FOCAL

MIN_DEPTH = 0.1  # [m] corners nearer the camera plane than this are clamped to it before projecting


def focal(intrinsic: torch.Tensor) -> torch.Tensor:
    """[px] geometric mean of fx and fy of intrinsics [..., 3, 3] (the scale of image sizes at unit depth)."""
    return torch.sqrt(intrinsic[..., 0, 0] * intrinsic[..., 1, 1])


def project(points_cam: torch.Tensor, intrinsic: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates [..., N, 2] of camera-frame points [..., N, 3] (z clamped to MIN_DEPTH)."""
    z = points_cam[..., 2:3].clamp(min=MIN_DEPTH)
    uvw = (points_cam / z) @ intrinsic.transpose(-1, -2)
    return uvw[..., :2]


@dataclass
class BoxEncoding:
    """Boxes in the detector's image-space encoding; every tensor shaped (..., N[, k])."""

    uv: torch.Tensor  # (..., N, 2) [px] projected 3D centre
    depth: torch.Tensor  # (..., N) [m] camera z of the centre
    size: torch.Tensor  # (..., N, 3) [m] w, l, h
    alpha: torch.Tensor  # (..., N) [rad] allocentric yaw, in [-pi, pi)


def encode_boxes(boxes: torch.Tensor, intrinsic: torch.Tensor, cam2ego: torch.Tensor) -> BoxEncoding:
    """Encode ego-frame boxes [..., N, 7] seen by a camera (intrinsic [..., 3, 3], cam2ego [..., 4, 4])."""
    ego2cam = torch.linalg.inv(cam2ego)
    center_cam = apply_transform(ego2cam, boxes[..., :3])  # (..., N, 3)
    ray = boxes[..., :3] - cam2ego[..., None, :3, 3]  # (..., N, 3) camera -> centre, ego frame
    alpha = wrap_angle(boxes[..., 6] - torch.atan2(ray[..., 1], ray[..., 0]))
    return BoxEncoding(uv=project(center_cam, intrinsic), depth=center_cam[..., 2], size=boxes[..., 3:6], alpha=alpha)


def decode_boxes(enc: BoxEncoding, intrinsic: torch.Tensor, cam2ego: torch.Tensor) -> torch.Tensor:
    """Ego-frame boxes [..., N, 7] of an encoding (inverse of `encode_boxes`)."""
    ones = torch.ones_like(enc.depth)[..., None]
    rays = torch.cat([enc.uv, ones], dim=-1) @ torch.linalg.inv(intrinsic).transpose(-1, -2)  # (..., N, 3), z = 1
    center_ego = apply_transform(cam2ego, rays * enc.depth[..., None])
    ray = center_ego - cam2ego[..., None, :3, 3]
    yaw = wrap_angle(enc.alpha + torch.atan2(ray[..., 1], ray[..., 0]))
    return torch.cat([center_ego, enc.size, yaw[..., None]], dim=-1)


def depth_to_target(depth: torch.Tensor, focal_px: torch.Tensor) -> torch.Tensor:
    """Regression target log(depth * REF_FOCAL / focal) of depths [m] seen at focal length(s) `focal_px` [px]."""
    return torch.log(depth.clamp(min=MIN_DEPTH) * REF_FOCAL / focal_px)


def target_to_depth(target: torch.Tensor, focal_px: torch.Tensor) -> torch.Tensor:
    """Depth [m] of a log-depth regression (inverse of `depth_to_target`)."""
    return torch.exp(target) * focal_px / REF_FOCAL


def boxes_to_image_boxes(
    boxes: torch.Tensor, intrinsic: torch.Tensor, cam2ego: torch.Tensor, image_size: tuple[int, int]
) -> torch.Tensor:
    """2D boxes [..., N, 4] (x1, y1, x2, y2) [px] enclosing the projected corners, clipped to the image (W, H)."""
    corners = box_corners(boxes)  # (..., N, 8, 3)
    shape = corners.shape
    cam = apply_transform(torch.linalg.inv(cam2ego), corners.reshape(*shape[:-3], -1, 3))
    uv = project(cam, intrinsic).reshape(*shape[:-1], 2)  # (..., N, 8, 2)
    lo, hi = uv.amin(dim=-2), uv.amax(dim=-2)
    width, height = image_size
    x1, x2 = lo[..., 0].clamp(0, width), hi[..., 0].clamp(0, width)
    y1, y2 = lo[..., 1].clamp(0, height), hi[..., 1].clamp(0, height)
    return torch.stack([x1, y1, x2, y2], dim=-1)


def scale_intrinsic(intrinsic: torch.Tensor, sx: float | torch.Tensor, sy: float | torch.Tensor) -> torch.Tensor:
    """Intrinsics [..., 3, 3] of the image resized by (sx, sy) (pixel corners at integers, as F.interpolate)."""
    out = intrinsic.clone()
    out[..., 0, :] = out[..., 0, :] * torch.as_tensor(sx, dtype=out.dtype)[..., None]
    out[..., 1, :] = out[..., 1, :] * torch.as_tensor(sy, dtype=out.dtype)[..., None]
    return out
