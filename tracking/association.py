"""Track-to-detection association: cost matrices, class and distance gating, Hungarian or greedy matching.

Costs are computed for every (track, detection) pair at once as [T, D] arrays. Pairs of different classes
and pairs beyond the gate are invalid. The Hungarian matcher solves one assignment over the whole matrix in
which an invalid pair is worth nothing, so it never competes with a valid one: that single solve is the
same as one per class (the valid pairs form one block per class), without a Python loop over classes.
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
