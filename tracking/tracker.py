"""The multi-object tracker: pre-filter, Kalman prediction, two-stage per-class association, lifecycle, output.

Every track lives in the global frame (detections in the ego frame are moved there first with
`FrameDetections.to_global`). One `step` per frame, in stages (each its own method below):

1. pre-filter: drop detections below their class's `min_score`; per-class BEV NMS (`tracking.prefilter`);
2. predict every track to the frame's time (any time step; frames must come in time order);
3. associate within each class, greedily on the negative log-likelihood of the centre under the predicted
   innovation covariance (for a track with one hit, whose velocity is still unknown: under a prior that
   moves a vehicle along its heading, `heading_prior`), gated per class by centre distance (widened by the
   track's own position uncertainty) and by the chi-square gate; first the detections at or above their
   class's `birth_score`, then the low-score ones, which may only extend tracks left unmatched (two stages);
4. update matched tracks with the detection box (and its velocity, when the detector gives one: a NaN
   velocity means unknown and is never used as a measurement);
5. lifecycle: a track is *tentative* until it has `min_hits` hits, then *confirmed*; a track missed more
   than `max_misses` frames in a row is deleted; unmatched high-score detections start tentative tracks;
6. output every track updated this frame (its filtered box, or its detection's: `output_box`), and confirmed
   tracks through up to `coast_frames` missed frames at their predicted box, each with a score: the latest
   detection score, scaled by `tentative_score` while tentative and by `coast_decay` per missed frame (AMOTA
   ranks boxes by score, so doubtful boxes rank last).

`MultiTracker` runs B independent environments in one call: all their tracks are rows of one table with an
environment column, predict and update run once over all rows, and association and NMS only ever pair boxes
of one environment and one class (`association.near_pairs`: one dense test for one environment, pairs within
(environment, class) groups beyond), so the work grows as B, not B^2. Each
environment has its own clock. `Tracker` is the one-environment case. Per-class parameters:
`tracking.params.ClassParams`. Nothing loops over boxes or pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from drivestack.common.geometry import wrap_angle
from drivestack.tracking import kalman
from drivestack.tracking.association import Matcher, Metric, greedy_pairs, match_pairs, near_pairs
from drivestack.tracking.config import OutputBox, TrackerConfig
from drivestack.tracking.data_classes import TRACKING_NAMES, FrameDetections, FrameTracks
from drivestack.tracking.params import NUM_CLASSES
from drivestack.tracking.prefilter import nms

# The live tracks are one float table [T, WIDTH]: a row per track, so that selecting, appending and writing
# back tracks is one array op each whatever the number of fields. Columns:
MEAN = slice(0, kalman.MEAN_FLAT)  # 14: Kalman mean [2, 7] (values x y z yaw w l h, then rates), row-major
COV = slice(kalman.MEAN_FLAT, kalman.FLAT)  # 21: covariance blocks [3, 7] (P_pp, P_pv, P_vv per axis)
STATE = slice(0, kalman.FLAT)  # mean and covariance together (what the transition acts on)
ID, LABEL, HITS, MISSES, SCORE, DET, ENV = range(kalman.FLAT, kalman.FLAT + 7)  # integers exact in float64
WIDTH = kalman.FLAT + 7  # DET: the row of this step's detections the track took (-1: none); ENV: environment
_N = kalman.NUM_AXES
P_PP, P_PV, P_VV = (slice(kalman.MEAN_FLAT + k * _N, kalman.MEAN_FLAT + (k + 1) * _N) for k in range(3))  # [T, 7] each
VAR_XY = slice(kalman.MEAN_FLAT, kalman.MEAN_FLAT + 2)  # P_pp of x and y
RATE_XY = slice(kalman.NUM_AXES, kalman.NUM_AXES + 2)  # vx, vy in the mean
VAR_RATE_XY = slice(kalman.MEAN_FLAT + 2 * kalman.NUM_AXES, kalman.MEAN_FLAT + 2 * kalman.NUM_AXES + 2)  # P_vv x y


def _kf(table: np.ndarray) -> kalman.KalmanState:
    """The Kalman state of table rows, as views ([T, 2, 7] and [T, 3, 7])."""
    return kalman.KalmanState(
        table[:, MEAN].reshape(-1, 2, kalman.NUM_AXES), table[:, COV].reshape(-1, 3, kalman.NUM_AXES)
    )


_EMPTY_INT = np.zeros(0, dtype=np.int64)
PEDESTRIAN = TRACKING_NAMES.index("pedestrian")  # the class that may move in any direction
_CENTER_MARGIN = 1e3  # [m] metric=center: a pair is worth (this - distance), more than any gated distance


class MultiTracker:
    """Kalman filter trackers of `num_envs` independent environments, stepped together (one table for all).

    `step(frames)` with one FrameDetections per environment (each with its own timestamp) returns one
    FrameTracks per environment, equal to what B separate `Tracker`s would return (ids count per environment).
    `step_packed` takes all environments' detections as one frame plus an environment index per box."""

    def __init__(self, config: TrackerConfig | None = None, num_envs: int = 1) -> None:
        self.config = (config or TrackerConfig()).validate()
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        c, p = self.config, self.config.class_params()
        self._p = p
        pos_var = p.array("pos_std") ** 2  # [C]
        other = np.array([c.z_std, c.yaw_std, c.size_std, c.size_std, c.size_std]) ** 2
        self._r = np.concatenate([np.stack([pos_var, pos_var], 1), np.tile(other, (NUM_CLASSES, 1))], 1)  # [C, 7]
        self._r_xy = pos_var  # [C] the measurement variance of x, and of y
        accel = p.array("accel_std")
        self._accel_psd = np.zeros((NUM_CLASSES, kalman.NUM_AXES))  # [C, 7]
        self._accel_psd[:, :3] = accel[:, None] ** 2
        self._accel_psd[:, 3] = c.yaw_accel_std**2
        self._walk_psd = np.array([0.0, 0.0, 0.0, 0.0, c.size_walk_std, c.size_walk_std, c.size_walk_std]) ** 2
        self._metric, self._matcher = Metric(c.metric), Matcher(c.matcher)
        # heading prior: (lateral / longitudinal velocity std)^2 of a newborn per class; pedestrians isotropic
        self._lateral = np.full(NUM_CLASSES, math.sin(min(c.yaw_std, 0.5 * math.pi)) ** 2)
        self._lateral[PEDESTRIAN] = 1.0
        self._min_score = np.maximum(p.array("min_score"), c.min_detection_score)  # [C]
        self._birth_score = p.array("birth_score") if c.two_stage else np.zeros(NUM_CLASSES)  # [C]
        self._nms_iou = p.array("nms_iou")
        self._max_distance = p.array("max_distance")
        # a new track's row per class before its measurement is written in: zero mean, prior covariance, one hit
        speed = p.array("init_speed_std")
        self._newborn = np.zeros((NUM_CLASSES, WIDTH))
        for k in range(NUM_CLASSES):  # a loop over classes, once
            rate_var = np.array([speed[k], speed[k], speed[k], c.init_yaw_rate_std]) ** 2
            self._newborn[k, COV] = kalman.initiate(np.zeros((1, kalman.NUM_AXES)), self._r[k], rate_var).cov.ravel()
        self._newborn[:, HITS] = 1
        self._newborn[:, LABEL] = np.arange(NUM_CLASSES)
        # output rule as lookup tables by (confirmed, consecutive misses): shown? and the score factor
        misses = np.arange(max(c.max_misses, c.max_misses_tentative) + 2)
        self._score_factor = np.concatenate([c.tentative_score * c.coast_decay**misses, c.coast_decay**misses])
        self._shown = np.concatenate([misses == 0, misses <= c.coast_frames])
        self._stride = float(len(misses))  # confirmed rows follow the tentative ones
        self._max_misses = float(c.max_misses)
        self._transitions: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        self._next_id = np.zeros(num_envs, dtype=np.int64)  # per environment; ids stay unique across resets
        self.table = np.zeros((0, WIDTH))  # [T, WIDTH] the live tracks of all environments (column constants)
        self._time = np.full(num_envs, np.nan)  # [B] [s] each environment's clock (NaN: not started)
        self._tokens = [""] * num_envs

    # ---- environment management ----

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget the tracks of the environments where `mask` [B] bool holds (None: all) and restart their clocks;
        track ids keep counting up."""
        if mask is None:
            self.table = np.zeros((0, WIDTH))
            self._time[:] = np.nan
            return
        mask = np.asarray(mask, dtype=bool).reshape(self.num_envs)
        if len(self.table):
            self.table = self.table[~mask[self.table[:, ENV].astype(np.intp)]]
        self._time[mask] = np.nan

    def transform(self, envs: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> None:
        """Move the tracks of environments `envs` [K] (int) by a rigid ground-plane transform: p' = R(rotation) p +
        translation, rotation [K] [rad], translation [K, 2] [m]; yaws turn by the rotation and velocities rotate.
        The per-axis covariances are kept (exact for rotations by multiples of 90 degrees; a re-based global
        frame, as the closed loop does once per ring lap)."""
        envs = np.asarray(envs, dtype=np.intp).reshape(-1)
        if not len(self.table) or not len(envs):
            return
        angle = np.zeros(self.num_envs)
        shift = np.zeros((self.num_envs, 2))
        moved = np.zeros(self.num_envs, dtype=bool)
        angle[envs] = np.asarray(rotation, dtype=np.float64).reshape(-1)
        shift[envs] = np.asarray(translation, dtype=np.float64).reshape(-1, 2)
        moved[envs] = True
        table = self.table.copy()  # earlier outputs hold views of the old table
        env = table[:, ENV].astype(np.intp)
        rows = moved[env]
        a, t = angle[env[rows]], shift[env[rows]]
        c, s = np.cos(a), np.sin(a)
        for cols in ((0, 1), (RATE_XY.start, RATE_XY.start + 1)):  # positions, then velocities
            x, y = table[rows, cols[0]], table[rows, cols[1]]
            table[rows, cols[0]], table[rows, cols[1]] = c * x - s * y, s * x + c * y
        table[rows, 0] += t[:, 0]
        table[rows, 1] += t[:, 1]
        table[rows, 3] += a
        self.table = table

    # ---- stepping ----

    def step(self, frames: list[FrameDetections]) -> list[FrameTracks]:
        """Advance every environment to its frame (`frames[b]`: environment b's detections, global frame, at its
        own timestamp) and return each environment's tracks to output at that time."""
        if len(frames) != self.num_envs:
            raise ValueError(f"step needs one frame per environment ({self.num_envs}), got {len(frames)}")
        for f in frames:
            _check_frame(f)
        times = np.array([f.timestamp for f in frames])
        tokens = [f.token for f in frames]
        if self.num_envs == 1:
            return self._step(frames[0], np.zeros(len(frames[0]), dtype=np.int64), times, tokens)
        counts = [len(f) for f in frames]
        det = FrameDetections(
            "batch",
            float("nan"),
            np.concatenate([f.box for f in frames]),
            np.concatenate([f.velocity for f in frames]),
            np.concatenate([f.score for f in frames]),
            np.concatenate([f.label for f in frames]),
        )
        return self._step(det, np.repeat(np.arange(self.num_envs), counts), times, tokens)

    def step_packed(
        self, det: FrameDetections, env: np.ndarray, times: np.ndarray, tokens: list[str] | None = None
    ) -> list[FrameTracks]:
        """`step` with all environments' detections in one frame: `det` (its timestamp is ignored), `env` [M] the
        environment of each box, `times` [B] [s] each environment's time, `tokens` [B] frame names (default
        env<b>). Each output's detection_index is the row among that environment's boxes, in `det` order."""
        _check_frame(FrameDetections(det.token, 0.0, det.box, det.velocity, det.score, det.label))  # shapes, NaNs
        times = np.asarray(times, dtype=np.float64).reshape(self.num_envs)
        env = np.asarray(env, dtype=np.int64).reshape(len(det))
        tokens = tokens if tokens is not None else [f"env{b}" for b in range(self.num_envs)]
        self._check_step(det, env, times, tokens)
        return self._step(det, env, times, tokens)

    def _step(self, det: FrameDetections, env: np.ndarray, times: np.ndarray, tokens: list[str]) -> list[FrameTracks]:
        c = self.config
        stale = times <= self._time  # NaN (not started) compares False
        if stale.any():
            self._check_step(det, env, times, tokens)  # raises, naming the environment and its frame
        keep = self._prefilter(det, env)  # [M'] rows of det that pass
        if len(keep) == len(det):  # all pass (keep is then 0..M-1): no copies
            box, label, score, denv, velocity = det.box, det.label, det.score, env, det.velocity
        else:
            box, label, score, denv, velocity = (
                det.box[keep],
                det.label[keep],
                det.score[keep],
                env[keep],
                det.velocity[keep],
            )
        table = self._predict(self.table, times)  # a new table: the last output holds views of the old one
        table[:, MISSES] += 1
        table[:, DET] = -1
        self._time, self._tokens = times.copy(), list(tokens)

        is_high = score >= self._birth_score[label]  # [M'] may start a track; first-stage detection
        rows, cols = self._associate(table, box, label, is_high, denv)
        if len(rows):
            matched = self._update(table[rows], box[cols], velocity[cols], label[cols])
            matched[:, SCORE] = score[cols]
            matched[:, DET] = keep[cols]
            table[rows] = matched

        # lifecycle: delete the lost, start tentative tracks at unmatched detections that may give birth
        if len(table):
            limit = self._max_misses if c.max_misses == c.max_misses_tentative else self._miss_limit(table)
            alive = table[:, MISSES] <= limit
            if not alive.all():
                table = table[alive]
        new = is_high
        new[cols] = False
        if new.any():
            table = np.concatenate([table, self._births(box, velocity, label, score, denv, keep, new)])
        self.table = table
        return self._output(table, det.box, env, times, tokens)

    def _miss_limit(self, table: np.ndarray) -> np.ndarray:
        c = self.config
        return np.where(table[:, HITS] >= c.min_hits, c.max_misses, c.max_misses_tentative)  # [T]

    def predict(self, times: np.ndarray, tokens: list[str] | None = None) -> list[FrameTracks]:
        """Advance every started environment to `times` [B] [s] without detections (between camera frames): no
        miss is counted and nothing is born or deleted; returns the tracks to output at those times (as at the
        last step, at their predicted boxes). Predicting twice is the same as once over the summed time."""
        times = np.asarray(times, dtype=np.float64).reshape(self.num_envs)
        tokens = tokens if tokens is not None else [f"env{b}" for b in range(self.num_envs)]
        started = np.isfinite(self._time)
        if (times[started] < self._time[started]).any():
            b = int(np.flatnonzero(started & (times < self._time))[0])
            raise ValueError(f"env {b}: predict time {times[b]:.6f} s is before its clock ({self._time[b]:.6f} s)")
        table = self._predict(self.table, np.where(started, times, self._time))
        table[:, DET] = -1
        self.table = table
        self._time = np.where(started, times, self._time)
        return self._output(table, np.zeros((0, 7)), _EMPTY_INT, times, tokens)

    # ---- stages ----

    def _check_step(self, det: FrameDetections, env: np.ndarray, times: np.ndarray, tokens: list[str]) -> None:
        if len(det) and (env.min() < 0 or env.max() >= self.num_envs):
            raise ValueError(f"env indices must be in [0, {self.num_envs}), got {env.min()}..{env.max()}")
        if not np.isfinite(times).all():
            b = int(np.flatnonzero(~np.isfinite(times))[0])
            raise ValueError(f"sample {tokens[b]}: timestamp is {times[b]}; give a finite time in seconds")
        stale = times <= self._time  # NaN (not started) compares False
        if stale.any():
            b = int(np.flatnonzero(stale)[0])
            where = f"sample {tokens[b]}" if self.num_envs == 1 else f"env {b}, sample {tokens[b]}"
            raise ValueError(
                f"{where}: timestamp {times[b]:.6f} s is not after the previous frame's ({self._tokens[b]}, "
                f"{self._time[b]:.6f} s); give frames in time order"
            )

    def _prefilter(self, det: FrameDetections, env: np.ndarray) -> np.ndarray:
        """Rows [M'] of `det` that pass the per-class score threshold and the per-class NMS."""
        keep = np.flatnonzero(det.score >= self._min_score[det.label])
        if self.config.nms and len(keep) > 1:
            label = det.label[keep]
            group = env[keep] * NUM_CLASSES + label
            kept = nms(det.box[keep], det.score[keep], group, self.num_envs * NUM_CLASSES, self._nms_iou[label])
            keep = keep[kept]
        return keep

    def _predict(self, table: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Every track moved to its environment's time in `times` [B] (a new table)."""
        if not len(table):
            return table.copy()
        dt_env = times - self._time  # [B]
        label = table[:, LABEL].astype(np.intp)
        if self.num_envs == 1:
            a, q = self._transition_for(float(dt_env[0]))
            return np.concatenate([table[:, STATE] @ a.T + q[label], table[:, ID:]], axis=1)
        dt = dt_env[table[:, ENV].astype(np.intp)]  # [T]
        steps = np.unique(dt)
        if len(steps) == 1:  # every environment moved by the same time
            a, q = self._transition_for(float(steps[0]))
            return np.concatenate([table[:, STATE] @ a.T + q[label], table[:, ID:]], axis=1)
        out = table.copy()
        for step in steps:  # a loop over distinct step lengths (few: environments share a rate)
            rows = dt == step
            a, q = self._transition_for(float(step))
            out[rows, STATE] = table[rows, STATE] @ a.T + q[label[rows]]
        return out

    def _transition_for(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """The predict map for a step of `dt` [s]: A [35, 35] and the per-class offsets b [C, 35] (process noise)."""
        if dt not in self._transitions:  # frames mostly come at one rate: build the map once per distinct step
            if len(self._transitions) > 64:
                self._transitions.clear()
            q = np.stack([kalman.process_noise(dt, self._accel_psd[k], self._walk_psd) for k in range(NUM_CLASSES)])
            a, _ = kalman.transition(dt, q[0])
            b = np.concatenate([np.zeros((NUM_CLASSES, kalman.MEAN_FLAT)), q.reshape(NUM_CLASSES, -1)], axis=1)
            self._transitions[dt] = (a, b)
        return self._transitions[dt]

    def _associate(
        self,
        table: np.ndarray,
        box: np.ndarray,
        label: np.ndarray,
        is_high: np.ndarray,
        env: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Matched (track rows [K], detection rows [K]): same environment and class only, gated, in two stages
        (first the detections where `is_high` [M] holds: score at or above their class's birth_score)."""
        if not len(table) or not len(box):
            return _EMPTY_INT, _EMPTY_INT
        c = self.config
        t_label = table[:, LABEL].astype(np.int64)
        if self.num_envs == 1:  # the key is the class
            t_key, d_key = t_label, label
        else:
            t_key, d_key = table[:, ENV].astype(np.int64) * NUM_CLASSES + t_label, env * NUM_CLASSES + label
        # predicted position variance [T]; x and y share it exactly (same noises, same gains: `_kf` per axis)
        var = table[:, VAR_XY.start]
        # the centre-distance gate of each track: its class's, widened by its own position uncertainty
        max_distance = self._max_distance[t_label]  # [T]
        gate = max_distance + c.gate_sigmas * np.sqrt(var)  # [T]
        ti, di, dist = near_pairs(t_key, table[:, :2], gate, d_key, box[:, :2], 0.0, self.num_envs * NUM_CLASSES)
        # [P] candidates: same environment and class, within the gate
        if not len(ti):
            return _EMPTY_INT, _EMPTY_INT
        if self._metric is Metric.CENTER:  # Hungarian: most pairs first, then the least summed distance
            cost, threshold = dist, _CENTER_MARGIN
        else:
            # per track, then per pair (a pair's track and detection share the class, so R is the track's)
            r_t = self._r_xy[t_label]  # [T] measurement variance of x and of y
            s_t = var + r_t  # [T] innovation variance (x and y)
            s = s_t[ti]  # [P]
            dx = box[di, 0] - table[ti, 0]
            dy = box[di, 1] - table[ti, 1]
            cost = dx * dx / s + dy * dy / s
            if self._metric is Metric.NLL:
                cost += np.minimum(np.log(s_t * s_t / (r_t * r_t)), c.max_log_det)[ti]
            if c.heading_prior:  # tracks with one hit: their velocity is unknown, its direction is not
                young_t = table[:, HITS] == 1
                young = np.flatnonzero(young_t[ti])
                if len(young):
                    cost[young] = self._newborn_cost(table, young_t, r_t, t_label)(ti[young], dx[young], dy[young])
            threshold = c.mahalanobis_gate
            # within the class's own gate a pair is always valid (a lidar box's centre can jump a few metres along
            # a partly seen car, beyond what R allows); beyond it only if also likely under S
            within = dist < max_distance[ti]
            np.minimum(cost, threshold * (1.0 - 1e-9), out=cost, where=within)
            valid = within | (cost < threshold)
            if not valid.all():
                ti, di, cost = ti[valid], di[valid], cost[valid]
        if not len(ti):
            return _EMPTY_INT, _EMPTY_INT
        one_stage = not c.two_stage or is_high.all()  # the common case when the detector is confident
        if self._matcher is Matcher.GREEDY:  # both stages as one greedy: every first-stage pair ranks first
            return greedy_pairs(ti, di, cost, None if one_stage else ~is_high[di])
        if one_stage:  # Hungarian solves each environment's conflicts on their own
            return match_pairs(ti, di, cost, threshold, self._matcher, env[di])
        high = is_high[di]
        rows, cols = match_pairs(ti[high], di[high], cost[high], threshold, self._matcher, env[di[high]])
        # second stage: low-score detections extend the tracks left over
        free = np.ones(len(table), dtype=bool)
        free[rows] = False
        low = ~high & free[ti]
        if low.any():
            r2, c2 = match_pairs(ti[low], di[low], cost[low], threshold, self._matcher, env[di[low]])
            rows, cols = np.concatenate([rows, r2]), np.concatenate([cols, c2])
        return rows, cols

    def _newborn_cost(
        self, table: np.ndarray, young: np.ndarray, r: np.ndarray, label: np.ndarray
    ) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
        """The association cost of pairs whose track has one hit, under the heading prior
        (`TrackerConfig.heading_prior`): the displacement (dx, dy) [P] [m] split along and across the track's
        heading, each with its own innovation variance. Per track of `table` (where `young` [T] holds; r [T] the
        measurement variance of x and of y, label [T]) first; returns cost(track rows [P], dx [P], dy [P])."""
        track = table[young]
        yaw, r, var = track[:, 3], r[young], track[:, VAR_XY.start]
        cos, sin = np.cos(yaw), np.sin(yaw)
        # one hit: the position variance is r (birth) + dt^2 init_speed_std^2 + Q (motion), the same on both axes
        motion = np.maximum(var - r, 0.0)
        s_along = r + r + motion  # birth position + measurement + motion along the heading
        s_across = r + r + motion * self._lateral[label[young]]
        offset = np.minimum(np.log(s_along * s_across / (r * r)), self.config.max_log_det)
        if self._metric is not Metric.NLL:
            offset[:] = 0.0
        where = np.cumsum(young) - 1  # [T] row among the young tracks

        def cost(rows: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
            k = where[rows]
            along = dx * cos[k] + dy * sin[k]
            across = dy * cos[k] - dx * sin[k]
            return along * along / s_along[k] + across * across / s_across[k] + offset[k]

        return cost

    def _update(self, matched: np.ndarray, box: np.ndarray, velocity: np.ndarray, label: np.ndarray) -> np.ndarray:
        """Matched table rows [K, WIDTH] (a copy) updated in place with their detections' boxes [K, 7] and
        velocities [K, 2]: `kalman.update` (then `kalman.update_velocity`) written on the flat columns."""
        c = self.config
        y = box - matched[:, :7]  # [K, 7] innovation
        yaw = y[:, kalman.YAW]
        if c.flip_yaw:  # flipping by pi whenever |dyaw| > pi/2 is wrapping dyaw into [-pi/2, pi/2)
            y[:, kalman.YAW] = (yaw + 0.5 * np.pi) % np.pi - 0.5 * np.pi
        else:
            y[:, kalman.YAW] = wrap_angle(yaw)
        p_pp, p_pv, p_vv = matched[:, P_PP], matched[:, P_PV], matched[:, P_VV]  # [K, 7] views
        s = p_pp + self._r[label]
        k_p, k_v = p_pp / s, p_pv / s
        matched[:, :7] += k_p * y
        matched[:, 7:14] += k_v * y
        p_vv -= k_v * p_pv  # (P_pp, P_pv, P_vv) - (k_p P_pp, k_p P_pv, k_v P_pv), old P_pv first
        p_pv -= k_p * p_pv
        p_pp -= k_p * p_pp
        if c.use_detection_velocity:
            has_v = ~np.isnan(velocity[:, 0])  # NaN: unknown (validate: vx and vy are NaN together), never zero
            if has_v.any():
                kf = _kf(matched[has_v])
                kf = kalman.update_velocity(kf, velocity[has_v], c.velocity_std**2)
                matched[has_v, MEAN] = kf.mean.reshape(len(kf), -1)
                matched[has_v, COV] = kf.cov.reshape(len(kf), -1)
        matched[:, HITS] += 1
        matched[:, MISSES] = 0
        return matched

    def _births(
        self,
        box: np.ndarray,
        velocity: np.ndarray,
        label: np.ndarray,
        score: np.ndarray,
        env: np.ndarray,
        det_row: np.ndarray,
        new: np.ndarray,
    ) -> np.ndarray:
        """Table rows [N, WIDTH] of tentative tracks at the detections where `new` [M'] holds."""
        rows = self._newborn[label[new]]  # [N, WIDTH] a copy (fancy indexing)
        rows[:, : kalman.NUM_AXES] = box[new]  # the mean's values; rates start at 0
        e = env[new]
        if self.num_envs == 1:
            rows[:, ID] = self._next_id[0] + np.arange(len(rows))
            self._next_id[0] += len(rows)
        else:  # ids count per environment, in detection order
            order = np.argsort(e, kind="stable")
            count = np.bincount(e, minlength=self.num_envs)
            within = np.arange(len(e)) - np.repeat(np.cumsum(count) - count, count)
            rows[order, ID] = self._next_id[e[order]] + within
            self._next_id += count
        rows[:, SCORE] = score[new]
        rows[:, DET] = det_row[new]
        rows[:, ENV] = e
        if self.config.use_detection_velocity:
            v = velocity[new]
            has_v = ~np.isnan(v[:, 0])
            if has_v.any():  # start from the detector's velocity rather than from rest
                rows[has_v, RATE_XY] = v[has_v]
                rows[has_v, VAR_RATE_XY] = self.config.velocity_std**2
        return rows

    def _output(
        self, table: np.ndarray, det_box: np.ndarray, det_env: np.ndarray, times: np.ndarray, tokens: list[str]
    ) -> list[FrameTracks]:
        c = self.config
        # the output rule's row of (confirmed, consecutive misses): misses + confirmed x stride
        key = (table[:, MISSES] + np.where(table[:, HITS] >= c.min_hits, self._stride, 0.0)).astype(np.intp)
        score = table[:, SCORE] * self._score_factor[key]
        show = self._shown[key]
        if not show.all():
            table, score = table[show], score[show]
        det = table[:, DET].astype(np.int64)
        box = table[:, :7]
        if c.output_box is OutputBox.DETECTION and len(det) and det.max() >= 0:
            took = det >= 0
            box = box.copy()
            box[took] = det_box[det[took]]
        if self.num_envs > 1 and len(det_env):  # detection rows counted within each environment
            order = np.argsort(det_env, kind="stable")
            count = np.bincount(det_env, minlength=self.num_envs)
            local = np.empty(len(det_env), dtype=np.int64)
            local[order] = np.arange(len(det_env)) - np.repeat(np.cumsum(count) - count, count)
            det = np.where(det >= 0, local[np.maximum(det, 0)], -1)
        fields = (
            table[:, ID].astype(np.int64),
            box[:, :3],
            box[:, 4:7],
            _wrap(box[:, 3]),
            table[:, RATE_XY],
            score,
            table[:, LABEL].astype(np.int64),
            det,
        )
        if self.num_envs == 1:
            return [FrameTracks(tokens[0], float(times[0]), *fields)]
        env = table[:, ENV].astype(np.int64)
        order = np.argsort(env, kind="stable")
        bounds = np.searchsorted(env[order], np.arange(self.num_envs + 1))
        fields = tuple(f[order] for f in fields)
        return [  # note: a loop over environments to build the B output objects (slices, no copies)
            FrameTracks(tokens[b], float(times[b]), *(f[bounds[b] : bounds[b + 1]] for f in fields))
            for b in range(self.num_envs)
        ]


class Tracker:
    """Kalman filter multi-object tracker over a stream of frames of one scene (call `reset` between scenes):
    the one-environment `MultiTracker`."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self._multi = MultiTracker(config, num_envs=1)
        self.config = self._multi.config

    @property
    def table(self) -> np.ndarray:
        """[T, WIDTH] the live tracks (see the column constants); assign a new array to move them."""
        return self._multi.table

    @table.setter
    def table(self, value: np.ndarray) -> None:
        self._multi.table = value

    def reset(self) -> None:
        """Forget all tracks (a new scene); track ids keep counting up."""
        self._multi.reset()

    def step(self, frame: FrameDetections) -> FrameTracks:
        """Advance to `frame` (detections in the global frame) and return the tracks to output at its time."""
        return self._multi.step([frame])[0]

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


def _wrap(angle: np.ndarray) -> np.ndarray:
    # common.geometry.wrap_angle's arithmetic for a float array, without its type dispatch (a per-frame cost)
    wrapped = np.remainder(angle + math.pi, 2.0 * math.pi) - math.pi
    return np.where(wrapped >= math.pi, wrapped - 2.0 * math.pi, wrapped)


def _check_frame(frame: FrameDetections) -> None:
    # one cheap test per frame; the full check (which names the bad field) runs only when it fails
    n = len(frame.score)
    ok = frame.box.shape == (n, 7) and frame.velocity.shape == (n, 2) and frame.label.shape == (n,)
    if ok and n:
        ok = bool(np.isfinite(frame.box.sum() + frame.score.sum()))
        ok = ok and 0 <= frame.label.min() and frame.label.max() < len(TRACKING_NAMES)
    if not ok or not math.isfinite(frame.timestamp):
        frame.validate()


def track_scene(tracker: Tracker, frames: list[FrameDetections]) -> list[FrameTracks]:
    """Run `tracker` from a clean start over the frames of one scene (in time order)."""
    tracker.reset()
    return [tracker.step(f) for f in frames]
