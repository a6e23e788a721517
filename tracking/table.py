"""The track table: every live track of every environment is one float row, and the per-row stages on it.

A row holds the Kalman state in `kalman`'s flat layout (mean [2, 7], then covariance blocks [3, 7], row-major),
then the track's id, class, hit and miss counts, score, this frame's detection and environment: selecting,
appending and writing back tracks is one array op each, whatever the number of fields. Integers are exact in
float64.

The stages that touch tracks one by one (update the matched ones, start new ones, pick and order the ones to
output) are compiled loops (numba) over the rows: one call per stage and frame rather than a dozen small numpy
calls (the tracker's cost at 50 objects per frame was numpy's per-call overhead, not arithmetic). They use the
same float operations, in the same order, as the numpy code they replaced, so they return the same bits: the
update is `kalman.update` and `kalman.update_velocity` written on a row (tests/tracking/test_table.py checks
both against them). Numba caches compiled code per source file and cannot see a change in another file, so the
compiled code here calls nothing compiled elsewhere and bakes in only this file's constants.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from drivestack.tracking import kalman

# the row layout: kalman's flat state first (its transition acts on row[:FLAT]), then the track's fields
NUM_AXES, MEAN_FLAT, FLAT = 7, 14, 35  # axes x y z yaw w l h; mean [2, 7]; mean and covariance blocks [3, 7]
assert (NUM_AXES, MEAN_FLAT, FLAT) == (kalman.NUM_AXES, kalman.MEAN_FLAT, kalman.FLAT)  # compiled in below
MEAN = slice(0, MEAN_FLAT)  # 14: Kalman mean [2, 7] (values x y z yaw w l h, then rates), row-major
COV = slice(MEAN_FLAT, FLAT)  # 21: covariance blocks [3, 7] (P_pp, P_pv, P_vv per axis)
STATE = slice(0, FLAT)  # mean and covariance together (what the transition acts on)
ID, LABEL, HITS, MISSES, SCORE, DET, ENV = range(FLAT, FLAT + 7)
WIDTH = FLAT + 7  # DET: the row of this step's detections the track took (-1: none); ENV: environment
_YAW, _VX = 3, NUM_AXES  # the value of yaw, the rate of x in the mean
_PP, _PV, _VV = MEAN_FLAT, MEAN_FLAT + NUM_AXES, MEAN_FLAT + 2 * NUM_AXES  # P_pp, P_pv, P_vv of axis 0
VAR_XY = slice(_PP, _PP + 2)  # P_pp of x and y
RATE_XY = slice(_VX, _VX + 2)  # vx, vy in the mean
VAR_RATE_XY = slice(_VV, _VV + 2)  # P_vv of x and y


def kalman_state(table: np.ndarray) -> kalman.KalmanState:
    """The Kalman state of table rows, as views ([T, 2, 7] and [T, 3, 7])."""
    return kalman.KalmanState(
        table[:, MEAN].reshape(-1, 2, kalman.NUM_AXES), table[:, COV].reshape(-1, 3, kalman.NUM_AXES)
    )


@numba.njit(cache=True)
def _wrap_yaw(angle: float, flip: bool) -> float:
    # an angle wrapped to [-pi, pi) (`common.geometry.wrap_angle`'s arithmetic), or with `flip` to [-pi/2, pi/2):
    # for a yaw innovation, the box seen backwards (flipping by pi whenever |dyaw| > pi/2 is that wrap)
    if flip:
        return (angle + 0.5 * math.pi) % math.pi - 0.5 * math.pi
    wrapped = (angle + math.pi) % (2.0 * math.pi) - math.pi
    return wrapped - 2.0 * math.pi if wrapped >= math.pi else wrapped  # the remainder may round up to 2 pi


@numba.njit(cache=True)
def update_tracks(
    table: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    box: np.ndarray,
    velocity: np.ndarray,
    label: np.ndarray,
    score: np.ndarray,
    det_row: np.ndarray,
    r: np.ndarray,
    r_v: float,
    flip_yaw: bool,
) -> None:
    """Update, in place, the tracks at `rows` [K] of `table` with the detections at `cols` [K]: the Kalman update
    with the box [M, 7] (noise variances r [C, 7] of the detection's class in `label` [M]; per axis S = P_pp + r,
    K = (P_pp, P_pv) / S, x' = x + K y, P' = (I - K H) P), then with its velocity [M, 2] where it is not NaN and
    r_v >= 0 (variance [m^2/s^2]; NaN: unknown, never zero; H = [0, 1] on x and y, applied after the box it is
    the exact joint update since the noises are independent); the track takes the detection's score [M] and row
    `det_row` [M], one hit more, no miss."""
    for k in range(len(rows)):
        i, j = rows[k], cols[k]
        for a in range(NUM_AXES):
            y = box[j, a] - table[i, a]  # innovation
            if a == _YAW:
                y = _wrap_yaw(y, flip_yaw)
            p_pp, p_pv, p_vv = table[i, _PP + a], table[i, _PV + a], table[i, _VV + a]
            s = p_pp + r[label[j], a]
            k_p, k_v = p_pp / s, p_pv / s
            table[i, a] += k_p * y
            table[i, _VX + a] += k_v * y
            table[i, _VV + a] = p_vv - k_v * p_pv  # (P_pp, P_pv, P_vv) - (k_p P_pp, k_p P_pv, k_v P_pv)
            table[i, _PV + a] = p_pv - k_p * p_pv
            table[i, _PP + a] = p_pp - k_p * p_pp
        if r_v >= 0.0 and not np.isnan(velocity[j, 0]):  # validated: vx and vy are NaN together
            for a in range(2):
                p_pp, p_pv, p_vv = table[i, _PP + a], table[i, _PV + a], table[i, _VV + a]
                s = p_vv + r_v
                k_p, k_v = p_pv / s, p_vv / s
                y = velocity[j, a] - table[i, _VX + a]
                table[i, a] += k_p * y
                table[i, _VX + a] += k_v * y
                table[i, _PP + a] = p_pp - k_p * p_pv
                table[i, _PV + a] = p_pv - k_p * p_vv
                table[i, _VV + a] = p_vv - k_v * p_vv
        table[i, SCORE] = score[j]
        table[i, DET] = det_row[j]
        table[i, HITS] += 1.0
        table[i, MISSES] = 0.0


@numba.njit(cache=True)
def birth_rows(
    newborn: np.ndarray,
    new: np.ndarray,
    box: np.ndarray,
    velocity: np.ndarray,
    label: np.ndarray,
    score: np.ndarray,
    env: np.ndarray,
    det_row: np.ndarray,
    next_id: np.ndarray,
    velocity_var: float,
) -> np.ndarray:
    """Table rows [N, WIDTH] of tentative tracks at the detections `new` [N] (rows of box [M, 7], ...): the class's
    `newborn` row [C, WIDTH] (zero mean, prior covariance, one hit) with the box as its values; ids count per
    environment (`next_id` [B], advanced in place) in detection order. Where velocity_var >= 0 a detection's
    velocity (not NaN) starts the track's, with that variance [m^2/s^2], rather than rest."""
    rows = np.empty((len(new), newborn.shape[1]))
    for n in range(len(new)):
        j = new[n]
        rows[n] = newborn[label[j]]
        rows[n, :NUM_AXES] = box[j]  # the mean's values; rates start at 0
        e = env[j]
        rows[n, ID] = next_id[e]
        next_id[e] += 1
        rows[n, SCORE] = score[j]
        rows[n, DET] = det_row[j]
        rows[n, ENV] = e
        if velocity_var >= 0.0 and not np.isnan(velocity[j, 0]):
            rows[n, _VX : _VX + 2] = velocity[j]
            rows[n, _VV : _VV + 2] = velocity_var
    return rows


@numba.njit(cache=True)
def output_rows(
    table: np.ndarray,
    min_hits: float,
    stride: float,
    score_factor: np.ndarray,
    shown: np.ndarray,
    det_box: np.ndarray,
    det_env: np.ndarray,
    num_envs: int,
    detection_box: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tracks to output and their fields, grouped by environment (table order within each): track id [N],
    translation [N, 3], size [N, 3], yaw [N] (wrapped to [-pi, pi)), velocity [N, 2], score [N], label [N],
    detection row within its environment's boxes (`det_env` [M]: the environment of each of this frame's boxes
    det_box [M, 7]; -1: none) [N], and bounds [B + 1] (environment b's tracks are bounds[b]:bounds[b + 1]).

    The output rule is two lookup tables by (confirmed, consecutive misses), key = misses + stride x confirmed
    (confirmed: hits >= min_hits): `shown` [K] and the score factor [K]. With `detection_box` a track updated
    this frame reports its detection's box rather than its filtered one."""
    n_rows = len(table)
    key = np.empty(n_rows, dtype=np.int64)
    bounds = np.zeros(num_envs + 1, dtype=np.int64)
    for i in range(n_rows):
        key[i] = int(table[i, MISSES] + (stride if table[i, HITS] >= min_hits else 0.0))
        if not (0 <= key[i] < len(shown) and 0 <= table[i, ENV] < num_envs):  # compiled code checks no bounds
            raise ValueError("output_rows: a track's misses or environment is out of range")
        if shown[key[i]]:
            bounds[int(table[i, ENV]) + 1] += 1
    for b in range(num_envs):
        bounds[b + 1] += bounds[b]
    local = np.empty(len(det_env), dtype=np.int64)  # a detection's row among its environment's boxes
    seen = np.zeros(num_envs, dtype=np.int64)
    for j in range(len(det_env)):
        local[j] = seen[det_env[j]]
        seen[det_env[j]] += 1
    n = bounds[num_envs]
    track_id, label, det = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    translation, size, velocity = np.empty((n, 3)), np.empty((n, 3)), np.empty((n, 2))
    yaw, score = np.empty(n), np.empty(n)
    fill = bounds[:-1].copy()
    for i in range(n_rows):
        if not shown[key[i]]:
            continue
        e = int(table[i, ENV])
        k = fill[e]
        fill[e] += 1
        j = int(table[i, DET])
        box = det_box[j] if detection_box and j >= 0 else table[i, :NUM_AXES]
        track_id[k], label[k] = int(table[i, ID]), int(table[i, LABEL])
        det[k] = local[j] if j >= 0 else -1
        translation[k] = box[:3]
        size[k] = box[4:7]
        yaw[k] = _wrap_yaw(box[_YAW], False)
        velocity[k] = table[i, _VX : _VX + 2]
        score[k] = table[i, SCORE] * score_factor[key[i]]
    return track_id, translation, size, yaw, velocity, score, label, det, bounds
