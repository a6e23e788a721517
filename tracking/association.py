"""Track-to-detection association: cost matrices and pair lists, class and distance gating, Hungarian or greedy.

Two forms. Dense: costs for every (track, detection) pair at once as [T, D] arrays (`center_distance`,
`mahalanobis_distance`, `negative_log_likelihood`, `gate`, `match`; the baseline uses these). Pairs of different
classes and pairs beyond the gate are invalid. The Hungarian matcher solves one assignment over the whole
matrix in which an invalid pair is worth nothing, so it never competes with a valid one: that single solve is
the same as one per class (the valid pairs form one block per class), without a Python loop over classes.

Pair lists (the tracker): `near_pairs` lists only the candidate pairs of one group (environment and class)
within a reach, and `greedy_pairs` (both association stages in one sequential greedy) or `match_pairs` matches
them, so B environments cost B times one, never B^2.
"""

from __future__ import annotations

from enum import Enum

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


def group_pairs(key_a: np.ndarray, key_b: np.ndarray, num_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Every index pair (a [P], b [P]) with key_a[a] == key_b[b], for integer keys in [0, num_keys).

    Association and NMS only ever compare boxes of one group (one environment and one class), so they work on
    this list rather than on a dense [A, B] matrix: with B environments of ~20 boxes each the dense matrix
    grows as B^2, the list as B. No Python loop: each b is repeated once per a of its key."""
    order_a = np.argsort(key_a, kind="stable")
    count_a = np.bincount(key_a, minlength=num_keys)  # [K]
    start_a = np.cumsum(count_a) - count_a  # [K] first position of each key in order_a
    per_b = count_a[key_b]  # [B] partners of each b
    b = np.repeat(np.arange(len(key_b)), per_b)  # [P]
    offset = np.arange(len(b)) - np.repeat(np.cumsum(per_b) - per_b, per_b)  # [P] 0.. per_b - 1
    a = order_a[start_a[key_b[b]] + offset]
    return a, b


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


def greedy_pairs(
    rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, stage: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sequential greedy matching on a pair list (rows [P], cols [P], cost [P]): pairs in the order of (`stage`
    [P] int, then cost, then row, then column), each taken unless an earlier taken pair holds its row or column.

    Computed in rounds of mutually first pairs (a pair first in that order for both its row and its column is
    taken by the sequential greedy; take them all, drop the pairs they block, repeat): one sort, then a few
    small scatter-mins per round, usually 1-3 rounds. Ties go to the lower column (for a row) and the lower row
    (for a column), as the dense `greedy_match`'s argmin. `stage` (None: one stage) puts every pair of stage 0
    before any of stage 1: two-stage association as one greedy."""
    keys = (cols, rows, cost) if stage is None else (cols, rows, cost, stage)
    order = np.lexsort(keys)  # the greedy order: position k in it is pair order[k]'s rank
    rows, cols = rows[order], cols[order]
    rank = np.arange(len(rows))
    last = len(rows)  # greater than every rank
    first_r = np.empty(rows.max() + 1, dtype=np.int64)
    first_c = np.empty(cols.max() + 1, dtype=np.int64)
    taken_r, taken_c = [], []
    while True:
        first_r.fill(last)
        first_c.fill(last)
        np.minimum.at(first_r, rows, rank)  # [R] the first pair left of each row
        np.minimum.at(first_c, cols, rank)
        mutual = (first_r[rows] == rank) & (first_c[cols] == rank)  # never empty: the first pair left is mutual
        r, c = rows[mutual], cols[mutual]
        taken_r.append(r)
        taken_c.append(c)
        # every pair left shares nothing with the taken ones: first_* of the taken rows and columns are < len
        first_r.fill(0)
        first_c.fill(0)
        first_r[r] = 1
        first_c[c] = 1
        left = (first_r[rows] | first_c[cols]) == 0
        if not left.any():
            break
        rows, cols, rank = rows[left], cols[left], rank[left]
    if len(taken_r) == 1:
        return taken_r[0], taken_c[0]
    return np.concatenate(taken_r), np.concatenate(taken_c)


DENSE_PAIRS = 1 << 16  # up to this many track x detection entries, candidates come from one dense matrix


def near_pairs(
    key_a: np.ndarray,
    xy_a: np.ndarray,
    reach_a: np.ndarray,
    key_b: np.ndarray,
    xy_b: np.ndarray,
    reach_b: np.ndarray | float,
    num_keys: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (a [P], b [P]) of the same key whose ground-plane centres [.., 2] lie closer than reach_a[a] +
    reach_b[b] [m], and that distance [P]. A dense [A, B] test when small (one environment), else only within
    keys (`group_pairs`); the result is the same set either way. Distances are of differences, so exact for
    far-apart boxes (a pair too far apart for float64 is never near)."""
    # differences first (exact for far-apart boxes), clipped so that no square overflows (1e150 m: never near)
    if len(key_a) * len(key_b) <= DENSE_PAIRS:  # one dense test on x (near implies |dx| < reach), then pairs
        dx = xy_b[:, 0] - xy_a[:, :1]  # [A, B]
        np.abs(dx, out=dx)
        near = dx < (reach_a[:, None] + reach_b)
        near &= key_a[:, None] == key_b
        a, b = np.nonzero(near)
    else:
        a, b = group_pairs(key_a, key_b, num_keys)
    dx = np.minimum(np.abs(xy_b[b, 0] - xy_a[a, 0]), _FAR)
    dy = np.minimum(np.abs(xy_b[b, 1] - xy_a[a, 1]), _FAR)
    d2 = dx * dx + dy * dy
    reach = reach_a[a] + (reach_b[b] if np.ndim(reach_b) else reach_b)
    near = d2 < reach * reach
    return a[near], b[near], np.sqrt(d2[near])


_FAR = 1e150  # [m] coordinate differences are clipped here before squaring
