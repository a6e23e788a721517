"""nuScenes v1.0 tables from a simulator recording: tokens, records, splits and the map mask.

Everything here is format: `build_tables` turns a `Recording` (numpy arrays of B scenes x K keyframes x
N vehicles) into the 13 tables of the nuScenes schema, with the same field names and order as the
real dataset, 32-hex tokens (md5 of the dataset seed and a record key, so the same command writes the
same dataset), timestamps in microseconds, quaternions (w, x, y, z), annotation translation = box centre
in the global frame and size = (w, l, h). The category, attribute, visibility and sensor tables are the
real ones (`nuscenes_tables.json`, copied from nuScenes v1.0-trainval) with their real tokens.

Scene names come from the devkit's official split lists (`nuscenes.utils.splits`): train scenes take
names from its `train` list and val scenes from its `val` list. With version "v1.0-trainval" the
predefined splits "train" and "val" then select exactly the synthetic scenes, so `DetectionEval` /
`TrackingEval(eval_set="val")` run with no custom-split support and no warning, exactly as on the real
dataset; `splits.json` holds the same lists for readers that want them without the devkit.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
import torch

from drivestack.common.geometry import yaw_to_quaternion
from drivestack.sim.road import MARGIN, RoadNetwork

TABLE_NAMES = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)
KEYFRAME_INTERVAL = 0.5  # [s] nuScenes keyframes (samples) are at 2 Hz
ANNOTATION_RANGE = 80.0  # [m] vehicles within this distance of the ego are annotated
MOVING_SPEED = 0.5  # [m/s] above this a vehicle is vehicle.moving, else vehicle.stopped
VISIBILITY_EDGES = (0.4, 0.6, 0.8)  # nuScenes visibility bins: '1' 0-40 %, '2' 40-60, '3' 60-80, '4' 80-100
MAP_RESOLUTION = 0.1  # [m/px] the devkit's native map-mask resolution
MAP_PAD = 100.0  # [m] free border around the road in the map mask (render_ego_centric_map crops 40 m * sqrt 2)
LOCATION = "drivestack-highway"
VEHICLE = "drivestack"
START_TIME = 1_704_067_200  # [s] 2024-01-01T00:00:00Z: first scene of seed 0


@lru_cache(maxsize=1)
def _static() -> dict[str, list[dict]]:
    text = resources.files("drivestack.sim").joinpath("nuscenes_tables.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def static_table(name: str) -> list[dict]:
    """A copy of the real nuScenes `category`, `attribute`, `visibility` or `sensor` table."""
    return [dict(r) for r in _static()[name]]


def token_of(table: str, name: str) -> str:
    """Real nuScenes token of a category/attribute name, sensor channel or visibility token."""
    key = "channel" if table == "sensor" else "name"
    for record in _static()[table]:
        if record.get(key) == name:
            return record["token"]
    raise KeyError(f"no {table} record named {name!r}")


def make_token(seed: int, *key: object) -> str:
    """Deterministic 32-hex nuScenes token of a record: md5 of the dataset seed and the record's key."""
    return hashlib.md5("/".join(map(str, (seed, *key))).encode()).hexdigest()


def visibility_tokens(fraction: np.ndarray) -> np.ndarray:
    """nuScenes visibility tokens '1'..'4' of visible fractions in [0, 1] (any shape)."""
    return np.array(["1", "2", "3", "4"])[np.searchsorted(VISIBILITY_EDGES, fraction, side="left")]


def scene_names(num_train: int, num_val: int) -> tuple[list[str], list[str]]:
    """Names of the train and val scenes, taken in order from the devkit's official train / val lists."""
    from nuscenes.utils.splits import train, val  # noqa: PLC0415 (the devkit is heavy; import on use)

    if num_train > len(train) or num_val > len(val):
        raise ValueError(
            f"scenes: at most {len(train)} train and {len(val)} val scenes fit the nuScenes v1.0-trainval "
            f"split names; got {num_train} train and {num_val} val (lower --scenes or --val-fraction)"
        )
    return list(train[:num_train]), list(val[:num_val])


def sensor_filename(logfile: str, channel: str, timestamp: int, camera: bool) -> str:
    """nuScenes keyframe file name: samples/<CHANNEL>/<logfile>__<CHANNEL>__<timestamp>.jpg|.pcd.bin."""
    return f"samples/{channel}/{logfile}__{channel}__{timestamp}{'.jpg' if camera else '.pcd.bin'}"


@dataclass
class Recording:
    """What a rollout of B scenes, K keyframes each, N vehicle slots (slot 0 the ego) leaves for the tables."""

    timestamps: np.ndarray  # (B, K) int64 [us]
    ego_pose: np.ndarray  # (B, K, 4) x, y, z [m], yaw [rad], dataset global frame
    boxes: np.ndarray  # (B, K, N, 7) x, y, z [m] box centre, w, l, h [m], yaw [rad], dataset global frame
    speed: np.ndarray  # (B, K, N) [m/s]
    annotated: np.ndarray  # (B, K, N) bool: within ANNOTATION_RANGE of the ego; never slot 0
    visibility: np.ndarray  # (B, K, N) [0, 1] visible fraction in the exported cameras (0: unseen)
    num_lidar_pts: np.ndarray  # (B, K, N) int: lidar points on the box (0 when no exported camera sees it)
    is_truck: np.ndarray  # (B, N) bool: category vehicle.truck (else vehicle.car)


@dataclass
class DatasetInfo:
    """Per-dataset metadata of the tables."""

    seed: int
    cameras: tuple[str, ...]  # exported camera channels
    width: int  # [px] image size
    height: int
    calibration: dict[str, tuple[list[float], list[float], list[list[float]]]]  # channel -> (t, q, K or [])
    logfiles: list[str]  # (B,)
    dates: list[str]  # (B,) YYYY-MM-DD
    names: list[str]  # (B,) scene names
    descriptions: list[str]  # (B,)
    map_token: str


def _chain(tokens: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """prev / next tokens along `axis` of a token array ('' at the ends)."""
    empty = np.full_like(tokens, "")
    prev = np.concatenate([np.take(empty, [0], axis), np.delete(tokens, -1, axis)], axis)
    nxt = np.concatenate([np.delete(tokens, 0, axis), np.take(empty, [0], axis)], axis)
    return prev, nxt


def _tokens(seed: int, kind: str, shape: tuple[int, ...], *prefix: object) -> np.ndarray:
    idx = np.indices(shape).reshape(len(shape), -1).T
    return np.array([make_token(seed, kind, *prefix, *i) for i in idx.tolist()], dtype=object).reshape(shape)


def build_tables(rec: Recording, info: DatasetInfo) -> dict[str, list[dict]]:
    """The 13 nuScenes tables of a recording (records as dicts, fields in nuScenes order)."""
    seed = info.seed
    B, K, N = rec.speed.shape
    channels = (*info.cameras, "LIDAR_TOP")
    scene_tok = _tokens(seed, "scene", (B,))
    log_tok = _tokens(seed, "log", (B,))
    sample_tok = _tokens(seed, "sample", (B, K))
    inst_tok = _tokens(seed, "instance", (B, N))
    ts = rec.timestamps.tolist()

    logs = [
        {
            "token": log_tok[b],
            "logfile": info.logfiles[b],
            "vehicle": VEHICLE,
            "date_captured": info.dates[b],
            "location": LOCATION,
        }
        for b in range(B)
    ]
    scenes = [
        {
            "token": scene_tok[b],
            "log_token": log_tok[b],
            "nbr_samples": K,
            "first_sample_token": sample_tok[b, 0],
            "last_sample_token": sample_tok[b, -1],
            "name": info.names[b],
            "description": info.descriptions[b],
        }
        for b in range(B)
    ]
    prev, nxt = _chain(sample_tok, 1)
    samples = [
        {
            "token": sample_tok[b, k],
            "timestamp": ts[b][k],
            "prev": prev[b, k],
            "next": nxt[b, k],
            "scene_token": scene_tok[b],
        }
        for b in range(B)
        for k in range(K)
    ]

    calibrated, sample_data, ego_poses = [], [], []
    quat = yaw_to_quaternion(rec.ego_pose[..., 3]).tolist()
    xyz = rec.ego_pose[..., :3].tolist()
    for channel in channels:
        camera = channel != "LIDAR_TOP"
        cs_tok = _tokens(seed, "calibrated_sensor", (B,), channel)
        t, q, intrinsic = info.calibration[channel]
        calibrated += [
            {
                "token": cs_tok[b],
                "sensor_token": token_of("sensor", channel),
                "translation": t,
                "rotation": q,
                "camera_intrinsic": intrinsic,
            }
            for b in range(B)
        ]
        sd_tok = _tokens(seed, "sample_data", (B, K), channel)
        prev, nxt = _chain(sd_tok, 1)
        for b in range(B):
            for k in range(K):
                # One ego pose per sample_data, sharing its token (as nuScenes does).
                ego_poses.append(
                    {"token": sd_tok[b, k], "timestamp": ts[b][k], "rotation": quat[b][k], "translation": xyz[b][k]}
                )
                sample_data.append(
                    {
                        "token": sd_tok[b, k],
                        "sample_token": sample_tok[b, k],
                        "ego_pose_token": sd_tok[b, k],
                        "calibrated_sensor_token": cs_tok[b],
                        "timestamp": ts[b][k],
                        "fileformat": "jpg" if camera else "pcd",
                        "is_key_frame": True,
                        "height": info.height if camera else 0,
                        "width": info.width if camera else 0,
                        "filename": sensor_filename(info.logfiles[b], channel, ts[b][k], camera),
                        "prev": prev[b, k],
                        "next": nxt[b, k],
                    }
                )

    annotations, instances = _annotations(rec, seed, sample_tok, inst_tok)
    return {
        "category": static_table("category"),
        "attribute": static_table("attribute"),
        "visibility": static_table("visibility"),
        "instance": instances,
        "sensor": static_table("sensor"),
        "calibrated_sensor": calibrated,
        "ego_pose": ego_poses,
        "log": logs,
        "scene": scenes,
        "sample": samples,
        "sample_data": sample_data,
        "sample_annotation": annotations,
        "map": [
            {
                "category": "semantic_prior",
                "token": info.map_token,
                "filename": f"maps/{info.map_token}.png",
                "log_tokens": list(log_tok),
            }
        ],
    }


def _annotations(
    rec: Recording,
    seed: int,
    sample_tok: np.ndarray,
    inst_tok: np.ndarray,
) -> tuple[list[dict], list[dict]]:
    """sample_annotation and instance records; an instance is one vehicle slot of one scene."""
    # Annotations in (scene, slot, keyframe) order: consecutive entries of one instance form its chain.
    b, n, k = np.nonzero(rec.annotated.transpose(0, 2, 1))
    tokens = np.array(
        [make_token(seed, "sample_annotation", *i) for i in zip(b.tolist(), k.tolist(), n.tolist())], dtype=object
    )
    inst = b * rec.annotated.shape[2] + n
    same_prev = np.concatenate([[False], inst[1:] == inst[:-1]])
    same_next = np.concatenate([inst[1:] == inst[:-1], [False]])
    prev = np.where(same_prev, np.roll(tokens, 1), "")
    nxt = np.where(same_next, np.roll(tokens, -1), "")

    box = rec.boxes[b, k, n]  # (A, 7)
    translation = np.round(box[:, :3], 3).tolist()
    size = np.round(box[:, 3:6], 3).tolist()
    rotation = yaw_to_quaternion(box[:, 6]).tolist()
    vis = visibility_tokens(rec.visibility[b, k, n]).tolist()
    moving = (rec.speed[b, k, n] > MOVING_SPEED).tolist()
    attr = {True: [token_of("attribute", "vehicle.moving")], False: [token_of("attribute", "vehicle.stopped")]}
    points = rec.num_lidar_pts[b, k, n].tolist()
    annotations = [
        {
            "token": tokens[i],
            "sample_token": sample_tok[b[i], k[i]],
            "instance_token": inst_tok[b[i], n[i]],
            "visibility_token": vis[i],
            "attribute_tokens": list(attr[moving[i]]),
            "translation": translation[i],
            "size": size[i],
            "rotation": rotation[i],
            "prev": prev[i],
            "next": nxt[i],
            "num_lidar_pts": points[i],
            "num_radar_pts": 0,
        }
        for i in range(len(tokens))
    ]

    unique, first, count = np.unique(inst, return_index=True, return_counts=True)
    ub, un = np.divmod(unique, rec.annotated.shape[2])
    category = {True: token_of("category", "vehicle.truck"), False: token_of("category", "vehicle.car")}
    trucks = rec.is_truck[ub, un].tolist()
    instances = [
        {
            "token": inst_tok[ub[j], un[j]],
            "category_token": category[trucks[j]],
            "nbr_annotations": int(count[j]),
            "first_annotation_token": tokens[first[j]],
            "last_annotation_token": tokens[first[j] + count[j] - 1],
        }
        for j in range(len(unique))
    ]
    return annotations, instances


# ------------------------------------------------------------------------------------------------ map
def _road_edges(road: RoadNetwork) -> tuple[np.ndarray, np.ndarray]:
    """Right and left edges of the road surface over the whole table range, (P, 2) each, sim global frame."""
    s = torch.arange(-MARGIN, road.length + MARGIN, 1.0, device=road.device)
    off, exists = road.all_lane_offsets(s)  # (P, NL)
    half = 0.5 * road.lane_width
    right = torch.where(exists, off - half, math.inf).min(dim=-1).values
    left = torch.where(exists, off + half, -math.inf).max(dim=-1).values
    edges = []
    for d in (right, left):
        x, y, _ = road.to_global(s, d)
        edges.append(torch.stack([x, y], dim=-1).double().cpu().numpy())
    return edges[0], edges[1]


def global_offset(road: RoadNetwork) -> np.ndarray:
    """[m] (2,) shift from the simulator's global frame to the dataset's: everything positive, inside the map."""
    right, left = _road_edges(road)
    lo = np.minimum(right.min(axis=0), left.min(axis=0))
    return np.ceil(MAP_PAD - lo)


def write_map_mask(path, road: RoadNetwork, offset: np.ndarray) -> tuple[int, int]:
    """Write the road-surface mask (0 / 255, MAP_RESOLUTION m/px, the devkit's MapMask layout) as a PNG.

    Pixel (row, col) of global (x, y): col = x / res, row = height - y / res. Returns (height, width).
    """
    right, left = (e + offset for e in _road_edges(road))
    hi = np.maximum(right.max(axis=0), left.max(axis=0)) + MAP_PAD
    width, height = (int(v) for v in np.ceil(hi / MAP_RESOLUTION))
    mask = np.zeros((height, width), np.uint8)
    polygon = np.concatenate([right, left[::-1]])  # one outline: along the right edge, back along the left
    px = np.stack([polygon[:, 0] / MAP_RESOLUTION, height - polygon[:, 1] / MAP_RESOLUTION], axis=-1)
    cv2.fillPoly(mask, [np.round(px * 4).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=2)
    if not cv2.imwrite(str(path), mask):
        raise OSError(f"could not write the map mask {path}")
    return height, width
