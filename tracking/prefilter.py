"""Detection pre-filter: per-class score threshold and per-class BEV NMS with the exact rotated bird's-eye-view
IoU, as one compiled loop (numba) per frame.

A lidar detector such as CenterPoint outputs many low-score boxes and, for small classes, several boxes on one
object; each duplicate that reaches the tracker starts a false track or steals an identity. SimpleTrack and
Poly-MOT both filter by score and run NMS on the detections before association.

NMS is greedy (best score first) within groups (environment and class): a box goes when a kept box of its group
with a better score overlaps it by more than the group's IoU threshold. `prefilter` buckets the boxes that pass
the score threshold by group (so B environments cost B times one) and gives a pair the exact IoU only when the
overlap of the boxes' axis-aligned hulls could reach the threshold. The IoU is the shoelace sum over the parts of
each box's edges inside the other (no polygon construction), in the float operations, in the order, of the numpy
version it replaced: the same boxes are kept, bit for bit. Cosines and sines come from numpy (its vectorised
transcendentals may differ from libm's in the last bit).
"""

from __future__ import annotations

import numba
import numpy as np

_ALONG = (0.5, -0.5, -0.5, 0.5)  # corner offsets in units of the box length, counter-clockwise
_LEFT = (0.5, 0.5, -0.5, -0.5)  # and of its width


@numba.njit(cache=True)
def _corners(cx: float, cy: float, c: float, s: float, w: float, l: float) -> tuple[np.ndarray, np.ndarray]:  # noqa: E741
    # counter-clockwise ground-plane corners (x [4], y [4]) of a box centred at (cx, cy), heading (cos c, sin s)
    x, y = np.empty(4), np.empty(4)
    for k in range(4):
        lx, ly = _ALONG[k] * l, _LEFT[k] * w
        x[k] = cx + c * lx - s * ly
        y[k] = cy + s * lx + c * ly
    return x, y


@numba.njit(cache=True)
def _clipped_edges(px: np.ndarray, py: np.ndarray, qx: np.ndarray, qy: np.ndarray, strict: bool) -> float:
    """Sum over the edges of convex polygon p (x [4], y [4]) of cross(start, end) / 2 of the part of each edge
    inside polygon q (Cyrus-Beck clipping against q's four half-planes): p's share of the intersection's
    shoelace area. An edge lying on q's boundary counts unless `strict` (so a shared edge counts once) or it runs
    against q's edge there (the polygons touch from opposite sides: no area)."""
    total = 0.0
    for k in range(4):
        dx, dy = px[(k + 1) % 4] - px[k], py[(k + 1) % 4] - py[k]  # edge direction of p
        t_lo, t_hi, empty = 0.0, 1.0, False
        for m in range(4):
            ex, ey = qx[(m + 1) % 4] - qx[m], qy[(m + 1) % 4] - qy[m]  # edge of q, interior on the left
            num = ex * (py[k] - qy[m]) - ey * (px[k] - qx[m])
            den = ex * dy - ey * dx  # inside: num + t den >= 0
            if den == 0.0:  # parallel to that side: all in or all out; on it, it counts once, from p, and only if
                # p's interior is on q's side of it (same direction): boxes touching along an edge share no area
                empty |= num < 0.0 or (num == 0.0 and (strict or ex * dx + ey * dy < 0.0))
            elif den > 0.0:
                t_lo = max(t_lo, -num / den)
            else:
                t_hi = min(t_hi, -num / den)
        t_lo, t_hi = min(max(t_lo, 0.0), 1.0), min(max(t_hi, 0.0), 1.0)
        if not empty and t_hi > t_lo:
            ax, ay = px[k] + t_lo * dx, py[k] + t_lo * dy
            bx, by = px[k] + t_hi * dx, py[k] + t_hi * dy
            total += 0.5 * (ax * by - ay * bx)
    return total


@numba.njit(cache=True)
def _iou(box: np.ndarray, c: np.ndarray, s: np.ndarray, a: int, b: int) -> float:
    # exact BEV IoU of rows a and b of box [N, 7] (cos c [N], sin s [N] of their yaws), corners relative to a's
    # centre so that far-away pairs keep their precision
    ax, ay = _corners(box[a, 0] - box[a, 0], box[a, 1] - box[a, 1], c[a], s[a], box[a, 4], box[a, 5])
    bx, by = _corners(box[b, 0] - box[a, 0], box[b, 1] - box[a, 1], c[b], s[b], box[b, 4], box[b, 5])
    inter = _clipped_edges(ax, ay, bx, by, False) + _clipped_edges(bx, by, ax, ay, True)
    union = box[a, 4] * box[a, 5] + box[b, 4] * box[b, 5] - inter
    return min(max(inter / max(union, 1e-12), 0.0), 1.0)


@numba.njit(cache=True)
def _iou_rows(box: np.ndarray, c: np.ndarray, s: np.ndarray, num_pairs: int) -> np.ndarray:
    out = np.empty(num_pairs)
    for k in range(num_pairs):  # rows k and num_pairs + k
        out[k] = _iou(box, c, s, k, num_pairs + k)
    return out


def bev_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """Exact bird's-eye-view IoU [P] of rotated boxes paired row by row, [P, 7] each (x, y, z, yaw, w, l, h).

    The intersection of two convex polygons is bounded by the parts of each one's edges inside the other, so
    its area is the shoelace sum over those clipped edges (Green's theorem): no polygon construction."""
    both = np.ascontiguousarray(np.concatenate([box_a, box_b]), dtype=np.float64)  # [2P, 7]
    return _iou_rows(both, np.cos(both[:, 3]), np.sin(both[:, 3]), len(box_a))


@numba.njit(cache=True)
def _prefilter_kernel(
    box: np.ndarray,
    cos: np.ndarray,
    sin: np.ndarray,
    score: np.ndarray,
    group: np.ndarray,
    min_score: np.ndarray,
    iou: np.ndarray,
) -> np.ndarray:
    n, num_groups = len(score), len(min_score)
    passed = np.empty(n, dtype=np.bool_)
    for i in range(n):
        if not 0 <= group[i] < num_groups:
            raise ValueError("prefilter: a group is outside [0, len(min_score))")
        passed[i] = score[i] >= min_score[group[i]]
    if len(iou):  # NMS among the boxes that passed
        w, l = box[:, 4], box[:, 5]  # noqa: E741
        c, s = np.abs(cos), np.abs(sin)
        half_x = (c * l + s * w) * 0.5  # [N] axis-aligned hull half extents
        half_y = 0.5 * (s * l + c * w)
        area = w * l
        # the boxes that passed, bucketed by group, best score first within each (ties by index)
        order = np.argsort(-score, kind="mergesort")
        start = np.zeros(num_groups + 1, dtype=np.int64)
        for i in range(n):
            start[group[i] + 1] += passed[i]
        for g in range(num_groups):
            start[g + 1] += start[g]
        fill = start[:-1].copy()
        bucket = np.empty(start[num_groups], dtype=np.int64)
        for i in order:
            if passed[i]:
                bucket[fill[group[i]]] = i
                fill[group[i]] += 1
        for g in range(num_groups):
            for p in range(start[g], start[g + 1]):
                a = bucket[p]  # kept unless a better box removed it already
                if not passed[a]:
                    continue
                for q in range(p + 1, start[g + 1]):
                    b = bucket[q]
                    if not passed[b]:
                        continue
                    i, j = min(a, b), max(a, b)
                    # cheap bound first: the overlap of the hulls bounds the intersection from above, and
                    # IoU <= bound / (A + B - bound)
                    gap_x = max(half_x[i] + half_x[j] - abs(box[i, 0] - box[j, 0]), 0.0)
                    if gap_x == 0.0:
                        continue
                    gap_y = max(half_y[i] + half_y[j] - abs(box[i, 1] - box[j, 1]), 0.0)
                    bound = min(gap_x * gap_y, min(area[i], area[j]))
                    if bound > iou[g] * (area[i] + area[j] - bound) and _iou(box, cos, sin, a, b) > iou[g]:
                        passed[b] = False
    return np.flatnonzero(passed)


def prefilter(
    box: np.ndarray, score: np.ndarray, group: np.ndarray, min_score: np.ndarray, iou: np.ndarray | None
) -> np.ndarray:
    """Rows [M'] (ascending) of the boxes [M, 7] that pass: `score` [M] at or above their group's `min_score`
    [G] (`group` [M] int < G, e.g. environment x classes + class), then greedy NMS within groups (best score
    first; a box goes when a kept box of its group overlaps it by more than the group's `iou` [G]; None: no
    NMS, 1: nothing overlaps that much)."""
    if iou is not None and len(iou) != len(min_score):
        raise ValueError(f"prefilter: {len(min_score)} groups' min_score but {len(iou)} groups' iou")
    box = np.ascontiguousarray(box, dtype=np.float64)
    yaw = box[:, 3] if iou is not None else box[:0, 3]  # NMS only
    return _prefilter_kernel(
        box,
        np.cos(yaw),
        np.sin(yaw),
        np.ascontiguousarray(score, dtype=np.float64),
        np.ascontiguousarray(group, dtype=np.int64),
        np.ascontiguousarray(min_score, dtype=np.float64),
        np.zeros(0) if iou is None else np.ascontiguousarray(iou, dtype=np.float64),
    )


def nms(box: np.ndarray, score: np.ndarray, group: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """Greedy NMS within groups: keep mask [N] of boxes [N, 7] (best `score` [N] first) where no kept box of the
    same `group` [N] (int < G, e.g. environment x classes + class) with a higher score overlaps by more than
    the group's `iou` [G] (1 keeps everything)."""
    keep = np.zeros(len(score), dtype=bool)
    keep[prefilter(box, score, group, np.full(len(iou), -np.inf), iou)] = True
    return keep
