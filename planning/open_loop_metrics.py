"""nuScenes open-loop planning metrics: L2 to the logged ego future, collisions with the logged boxes, off-road.

Per sample (a keyframe with a full logged 3 s future), a planner gives NUM_WAYPOINTS ego-frame waypoints 0.5 s
apart; the log gives the ego's own positions at the same future keyframes and the ground-truth boxes of vehicles
and pedestrians there. The literature reports the figures at 1, 2 and 3 s in two conventions, labelled here:

- `avg` (ST-P3 / VAD): the figure at t is the mean over the waypoints up to t (L2: mean displacement error over
  0.5 .. t s; collision: mean of the per-waypoint collision rates over 0.5 .. t s);
- `at` (UniAD): the figure at the waypoint of time t alone.

Collisions: the ego box (EGO_LENGTH x EGO_WIDTH, its centre EGO_BOX_OFFSET ahead of the waypoint along the
planned heading, as UniAD and VAD place it) overlaps a ground-truth box at that waypoint's time (exact oriented
rectangle test, `sim.collision.boxes_overlap`). A sample whose logged ego itself overlaps a ground-truth box at
any of its waypoints (annotation noise, or the ego touching a parked car's box) is left out of the collision
figures and counted. Off-drivable: the share of waypoints whose ego box centre is off the drivable area (only
when a map is given).

All batched over samples, waypoints and boxes (no Python loop over any of them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from drivestack.planning.open_loop import (
    EGO_BOX_OFFSET,
    EGO_LENGTH,
    EGO_WIDTH,
    NUM_WAYPOINTS,
    WAYPOINT_DT,
    DrivableFn,
)
from drivestack.sim.collision import boxes_overlap

HORIZONS = (1.0, 2.0, 3.0)  # [s] the figures reported
CONVENTIONS = {
    "avg": "ST-P3/VAD: mean over the waypoints up to t",
    "at": "UniAD: at the waypoint of time t",
}


@dataclass
class FutureBoxes:
    """Ground-truth boxes at the future waypoints of B samples, in each sample's ego frame at planning time,
    padded to N per waypoint."""

    xy: np.ndarray  # (B, T, N, 2) [m] centres
    yaw: np.ndarray  # (B, T, N) [rad]
    size: np.ndarray  # (B, T, N, 2) [m] (w, l)
    present: np.ndarray  # (B, T, N) bool


@dataclass
class SampleScores:
    """Per-sample scores of one planner, arrays over B samples (concatenate across scenes, then `summarize`)."""

    l2: np.ndarray  # (B, T) [m] displacement error at each waypoint
    collision: np.ndarray  # (B, T) bool: the planned ego box overlaps a ground-truth box at that waypoint
    off_drivable: np.ndarray  # (B, T) float: 1.0 off the drivable area, 0.0 on it, NaN without a map
    valid_collision: np.ndarray  # (B,) bool: the logged ego itself overlaps nothing (counted in collision rates)

    @staticmethod
    def concatenate(parts: list[SampleScores]) -> SampleScores:
        T = NUM_WAYPOINTS
        if not parts:
            return SampleScores(np.zeros((0, T)), np.zeros((0, T), bool), np.zeros((0, T)), np.zeros(0, bool))
        return SampleScores(*(np.concatenate([getattr(p, f) for p in parts]) for f in SampleScores.__annotations__))


def headings(waypoints: np.ndarray, start: float = 0.0, min_step: float = 0.05) -> np.ndarray:
    """Heading (B, T) [rad] at each waypoint (B, T, 2): the direction of the step into it; a step shorter than
    `min_step` [m] (standing still) keeps the heading before it, starting from `start` at the origin."""
    step = np.diff(np.concatenate([np.zeros_like(waypoints[:, :1]), waypoints], axis=1), axis=1)  # (B, T, 2)
    moved = np.hypot(step[..., 0], step[..., 1]) >= min_step
    raw = np.arctan2(step[..., 1], step[..., 0])
    # forward fill over the waypoints where the ego did not move: index of the last moving step so far
    T = waypoints.shape[1]
    last = np.maximum.accumulate(np.where(moved, np.arange(T)[None, :], -1), axis=1)  # (B, T)
    filled = np.take_along_axis(raw, last.clip(min=0), axis=1)
    return np.where(last >= 0, filled, start)


def ego_box_centres(waypoints: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Ego box centres (B, T, 2): EGO_BOX_OFFSET ahead of the waypoints along `yaw` (B, T)."""
    return waypoints + EGO_BOX_OFFSET * np.stack([np.cos(yaw), np.sin(yaw)], axis=-1)


def box_collisions(waypoints: np.ndarray, yaw: np.ndarray, boxes: FutureBoxes) -> np.ndarray:
    """(B, T) bool: the ego box at each waypoint (B, T, 2) with heading `yaw` (B, T) overlaps a present box."""
    if boxes.xy.shape[2] == 0:
        return np.zeros(waypoints.shape[:2], dtype=bool)
    centre = torch.from_numpy(ego_box_centres(waypoints, yaw))[:, :, None]  # (B, T, 1, 2)
    yaw_t = torch.from_numpy(np.asarray(yaw, dtype=np.float64))[:, :, None]
    xy, size = torch.from_numpy(boxes.xy), torch.from_numpy(boxes.size)
    hit = boxes_overlap(
        centre[..., 0],
        centre[..., 1],
        yaw_t,
        torch.tensor(EGO_LENGTH, dtype=torch.float64),
        torch.tensor(EGO_WIDTH, dtype=torch.float64),
        xy[..., 0],
        xy[..., 1],
        torch.from_numpy(boxes.yaw),
        size[..., 1],
        size[..., 0],
    )  # (B, T, N)
    return (hit.numpy() & boxes.present).any(axis=2)


def score_plans(
    plan: np.ndarray,
    logged: np.ndarray,
    logged_yaw: np.ndarray,
    boxes: FutureBoxes,
    drivable: DrivableFn | None = None,
) -> SampleScores:
    """Score one planner on B samples.

    Args:
        plan: (B, T, 2) [m] planned waypoints, ego frame at planning time.
        logged: (B, T, 2) [m] the logged ego positions at the same times, same frame.
        logged_yaw: (B, T) [rad] the logged ego headings then, same frame.
        boxes: the ground-truth vehicle and pedestrian boxes at those times.
        drivable: ego-frame points (B, M, 2) -> (B, M) bool; None: no map (off_drivable all NaN).
    Returns:
        The per-sample scores.
    """
    l2 = np.linalg.norm(plan - logged, axis=-1)  # (B, T)
    yaw = headings(plan)
    collision = box_collisions(plan, yaw, boxes)
    valid = ~box_collisions(logged, logged_yaw, boxes).any(axis=1)
    off = np.full(collision.shape, np.nan)
    if drivable is not None and len(plan):
        off = (~drivable(ego_box_centres(plan, yaw))).astype(np.float64)
    return SampleScores(l2, collision, off, valid)


def summarize(scores: SampleScores) -> dict[str, object]:
    """The figures of one planner over all its samples: L2 [m] and collision rate [%] at HORIZONS in both
    conventions (keys `l2_avg_1s`, `l2_at_1s`, `collision_avg_1s`, `collision_at_1s`, ...), the share of
    waypoints off the drivable area [%] (over the samples with a map), and the sample counts. NaN where there is no
    sample."""
    out: dict[str, object] = {
        "samples": int(len(scores.l2)),
        "samples_collision": int(scores.valid_collision.sum()),
        "samples_logged_ego_overlaps": int((~scores.valid_collision).sum()),
    }
    coll = scores.collision[scores.valid_collision].astype(np.float64)  # (B', T)
    for t in HORIZONS:
        k = round(t / WAYPOINT_DT)  # waypoints up to t
        has = len(scores.l2) > 0
        has_c = len(coll) > 0
        out[f"l2_avg_{t:g}s"] = float(scores.l2[:, :k].mean()) if has else float("nan")
        out[f"l2_at_{t:g}s"] = float(scores.l2[:, k - 1].mean()) if has else float("nan")
        out[f"collision_avg_{t:g}s"] = 100.0 * float(coll[:, :k].mean()) if has_c else float("nan")
        out[f"collision_at_{t:g}s"] = 100.0 * float(coll[:, k - 1].mean()) if has_c else float("nan")
    out["l2_avg"] = float(np.mean([out[f"l2_avg_{t:g}s"] for t in HORIZONS]))  # the tables' "Avg." column
    out["l2_at_avg"] = float(np.mean([out[f"l2_at_{t:g}s"] for t in HORIZONS]))
    mapped = scores.off_drivable[np.isfinite(scores.off_drivable)]  # samples with a map
    out["off_drivable"] = 100.0 * float(mapped.mean()) if len(mapped) else float("nan")
    return out
