"""Frames and geometry in one convention: angles, quaternions, rotations, rigid transforms and box corners.

Frames follow nuScenes: the global frame; the ego frame x forward, y left, z up; a camera frame x right,
y down, z forward. Yaw [rad] is counter-clockwise about +z from +x and wrapped to [-pi, pi). A box is
(x, y, z, w, l, h, yaw): centre [m], size [m] in nuScenes order (w across, l along the heading, h up) and
yaw. Quaternions are (w, x, y, z) and need not be normalised where a rotation is built from them.

Every function takes either numpy arrays (or anything `np.asarray` accepts; integers become float64) or
torch tensors and returns the same kind, in the input's floating dtype and on its device; all of them
broadcast over leading dimensions.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

# Box corners in the nuscenes-devkit `Box.corners()` order, as signs of (l / 2, w / 2, h / 2) in the box frame:
# the first four face forward (+x), the last four backward; within each four: left-top, right-top, right-bottom,
# left-bottom.
CORNER_SIGNS = (
    (1, 1, 1),
    (1, -1, 1),
    (1, -1, -1),
    (1, 1, -1),
    (-1, 1, 1),
    (-1, -1, 1),
    (-1, -1, -1),
    (-1, 1, -1),
)
# The 12 edges of a box as pairs of corner indices, each from its low end to its high end along its axis.
BOX_EDGES = (
    (4, 0),
    (5, 1),
    (6, 2),
    (7, 3),  # along x (length): rear -> front
    (1, 0),
    (2, 3),
    (5, 4),
    (6, 7),  # along y (width): right -> left
    (2, 1),
    (3, 0),
    (6, 5),
    (7, 4),  # along z (height): bottom -> top
)
# The four bottom corners, as the devkit's `Box.bottom_corners()`: the first two face forward.
BOTTOM_CORNERS = (2, 3, 7, 6)


def _float(x: object) -> np.ndarray | torch.Tensor:
    """Tensors as they are; anything else as a floating numpy array (float64 unless already floating)."""
    if isinstance(x, torch.Tensor):
        return x
    a = np.asarray(x)
    return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)


def _stack(parts: list, axis: int) -> np.ndarray | torch.Tensor:
    return torch.stack(parts, dim=axis) if isinstance(parts[0], torch.Tensor) else np.stack(parts, axis=axis)


def wrap_angle(angle: Array) -> Array:
    """Angles [rad] of any shape wrapped to [-pi, pi) (pi maps to -pi)."""
    angle = _float(angle)
    if isinstance(angle, torch.Tensor):
        wrapped = torch.remainder(angle + math.pi, 2.0 * math.pi) - math.pi
        return torch.where(wrapped >= math.pi, wrapped - 2.0 * math.pi, wrapped)  # remainder may round up to 2 pi
    wrapped = np.remainder(angle + math.pi, 2.0 * math.pi) - math.pi
    return np.where(wrapped >= math.pi, wrapped - 2.0 * math.pi, wrapped)


def yaw_to_quaternion(yaw: Array) -> Array:
    """Quaternions [..., 4] (w, x, y, z) of rotations by yaw [...] [rad] about +z."""
    yaw = _float(yaw)
    lib = torch if isinstance(yaw, torch.Tensor) else np
    half = 0.5 * yaw
    zero = lib.zeros_like(yaw)
    return _stack([lib.cos(half), zero, zero, lib.sin(half)], axis=-1)


def quaternion_to_yaw(q: Array) -> Array:
    """Yaw [...] [rad] in [-pi, pi] of quaternions [..., 4] (w, x, y, z): the heading of the rotated x axis
    on the ground, as the devkit's `quaternion_yaw` (pitch and roll are ignored)."""
    q = _float(q)
    w, x, y, z = (q[..., i] for i in range(4))
    atan2 = torch.atan2 if isinstance(q, torch.Tensor) else np.arctan2
    return atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quaternion_to_matrix(q: Array) -> Array:
    """Rotation matrices [..., 3, 3] of quaternions [..., 4] (w, x, y, z), normalised first."""
    q = _float(q)
    if isinstance(q, torch.Tensor):
        q = q / q.norm(dim=-1, keepdim=True)
    else:
        q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = (q[..., i] for i in range(4))
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return _stack(rows, axis=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_yaw(rot: Array) -> Array:
    """Yaw [...] [rad] in [-pi, pi] of rotation matrices [..., 3, 3]: the heading of the rotated x axis on the
    ground."""
    rot = _float(rot)
    atan2 = torch.atan2 if isinstance(rot, torch.Tensor) else np.arctan2
    return atan2(rot[..., 1, 0], rot[..., 0, 0])


def make_transform(rot: Array, trans: Array) -> Array:
    """Homogeneous transforms [..., 4, 4] from rotations [..., 3, 3] and translations [..., 3] [m]."""
    rot, trans = _float(rot), _float(trans)
    if isinstance(rot, torch.Tensor):
        out = torch.zeros(*rot.shape[:-2], 4, 4, dtype=rot.dtype, device=rot.device)
    else:
        out = np.zeros((*rot.shape[:-2], 4, 4), dtype=rot.dtype)
    out[..., :3, :3] = rot
    out[..., :3, 3] = trans
    out[..., 3, 3] = 1.0
    return out


def apply_transform(transform: Array, points: Array) -> Array:
    """Points [..., N, 3] mapped by homogeneous transforms [..., 4, 4] (one per leading index): R p + t."""
    transform, points = _float(transform), _float(points)
    rot_t = transform[..., :3, :3].swapaxes(-1, -2) if isinstance(transform, np.ndarray) else transform[..., :3, :3].mT
    return points @ rot_t + transform[..., None, :3, 3]


def box_corners(boxes: Array) -> Array:
    """The 8 corners [..., 8, 3] [m] of boxes [..., 7] (x, y, z, w, l, h, yaw), in `Box.corners()` order.

    The box is upright (rotated by yaw about z only); corner k is centre + R(yaw) (CORNER_SIGNS[k] * (l, w, h) / 2).
    """
    boxes = _float(boxes)
    if isinstance(boxes, torch.Tensor):
        signs = torch.tensor(CORNER_SIGNS, dtype=boxes.dtype, device=boxes.device)
        c, s = torch.cos(boxes[..., 6:7]), torch.sin(boxes[..., 6:7])
    else:
        signs = np.array(CORNER_SIGNS, dtype=boxes.dtype)
        c, s = np.cos(boxes[..., 6:7]), np.sin(boxes[..., 6:7])
    half = 0.5 * _stack([boxes[..., 4], boxes[..., 3], boxes[..., 5]], axis=-1)  # (..., 3) along x, y, z
    local = signs * half[..., None, :]  # (..., 8, 3) in the box frame
    x = boxes[..., 0:1] + c * local[..., 0] - s * local[..., 1]
    y = boxes[..., 1:2] + s * local[..., 0] + c * local[..., 1]
    return _stack([x, y, boxes[..., 2:3] + local[..., 2]], axis=-1)


def bottom_corners(boxes: Array) -> Array:
    """The 4 bottom corners [..., 4, 3] [m] of boxes [..., 7] (their ground footprint), in `Box.bottom_corners()`
    order: front-left, front-right, rear-right, rear-left."""
    return box_corners(boxes)[..., list(BOTTOM_CORNERS), :]
