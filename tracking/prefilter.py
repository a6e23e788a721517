"""Detection pre-filter: per-class score threshold and per-class BEV NMS, batched over pairs.

A lidar detector such as CenterPoint outputs many low-score boxes and, for small classes, several boxes on one
object; each duplicate that reaches the tracker starts a false track or steals an identity. SimpleTrack and
Poly-MOT both filter by score and run NMS on the detections before association.

NMS compares only pairs of the same group (environment and class, see `near_pairs`) whose centres are close
enough for their boxes to touch, and computes the exact rotated bird's-eye-view IoU for those pairs only;
greedy NMS (best score first) is then resolved in rounds, each round deciding every box whose better-scored
neighbours are all decided, so there is no Python loop over boxes.
"""

from __future__ import annotations

import numpy as np

from drivestack.tracking.association import DENSE_PAIRS, near_pairs

_ALONG = np.array([[0.5, -0.5, -0.5, 0.5]])  # corner offsets in units of the box length, counter-clockwise
_LEFT = np.array([[0.5, 0.5, -0.5, -0.5]])  # and of its width


def bev_corners(box: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
    """Counter-clockwise ground-plane corners [P, 4, 2] [m] of boxes [P, 7] (x, y, z, yaw, w, l, h), relative to
    `origin` [P, 2] (default 0): pass one box's centre so that far-away pairs keep their precision."""
    yaw, w, l = box[:, 3], box[:, 4], box[:, 5]
    c, s = np.cos(yaw), np.sin(yaw)
    lx = _ALONG * l[:, None]  # [P, 4] along the heading
    ly = _LEFT * w[:, None]  # [P, 4] to the left
    centre = box[:, :2] if origin is None else box[:, :2] - origin
    x = centre[:, :1] + c[:, None] * lx - s[:, None] * ly
    y = centre[:, 1:] + s[:, None] * lx + c[:, None] * ly
    return np.stack([x, y], axis=2)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


_NEXT = np.array([1, 2, 3, 0])  # corner k -> corner k + 1


def _clipped_edges(p: np.ndarray, q: np.ndarray, strict: np.ndarray) -> np.ndarray:
    """Sum over the edges of convex polygons `p` [P, 4, 2] of cross(start, end) / 2 of the part of each edge inside
    polygon `q` [P, 4, 2] (Cyrus-Beck clipping against q's four half-planes): `p`'s share of the intersection's
    shoelace area. An edge lying on q's boundary counts unless `strict` [P] (so a shared edge counts once)."""
    d = p[:, _NEXT] - p  # [P, 4, 2] edge directions of p
    e = q[:, _NEXT] - q  # [P, 4, 2] edge directions of q (interior on the left)
    num = _cross(e[:, None], p[:, :, None] - q[:, None])  # [P, 4 (p edge), 4 (q edge)]
    den = _cross(e[:, None], d[:, :, None])  # [P, 4, 4]; inside: num + t den >= 0
    t = -num / np.where(den == 0, 1.0, den)  # den 0: the edge is parallel to that side (t unused)
    t_lo = np.max(np.where(den > 0, t, 0.0), axis=2).clip(0.0, 1.0)  # [P, 4]
    t_hi = np.min(np.where(den < 0, t, 1.0), axis=2).clip(0.0, 1.0)
    outside = (num < 0) | ((num == 0) & strict[:, None, None])
    empty = ((den == 0) & outside).any(axis=2) | (t_hi <= t_lo)  # parallel and outside, or nothing left
    a = p + t_lo[..., None] * d
    b = p + t_hi[..., None] * d
    return np.where(empty, 0.0, 0.5 * _cross(a, b)).sum(axis=1)  # [P]


def bev_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """Exact bird's-eye-view IoU [P] of rotated boxes paired row by row, [P, 7] each (x, y, z, yaw, w, l, h).

    The intersection of two convex polygons is bounded by the parts of each one's edges inside the other, so
    its area is the shoelace sum over those clipped edges (Green's theorem): no polygon construction. Both
    directions (a's edges in b, b's in a) run as one batch of 2P."""
    p = len(box_a)
    both = np.concatenate([box_a, box_b])  # [2P, 7]
    corners = bev_corners(both, np.concatenate([box_a[:, :2], box_a[:, :2]]))  # [2P, 4, 2] relative to a's centre
    other = np.concatenate([corners[p:], corners[:p]])
    strict = np.arange(2 * p) >= p
    share = _clipped_edges(corners, other, strict)  # [2P]
    inter = share[:p] + share[p:]
    union = box_a[:, 4] * box_a[:, 5] + box_b[:, 4] * box_b[:, 5] - inter
    return np.clip(inter / np.maximum(union, 1e-12), 0.0, 1.0)


def nms(box: np.ndarray, score: np.ndarray, group: np.ndarray, num_groups: int, iou: np.ndarray) -> np.ndarray:
    """Greedy NMS within groups: keep mask [N] of boxes [N, 7] (best `score` [N] first) where no kept box of the
    same `group` [N] (int < num_groups, e.g. env x classes + label) with a higher score overlaps by more than
    `iou` [N] (the threshold of each box's group; 1 keeps everything)."""
    n = len(score)
    if n < 2:
        return np.ones(n, dtype=bool)
    x, w, l = box[:, 0], box[:, 4], box[:, 5]  # noqa: E741
    c, s = np.abs(np.cos(box[:, 3])), np.abs(np.sin(box[:, 3]))
    half_x = c * l
    half_x += s * w
    half_x *= 0.5  # [N] axis-aligned hull half extent along x
    if n * n <= DENSE_PAIRS:  # one environment: a dense test of the hulls' x overlap finds the candidates
        gap_x = (half_x[:, None] + half_x) - np.abs(x[:, None] - x)  # [N, N]
        i, j = np.nonzero((gap_x > 0.0) & (group[:, None] == group))
        upper = i < j  # each unordered pair once (and not a box with itself)
    else:
        reach = 0.5 * np.sqrt(w * w + l * l)  # [N] circumscribed radius: only boxes whose circles meet overlap
        i, j, _ = near_pairs(group, box[:, :2], reach, group, box[:, :2], reach, num_groups)
        upper = i < j
    i, j = i[upper], j[upper]
    if not len(i):
        return np.ones(n, dtype=bool)
    # cheap bound first: the overlap of the boxes' axis-aligned hulls bounds their intersection from above
    half_y = 0.5 * (s * l + c * w)  # [N]
    area = w * l
    gap_x = np.maximum(half_x[i] + half_x[j] - np.abs(x[i] - x[j]), 0.0)  # [Q] hull overlap per axis
    gap_y = np.maximum(half_y[i] + half_y[j] - np.abs(box[i, 1] - box[j, 1]), 0.0)
    bound = np.minimum(gap_x * gap_y, np.minimum(area[i], area[j]))
    maybe = bound > iou[i] * (area[i] + area[j] - bound)  # IoU <= bound / (A + B - bound); one group, one iou
    if not maybe.any():
        return np.ones(n, dtype=bool)
    i, j = i[maybe], j[maybe]
    keep = np.ones(n, dtype=bool)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-score, kind="stable")] = np.arange(n)  # 0: best; ties by index
    first = rank[i] < rank[j]
    hi, lo = np.where(first, i, j), np.where(first, j, i)  # better box first
    over = bev_iou(box[hi], box[lo]) > iou[lo]
    hi, lo = hi[over], lo[over]
    if not len(hi):
        return keep
    removed = np.zeros(n, dtype=bool)
    removed[lo] = True
    if not removed[hi].any():  # no chain (no suppressed box suppresses another): every better box is kept
        return ~removed
    removed[:] = False
    kept = np.zeros(n, dtype=bool)
    while True:  # rounds: usually 1-3 (the longest chain of overlapping boxes)
        blocked = np.zeros(n, dtype=bool)
        blocked[lo[~removed[hi]]] = True  # a better overlapping box is still undecided or kept
        newly = ~blocked & ~removed & ~kept
        if not newly.any():
            break
        kept |= newly
        removed[lo[kept[hi]]] = True
    return ~removed
