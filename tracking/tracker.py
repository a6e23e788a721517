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
environment column (`tracking.table`), predict and update run once over all rows, and association and NMS only
ever pair boxes of one environment and one class (each box meets only its own (environment, class) group), so
the work grows as B, not B^2. Each environment has its own clock. `Tracker` is the one-environment case.
Per-class parameters: `tracking.params.ClassParams`.

Speed: no Python loop over boxes, tracks or pairs. Whole-table arithmetic is numpy (prediction is one matrix
product); what goes box by box or pair by pair (NMS with the exact rotated IoU, gating and costs, greedy
matching, the Kalman update of matched rows, births, output) is a compiled loop (numba, cached on disk), one call
per stage and frame, in the float operations of the numpy code it replaced: the same tracks, bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from drivestack.tracking import kalman
from drivestack.tracking.association import Matcher, Metric, gated_pairs, greedy_pairs, match_pairs
from drivestack.tracking.config import OutputBox, TrackerConfig
from drivestack.tracking.data_classes import TRACKING_NAMES, FrameDetections, FrameTracks
from drivestack.tracking.params import NUM_CLASSES
from drivestack.tracking.prefilter import prefilter
from drivestack.tracking.table import (
    COV,
    DET,
    ENV,
    HITS,
    ID,
    LABEL,
    MISSES,
    RATE_XY,
    STATE,
    VAR_XY,
    WIDTH,
    birth_rows,
    kalman_state,
    output_rows,
    update_tracks,
)

_EMPTY_INT = np.zeros(0, dtype=np.int64)
_EMPTY_FLOAT = np.zeros(0)
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
        self._r_v = c.velocity_std**2 if c.use_detection_velocity else -1.0  # [m^2/s^2] (-1: never measured)
        accel = p.array("accel_std")
        self._accel_psd = np.zeros((NUM_CLASSES, kalman.NUM_AXES))  # [C, 7]
        self._accel_psd[:, :3] = accel[:, None] ** 2
        self._accel_psd[:, 3] = c.yaw_accel_std**2
        self._walk_psd = np.array([0.0, 0.0, 0.0, 0.0, c.size_walk_std, c.size_walk_std, c.size_walk_std]) ** 2
        self._metric, self._matcher = Metric(c.metric), Matcher(c.matcher)
        # heading prior: (lateral / longitudinal velocity std)^2 of a newborn per class; pedestrians isotropic
        self._lateral = np.full(NUM_CLASSES, math.sin(min(c.yaw_std, 0.5 * math.pi)) ** 2)
        self._lateral[PEDESTRIAN] = 1.0
        # per (environment, class) group: the score threshold and the NMS IoU threshold (None: no NMS)
        self._min_score = np.tile(np.maximum(p.array("min_score"), c.min_detection_score), num_envs)  # [B C]
        self._birth_score = p.array("birth_score") if c.two_stage else np.zeros(NUM_CLASSES)  # [C]
        self._nms_iou = np.tile(p.array("nms_iou"), num_envs) if c.nms else None  # [B C]
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
        env = np.ascontiguousarray(env, dtype=np.int64).reshape(len(det))
        tokens = tokens if tokens is not None else [f"env{b}" for b in range(self.num_envs)]
        self._check_step(det, env, times, tokens)
        return self._step(det, env, times, tokens)

    def _step(self, det: FrameDetections, env: np.ndarray, times: np.ndarray, tokens: list[str]) -> list[FrameTracks]:
        c = self.config
        det = _contiguous(det)
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
        if len(rows):  # the Kalman update (and the detector's velocity where it gives one), score, hits
            update_tracks(table, rows, cols, box, velocity, label, score, keep, self._r, self._r_v, c.flip_yaw)

        # lifecycle: delete the lost, start tentative tracks at unmatched detections that may give birth
        if len(table):
            limit = self._max_misses if c.max_misses == c.max_misses_tentative else self._miss_limit(table)
            alive = table[:, MISSES] <= limit
            if not alive.all():
                table = table[alive]
        new = is_high  # unmatched detections that may give birth start tentative tracks
        new[cols] = False
        new = np.flatnonzero(new)
        if len(new):
            born = birth_rows(self._newborn, new, box, velocity, label, score, denv, keep, self._next_id, self._r_v)
            table = np.concatenate([table, born])
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
        group = det.label if self.num_envs == 1 else env * NUM_CLASSES + det.label
        return prefilter(det.box, det.score, group, self._min_score, self._nms_iou)

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
            q = kalman.process_noise(dt, self._accel_psd, self._walk_psd)  # [C, 3, 7]
            self._transitions[dt] = kalman.transition(dt, q)  # A [35, 35], b [C, 35]
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
        # predicted position variance [T]; x and y share it exactly (same noises, same gains per axis)
        var = table[:, VAR_XY.start]
        # the centre-distance gate of each track: its class's, widened by its own position uncertainty
        max_distance = self._max_distance[t_label]  # [T]
        gate = max_distance + c.gate_sigmas * np.sqrt(var)  # [T]
        num_keys = self.num_envs * NUM_CLASSES
        if self._metric is Metric.CENTER:  # Hungarian: most pairs first, then the least summed distance
            threshold = _CENTER_MARGIN
            ti, di, cost = gated_pairs(t_key, table[:, :2], gate, d_key, box[:, :2], num_keys)
        else:
            # within the class's own gate a pair is always valid (a lidar box's centre can jump a few metres along
            # a partly seen car, beyond what R allows); beyond it only if also likely under S
            threshold = c.mahalanobis_gate
            shape = self._innovation_shape(table, var, t_label)
            ti, di, cost = gated_pairs(
                t_key, table[:, :2], gate, d_key, box[:, :2], num_keys, shape, max_distance, threshold
            )
        # [P] valid pairs: same environment and class, within the gate
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

    def _innovation_shape(self, table: np.ndarray, var: np.ndarray, label: np.ndarray) -> np.ndarray:
        """Each track's Gaussian of a detection's centre offset, [T, 5] as `association.gated_pairs` takes it (cos,
        sin of the first axis, variance along it and across it [m^2], constant): innovation variance S = P + R on
        both axes, plus min(ln det S/R, max_log_det) with metric nll. A track with one hit under the heading prior
        (`TrackerConfig.heading_prior`) has its axis along its box's heading: its velocity is unknown, its
        direction is not. var [T]: predicted position variance (x and y), label [T]."""
        c = self.config
        yaw = table[:, 3] if c.heading_prior else _EMPTY_FLOAT
        # cos, sin and log from numpy, not the kernel: numpy's vectorised ones may differ from libm's in the last bit
        shape, det_s, det_r = _track_gaussians(
            var, table[:, HITS], label, self._r_xy, self._lateral, np.cos(yaw), np.sin(yaw), c.heading_prior
        )
        if self._metric is Metric.NLL:
            shape[:, 4] = np.minimum(np.log(det_s / det_r), c.max_log_det)
        return shape

    def _output(
        self, table: np.ndarray, det_box: np.ndarray, det_env: np.ndarray, times: np.ndarray, tokens: list[str]
    ) -> list[FrameTracks]:
        c = self.config
        *fields, bounds = output_rows(
            table,
            float(c.min_hits),
            self._stride,
            self._score_factor,
            self._shown,
            det_box,
            det_env,
            self.num_envs,
            c.output_box is OutputBox.DETECTION,
        )
        if self.num_envs == 1:
            return [FrameTracks(tokens[0], float(times[0]), *fields)]
        return [  # note: a loop over environments to build the B output objects (slices, no copies)
            FrameTracks(tokens[b], float(times[b]), *(f[bounds[b] : bounds[b + 1]] for f in fields))
            for b in range(self.num_envs)
        ]


@numba.njit(cache=True)
def _track_gaussians(
    var: np.ndarray,
    hits: np.ndarray,
    label: np.ndarray,
    r_xy: np.ndarray,
    lateral: np.ndarray,
    cos: np.ndarray,
    sin: np.ndarray,
    heading_prior: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # `MultiTracker._innovation_shape` without its constant column; returns it and det S [T], det R [T]
    shape = np.empty((len(var), 5))
    det_s, det_r = np.empty(len(var)), np.empty(len(var))
    for i in range(len(var)):
        r = r_xy[label[i]]  # measurement variance of x and of y
        if heading_prior and hits[i] == 1.0:  # one hit: velocity unknown, its direction not
            # the position variance is r (birth) + dt^2 init_speed_std^2 + Q (motion), the same on both axes
            motion = max(var[i] - r, 0.0)
            s_along = r + r + motion  # birth position + measurement + motion along the heading
            s_across = r + r + motion * lateral[label[i]]
            shape[i, 0], shape[i, 1], shape[i, 2], shape[i, 3] = cos[i], sin[i], s_along, s_across
            det_s[i] = s_along * s_across
        else:
            s = var[i] + r  # innovation variance (x and y)
            shape[i, 0], shape[i, 1], shape[i, 2], shape[i, 3] = 1.0, 0.0, s, s
            det_s[i] = s * s
        shape[i, 4] = 0.0
        det_r[i] = r * r
    return shape, det_s, det_r


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
        x, p = kalman_state(self.table).dense()
        t = self.table
        return {
            "track_id": t[:, ID].astype(np.int64),
            "label": t[:, LABEL].astype(np.int64),
            "hits": t[:, HITS].astype(np.int64),
            "misses": t[:, MISSES].astype(np.int64),
            "state": x,
            "cov": p,
        }


def _contiguous(det: FrameDetections) -> FrameDetections:
    # the compiled stages take C-contiguous float64 boxes and int64 labels (another layout would compile them again)
    fields = (
        np.ascontiguousarray(det.box, dtype=np.float64),
        np.ascontiguousarray(det.velocity, dtype=np.float64),
        np.ascontiguousarray(det.score, dtype=np.float64),
        np.ascontiguousarray(det.label, dtype=np.int64),
    )
    if all(new is old for new, old in zip(fields, (det.box, det.velocity, det.score, det.label))):
        return det
    return FrameDetections(det.token, det.timestamp, *fields)


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
