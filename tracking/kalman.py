"""Batched constant-velocity Kalman filter over all tracks at once, stored per axis.

Each track has 11 state numbers: x, y, z [m] and yaw [rad], each with a rate (vx, vy, vz [m/s], vyaw
[rad/s]), and the box size w, l, h [m] as a random walk. The motion matrix F is block-diagonal
([[1, dt], [0, 1]] per moving axis, [1] per size), the measurement picks values (H = [1, 0] per axis), and
the process and measurement noise are diagonal per axis (as AB3DMOT and CenterPoint choose them). Under
those three facts a covariance that starts block-diagonal stays block-diagonal forever: the 11x11 filter
*is* four 2-state filters and three scalar ones. So we store only the non-zero blocks, per axis
(P_pp, P_pv, P_vv), which is exact, not an approximation, and predict / update are a dozen elementwise
ops over [T, 7] arrays: no batched 11x11 products, no matrix inverses, O(T) work. The sizes are stored as
three more "axes" whose rate is fixed at 0 (zero rate variance, zero acceleration noise), so one code path
serves all seven. tests/tracking/test_kalman.py checks every step against the dense 11x11 filter.

Process noise is the continuous white-acceleration model, so prediction works for any time step dt:
Q_pp = q dt^3 / 3 + w dt, Q_pv = q dt^2 / 2, Q_vv = q dt (q: acceleration power spectral density, w: random-walk
density for the sizes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivestack.common.geometry import wrap_angle

NUM_AXES = 7  # x, y, z, yaw, w, l, h
NUM_MOVING = 4  # x, y, z, yaw have a rate; the sizes do not
YAW = 3  # axis index of yaw: its innovation is wrapped to [-pi, pi)
STATE_NAMES = ("x", "y", "z", "yaw", "w", "l", "h", "vx", "vy", "vz", "vyaw")


@dataclass
class KalmanState:
    """Gaussian state of T tracks, kept per axis (axes: x, y, z, yaw, w, l, h)."""

    mean: np.ndarray  # [T, 2, 7]: row 0 the value per axis ([m], yaw [rad]), row 1 its rate ([m/s], [rad/s]; sizes 0)
    cov: np.ndarray  # [T, 3, 7]: per axis P_pp (value variance), P_pv (value-rate covariance), P_vv (rate variance)

    def __len__(self) -> int:
        return len(self.mean)

    def select(self, idx: np.ndarray) -> KalmanState:
        return KalmanState(self.mean[idx], self.cov[idx])

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """The same state as an 11-vector per track [T, 11] (STATE_NAMES order) and its 11x11 covariance."""
        t = len(self)
        x = np.concatenate([self.mean[:, 0], self.mean[:, 1, :NUM_MOVING]], axis=1)
        p = np.zeros((t, 11, 11))
        ax = np.arange(NUM_AXES)
        mv = np.arange(NUM_MOVING)
        p[:, ax, ax] = self.cov[:, 0]
        p[:, mv, mv + NUM_AXES] = self.cov[:, 1, :NUM_MOVING]
        p[:, mv + NUM_AXES, mv] = self.cov[:, 1, :NUM_MOVING]
        p[:, mv + NUM_AXES, mv + NUM_AXES] = self.cov[:, 2, :NUM_MOVING]
        return x, p


def initiate(z: np.ndarray, r: np.ndarray, rate_var: np.ndarray) -> KalmanState:
    """New tracks at measurements `z` [M, 7] (x, y, z, yaw, w, l, h) with measurement variances `r` [7] and
    prior rate variances `rate_var` [4] (vx, vy, vz, vyaw); the rates start at 0."""
    m = len(z)
    mean = np.zeros((m, 2, NUM_AXES))
    mean[:, 0] = z
    cov = np.zeros((m, 3, NUM_AXES))
    cov[:, 0] = r
    cov[:, 2, :NUM_MOVING] = rate_var
    return KalmanState(mean, cov)


def process_noise(dt: float, accel_psd: np.ndarray, walk_psd: np.ndarray) -> np.ndarray:
    """Q blocks [3, 7] (Q_pp, Q_pv, Q_vv per axis) for a step of `dt` [s]: white acceleration of power spectral
    density `accel_psd` [7] plus a random walk of density `walk_psd` [7] on the value ([..., 3, 7] for
    accel_psd [..., 7]: one per class, say)."""
    return np.stack([accel_psd * dt**3 / 3.0 + walk_psd * dt, accel_psd * dt**2 / 2.0, accel_psd * dt], axis=-2)


def predict(state: KalmanState, dt: float, q: np.ndarray) -> KalmanState:
    """Propagate every track by `dt` [s] under constant velocity; `q` [3, 7] from `process_noise(dt, ...)`.

    Yaw is left unwrapped here (innovations and outputs wrap it): one op fewer per frame."""
    f = np.array([[1.0, dt], [0.0, 1.0]])
    # F P F^T per axis, as a linear map of the blocks (P_pp, P_pv, P_vv)
    f_cov = np.array([[1.0, 2.0 * dt, dt * dt], [0.0, 1.0, dt], [0.0, 0.0, 1.0]])
    return KalmanState(f @ state.mean, f_cov @ state.cov + q)  # [T, 2, 7], [T, 3, 7]


def transition(dt: float, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`predict` as one affine map of the flattened state [mean (14) | cov (21)] (row-major [T, 2, 7] and
    [T, 3, 7]): flat' = flat @ A.T + b, with A [35, 35] and b [35] (b [..., 35] for q [..., 3, 7]: one per
    class, say). One matrix product per frame for all tracks; the tracker keeps its state in that flat layout."""
    a = np.zeros((FLAT, FLAT))
    ax = np.arange(NUM_AXES)
    a[ax, ax] = a[NUM_AXES + ax, NUM_AXES + ax] = 1.0  # F = [[1, dt], [0, 1]] per axis
    a[ax, NUM_AXES + ax] = dt
    # F P F^T per axis, as a linear map of the blocks (P_pp, P_pv, P_vv): [[1, 2 dt, dt^2], [0, 1, dt], [0, 0, 1]]
    for i, j, value in ((0, 0, 1.0), (0, 1, 2.0 * dt), (0, 2, dt * dt), (1, 1, 1.0), (1, 2, dt), (2, 2, 1.0)):
        a[MEAN_FLAT + i * NUM_AXES + ax, MEAN_FLAT + j * NUM_AXES + ax] = value
    q = np.asarray(q)
    batch = q.shape[:-2]
    return a, np.concatenate([np.zeros((*batch, MEAN_FLAT)), q.reshape(*batch, 3 * NUM_AXES)], axis=-1)


MEAN_FLAT = 2 * NUM_AXES  # 14 numbers of the mean per track in the flat layout
FLAT = 5 * NUM_AXES  # 35: mean (14) + covariance blocks (21)


def innovation(state: KalmanState, z: np.ndarray, flip_yaw: bool = False) -> np.ndarray:
    """z - H x per axis [M, 7] for rows matched one to one with `z` [M, 7]; yaw wrapped to [-pi, pi).

    flip_yaw: detectors often get the heading backwards; a yaw innovation beyond pi/2 is then taken as the
    box seen the other way round (rotated by pi), as AB3DMOT does."""
    y = z - state.mean[:, 0]
    # flipping by pi whenever |dyaw| > pi/2 is the same as wrapping dyaw into [-pi/2, pi/2)
    y[:, YAW] = (y[:, YAW] + 0.5 * np.pi) % np.pi - 0.5 * np.pi if flip_yaw else wrap_angle(y[:, YAW])
    return y


def update(state: KalmanState, z: np.ndarray, r: np.ndarray, flip_yaw: bool = False) -> KalmanState:
    """Measurement update of rows matched one to one with `z` [M, 7] (x, y, z, yaw, w, l, h), noise variances
    `r` [7] or [M, 7]. Per axis: S = P_pp + r, K = (P_pp, P_pv) / S, x' = x + K y, P' = (I - K H) P."""
    y = innovation(state, z, flip_yaw)  # [M, 7]
    cov = state.cov
    s = cov[:, 0] + r  # [M, 7]
    gain = cov[:, _GAIN_ROWS] / s[:, None]  # [M, 3, 7]: (k_p, k_p, k_v)
    mean = state.mean + gain[:, 1:] * y[:, None]  # x + K y
    # (P_pp, P_pv, P_vv) - (k_p P_pp, k_p P_pv, k_v P_pv)
    return KalmanState(mean, cov - gain * cov[:, _HP_ROWS])


_GAIN_ROWS = np.array([0, 0, 1])  # gains per covariance block: P_pp and P_pv scale with k_p, P_vv with k_v
_HP_ROWS = np.array([0, 1, 1])  # H P rows: P_pp, P_pv, P_pv


def update_velocity(state: KalmanState, v: np.ndarray, r_v: float) -> KalmanState:
    """Measurement update with a measured ground velocity (vx, vy) `v` [M, 2] [m/s] of variance `r_v` [m^2/s^2],
    rows matched one to one (H = [0, 1] on the x and y axes). Applied after `update`, it is the exact joint
    update because the noises are independent (sequential processing)."""
    mean = state.mean.copy()
    cov = state.cov.copy()
    p_pp, p_pv, p_vv = (state.cov[:, i, :2] for i in range(3))  # [M, 2] each
    s = p_vv + r_v
    k_p, k_v = p_pv / s, p_vv / s
    y = v - state.mean[:, 1, :2]
    mean[:, 0, :2] += k_p * y
    mean[:, 1, :2] += k_v * y
    cov[:, 0, :2] = p_pp - k_p * p_pv
    cov[:, 1, :2] = p_pv - k_p * p_vv
    cov[:, 2, :2] = p_vv - k_v * p_vv
    return KalmanState(mean, cov)
