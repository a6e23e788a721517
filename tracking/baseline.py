"""A naive nearest-neighbour tracker: the baseline the Kalman filter tracker has to beat.

No motion model: a track sits where its last detection was. Each frame, detections are matched to tracks
of the same class by centre distance (nearest first, within a gate that grows with the time since the
track was last seen: a bound on speed, the only motion knowledge it has); a matched detection carries the
track's id on, an unmatched one starts a track, and a track missed more than `max_misses` frames in a row
is dropped. Only this frame's detections are output, with their own scores; velocity is the displacement
since the track's last detection over the time between them. Same interface as `tracking.tracker.Tracker`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivestack.tracking.association import Matcher, center_distance, gate, match
from drivestack.tracking.data_classes import FrameDetections, FrameTracks


@dataclass(frozen=True)
class NearestNeighbourConfig:
    """Naive nearest-neighbour tracker settings."""

    max_speed: float = 15.0
    """[m/s] a detection continues a track if it lies within max_speed x (time since the track was last seen)
    of the track's last position (15 m/s: 7.5 m at nuScenes' 2 Hz)."""
    min_gate: float = 2.0
    """[m] the gate is never smaller than this."""
    max_misses: int = 3
    """A track missed in more than this many consecutive frames is dropped."""

    def validate(self) -> NearestNeighbourConfig:
        if not (self.max_speed >= 0 and self.min_gate > 0):
            raise ValueError(
                f"baseline.max_speed must be >= 0 and baseline.min_gate > 0, got {self.max_speed}, {self.min_gate}"
            )
        if self.max_misses < 0:
            raise ValueError(f"baseline.max_misses must be >= 0, got {self.max_misses}")
        return self


class NearestNeighbourTracker:
    """Greedy nearest-neighbour association to last positions; no prediction, no filtering."""

    def __init__(self, config: NearestNeighbourConfig | None = None) -> None:
        self.config = (config or NearestNeighbourConfig()).validate()
        self._next_id = 0
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (a new scene); ids keep counting up."""
        self._xy = np.zeros((0, 2))  # [T, 2] last detected centre [m]
        self._time = np.zeros(0)  # [T] time of that detection [s]
        self._id = np.zeros(0, dtype=np.int64)  # [T]
        self._label = np.zeros(0, dtype=np.int64)  # [T]
        self._misses = np.zeros(0, dtype=np.int64)  # [T]
        self._last: float | None = None

    def step(self, frame: FrameDetections) -> FrameTracks:
        """Match `frame`'s detections to the tracks and return them with track ids."""
        frame.validate()
        if self._last is not None and not frame.timestamp > self._last:
            raise ValueError(
                f"sample {frame.token}: timestamp {frame.timestamp:.6f} s is not after the previous "
                f"frame's ({self._last:.6f} s); give frames in time order"
            )
        self._last = frame.timestamp
        det_xy = frame.translation[:, :2]
        rows = cols = np.zeros(0, dtype=np.int64)
        if len(self._id) and len(frame):
            cost = center_distance(self._xy, det_xy)
            radius = np.maximum(self.config.min_gate, self.config.max_speed * (frame.timestamp - self._time))
            rows, cols = match(cost, gate(cost, self._label, frame.label, radius[:, None]), 0.0, Matcher.GREEDY)
        ids = np.empty(len(frame), dtype=np.int64)
        velocity = np.zeros((len(frame), 2))
        ids[cols] = self._id[rows]
        velocity[cols] = (det_xy[cols] - self._xy[rows]) / (frame.timestamp - self._time[rows])[:, None]
        self._misses = self._misses + 1
        self._misses[rows] = 0
        self._xy[rows], self._time[rows] = det_xy[cols], frame.timestamp
        new = np.ones(len(frame), dtype=bool)
        new[cols] = False
        num_new = int(new.sum())
        ids[new] = np.arange(self._next_id, self._next_id + num_new)
        self._next_id += num_new
        keep = self._misses <= self.config.max_misses
        self._xy = np.concatenate([self._xy[keep], det_xy[new]])
        self._time = np.concatenate([self._time[keep], np.full(num_new, frame.timestamp)])
        self._id = np.concatenate([self._id[keep], ids[new]])
        self._label = np.concatenate([self._label[keep], frame.label[new]])
        self._misses = np.concatenate([self._misses[keep], np.zeros(num_new, dtype=np.int64)])
        return FrameTracks(
            frame.token,
            frame.timestamp,
            ids,
            frame.translation.copy(),
            frame.size.copy(),
            frame.yaw.copy(),
            velocity,
            frame.score.copy(),
            frame.label.copy(),
        )
