"""Per-frame detections and tracks as arrays, and the tracking classes.

One frame is one nuScenes keyframe (a sample): N boxes as a struct of arrays, so the tracker never
loops over boxes in Python. Boxes follow nuScenes: centre (x, y, z) [m], size (w, l, h) [m], yaw [rad]
counter-clockwise from +x, velocity (vx, vy) [m/s]; the frame they live in is the global frame unless
a function says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivestack.common.geometry import quaternion_to_matrix, quaternion_to_yaw, wrap_angle
from drivestack.common.submission import TRACKING_NAMES  # the devkit's sorted order; labels index this tuple

# nuScenes detection classes that the tracking benchmark does not track (skipped when read, not an error).
UNTRACKED_DETECTION_NAMES: tuple[str, ...] = ("barrier", "construction_vehicle", "traffic_cone")
NAME_TO_LABEL: dict[str, int] = {name: i for i, name in enumerate(TRACKING_NAMES)}


@dataclass
class FrameDetections:
    """The detections of one frame; arrays shaped [N, ...] (N may be 0: an empty frame keeps tracks alive).

    The boxes are packed in one array, in the order the Kalman filter measures them, so the tracker reads
    them without copying; `from_boxes` builds a frame from separate fields."""

    token: str  # nuScenes sample token (or any frame name): errors name it
    timestamp: float  # [s]
    box: np.ndarray  # [N, 7] (x, y, z, yaw, w, l, h): centre [m], yaw [rad], size [m]
    velocity: np.ndarray  # [N, 2] (vx, vy) [m/s]; NaN where the detector gives none
    score: np.ndarray  # [N] detection confidence in [0, 1]
    label: np.ndarray  # [N] int, index into TRACKING_NAMES

    def __len__(self) -> int:
        return len(self.score)

    @property
    def translation(self) -> np.ndarray:
        return self.box[:, :3]  # [N, 3] [m]

    @property
    def yaw(self) -> np.ndarray:
        return self.box[:, 3]  # [N] [rad]

    @property
    def size(self) -> np.ndarray:
        return self.box[:, 4:7]  # [N, 3] (w, l, h) [m]

    @classmethod
    def from_boxes(
        cls,
        token: str,
        timestamp: float,
        translation: np.ndarray,
        size: np.ndarray,
        yaw: np.ndarray,
        score: np.ndarray,
        label: np.ndarray,
        velocity: np.ndarray | None = None,
    ) -> FrameDetections:
        """Pack centres [N, 3], sizes (w, l, h) [N, 3], yaws [N], scores [N], labels [N] and optional velocities
        [N, 2] (None: unknown) into a frame, checked with `validate`."""
        translation = np.asarray(translation, dtype=np.float64).reshape(-1, 3)
        n = len(translation)
        box = np.concatenate(
            [
                translation,
                np.asarray(yaw, dtype=np.float64).reshape(n, 1),
                np.asarray(size, dtype=np.float64).reshape(n, 3),
            ],
            axis=1,
        )
        velocity = np.full((n, 2), np.nan) if velocity is None else np.asarray(velocity, dtype=np.float64)
        frame = cls(
            token,
            float(timestamp),
            box,
            velocity.reshape(n, 2),
            np.asarray(score, dtype=np.float64),
            np.asarray(label, dtype=np.int64),
        )
        return frame.validate()

    @classmethod
    def empty(cls, token: str, timestamp: float) -> FrameDetections:
        return cls(token, float(timestamp), np.zeros((0, 7)), np.zeros((0, 2)), np.zeros(0), np.zeros(0, np.int64))

    def validate(self) -> FrameDetections:
        """Check shapes, finiteness and labels; raise ValueError naming the frame's token. Returns self."""
        n = len(self.score)
        shapes = {"box": (n, 7), "velocity": (n, 2), "score": (n,), "label": (n,)}
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(
                    f"sample {self.token}: detections.{name} has shape {np.shape(getattr(self, name))}, "
                    f"expected {shape} for {n} boxes"
                )
        if not np.isfinite(self.timestamp):
            raise ValueError(f"sample {self.token}: timestamp is {self.timestamp}; give a finite time in seconds")
        fields = {
            "translation": self.translation,
            "yaw": self.yaw[:, None],
            "size": self.size,
            "score": self.score[:, None],
        }
        for name, values in fields.items():
            bad = ~np.isfinite(values).all(axis=1)
            if bad.any():
                raise ValueError(
                    f"sample {self.token}: detection {int(np.argmax(bad))} has a NaN or infinite {name}; "
                    "drop or fix that box"
                )
        if np.isinf(self.velocity).any() or (np.isnan(self.velocity[:, 0]) != np.isnan(self.velocity[:, 1])).any():
            raise ValueError(
                f"sample {self.token}: a detection velocity is infinite or half NaN; give (vx, vy) or "
                "(NaN, NaN) for 'unknown'"
            )
        if n and (self.label.min() < 0 or self.label.max() >= len(TRACKING_NAMES)):
            raise ValueError(f"sample {self.token}: labels must index TRACKING_NAMES (0..{len(TRACKING_NAMES) - 1})")
        return self

    def select(self, mask: np.ndarray) -> FrameDetections:
        """The detections where `mask` [N] (bool or indices) holds."""
        return FrameDetections(
            self.token, self.timestamp, self.box[mask], self.velocity[mask], self.score[mask], self.label[mask]
        )

    def to_global(self, ego_translation: np.ndarray, ego_rotation: np.ndarray) -> FrameDetections:
        """These detections moved from the ego frame to the global frame with the ego pose (translation [3] m,
        quaternion (w, x, y, z)); velocities are rotated (they are taken to be over the ground already)."""
        rot = quaternion_to_matrix(np.asarray(ego_rotation, dtype=np.float64))  # [3, 3]
        box = self.box.copy()
        box[:, :3] = self.translation @ rot.T + np.asarray(ego_translation, dtype=np.float64)  # [N, 3]
        box[:, 3] = wrap_angle(self.yaw + quaternion_to_yaw(np.asarray(ego_rotation, dtype=np.float64)))
        velocity = self.velocity @ rot[:2, :2].T  # [N, 2]
        return FrameDetections(self.token, self.timestamp, box, velocity, self.score.copy(), self.label.copy())


@dataclass
class FrameTracks:
    """The tracker's output for one frame: the boxes of live tracks, arrays shaped [N, ...], global frame."""

    token: str  # nuScenes sample token
    timestamp: float  # [s]
    track_id: np.ndarray  # [N] int, unique within a tracker run
    translation: np.ndarray  # [N, 3] [m]
    size: np.ndarray  # [N, 3] (w, l, h) [m]
    yaw: np.ndarray  # [N] [rad]
    velocity: np.ndarray  # [N, 2] (vx, vy) [m/s]
    score: np.ndarray  # [N] tracking score in [0, 1]
    label: np.ndarray  # [N] int, index into TRACKING_NAMES
    detection_index: np.ndarray | None = None
    """[N] int: the row of this frame's detections each track was updated with (a newborn track: the detection
    it was born from), -1 for a coasting track; None where the producer does not record it."""

    def __len__(self) -> int:
        return len(self.track_id)
