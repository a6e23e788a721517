"""The multi-object tracker: Kalman prediction, per-class association, track lifecycle, scored output.

Every track lives in the global frame (detections in the ego frame are moved there first with
`FrameDetections.to_global`). One `step` per frame:

1. predict every track to the frame's time (any time step; frames must come in time order);
2. associate per class on a gated distance (Mahalanobis or centre distance; Hungarian or greedy);
3. update matched tracks with the detection box (and its velocity, when the detector gives one);
4. lifecycle: a track is *tentative* until it has `min_hits` hits, then *confirmed*; a track missed more
   than `max_misses` frames in a row is deleted (an empty frame counts as a miss for all);
5. unmatched detections start tentative tracks;
6. output every track updated this frame, and confirmed tracks through up to `coast_frames` missed frames
   at their predicted box, each with a score (below).

Track score: the latest matched detection score, scaled by `tentative_score` while tentative and by
`coast_decay` per missed frame. The nuScenes metric averages the score over a whole track and sweeps a
threshold over it (AMOTA), so a low score on short-lived or coasting boxes lets the sweep drop them first.
All of it is array code over the tracks and detections of a frame; nothing loops over boxes or pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivestack.common.geometry import wrap_angle
from drivestack.tracking import kalman
from drivestack.tracking.association import (
    Matcher,
    Metric,
    center_distance,
    gate,
    mahalanobis_distance,
    match,
    negative_log_likelihood,
)
from drivestack.tracking.data_classes import TRACKING_NAMES, FrameDetections, FrameTracks


@dataclass(frozen=True)
class TrackerConfig:
    """Kalman filter tracker settings (defaults tuned for nuScenes keyframes at 2 Hz)."""

    metric: Metric = Metric.NLL
    """Association cost: negative log-likelihood (Mahalanobis d^2 + ln det S/R), Mahalanobis d^2, or centre
    distance [m] (see tracking.association.Metric)."""
    matcher: Matcher = Matcher.HUNGARIAN
    """Pair selection: optimal (Hungarian, scipy) or greedy cheapest-first (CenterPoint)."""
    mahalanobis_gate: float = 13.8
    """Largest cost of a valid pair with metric nll or mahalanobis (13.8: chi-square, 2 dof, 99.9 %)."""
    max_log_det: float = 5.0
    """Cap on the ln(det S / det R) term of metric=nll (about 11 for a track born one 2 Hz frame ago with
    init_speed_std 15 m/s, about 1 for a confirmed one): uncertain tracks still lose conflicts, yet a fast
    newcomer (a highway car moves 15 m per keyframe) can still be matched."""
    center_gate: float = 3.0
    """[m] largest centre distance of a valid pair with metric=center."""
    min_hits: int = 3
    """Hits (matched frames) after which a track is confirmed."""
    max_misses: int = 5
    """A confirmed track missed in more than this many consecutive frames is deleted."""
    max_misses_tentative: int = 5
    """A tentative track missed in more than this many consecutive frames is deleted (0: at its first miss, as
    SORT does; keeping young tracks through gaps pays on nuScenes, where objects blink in and out of view)."""
    pos_std: float = 0.5
    """[m] measurement noise of the detected centre (x, y)."""
    z_std: float = 0.5
    """[m] measurement noise of the detected centre height."""
    yaw_std: float = 0.3
    """[rad] measurement noise of the detected yaw."""
    size_std: float = 0.3
    """[m] measurement noise of the detected size (w, l, h)."""
    velocity_std: float = 1.0
    """[m/s] measurement noise of detected velocities (used when the detector gives them)."""
    use_detection_velocity: bool = True
    """Update the velocity with the detector's own (vx, vy) where it gives one (NaN: none)."""
    accel_std: float = 1.0
    """[m/s^2] process noise: white acceleration of the centre (per axis)."""
    yaw_accel_std: float = 1.0
    """[rad/s^2] process noise: white angular acceleration of the yaw."""
    size_walk_std: float = 0.05
    """[m/sqrt(s)] process noise: random walk of the box size."""
    init_speed_std: float = 15.0
    """[m/s] prior standard deviation of a new track's velocity (per axis) when the detector gives none."""
    init_yaw_rate_std: float = 1.0
    """[rad/s] prior standard deviation of a new track's yaw rate."""
    flip_yaw: bool = True
    """Treat a yaw innovation beyond 90 deg as the box detected backwards (AB3DMOT's orientation correction)."""
    min_detection_score: float = 0.0
    """Detections scoring below this are ignored."""
    tentative_score: float = 0.5
    """Output score factor of tentative tracks."""
    coast_frames: int = 1
    """Also output a confirmed track for up to this many consecutive missed frames (its predicted box; 0: never).
    The metric interpolates a track across a gap by itself, so coasting pays only at the ends of tracks."""
    coast_decay: float = 0.5
    """Output score factor per consecutive missed frame of a coasting track."""

    def validate(self) -> TrackerConfig:
        """Raise ValueError naming the first bad field."""
        positive = (
            "mahalanobis_gate",
            "center_gate",
            "pos_std",
            "z_std",
            "yaw_std",
            "size_std",
            "velocity_std",
            "init_speed_std",
            "init_yaw_rate_std",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"tracker.{name} must be > 0, got {getattr(self, name)}")
        for name in ("accel_std", "yaw_accel_std", "size_walk_std"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"tracker.{name} must be >= 0, got {getattr(self, name)}")
        if self.min_hits < 1:
            raise ValueError(f"tracker.min_hits must be >= 1, got {self.min_hits}")
        for name in ("max_misses", "max_misses_tentative", "coast_frames"):
            if getattr(self, name) < 0:
                raise ValueError(f"tracker.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("tentative_score", "coast_decay", "min_detection_score"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"tracker.{name} must be in [0, 1], got {getattr(self, name)}")
        return self


# The live tracks are one float table [T, WIDTH]: a row per track, so that selecting, appending and writing
# back tracks is one array op each whatever the number of fields. Columns:
MEAN = slice(0, kalman.MEAN_FLAT)  # 14: Kalman mean [2, 7] (values x y z yaw w l h, then rates), row-major
COV = slice(kalman.MEAN_FLAT, kalman.FLAT)  # 21: covariance blocks [3, 7] (P_pp, P_pv, P_vv per axis)
STATE = slice(0, kalman.FLAT)  # mean and covariance together (what the transition acts on)
ID, LABEL, HITS, MISSES, SCORE, DET = range(kalman.FLAT, kalman.FLAT + 6)  # ids, labels exact in float64
WIDTH = kalman.FLAT + 6  # DET: the row of the current frame's detections the track took (-1: none)
VAR_XY = slice(kalman.MEAN_FLAT, kalman.MEAN_FLAT + 2)  # P_pp of x and y
RATE_XY = slice(kalman.NUM_AXES, kalman.NUM_AXES + 2)  # vx, vy in the mean
VAR_RATE_XY = slice(kalman.MEAN_FLAT + 2 * kalman.NUM_AXES, kalman.MEAN_FLAT + 2 * kalman.NUM_AXES + 2)  # P_vv x y


def _kf(table: np.ndarray) -> kalman.KalmanState:
    """The Kalman state of table rows, as views ([T, 2, 7] and [T, 3, 7])."""
    return kalman.KalmanState(
        table[:, MEAN].reshape(-1, 2, kalman.NUM_AXES), table[:, COV].reshape(-1, 3, kalman.NUM_AXES)
    )


class Tracker:
    """Kalman filter multi-object tracker over a stream of frames of one scene (call `reset` between scenes)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = (config or TrackerConfig()).validate()
        c = self.config
        self._r = np.array([c.pos_std, c.pos_std, c.z_std, c.yaw_std, c.size_std, c.size_std, c.size_std]) ** 2
        rate_var = np.array([c.init_speed_std, c.init_speed_std, c.init_speed_std, c.init_yaw_rate_std]) ** 2
        self._accel_psd = np.array([c.accel_std, c.accel_std, c.accel_std, c.yaw_accel_std, 0.0, 0.0, 0.0]) ** 2
        self._walk_psd = np.array([0.0, 0.0, 0.0, 0.0, c.size_walk_std, c.size_walk_std, c.size_walk_std]) ** 2
        self._metric, self._matcher = Metric(c.metric), Matcher(c.matcher)
        self._gate = c.center_gate if self._metric is Metric.CENTER else c.mahalanobis_gate
        # a new track's row before its measurement is written in: zero mean, prior covariance, one hit
        self._newborn = np.zeros(WIDTH)
        self._newborn[COV] = kalman.initiate(np.zeros((1, kalman.NUM_AXES)), self._r, rate_var).cov.reshape(-1)
        self._newborn[HITS] = 1
        # output rule as lookup tables by (confirmed, consecutive misses): shown? and the score factor
        misses = np.arange(max(c.max_misses, c.max_misses_tentative) + 2)
        self._score_factor = np.stack([c.tentative_score * c.coast_decay**misses, c.coast_decay**misses])
        self._shown = np.stack([misses == 0, misses <= c.coast_frames])
        self._next_id = 0  # ids stay unique across scenes
        self._dt, self._transition = math.nan, (np.eye(kalman.FLAT), np.zeros(kalman.FLAT))
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (a new scene); track ids keep counting up."""
        self.table = np.zeros((0, WIDTH))  # [T, WIDTH] the live tracks (see the column constants)
        self._time: float | None = None
        self._token = ""

    def step(self, frame: FrameDetections) -> FrameTracks:
        """Advance to `frame` (detections in the global frame) and return the tracks to output at its time."""
        c = self.config
        _check_frame(frame)
        if self._time is not None and not frame.timestamp > self._time:
            raise ValueError(
                f"sample {frame.token}: timestamp {frame.timestamp:.6f} s is not after the previous "
                f"frame's ({self._token}, {self._time:.6f} s); give frames in time order"
            )
        if c.min_detection_score > 0:
            frame = frame.select(frame.score >= c.min_detection_score)
        table = self.table  # the last output holds views of this table: build a new one, never write into it
        if len(table):
            a, b = self._transition_for(frame.timestamp - self._time)
            table = np.concatenate([table[:, STATE] @ a.T + b, table[:, ID:]], axis=1)  # predict all tracks
            table[:, MISSES] += 1
            table[:, DET] = -1
        self._time, self._token = frame.timestamp, frame.token

        # associate (per class, through the class mask in `gate`), then update the matched tracks
        rows, cols = self._associate(table, frame)
        if len(rows):
            matched = table[rows]  # [K, WIDTH]
            kf = kalman.update(_kf(matched), frame.box[cols], self._r, flip_yaw=c.flip_yaw)
            if c.use_detection_velocity:
                kf = self._update_velocity(kf, frame.velocity[cols])
            matched[:, MEAN] = kf.mean.reshape(len(rows), -1)
            matched[:, COV] = kf.cov.reshape(len(rows), -1)
            matched[:, HITS] += 1
            matched[:, MISSES] = 0
            matched[:, SCORE] = frame.score[cols]
            matched[:, DET] = cols
            table[rows] = matched

        # lifecycle: delete the lost, start tentative tracks at unmatched detections
        if len(table):
            limit = np.where(table[:, HITS] >= c.min_hits, c.max_misses, c.max_misses_tentative)
            keep = table[:, MISSES] <= limit
            if not keep.all():
                table = table[keep]
        if len(cols) < len(frame):
            new = np.ones(len(frame), dtype=bool)
            new[cols] = False
            table = np.concatenate([table, self._births(frame, new)])
        self.table = table
        return self._output(table, frame)

    def _transition_for(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        if dt != self._dt:  # frames mostly come at one rate: build the map once per distinct step
            q = kalman.process_noise(dt, self._accel_psd, self._walk_psd)
            self._transition, self._dt = kalman.transition(dt, q), dt
        return self._transition

    def _associate(self, table: np.ndarray, frame: FrameDetections) -> tuple[np.ndarray, np.ndarray]:
        if not len(table) or not len(frame):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        track_xy = table[:, :2]  # [T, 2] predicted centres
        det_xy = frame.box[:, :2]  # [D, 2]
        if self._metric is Metric.CENTER:
            cost = center_distance(track_xy, det_xy)
        elif self._metric is Metric.MAHALANOBIS:
            cost = mahalanobis_distance(track_xy, table[:, VAR_XY] + self._r[:2], det_xy)
        else:
            cost = negative_log_likelihood(
                track_xy, table[:, VAR_XY] + self._r[:2], det_xy, self._r[:2], self.config.max_log_det
            )
        valid = gate(cost, table[:, LABEL], frame.label, self._gate)
        return match(cost, valid, self._gate, self._matcher)

    def _update_velocity(self, kf: kalman.KalmanState, v: np.ndarray) -> kalman.KalmanState:
        no_v = np.isnan(v[:, 0])  # [K] the detector gave no velocity (validate: vx and vy are NaN together)
        if no_v.all():
            return kf
        if not no_v.any():
            return kalman.update_velocity(kf, v, self.config.velocity_std**2)
        has_v = ~no_v
        sub = kalman.update_velocity(kf.select(has_v), v[has_v], self.config.velocity_std**2)
        kf.mean[has_v], kf.cov[has_v] = sub.mean, sub.cov
        return kf

    def _births(self, frame: FrameDetections, new: np.ndarray) -> np.ndarray:
        """Table rows [N, WIDTH] of tentative tracks at the detections where `new` [D] holds."""
        num_new = int(new.sum())
        rows = np.repeat(self._newborn[None], num_new, axis=0)
        rows[:, : kalman.NUM_AXES] = frame.box[new]  # the mean's values; rates start at 0
        rows[:, ID] = np.arange(self._next_id, self._next_id + num_new)
        rows[:, LABEL] = frame.label[new]
        rows[:, SCORE] = frame.score[new]
        rows[:, DET] = np.flatnonzero(new)
        self._next_id += num_new
        if self.config.use_detection_velocity:
            v = frame.velocity[new]
            has_v = ~np.isnan(v[:, 0])
            if has_v.any():  # start from the detector's velocity rather than from rest
                rows[has_v, RATE_XY] = v[has_v]
                rows[has_v, VAR_RATE_XY] = self.config.velocity_std**2
        return rows

    def _output(self, table: np.ndarray, frame: FrameDetections) -> FrameTracks:
        c = self.config
        key = ((table[:, HITS] >= c.min_hits).view(np.int8), table[:, MISSES].astype(np.int64))  # (confirmed, misses)
        score = table[:, SCORE] * self._score_factor[key]
        show = self._shown[key]
        if not show.all():
            table, score = table[show], score[show]
        return FrameTracks(
            frame.token,
            frame.timestamp,
            table[:, ID].astype(np.int64),
            table[:, :3],
            table[:, 4:7],
            wrap_angle(table[:, 3]),
            table[:, RATE_XY],
            score,
            table[:, LABEL].astype(np.int64),
            table[:, DET].astype(np.int64),
        )

    def state_dict(self) -> dict[str, Any]:
        """A snapshot of the live tracks (for inspection and tests): ids, labels, hits, misses, dense state."""
        x, p = _kf(self.table).dense()
        t = self.table
        return {
            "track_id": t[:, ID].astype(np.int64),
            "label": t[:, LABEL].astype(np.int64),
            "hits": t[:, HITS].astype(np.int64),
            "misses": t[:, MISSES].astype(np.int64),
            "state": x,
            "cov": p,
        }


def _check_frame(frame: FrameDetections) -> None:
    # one cheap test per frame; the full check (which names the bad field) runs only when it fails
    n = len(frame.score)
    ok = frame.box.shape == (n, 7) and frame.velocity.shape == (n, 2) and frame.label.shape == (n,)
    if ok and n:
        ok = bool(np.isfinite(frame.box.sum() + frame.score.sum()))
        ok = ok and 0 <= frame.label.min() and frame.label.max() < len(TRACKING_NAMES)
    if not ok or not np.isfinite(frame.timestamp):
        frame.validate()


def track_scene(tracker: Tracker, frames: list[FrameDetections]) -> list[FrameTracks]:
    """Run `tracker` from a clean start over the frames of one scene (in time order)."""
    tracker.reset()
    return [tracker.step(f) for f in frames]
