"""A nuScenes scene's log for replay: keyframes in time order, the ego's logged poses and status, the logged future
(ego path and the ground-truth boxes it may collide with), the map's drivable area; `pipeline.replay` runs on it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nuscenes import NuScenes

from drivestack.common.geometry import quaternion_to_yaw, wrap_angle
from drivestack.common.nuscenes import (
    sample_ego_pose,
    sample_time,
    scene_samples,
)
from drivestack.planning.open_loop import (
    NUM_WAYPOINTS,
    WAYPOINT_DT,
    DrivableFn,
    EgoStatus,
)

FUTURE_TOLERANCE = 0.2  # [s] a waypoint's logged future is the keyframe nearest its time, at most this far off
EGO_HISTORY = 0.2  # [s] the ego's speed and yaw rate: difference with the pose nearest this long before
EGO_HISTORY_MAX = 0.6  # [s] poses farther back (or ahead, for the first keyframe) are not used
COLLISION_CATEGORIES = ("vehicle.", "human.pedestrian.")  # ground-truth boxes the ego may collide with


@dataclass
class SceneLog:
    """What the log of one scene says, per keyframe (K keyframes in time order)."""

    name: str
    token: str
    samples: list[dict[str, Any]]
    times: np.ndarray  # (K,) [s]
    translation: np.ndarray  # (K, 3) [m] ego pose (rear axle), global
    rotation: np.ndarray  # (K, 4) ego quaternion (w, x, y, z)
    yaw: np.ndarray  # (K,) [rad] ego yaw, global
    ego: EgoStatus  # (K,) speed, yaw rate, velocity (ego frame)
    ego_causal: np.ndarray  # (K,) bool: the state came from earlier poses (False: the first keyframe, from later)
    future: np.ndarray  # (K, T) int: keyframe index of each waypoint's logged future, -1 where none
    gt_xy: np.ndarray  # (K, N, 2) [m] ground-truth vehicle and pedestrian boxes, global, padded to N
    gt_yaw: np.ndarray  # (K, N) [rad]
    gt_size: np.ndarray  # (K, N, 2) [m] (w, l)
    gt_present: np.ndarray  # (K, N) bool
    map_mask: Any = None  # the devkit's MapMask of the scene's log, None without one

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def has_future(self) -> np.ndarray:
        """(K,) bool: every waypoint has its logged future."""
        return (self.future >= 0).all(axis=1)


def check_map_files(dataroot: Path, version: str) -> None:
    """FileNotFoundError naming a map record whose mask file is missing (the devkit would fail on an assert);
    a record with an empty filename has no mask and is fine (the planner then runs without a map)."""
    path = Path(dataroot) / version / "map.json"
    try:
        records = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return  # open_nuscenes names the table's fault
    for record in records if isinstance(records, list) else []:
        name = record.get("filename", "") if isinstance(record, dict) else ""
        if name and not (Path(dataroot) / name).is_file():
            raise FileNotFoundError(
                f"map mask {Path(dataroot) / name} of map record {record.get('token', '?')} ({path}) is missing; "
                'put the map PNG there (the nuScenes maps/ folder) or set its filename to "" to replay without a map'
            )


def scene_map(nusc: NuScenes, scene: dict[str, Any]) -> Any:
    """The MapMask of the scene's log (the devkit's), None when its map record has no mask file."""
    log = nusc.get("log", scene["log_token"])
    record = next((m for m in nusc.map if log["token"] in m["log_tokens"]), None)
    if record is None or not record.get("filename"):
        return None
    return record["mask"]


def _pose_track(nusc: NuScenes, sample: dict[str, Any], t_from: float, t_to: float) -> np.ndarray:
    """Ego poses (P, 4) = (t [s], x, y, yaw) of the reference channel's sample_data chain between t_from and t_to
    around `sample` (sweeps included where the dataset has them), in time order."""
    channel = "LIDAR_TOP" if "LIDAR_TOP" in sample["data"] else next(iter(sample["data"]))
    start = nusc.get("sample_data", sample["data"][channel])
    rows = []
    for direction in ("prev", "next"):
        sd = start
        while sd is not None:
            t = sd["timestamp"] * 1e-6
            if not t_from <= t <= t_to:
                break
            pose = nusc.get("ego_pose", sd["ego_pose_token"])
            rows.append(
                (
                    t,
                    pose["translation"][0],
                    pose["translation"][1],
                    float(quaternion_to_yaw(np.array(pose["rotation"]))),
                )
            )
            sd = nusc.get("sample_data", sd[direction]) if sd[direction] else None
    return np.array(sorted(set(rows)), dtype=np.float64).reshape(-1, 4)


def ego_status(nusc: NuScenes, samples: list[dict[str, Any]], yaw: np.ndarray) -> tuple[EgoStatus, np.ndarray]:
    """The ego's speed, yaw rate and velocity at each keyframe (K,), and whether each is causal.

    Differences of the logged ego poses (sweeps included where the dataset has them): with the pose nearest
    EGO_HISTORY before the keyframe (within EGO_HISTORY_MAX); at a scene's first keyframe without an earlier pose,
    with the nearest later one instead (the log has nothing earlier; marked non-causal)."""
    K = len(samples)
    speed, yaw_rate, velocity = np.zeros(K), np.zeros(K), np.zeros((K, 2))
    causal = np.ones(K, dtype=bool)
    for i, sample in enumerate(samples):  # a loop over keyframes
        t = sample_time(sample)
        poses = _pose_track(nusc, sample, t - EGO_HISTORY_MAX, t + EGO_HISTORY_MAX)
        now = poses[np.argmin(np.abs(poses[:, 0] - t))]
        before = poses[poses[:, 0] < t - 0.02]
        if len(before):
            other = before[np.argmin(np.abs(before[:, 0] - (t - EGO_HISTORY)))]
        else:
            after = poses[poses[:, 0] > t + 0.02]
            if not len(after):
                continue  # a lone pose: standing still as far as the log tells
            other, causal[i] = after[np.argmin(np.abs(after[:, 0] - (t + EGO_HISTORY)))], False
        dt = now[0] - other[0]
        d_global = (now[1:3] - other[1:3]) / dt  # [m/s]
        c, s = np.cos(yaw[i]), np.sin(yaw[i])
        velocity[i] = [c * d_global[0] + s * d_global[1], -s * d_global[0] + c * d_global[1]]
        speed[i] = velocity[i, 0]
        yaw_rate[i] = wrap_angle(now[3] - other[3]) / dt
    return EgoStatus(speed, yaw_rate, velocity), causal


def read_scene_log(nusc: NuScenes, scene: dict[str, Any], use_map: bool = True) -> SceneLog:
    """The log of one scene: ego poses and state, each waypoint's future keyframe, ground-truth boxes, map."""
    samples = scene_samples(nusc, scene)
    K = len(samples)
    times = np.array([sample_time(s) for s in samples])
    poses = [sample_ego_pose(nusc, s) for s in samples]
    translation = np.array([p["translation"] for p in poses], dtype=np.float64).reshape(K, 3)
    rotation = np.array([p["rotation"] for p in poses], dtype=np.float64).reshape(K, 4)
    yaw = quaternion_to_yaw(rotation)
    ego, causal = ego_status(nusc, samples, yaw)
    # each waypoint's logged future: the keyframe nearest its time, within FUTURE_TOLERANCE
    want = times[:, None] + WAYPOINT_DT * np.arange(1, NUM_WAYPOINTS + 1)[None, :]  # (K, T)
    nearest = np.abs(times[None, None, :] - want[:, :, None]).argmin(axis=2)  # (K, T)
    future = np.where(np.abs(times[nearest] - want) <= FUTURE_TOLERANCE, nearest, -1)
    # ground-truth vehicles and pedestrians per keyframe, padded
    boxes = []
    for sample in samples:
        anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
        anns = [a for a in anns if a["category_name"].startswith(COLLISION_CATEGORIES)]
        boxes.append(anns)
    N = max([len(b) for b in boxes] + [0])
    gt_xy, gt_yaw = np.zeros((K, N, 2)), np.zeros((K, N))
    gt_size, gt_present = np.ones((K, N, 2)), np.zeros((K, N), dtype=bool)
    for i, anns in enumerate(boxes):
        n = len(anns)
        if n:
            gt_xy[i, :n] = [a["translation"][:2] for a in anns]
            gt_yaw[i, :n] = quaternion_to_yaw(np.array([a["rotation"] for a in anns], dtype=np.float64))
            gt_size[i, :n] = [a["size"][:2] for a in anns]
            gt_present[i, :n] = True
    return SceneLog(
        scene["name"],
        scene["token"],
        samples,
        times,
        translation,
        rotation,
        yaw,
        ego,
        causal,
        future,
        gt_xy,
        gt_yaw,
        gt_size,
        gt_present,
        scene_map(nusc, scene) if use_map else None,
    )


def to_ego(log: SceneLog, xy: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """Global points (K, ..., 2) into the ego frame of each keyframe (or of keyframes `index` (K,))."""
    i = np.arange(len(log)) if index is None else index
    c, s = np.cos(log.yaw[i]), np.sin(log.yaw[i])
    shape = (len(i),) + (1,) * (xy.ndim - 2)
    dx, dy = xy[..., 0] - log.translation[i, 0].reshape(shape), xy[..., 1] - log.translation[i, 1].reshape(shape)
    c, s = c.reshape(shape), s.reshape(shape)
    return np.stack([c * dx + s * dy, -s * dx + c * dy], axis=-1)


def drivable_fn(log: SceneLog, index: np.ndarray) -> DrivableFn | None:
    """Ego-frame points (B, M, 2) of keyframes `index` (B,) -> (B, M) on the map's drivable area; None: no map."""
    if log.map_mask is None:
        return None
    c, s = np.cos(log.yaw[index]), np.sin(log.yaw[index])
    tx, ty = log.translation[index, 0], log.translation[index, 1]

    def on(points: np.ndarray) -> np.ndarray:
        x = c[:, None] * points[..., 0] - s[:, None] * points[..., 1] + tx[:, None]
        y = s[:, None] * points[..., 0] + c[:, None] * points[..., 1] + ty[:, None]
        return log.map_mask.is_on_mask(x.reshape(-1), y.reshape(-1)).reshape(points.shape[:-1])

    return on
