"""Track-to-detection association: cost matrices and pair lists, class and distance gating, Hungarian or greedy.

Two forms. Dense: costs for every (track, detection) pair at once as [T, D] arrays (`center_distance`,
`mahalanobis_distance`, `negative_log_likelihood`, `gate`, `match`; the baseline uses these). Pairs of different
classes and pairs beyond the gate are invalid. The Hungarian matcher solves one assignment over the whole
matrix in which an invalid pair is worth nothing, so it never competes with a valid one: that single solve is
the same as one per class (the valid pairs form one block per class), without a Python loop over classes.

Pair lists (the tracker): `gated_pairs` lists only the valid pairs of each group (environment and class) and
their costs, and `greedy_pairs` (both association stages in one sequential greedy) or `match_pairs` matches
them, so B environments cost B times one, never B^2. The first two are compiled loops (numba) rather than a
few dozen small numpy calls a frame; their float operations are those of the numpy code they replaced, so they
return the same pairs and the same costs, bit for bit.
"""

from __future__ import annotations

from enum import Enum

import numba
import numpy as np
from scipy.optimize import linear_sum_assignment


class Metric(str, Enum):
    """Distance between a track's predicted box and a detection."""

    CENTER = "center"  # Euclidean distance of the box centres in the ground plane [m]
    MAHALANOBIS = "mahalanobis"  # squared Mahalanobis distance d^2 of the centres under the innovation covariance S
    # d^2 + ln(det S / det R): the pair's negative log-likelihood up to a constant (R: measurement noise). A track
    # whose position is uncertain (just born, or coasting) pays for its spread, so it cannot take a detection
    # from a well-localised track, or a far one, just because its d^2 is small everywhere.
    NLL = "nll"


class Matcher(str, Enum):
    """How pairs are chosen from the gated cost matrix."""

    HUNGARIAN = "hungarian"  # optimal: maximises the summed gate margin (gate - cost) over valid pairs
    GREEDY = "greedy"  # CenterPoint's: the cheapest remaining valid pair first


def center_distance(track_xy: np.ndarray, det_xy: np.ndarray) -> np.ndarray:
    """Ground-plane centre distance [T, D] [m] between track centres [T, 2] and detection centres [D, 2]."""
    return np.hypot(track_xy[:, :1] - det_xy[:, 0], track_xy[:, 1:] - det_xy[:, 1])


def mahalanobis_distance(track_xy: np.ndarray, innovation_var: np.ndarray, det_xy: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance [T, D] of detection centres [D, 2] from predicted track centres [T, 2] under
    the per-track innovation variances [T, 2] (S = P_pp + R per axis; diagonal, see tracking/kalman.py)."""
    return _quadratic_form(track_xy, 1.0 / innovation_var, det_xy, 0.0)


def negative_log_likelihood(
    track_xy: np.ndarray,
    innovation_var: np.ndarray,
    det_xy: np.ndarray,
    noise_var: np.ndarray,
    max_log_det: float = np.inf,
) -> np.ndarray:
    """d^2 + min(ln(det S / det R), max_log_det) [T, D]: squared Mahalanobis distance plus the log-volume of the
    innovation covariance S [T, 2] relative to the measurement noise R [2] (>= 0, since S = P + R), capped so
    that a track with no velocity yet (wide S) can still be matched within its gate."""
    log_det = np.log(innovation_var[:, 0] * innovation_var[:, 1] / (noise_var[0] * noise_var[1]))  # [T]
    log_det = np.minimum(log_det, max_log_det)
    return _quadratic_form(track_xy, 1.0 / innovation_var, det_xy, log_det)


def _quadratic_form(
    track_xy: np.ndarray, inv_var: np.ndarray, det_xy: np.ndarray, offset: np.ndarray | float
) -> np.ndarray:
    """sum_k inv_var[t, k] (det[d, k] - track[t, k])^2 + offset[t] [T, D], from the per-pair differences.

    Each cost depends on its own track and detection only: an expansion into (d^2 - 2 t d + t^2) products,
    relative to any reference point, cancels catastrophically once one box is far away (a stray detection at
    1e10 m turned every other pair's cost into rounding noise). Differences first keep every pair exact to
    rounding; a pair too far apart for float64 costs inf (never valid), without a warning."""
    with np.errstate(over="ignore"):
        dx = det_xy[:, 0] - track_xy[:, :1]  # [T, D]
        dy = det_xy[:, 1] - track_xy[:, 1:]  # [T, D]
        dx *= dx
        dx *= inv_var[:, :1]
        dy *= dy
        dy *= inv_var[:, 1:]
        dx += dy
        dx += np.reshape(offset, (-1, 1))  # [T, 1] or a scalar
    return dx


def gate(cost: np.ndarray, track_label: np.ndarray, det_label: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """Valid pairs [T, D]: same class and cost below `threshold` (a scalar, or [T, 1] per track; NaN costs are
    invalid)."""
    return (track_label[:, None] == det_label[None, :]) & (cost < threshold)


def match(
    cost: np.ndarray, valid: np.ndarray, threshold: float, matcher: Matcher = Matcher.HUNGARIAN
) -> tuple[np.ndarray, np.ndarray]:
    """Matched pairs (track rows [K], detection columns [K]) among the `valid` [T, D] entries of `cost` [T, D].

    Hungarian maximises the sum of margins (threshold - cost) over the chosen pairs, so leaving a track or a
    detection unmatched is always allowed (a plain min-cost assignment would force pairs). Greedy takes the
    cheapest remaining valid pair first."""
    if not valid.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if valid.sum(axis=0).max() <= 1 and valid.sum(axis=1).max() <= 1:
        return np.nonzero(valid)  # no track or detection has two candidates: every valid pair is taken either way
    if Matcher(matcher) is Matcher.GREEDY:
        return greedy_match(cost, valid)
    rows, cols = linear_sum_assignment(np.where(valid, cost - threshold, 0.0))
    keep = valid[rows, cols]
    return rows[keep], cols[keep]


def greedy_match(cost: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching, cheapest pair first, computed in rounds of mutual nearest neighbours.

    Greedy order takes a pair exactly when it is the cheapest left for both its track and its detection
    (nothing cheaper can claim either first), so each round takes every mutually-nearest valid pair at once
    and removes their rows and columns. Equal to the sequential greedy for distinct costs; the number of
    rounds is usually 1-3, never more than min(T, D)."""
    c = np.where(valid, cost, np.inf)
    t_idx = np.arange(c.shape[0])
    rows_out, cols_out = [], []
    while True:
        best_col = np.argmin(c, axis=1)  # [T]
        best_row = np.argmin(c, axis=0)  # [D]
        mutual = np.isfinite(c[t_idx, best_col]) & (best_row[best_col] == t_idx)
        if not mutual.any():
            break
        rows, cols = t_idx[mutual], best_col[mutual]
        rows_out.append(rows)
        cols_out.append(cols)
        c[rows, :] = np.inf
        c[:, cols] = np.inf
    if not rows_out:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows_out), np.concatenate(cols_out)


def match_pairs(
    rows: np.ndarray,
    cols: np.ndarray,
    cost: np.ndarray,
    threshold: float,
    matcher: Matcher = Matcher.HUNGARIAN,
    group: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`match` over a list of valid pairs (rows [P], cols [P], cost [P], every pair already gated) rather than a
    dense matrix: pairs whose row and column have no other candidate are taken as they are; the rest (the
    conflicts) go to the matcher. Greedy runs on the pair list itself (`greedy_pairs`); Hungarian solves one
    dense problem per `group` [P] (e.g. the environment; None: one for all) over only the rows and columns in
    conflict. Pairs of different groups never share a row or a column, so this equals solving each group on its
    own, and the work grows with the conflicts, never with (all rows) x (all columns)."""
    if not len(rows):
        return rows, cols
    if Matcher(matcher) is Matcher.GREEDY:
        return greedy_pairs(rows, cols, cost)
    alone = (np.bincount(rows)[rows] == 1) & (np.bincount(cols)[cols] == 1)  # [P] no competitor either way
    if alone.all():
        return rows, cols
    conflict = ~alone
    rc, cc, cost = rows[conflict], cols[conflict], cost[conflict]
    out_r, out_c = [rows[alone]], [cols[alone]]
    if group is None:
        blocks = [np.arange(len(rc))]
    else:
        g = group[conflict]
        order = np.argsort(g, kind="stable")
        blocks = np.split(order, np.flatnonzero(np.diff(g[order])) + 1)
    for idx in blocks:  # a loop over the groups that have conflicts, each a small dense problem
        r_ids, r_of = np.unique(rc[idx], return_inverse=True)
        c_ids, c_of = np.unique(cc[idx], return_inverse=True)
        dense = np.full((len(r_ids), len(c_ids)), np.inf)
        dense[r_of, c_of] = cost[idx]
        r, c = match(dense, np.isfinite(dense), threshold, Matcher.HUNGARIAN)
        out_r.append(r_ids[r])
        out_c.append(c_ids[c])
    return np.concatenate(out_r), np.concatenate(out_c)


@numba.njit(cache=True)
def _greedy_kernel(
    rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, late: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    p = len(rows)
    width = cols.max() + 1
    cell = rows * width + cols  # [P] (row, column) as one key
    order = np.arange(p)
    for k in range(1, p):
        if cell[k] < cell[k - 1]:  # not listed row by row (the tracker's pairs are): sort them so
            order = np.argsort(cell, kind="mergesort")
            break
    order = order[np.argsort(cost[order], kind="mergesort")]  # by cost, ties by (row, column)
    taken_r = np.zeros(rows.max() + 1, dtype=np.bool_)
    taken_c = np.zeros(width, dtype=np.bool_)
    out_r = np.empty(min(len(taken_r), width), dtype=np.int64)
    out_c = np.empty_like(out_r)
    n = 0
    for stage in (False, True):  # every pair of the first stage before any of the second
        for k in order:
            r, c = rows[k], cols[k]
            if late[k] == stage and not taken_r[r] and not taken_c[c]:
                taken_r[r] = taken_c[c] = True
                out_r[n], out_c[n] = r, c
                n += 1
    return out_r[:n], out_c[:n]


def greedy_pairs(
    rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, stage: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sequential greedy matching on a pair list (rows [P], cols [P], cost [P]): pairs in the order of (`stage`
    [P] bool, then cost, then row, then column), each taken unless an earlier taken pair holds its row or column.
    Ties go to the lower column (for a row) and the lower row (for a column), as the dense `greedy_match`'s
    argmin. `stage` (None: one stage) puts every pair where it is False before any where it is True: two-stage
    association as one greedy. One compiled loop after one sort (`_greedy_kernel`)."""
    if not len(rows):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    late = np.zeros(len(rows), dtype=bool) if stage is None else np.ascontiguousarray(stage, dtype=bool)
    rows, cols = np.ascontiguousarray(rows, dtype=np.int64), np.ascontiguousarray(cols, dtype=np.int64)
    return _greedy_kernel(rows, cols, np.ascontiguousarray(cost, dtype=np.float64), late)


_FAR = 1e150  # [m] coordinate differences are clipped here before squaring: a pair this far apart is never near


@numba.njit(cache=True)
def _gated_pairs_kernel(
    key_t: np.ndarray,
    xy_t: np.ndarray,
    reach_t: np.ndarray,
    key_d: np.ndarray,
    xy_d: np.ndarray,
    num_keys: int,
    shape_t: np.ndarray,
    sure_t: np.ndarray,
    threshold: float,
    clamp: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # detections bucketed by key, in index order (a counting sort), so each track meets only its own group
    start = np.zeros(num_keys + 1, dtype=np.int64)
    for d in range(len(key_d)):
        if not 0 <= key_d[d] < num_keys:
            raise ValueError("gated_pairs: a detection key is outside [0, num_keys)")
        start[key_d[d] + 1] += 1
    for k in range(num_keys):
        start[k + 1] += start[k]
    fill = start[:-1].copy()
    bucket = np.empty(len(key_d), dtype=np.int64)
    for d in range(len(key_d)):
        bucket[fill[key_d[d]]] = d
        fill[key_d[d]] += 1
    size = 0
    for t in range(len(key_t)):
        if not 0 <= key_t[t] < num_keys:
            raise ValueError("gated_pairs: a track key is outside [0, num_keys)")
        size += start[key_t[t] + 1] - start[key_t[t]]
    rows, cols, cost = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64), np.empty(size)
    quadratic = len(shape_t) > 0
    n = 0
    for t in range(len(key_t)):
        reach2 = reach_t[t] * reach_t[t]
        for p in range(start[key_t[t]], start[key_t[t] + 1]):
            d = bucket[p]
            ex, ey = xy_d[d, 0] - xy_t[t, 0], xy_d[d, 1] - xy_t[t, 1]
            dx, dy = min(abs(ex), _FAR), min(abs(ey), _FAR)  # no square overflows
            d2 = dx * dx + dy * dy
            if not d2 < reach2:
                continue
            value = np.sqrt(d2)
            if quadratic:
                within = value < sure_t[t]
                along = ex * shape_t[t, 0] + ey * shape_t[t, 1]
                across = ey * shape_t[t, 0] - ex * shape_t[t, 1]
                value = along * along / shape_t[t, 2] + across * across / shape_t[t, 3] + shape_t[t, 4]
                if within:
                    value = min(value, clamp)
                elif not value < threshold:
                    continue
            rows[n], cols[n], cost[n] = t, d, value
            n += 1
    return rows[:n], cols[:n], cost[:n]


def gated_pairs(
    key_t: np.ndarray,
    xy_t: np.ndarray,
    reach_t: np.ndarray,
    key_d: np.ndarray,
    xy_d: np.ndarray,
    num_keys: int,
    shape_t: np.ndarray | None = None,
    sure_t: np.ndarray | None = None,
    threshold: float = np.inf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The valid (track, detection) pairs of a frame and their costs, as a pair list (rows [P], cols [P], cost
    [P], listed row by row, then by column), in one compiled loop over each group rather than a dense matrix.

    A candidate has the same key (int in [0, num_keys): environment x class) and ground-plane centres [.., 2] closer
    than reach_t [T] [m]. With `shape_t` None the cost is that distance [m] and every candidate is valid.
    Otherwise `shape_t` [T, 5] holds each track's Gaussian of the centre offset (cos, sin of its first axis,
    variance along it and across it [m^2], and a constant): the cost is the squared Mahalanobis distance under
    it plus the constant (an isotropic track: axis (1, 0), the same variance twice); a pair closer than sure_t
    [T] [m] is valid with its cost capped just below `threshold`, one farther only if its cost is below it.
    Differences are taken pair by pair, so far-apart boxes keep their precision (too far for float64: never
    near)."""
    num_t = len(key_t)
    return _gated_pairs_kernel(
        np.ascontiguousarray(key_t, dtype=np.int64),
        np.ascontiguousarray(xy_t, dtype=np.float64).reshape(num_t, 2),
        np.ascontiguousarray(reach_t, dtype=np.float64),
        np.ascontiguousarray(key_d, dtype=np.int64),
        np.ascontiguousarray(xy_d, dtype=np.float64).reshape(-1, 2),
        int(num_keys),
        np.zeros((0, 5)) if shape_t is None else np.ascontiguousarray(shape_t, dtype=np.float64),
        np.zeros(0) if sure_t is None else np.ascontiguousarray(sure_t, dtype=np.float64),
        float(threshold),
        float(threshold) * (1.0 - 1e-9),
    )
