"""The MCAP export of a replayed scene (drivestack.pipeline.replay_mcap), read back with `mcap`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from nuscenes_fixture import CAR, ObjectSpec, SceneSpec, write_dataset

from drivestack.common.nuscenes import open_nuscenes, sample_ego_pose, scene_samples
from drivestack.pipeline.replay_mcap import (
    CAMERAS,
    LIDAR,
    McapUnavailableError,
    track_color,
    write_scene_mcap,
)

MARKERS = ("/markers/annotations", "/markers/tracks", "/markers/plans")
NUM_FRAMES = 3  # keyframes written per test: enough for order and counts, fast on 2 cores


@pytest.fixture(scope="module")
def mcap_reader():
    pytest.importorskip("mcap_protobuf", reason='the MCAP extra is not installed (pip install -e ".[mcap]")')
    pytest.importorskip(
        "foxglove_schemas_protobuf", reason='the MCAP extra is not installed (pip install -e ".[mcap]")'
    )
    from mcap.reader import make_reader
    from mcap_protobuf.decoder import DecoderFactory

    def read(path: Path) -> list[tuple[str, int, object]]:
        """(topic, log time [ns], decoded message) in file order."""
        with open(path, "rb") as stream:
            reader = make_reader(stream, decoder_factories=[DecoderFactory()])
            return [(ch.topic, m.log_time, dec) for _, ch, m, dec in reader.iter_decoded_messages(log_time_order=False)]

    return read


@pytest.fixture(scope="module")
def real_nusc(real_root: Path):
    return open_nuscenes(real_root)


@pytest.fixture(scope="module")
def lidar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic scene of 4 keyframes with CAM_FRONT images and LIDAR_TOP point clouds of 1000 + 10 k points."""
    root = tmp_path_factory.mktemp("mcap-lidar")
    scene = SceneSpec("mcap-0000", [ObjectSpec(CAR, (12.0, 1.0, 0.8), (1.0, 0.0), (1.9, 4.5, 1.6), 0.1)], ego_speed=5.0)
    write_dataset(root, [scene], {"val": ["mcap-0000"]}, channels=("CAM_FRONT", LIDAR), image_size=(160, 90))
    rng = np.random.default_rng(0)
    nusc = open_nuscenes(root)  # write_dataset writes no lidar files, only their table rows
    for k, sample in enumerate(scene_samples(nusc, nusc.scene[0])):
        filename = root / nusc.get("sample_data", sample["data"][LIDAR])["filename"]
        rng.standard_normal((1000 + 10 * k, 5)).astype(np.float32).tofile(filename)
    return root


def _frames(nusc, scene: dict, num_frames: int = NUM_FRAMES) -> list[dict]:
    """The first keyframes of `scene` with two fake tracks (ids 3 and 7) and two planners."""
    frames = []
    for sample in scene_samples(nusc, scene)[:num_frames]:
        ego = sample_ego_pose(nusc, sample)["translation"]
        tracks = [
            {
                "track_id": track_id,
                "name": "car",
                "translation": [ego[0] + dx, ego[1] + 2.0, ego[2] + 0.8],
                "size": [1.9, 4.5, 1.6],
                "rotation": [1.0, 0.0, 0.0, 0.0],
                "velocity": [vx, 0.0],
            }
            for track_id, dx, vx in ((3, 10.0, 2.0), (7, -8.0, float("nan")))  # NaN: velocity unknown, no arrow
        ]
        plans = {
            "idm": [[2.0 * t, 0.0] for t in range(1, 7)],
            "constant_velocity": [[2.5 * t, 0.1] for t in range(1, 7)],
        }
        frames.append(
            {"sample_token": sample["token"], "timestamp_us": sample["timestamp"], "tracks": tracks, "plans": plans}
        )
    return frames


def _check_file(read, path: Path, summary: dict, nusc, scene: dict, frames: list[dict]) -> list:
    """What every written file must satisfy; returns its messages."""
    messages = read(path)
    samples = [nusc.get("sample", f["sample_token"]) for f in frames]
    channels = [c for c in (*CAMERAS, LIDAR) if c in samples[0]["data"]]
    cameras = [c for c in channels if c != LIDAR]
    expected = {t: len(frames) for t in MARKERS}
    expected |= {f"/{c}/{kind}": len(frames) for c in cameras for kind in ("image_rect_compressed", "camera_info")}
    if LIDAR in channels:
        expected[f"/{LIDAR}"] = len(frames)
    # /tf: map -> base_link once per distinct ego pose (keyframe and sensors), base_link -> each sensor per keyframe
    ego_poses = {sample_ego_pose(nusc, s)["token"] for s in samples}
    ego_poses |= {nusc.get("sample_data", s["data"][c])["ego_pose_token"] for s in samples for c in channels}
    expected["/tf"] = len(ego_poses) + len(channels) * len(frames)
    counts: dict[str, int] = {}
    for topic, _, _ in messages:
        counts[topic] = counts.get(topic, 0) + 1
    assert counts == expected and summary["topics"] == expected
    assert summary["num_messages"] == len(messages) and summary["bytes"] == path.stat().st_size > 0
    assert summary["seconds"] > 0

    # one timeline: log times in file order never go back, and lie in the span of the keyframes' sensor data
    times = np.array([t for _, t, _ in messages])
    assert np.all(np.diff(times) >= 0)
    stamps = [s["timestamp"] for s in samples]
    stamps += [nusc.get("sample_data", s["data"][c])["timestamp"] for s in samples for c in channels]
    assert min(stamps) * 1000 <= times.min() and times.max() <= max(stamps) * 1000
    first, last = scene_samples(nusc, scene)[0]["timestamp"], scene_samples(nusc, scene)[-1]["timestamp"]
    assert (first - 100_000) * 1000 <= times.min() and times.max() <= (last + 100_000) * 1000  # within 0.1 s
    for topic, log_time, message in messages:  # every message's own stamp is its log time
        stamp = message.deletions[0].timestamp if topic in MARKERS else message.timestamp
        assert stamp.ToNanoseconds() == log_time, topic
    marker_times = [t for topic, t, _ in messages if topic == "/markers/tracks"]
    assert marker_times == [f["timestamp_us"] * 1000 for f in frames]

    # the image is the JPEG on disk, the calibration its intrinsics
    image = next(m for topic, _, m in messages if topic == f"/{cameras[0]}/image_rect_compressed")
    data = nusc.get("sample_data", samples[0]["data"][cameras[0]])
    assert image.format == "jpeg" and image.frame_id == cameras[0]
    assert image.data == (Path(nusc.dataroot) / data["filename"]).read_bytes()
    info = next(m for topic, _, m in messages if topic == f"/{cameras[0]}/camera_info")
    K = nusc.get("calibrated_sensor", data["calibrated_sensor_token"])["camera_intrinsic"]
    assert (info.width, info.height) == (data["width"], data["height"]) and np.allclose(info.K, np.ravel(K))

    # transforms: the keyframe's ego pose and each sensor's calibration
    tfs = [m for topic, _, m in messages if topic == "/tf"]
    ego = sample_ego_pose(nusc, samples[0])
    first_ego = next(
        m for m in tfs if m.child_frame_id == "base_link" and m.timestamp.ToMicroseconds() == ego["timestamp"]
    )
    assert first_ego.parent_frame_id == "map"
    assert np.allclose([first_ego.translation.x, first_ego.translation.y], ego["translation"][:2])
    assert {m.child_frame_id for m in tfs if m.parent_frame_id == "base_link"} == set(channels)
    sensor_tfs = [(m.child_frame_id, m.timestamp.ToMicroseconds()) for m in tfs if m.parent_frame_id == "base_link"]
    data_stamps = [(c, nusc.get("sample_data", s["data"][c])["timestamp"]) for s in samples for c in channels]
    assert sorted(sensor_tfs) == sorted(data_stamps)  # one per sensor and keyframe, stamped like its data

    # markers: every ground-truth box, the tracks by id with one colour each, one line per planner
    boxes = next(m for topic, _, m in messages if topic == "/markers/annotations")
    assert len(boxes.entities) == len(samples[0]["anns"]) and boxes.deletions[0].type == 1  # ALL
    tracks = next(m for topic, _, m in messages if topic == "/markers/tracks")
    assert [e.id for e in tracks.entities] == ["track-3", "track-7"]
    assert [e.texts[0].text for e in tracks.entities] == ["3 car", "7 car"]
    assert [len(e.arrows) for e in tracks.entities] == [1, 0]
    colors = [(e.cubes[0].color.r, e.cubes[0].color.g, e.cubes[0].color.b) for e in tracks.entities]
    assert np.allclose(colors, [track_color(3), track_color(7)]) and colors[0] != colors[1]
    assert np.isclose(tracks.entities[0].cubes[0].size.x, 4.5)  # cube x along the box: its length
    plans = next(m for topic, _, m in messages if topic == "/markers/plans")
    by_id = {e.id: e for e in plans.entities}
    assert {"plan-idm", "plan-constant_velocity", "logged"} <= set(by_id)
    line = by_id["plan-idm"].lines[0]
    assert by_id["plan-idm"].frame_id == "base_link" and len(line.points) == 7  # the ego, then 6 waypoints
    assert (line.points[0].x, line.points[-1].x) == (0.0, 12.0)
    return messages


def test_real_scene_round_trip(mcap_reader, real_nusc, tmp_path: Path) -> None:
    scene = real_nusc.scene[0]
    frames = _frames(real_nusc, scene)
    path = tmp_path / "out" / "scene-0523.mcap"
    summary = write_scene_mcap(path, real_nusc, scene["token"], frames)
    messages = _check_file(mcap_reader, path, summary, real_nusc, scene, frames)
    assert len([t for t, _, _ in messages if t.endswith("/image_rect_compressed")]) == 6 * NUM_FRAMES
    cloud = next(m for topic, _, m in messages if topic == "/LIDAR_TOP")
    filename = (
        Path(real_nusc.dataroot)
        / real_nusc.get("sample_data", scene_samples(real_nusc, scene)[0]["data"][LIDAR])["filename"]
    )
    points = np.fromfile(filename, dtype=np.float32).reshape(-1, 5)
    assert cloud.point_stride == 20 and len(cloud.data) // cloud.point_stride == len(points) > 10_000
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "ring"] and cloud.frame_id == LIDAR
    assert np.array_equal(np.frombuffer(cloud.data, np.float32).reshape(-1, 5), points)
    assert sorted(path.parent.iterdir()) == [path]  # no temporary left behind


def test_synthetic_scene_with_lidar(mcap_reader, lidar_root: Path, tmp_path: Path) -> None:
    nusc = open_nuscenes(lidar_root)
    scene = nusc.scene[0]
    frames = _frames(nusc, scene, num_frames=4)
    path = tmp_path / "synthetic.mcap"
    messages = _check_file(mcap_reader, path, write_scene_mcap(path, nusc, scene["token"], frames), nusc, scene, frames)
    clouds = [m for topic, _, m in messages if topic == "/LIDAR_TOP"]
    assert [len(m.data) // m.point_stride for m in clouds] == [1000, 1010, 1020, 1030]
    assert not any(t.startswith("/CAM_BACK") for t, _, _ in messages)  # only the cameras the data has


def test_tiny_camera_only_fixture(mcap_reader, tiny_root: Path, tmp_path: Path) -> None:
    nusc = open_nuscenes(tiny_root)
    scene = nusc.scene[0]
    frames = _frames(nusc, scene)
    path = tmp_path / "tiny.mcap"
    messages = _check_file(mcap_reader, path, write_scene_mcap(path, nusc, scene["token"], frames), nusc, scene, frames)
    assert "/LIDAR_TOP" not in {t for t, _, _ in messages}


def test_missing_file_writes_nothing(mcap_reader, lidar_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(lidar_root, root)
    nusc = open_nuscenes(root)
    scene = nusc.scene[0]
    missing = root / nusc.get("sample_data", scene_samples(nusc, scene)[1]["data"][LIDAR])["filename"]
    missing.unlink()
    path = tmp_path / "out" / "scene.mcap"
    path.parent.mkdir()
    path.write_bytes(b"previous")
    with pytest.raises(FileNotFoundError, match="LIDAR_TOP file of sample") as err:
        write_scene_mcap(path, nusc, scene["token"], _frames(nusc, scene))
    assert err.value.filename == str(missing) and "\n" not in str(err.value)
    assert sorted(path.parent.iterdir()) == [path] and path.read_bytes() == b"previous"  # untouched, no temporary


def test_frames_of_another_scene_are_refused(mcap_reader, tiny_root: Path, tmp_path: Path) -> None:
    nusc = open_nuscenes(tiny_root)
    frames = _frames(nusc, nusc.scene[1], num_frames=1)
    with pytest.raises(ValueError, match="belongs to another scene"):
        write_scene_mcap(tmp_path / "x.mcap", nusc, nusc.scene[0]["token"], frames)
    with pytest.raises(ValueError, match="not in the scene table"):
        write_scene_mcap(tmp_path / "x.mcap", nusc, "no-such-scene", frames)
    assert not list(tmp_path.iterdir())


def test_missing_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "mcap_protobuf.writer", None)  # import fails as if not installed
    with pytest.raises(McapUnavailableError, match=r'pip install -e "\.\[mcap\]"') as err:
        write_scene_mcap(tmp_path / "x.mcap", None, "scene", [])
    assert isinstance(err.value, ValueError) and isinstance(err.value, ImportError) and "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())
