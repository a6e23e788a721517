"""MCAP export of a replayed scene: the log, the perceived tracks and the planners' trajectories on one timeline.

One file per scene, opened in Foxglove (or Rerun) as a recorded drive. The conventions follow Foxglove's
nuscenes2mcap: frames `map` (nuScenes global) -> `base_link` (the ego) -> one frame per sensor channel
(`CAM_FRONT`, ..., `LIDAR_TOP`), Foxglove's protobuf schemas, topics

    /tf                                  foxglove.FrameTransform   map -> base_link at every ego pose used (the
                                                                   keyframe's and each sensor's own); base_link ->
                                                                   each sensor (calibrated_sensor) with each of its
                                                                   messages
    /<CAM>/image_rect_compressed         foxglove.CompressedImage  the JPEG bytes as on disk
    /<CAM>/camera_info                   foxglove.CameraCalibration
    /LIDAR_TOP                           foxglove.PointCloud       x, y, z, intensity, ring (float32), sensor frame
    /markers/annotations                 foxglove.SceneUpdate      ground-truth boxes, coloured by category
    /markers/tracks                      foxglove.SceneUpdate      tracks: box, "id name" label, velocity arrow;
                                                                   one colour per id
    /markers/plans                       foxglove.SceneUpdate      one line strip per planner (ego frame at the
                                                                   keyframe) and the logged ego path of the next 3 s

Sensor messages and their transforms carry their sample_data timestamps (cameras fire up to ~50 ms around the
keyframe), everything else the keyframe's; the log time of a message is its timestamp. Each keyframe's messages
are written in log-time order (a transform before the data stamped with it), keyframe after keyframe. Every
marker update first deletes what the previous keyframe drew, so an object that left the scene does not linger.

The file is written atomically (`common.artifacts.atomic_path`); every image and point cloud is checked to exist
before the first byte is written. The MCAP packages are an optional extra (`pip install -e ".[mcap]"`), imported
only when a file is written.
"""

from __future__ import annotations

import colorsys
import errno
import importlib
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from drivestack.common.artifacts import atomic_path
from drivestack.common.nuscenes import sample_ego_pose, scene_samples

CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT")
LIDAR = "LIDAR_TOP"
LIDAR_FIELDS = ("x", "y", "z", "intensity", "ring")  # float32 each: nuScenes .pcd.bin
MAP_FRAME, EGO_FRAME = "map", "base_link"
TOPIC_TF = "/tf"
TOPIC_ANNOTATIONS, TOPIC_TRACKS, TOPIC_PLANS = "/markers/annotations", "/markers/tracks", "/markers/plans"
LOGGED_HORIZON = 3.0  # [s] the logged ego path drawn beside the plans
BOX_ALPHA = 0.4  # [-] opacity of the box cubes
ARROW_SECONDS = 1.0  # [s] a velocity arrow is the distance covered in this time
MIN_ARROW_SPEED = 0.2  # [m/s] slower tracks get no arrow
PLAN_COLORS = ((0.1, 0.9, 0.3), (1.0, 0.55, 0.0), (0.2, 0.6, 1.0), (0.9, 0.2, 0.9), (1.0, 1.0, 0.2))  # RGB in [0, 1]
LOGGED_COLOR = (1.0, 1.0, 1.0)
INSTALL_HINT = 'pip install -e ".[mcap]"'
SCHEMAS = (  # the foxglove protobuf messages used, each from foxglove_schemas_protobuf.<name>_pb2
    "ArrowPrimitive", "CameraCalibration", "Color", "CompressedImage", "CubePrimitive", "FrameTransform",
    "KeyValuePair", "LinePrimitive", "PackedElementField", "Point3", "PointCloud", "Pose", "Quaternion", "SceneEntity",
    "SceneEntityDeletion", "SceneUpdate", "TextPrimitive", "Vector3",
)  # fmt: skip


class McapUnavailableError(ImportError, ValueError):
    """The optional MCAP packages are not installed (a ValueError too, so the CLI prints it in one line)."""


def write_scene_mcap(path: str | Path, nusc: Any, scene_token: str, frames: list[dict]) -> dict:
    """Write one scene's replay as an MCAP file (atomically): sensors, ego poses, ground truth, tracks and plans.

    Args:
        path: the .mcap file to write (parents created; an existing file is replaced only once the new one is
            complete).
        nusc: a nuscenes-devkit `NuScenes` (`drivestack.common.nuscenes.open_nuscenes`).
        scene_token: the scene the frames belong to.
        frames: one dict per replayed keyframe, in time order:
            sample_token: str; timestamp_us: int [us];
            tracks: [{track_id: int, name: str, translation: [x, y, z] [m] global, size: [w, l, h] [m],
                      rotation: [w, x, y, z] global, velocity: [vx, vy] [m/s] global}];
            plans: {planner name: [[x, y], ...] [m] waypoints in the ego frame at that keyframe}.
    Returns:
        {"path", "topics": {topic: number of messages}, "num_messages", "bytes", "seconds"}.
    Raises:
        McapUnavailableError (an ImportError and a ValueError) when the `mcap` extra is not installed;
        ValueError for a scene or sample token that does not fit; FileNotFoundError naming a missing image or
        point cloud (nothing is written then).
    """
    start = time.perf_counter()
    fox, writer_cls = _import_mcap()
    samples = _check_frames(nusc, scene_token, frames)
    _check_files(nusc, samples)
    scene = nusc.get("scene", scene_token)
    all_samples = scene_samples(nusc, scene)
    planners = sorted({name for frame in frames for name in frame.get("plans", {})})

    counts: Counter[str] = Counter()
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        writer = writer_cls(stream)
        writer.add_metadata("scene", {"name": scene["name"], "token": scene_token, "dataroot": str(nusc.dataroot)})
        for frame, sample in zip(frames, samples):
            stamp_ns = int(frame["timestamp_us"]) * 1000
            messages = [
                *_transforms(fox, nusc, sample),
                *_sensors(fox, nusc, sample),
                (stamp_ns, TOPIC_ANNOTATIONS, _annotations(fox, nusc, sample, stamp_ns)),
                (stamp_ns, TOPIC_TRACKS, _tracks(fox, frame.get("tracks", []), stamp_ns)),
                (stamp_ns, TOPIC_PLANS, _plans(fox, nusc, frame, planners, all_samples, stamp_ns)),
            ]
            for log_ns, topic, message in sorted(messages, key=lambda m: m[0]):  # stable: ties keep their order
                writer.write_message(topic, message, log_time=log_ns, publish_time=log_ns)
                counts[topic] += 1
        writer.finish()
    return {
        "path": str(path),
        "topics": dict(sorted(counts.items())),
        "num_messages": sum(counts.values()),
        "bytes": os.path.getsize(path),
        "seconds": time.perf_counter() - start,
    }


# ------------------------------------------------------------------------------------------------------ checks


def _import_mcap() -> tuple[SimpleNamespace, type]:
    """The foxglove protobuf message classes (`fox.Pose`, `fox.SceneUpdate`, ...) and mcap_protobuf's Writer."""
    try:
        fox = SimpleNamespace(
            **{
                name: getattr(importlib.import_module(f"foxglove_schemas_protobuf.{name}_pb2"), name)
                for name in SCHEMAS
            }
        )
        from mcap_protobuf.writer import Writer
    except ImportError as err:
        raise McapUnavailableError(
            "writing MCAP needs the optional packages mcap, mcap-protobuf-support and foxglove-schemas-protobuf "
            f"({err.name or err} is missing): {INSTALL_HINT}"
        ) from None
    return fox, Writer


def _check_frames(nusc: Any, scene_token: str, frames: list[dict]) -> list[dict]:
    """The sample records of `frames`; ValueError naming the token when a sample is not of the scene or the
    frames are not in time order."""
    try:
        scene = nusc.get("scene", scene_token)
    except KeyError:
        raise ValueError(f"scene token {scene_token!r} is not in the scene table of {nusc.dataroot}") from None
    samples = []
    for frame in frames:
        try:
            sample = nusc.get("sample", frame["sample_token"])
        except KeyError:
            raise ValueError(f"sample token {frame['sample_token']!r} is not in {nusc.dataroot}") from None
        if sample["scene_token"] != scene_token:
            raise ValueError(f"sample {sample['token']} belongs to another scene than {scene['name']}")
        samples.append(sample)
    stamps = [int(frame["timestamp_us"]) for frame in frames]
    if any(b < a for a, b in zip(stamps, stamps[1:])):
        raise ValueError(f"the frames of scene {scene['name']} are not in time order (timestamp_us decreases)")
    return samples


def _written_channels(sample: dict) -> list[str]:
    """The channels of a keyframe that go into the file: the six cameras and LIDAR_TOP, those it has."""
    return [channel for channel in (*CAMERAS, LIDAR) if channel in sample["data"]]


def _check_files(nusc: Any, samples: list[dict]) -> None:
    for sample in samples:
        for channel in _written_channels(sample):
            filename = Path(nusc.dataroot) / nusc.get("sample_data", sample["data"][channel])["filename"]
            if not filename.is_file():
                raise FileNotFoundError(
                    errno.ENOENT,
                    f"the {channel} file of sample {sample['token']} is missing (no MCAP written)",
                    str(filename),
                )


# ---------------------------------------------------------------------------------------------------- messages


def _stamp(message: Any, stamp_ns: int) -> Any:
    message.timestamp.FromNanoseconds(stamp_ns)
    return message


def _pose(fox: Any, translation: list[float], rotation: list[float] | None = None) -> Any:
    """A foxglove Pose from a position and a (w, x, y, z) quaternion (identity when None)."""
    w, x, y, q_z = rotation if rotation is not None else (1.0, 0.0, 0.0, 0.0)
    position = fox.Vector3(x=translation[0], y=translation[1], z=translation[2])
    return fox.Pose(position=position, orientation=fox.Quaternion(w=w, x=x, y=y, z=q_z))


def _transform(fox: Any, parent: str, child: str, record: dict, stamp_ns: int) -> Any:
    t, (w, x, y, z) = record["translation"], record["rotation"]
    return _stamp(
        fox.FrameTransform(
            parent_frame_id=parent,
            child_frame_id=child,
            translation=fox.Vector3(x=t[0], y=t[1], z=t[2]),
            rotation=fox.Quaternion(w=w, x=x, y=y, z=z),
        ),
        stamp_ns,
    )


def _transforms(fox: Any, nusc: Any, sample: dict) -> Iterator[tuple[int, str, Any]]:
    """map -> base_link at the keyframe's ego pose and at each written sensor's own (each once), base_link -> sensor."""
    keyframe_pose = sample_ego_pose(nusc, sample)
    poses = {keyframe_pose["token"]: keyframe_pose}
    for channel in _written_channels(sample):
        data = nusc.get("sample_data", sample["data"][channel])
        poses.setdefault(data["ego_pose_token"], nusc.get("ego_pose", data["ego_pose_token"]))
    for pose in poses.values():
        stamp_ns = int(pose["timestamp"]) * 1000
        yield stamp_ns, TOPIC_TF, _transform(fox, MAP_FRAME, EGO_FRAME, pose, stamp_ns)
    for channel in _written_channels(sample):  # stamped like the sensor's data: its transform is there first
        data = nusc.get("sample_data", sample["data"][channel])
        calibration = nusc.get("calibrated_sensor", data["calibrated_sensor_token"])
        stamp_ns = int(data["timestamp"]) * 1000
        yield stamp_ns, TOPIC_TF, _transform(fox, EGO_FRAME, channel, calibration, stamp_ns)


def _sensors(fox: Any, nusc: Any, sample: dict) -> Iterator[tuple[int, str, Any]]:
    """Each camera's image and calibration, the lidar point cloud; at their sample_data timestamps."""
    for channel in _written_channels(sample):
        data = nusc.get("sample_data", sample["data"][channel])
        filename = Path(nusc.dataroot) / data["filename"]
        payload = filename.read_bytes()
        stamp_ns = int(data["timestamp"]) * 1000
        if channel == LIDAR:
            yield stamp_ns, f"/{channel}", _point_cloud(fox, payload, filename, channel, stamp_ns)
            continue
        image = fox.CompressedImage(frame_id=channel, data=payload, format="jpeg")
        yield stamp_ns, f"/{channel}/image_rect_compressed", _stamp(image, stamp_ns)
        K = np.asarray(nusc.get("calibrated_sensor", data["calibrated_sensor_token"])["camera_intrinsic"], float)
        P = np.concatenate([K, np.zeros((3, 1))], axis=1)  # (3, 4): rectified images, no baseline
        calibration = fox.CameraCalibration(
            frame_id=channel,
            width=int(data["width"]),
            height=int(data["height"]),
            distortion_model="plumb_bob",
            D=[0.0] * 5,  # nuScenes images are undistorted
            K=K.ravel().tolist(),
            R=np.eye(3).ravel().tolist(),
            P=P.ravel().tolist(),
        )
        yield stamp_ns, f"/{channel}/camera_info", _stamp(calibration, stamp_ns)


def _point_cloud(fox: Any, payload: bytes, filename: Path, channel: str, stamp_ns: int) -> Any:
    stride = 4 * len(LIDAR_FIELDS)  # [bytes] per point
    if len(payload) % stride:
        raise ValueError(f"{filename}: {len(payload)} bytes is not a whole number of {stride}-byte lidar points")
    float32 = fox.PackedElementField.NumericType.Value("FLOAT32")
    fields = [fox.PackedElementField(name=n, offset=4 * i, type=float32) for i, n in enumerate(LIDAR_FIELDS)]
    cloud = fox.PointCloud(
        frame_id=channel, pose=_pose(fox, [0.0, 0.0, 0.0]), point_stride=stride, fields=fields, data=payload
    )
    return _stamp(cloud, stamp_ns)


def _update(fox: Any, entities: list[Any], stamp_ns: int) -> Any:
    """A SceneUpdate that first deletes everything drawn before `stamp_ns`, then adds `entities`."""
    deletion = _stamp(fox.SceneEntityDeletion(type=fox.SceneEntityDeletion.Type.Value("ALL")), stamp_ns)
    return fox.SceneUpdate(deletions=[deletion], entities=entities)


def _color(fox: Any, rgb: tuple[float, float, float] | np.ndarray, alpha: float = 1.0) -> Any:
    return fox.Color(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=alpha)


def _cube(fox: Any, translation: list[float], size: list[float], rotation: list[float], color: Any) -> Any:
    w, l, h = size  # nuScenes order; a foxglove cube's x runs along the box's heading (its length)
    return fox.CubePrimitive(pose=_pose(fox, translation, rotation), size=fox.Vector3(x=l, y=w, z=h), color=color)


def _entity(fox: Any, entity_id: str, frame_id: str, stamp_ns: int, **primitives: Any) -> Any:
    return _stamp(fox.SceneEntity(id=entity_id, frame_id=frame_id, frame_locked=False, **primitives), stamp_ns)


def _annotations(fox: Any, nusc: Any, sample: dict, stamp_ns: int) -> Any:
    """The keyframe's ground-truth boxes (global frame), one entity per instance, coloured by category."""
    entities = []
    for token in sample["anns"]:
        ann = nusc.get("sample_annotation", token)
        rgb = np.asarray(nusc.colormap.get(ann["category_name"], (160, 160, 160))) / 255.0
        color = _color(fox, rgb, BOX_ALPHA)
        cube = _cube(fox, ann["translation"], ann["size"], ann["rotation"], color)
        meta = [fox.KeyValuePair(key="category", value=ann["category_name"])]
        entities.append(_entity(fox, ann["instance_token"], MAP_FRAME, stamp_ns, cubes=[cube], metadata=meta))
    return _update(fox, entities, stamp_ns)


def track_color(track_id: int) -> tuple[float, float, float]:
    """A bright RGB colour in [0, 1] per track id (golden-ratio hues: neighbouring ids differ clearly)."""
    return colorsys.hsv_to_rgb((track_id * 0.618033988749895) % 1.0, 0.75, 1.0)


def _tracks(fox: Any, tracks: list[dict], stamp_ns: int) -> Any:
    """The tracks (global frame): box, an "id name" label above it and a velocity arrow, one colour per id."""
    entities = []
    for track in tracks:
        track_id, (x, y, z), (w, l, h) = int(track["track_id"]), track["translation"], track["size"]
        rgb = track_color(track_id)
        cube = _cube(fox, [x, y, z], [w, l, h], track["rotation"], _color(fox, rgb, BOX_ALPHA))
        label = fox.TextPrimitive(
            pose=_pose(fox, [x, y, z + h / 2 + 0.5]),
            billboard=True,
            font_size=14.0,
            scale_invariant=True,
            color=_color(fox, rgb),
            text=f"{track_id} {track['name']}",
        )
        arrows = []
        vx, vy = (float(v) for v in track.get("velocity", (0.0, 0.0))[:2])
        speed = math.hypot(vx, vy)
        if math.isfinite(speed) and speed >= MIN_ARROW_SPEED:
            heading = math.atan2(vy, vx)
            rotation = [math.cos(heading / 2), 0.0, 0.0, math.sin(heading / 2)]
            length = speed * ARROW_SECONDS  # [m]
            arrows.append(
                fox.ArrowPrimitive(
                    pose=_pose(fox, [x, y, z], rotation),
                    shaft_length=max(length - 0.5, 0.1),
                    shaft_diameter=0.15,
                    head_length=0.5,
                    head_diameter=0.4,
                    color=_color(fox, rgb),
                )
            )
        meta = [
            fox.KeyValuePair(key="name", value=str(track["name"])),
            fox.KeyValuePair(key="speed", value=f"{speed:.2f}"),
        ]
        entities.append(
            _entity(
                fox, f"track-{track_id}", MAP_FRAME, stamp_ns, cubes=[cube], texts=[label], arrows=arrows, metadata=meta
            )
        )
    return _update(fox, entities, stamp_ns)


def _line(fox: Any, points: np.ndarray, rgb: tuple[float, float, float], thickness: float) -> Any:
    """A line strip through `points` (N, 3) [m] in its entity's frame."""
    return fox.LinePrimitive(
        type=fox.LinePrimitive.Type.Value("LINE_STRIP"),
        pose=_pose(fox, [0.0, 0.0, 0.0]),
        thickness=thickness,
        scale_invariant=False,
        points=[fox.Point3(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in points],
        color=_color(fox, rgb),
    )


def _plans(fox: Any, nusc: Any, frame: dict, planners: list[str], all_samples: list[dict], stamp_ns: int) -> Any:
    """One line strip per planner, from the ego (0, 0) through its waypoints, in base_link at the keyframe (not
    frame-locked: it stays where the ego was when it planned); and the logged ego path over LOGGED_HORIZON."""
    entities = []
    for name, waypoints in frame.get("plans", {}).items():
        rgb = PLAN_COLORS[planners.index(name) % len(PLAN_COLORS)]
        xy = np.concatenate([np.zeros((1, 2)), np.asarray(waypoints, float).reshape(-1, 2)])  # (1 + T, 2)
        points = np.concatenate([xy, np.full((len(xy), 1), 0.1)], axis=1)  # [m] a little above the ground
        label = fox.TextPrimitive(
            pose=_pose(fox, points[-1].tolist()), billboard=True, font_size=12.0, scale_invariant=True,
            color=_color(fox, rgb), text=name,
        )  # fmt: skip
        entities.append(
            _entity(fox, f"plan-{name}", EGO_FRAME, stamp_ns, lines=[_line(fox, points, rgb, 0.3)], texts=[label])
        )
    index = next(i for i, s in enumerate(all_samples) if s["token"] == frame["sample_token"])
    now = all_samples[index]["timestamp"]
    horizon_us = (LOGGED_HORIZON + 0.1) * 1e6  # keyframes are only roughly 0.5 s apart
    future = [s for s in all_samples[index:] if s["timestamp"] - now <= horizon_us]
    if len(future) > 1:
        path = np.array([sample_ego_pose(nusc, s)["translation"] for s in future], float)  # (T, 3) global
        path[:, 2] += 0.1
        entities.append(_entity(fox, "logged", MAP_FRAME, stamp_ns, lines=[_line(fox, path, LOGGED_COLOR, 0.15)]))
    return _update(fox, entities, stamp_ns)
