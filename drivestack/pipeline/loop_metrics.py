"""Perception in the loop, scored per camera frame against the simulator's ground truth.

Detection: recall and precision of the merged boxes within `MATCH_DISTANCE` (2 m, centre distance in the bird's-eye
view) of the visible vehicles within `MAX_RANGE` (50 m) of the ego (a vehicle is visible when one camera shows
enough of its pixels; boxes farther than the range are not counted either way). Tracking: the tracks of each frame
are matched to the visible vehicles (any range) the same way; a vehicle matched to a different track id than at its
previous match is an id switch; matched tracks give position and velocity errors by the vehicle's distance band.
Matching is optimal (Hungarian) per environment and frame, on the CPU: it scores the loop, it is not part of it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from drivestack.tracking.data_classes import FrameTracks

MATCH_DISTANCE = 2.0  # [m] a box within this centre distance of a vehicle detects it
MAX_RANGE = 50.0  # [m] detection recall and precision count vehicles and boxes within this distance of the ego
BANDS = ((0.0, 20.0), (20.0, 40.0), (40.0, float("inf")))  # [m] distance bands of recall and tracking errors
EDGES = np.array([lo for lo, _ in BANDS])


def _match(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (rows of a, rows of b) of an optimal assignment on centre distance, kept within MATCH_DISTANCE."""
    if not len(a) or not len(b):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    cost = np.linalg.norm(a[:, None, :2] - b[None, :, :2], axis=-1)
    rows, cols = linear_sum_assignment(np.where(cost < MATCH_DISTANCE, cost, 1e6))
    ok = cost[rows, cols] < MATCH_DISTANCE
    return rows[ok], cols[ok]


def _band(distance: float) -> int:
    return next(i for i, (lo, hi) in enumerate(BANDS) if lo <= distance < hi)


class PerceptionScore:
    """Accumulates detection and tracking figures over the camera frames of a closed-loop run of B environments."""

    def __init__(self, num_envs: int, num_vehicles: int) -> None:
        self.frames = 0
        self.ground_truth = 0  # visible vehicles within range
        self.detected = 0  # of those, matched by a box
        self.boxes = 0  # merged boxes within range
        self.true_boxes = 0  # of those, matched to a visible vehicle
        self.id_switches = 0
        self.track_matches = 0
        self._last_id = np.full((num_envs, num_vehicles), -1, dtype=np.int64)  # per vehicle, its last track id
        self._seen_band = np.zeros(len(BANDS), dtype=np.int64)  # visible vehicles within range, per distance band
        self._found_band = np.zeros(len(BANDS), dtype=np.int64)  # of those, matched by a box
        self._pos_err: list[list[float]] = [[] for _ in BANDS]
        self._vel_err: list[list[float]] = [[] for _ in BANDS]

    @classmethod
    def merged(cls, parts: list[PerceptionScore]) -> PerceptionScore:
        """One score of several runs' camera frames together (parts of a run spread over workers)."""
        out = cls(1, 1)
        for p in parts:
            for name in ("frames", "ground_truth", "detected", "boxes", "true_boxes", "id_switches", "track_matches"):
                setattr(out, name, getattr(out, name) + getattr(p, name))
            out._seen_band += p._seen_band
            out._found_band += p._found_band
            for k in range(len(BANDS)):
                out._pos_err[k] += p._pos_err[k]
                out._vel_err[k] += p._vel_err[k]
        return out

    def reset(self, mask: np.ndarray) -> None:
        """Environments in `mask` (B,) bool start new episodes (their vehicles are new vehicles)."""
        self._last_id[mask] = -1

    def add(
        self,
        visible: torch.Tensor,
        boxes_ego: torch.Tensor,
        boxes_global: torch.Tensor,
        velocity: torch.Tensor,
        det_boxes: torch.Tensor,
        det_env: torch.Tensor,
        tracks: list[FrameTracks],
        scored: np.ndarray | None = None,
    ) -> None:
        """Score one camera frame.

        Args:
            visible: (B, N) bool vehicles some camera sees.
            boxes_ego, boxes_global: (B, N, 7) true boxes in the ego and global frames; velocity: (B, N, 2) [m/s]
                true global velocities.
            det_boxes: (M, 7) merged boxes, ego frame; det_env: (M,) their environments.
            tracks: the B trackers' outputs of this frame (global frame).
            scored: (B,) bool environments whose episode is scored (None: all); the others are left out.
        """
        self.frames += 1
        visible = visible.cpu().numpy()
        ego, glob, vel = (t.double().cpu().numpy() for t in (boxes_ego, boxes_global, velocity))
        dets, det_env = det_boxes.double().cpu().numpy(), det_env.cpu().numpy()
        envs = range(visible.shape[0]) if scored is None else np.flatnonzero(scored)
        for b in envs:  # scoring, per environment (the Hungarian matching is per frame anyway)
            seen = np.flatnonzero(visible[b])
            dist = np.hypot(ego[b, seen, 0], ego[b, seen, 1])
            near = seen[dist <= MAX_RANGE]
            mine = dets[det_env == b]
            mine = mine[np.hypot(mine[:, 0], mine[:, 1]) <= MAX_RANGE]
            rows, _ = _match(ego[b, near], mine)
            band = np.searchsorted(EDGES, dist[dist <= MAX_RANGE], side="right") - 1
            self._seen_band += np.bincount(band, minlength=len(BANDS))
            self._found_band += np.bincount(band[rows], minlength=len(BANDS))
            self.ground_truth += len(near)
            self.boxes += len(mine)
            self.detected += len(rows)
            self.true_boxes += len(rows)
            t = tracks[b]
            rows, cols = _match(glob[b, seen], t.translation)
            if not len(rows):
                continue
            vehicles, ids = seen[rows], t.track_id[cols]
            last = self._last_id[b, vehicles]
            self.id_switches += int(((last >= 0) & (last != ids)).sum())
            self._last_id[b, vehicles] = ids
            self.track_matches += len(rows)
            pos = np.hypot(*(t.translation[cols, :2] - glob[b, vehicles, :2]).T)
            verr = np.hypot(*(t.velocity[cols] - vel[b, vehicles]).T)
            for d, p, v in zip(np.hypot(ego[b, vehicles, 0], ego[b, vehicles, 1]), pos, verr):
                self._pos_err[_band(d)].append(float(p))
                self._vel_err[_band(d)].append(float(v))

    def summary(self) -> dict:
        """Detection recall and precision, id switches, and per distance band the detection recall (vehicles within
        `MAX_RANGE`) and the tracks' mean position and velocity errors."""
        bands = {}
        for (lo, hi), pos, vel, seen, found in zip(
            BANDS, self._pos_err, self._vel_err, self._seen_band, self._found_band
        ):
            name = f"{lo:.0f}-{hi:.0f}m" if np.isfinite(hi) else f"{lo:.0f}m+"
            bands[name] = {
                "visible_vehicles": int(seen),
                "recall": float(found / seen) if seen else None,
                "tracks": len(pos),
                "position_error": float(np.mean(pos)) if pos else None,
                "velocity_error": float(np.mean(vel)) if vel else None,
            }
        return {
            "camera_frames": self.frames,
            "match_distance": MATCH_DISTANCE,
            "max_range": MAX_RANGE,
            "visible_vehicles": self.ground_truth,
            "recall": self.detected / self.ground_truth if self.ground_truth else None,
            "boxes": self.boxes,
            "precision": self.true_boxes / self.boxes if self.boxes else None,
            "track_matches": self.track_matches,
            "id_switches": self.id_switches,
            "bands": bands,
        }
