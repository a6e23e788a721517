"""nuScenes-format export: the devkit loads it with no warning, its tables match the real schema, chains and
velocities hold, it renders, and ground truth submitted as predictions scores ~1 in the official evaluations."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from drivestack.cli import main
from drivestack.sim import nuscenes_export
from drivestack.sim.nuscenes_export import DatasetConfig, default_dataset, export_dataset
from drivestack.sim.nuscenes_schema import TABLE_NAMES, Recording, make_token

matplotlib.use("Agg")

VERSION = "v1.0-trainval"
SEED = 3
REAL_SCENE = Path(__file__).resolve().parents[3] / "shared" / "data" / "nuscenes-scene-0523" / VERSION
# Field names (in order) of every table of the real nuScenes v1.0-trainval (checked against REAL_SCENE when present).
REAL_FIELDS = {
    "attribute": ["token", "name", "description"],
    "calibrated_sensor": ["token", "sensor_token", "translation", "rotation", "camera_intrinsic"],
    "category": ["token", "name", "description"],
    "ego_pose": ["token", "timestamp", "rotation", "translation"],
    "instance": ["token", "category_token", "nbr_annotations", "first_annotation_token", "last_annotation_token"],
    "log": ["token", "logfile", "vehicle", "date_captured", "location"],
    "map": ["category", "token", "filename", "log_tokens"],
    "sample": ["token", "timestamp", "prev", "next", "scene_token"],
    "sample_annotation": [
        "token",
        "sample_token",
        "instance_token",
        "visibility_token",
        "attribute_tokens",
        "translation",
        "size",
        "rotation",
        "prev",
        "next",
        "num_lidar_pts",
        "num_radar_pts",
    ],
    "sample_data": [
        "token",
        "sample_token",
        "ego_pose_token",
        "calibrated_sensor_token",
        "timestamp",
        "fileformat",
        "is_key_frame",
        "height",
        "width",
        "filename",
        "prev",
        "next",
    ],
    "scene": ["token", "log_token", "nbr_samples", "first_sample_token", "last_sample_token", "name", "description"],
    "sensor": ["token", "channel", "modality"],
    "visibility": ["description", "token", "level"],
}
TOKEN = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A small dataset (3 scenes x 4 s, two of them val) and the simulator recording it was built from."""
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("nuscenes") / "synthetic"
    seen: dict[str, Recording] = {}
    build = nuscenes_export.build_tables

    def spy(rec, info):
        seen["rec"] = rec
        return build(rec, info)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nuscenes_export, "build_tables", spy)
        # Small images and a sparse lidar keep the rendering cheap; nothing tested depends on their resolution.
        config = DatasetConfig(
            out=out, scenes=3, seconds=4.0, seed=SEED, val_fraction=0.5, width=256, height=144, lidar_azimuths=256
        )
        summary = export_dataset(config, progress=False)
    return out, summary, seen["rec"]


@pytest.fixture(scope="module")
def nusc(export):
    from nuscenes.nuscenes import NuScenes

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning while loading fails the test
        return NuScenes(version=VERSION, dataroot=str(export[0]), verbose=False)


def _tables(root: Path) -> dict[str, list[dict]]:
    return {name: json.loads((root / VERSION / f"{name}.json").read_text()) for name in TABLE_NAMES}


def test_devkit_loads_it_and_every_file_exists(export, nusc) -> None:
    out, summary, rec = export
    assert summary.scenes == 3 and summary.keyframes == 3 * 8 and summary.ego_crashes == 0
    assert len(nusc.scene) == 3 and len(nusc.sample) == 24 and len(nusc.sample_data) == 24 * 2
    for sample in nusc.sample:
        assert set(sample["data"]) == {"CAM_FRONT", "LIDAR_TOP"}
    for sd in nusc.sample_data:
        assert (out / sd["filename"]).is_file(), sd["filename"]
        assert sd["filename"].startswith(f"samples/{sd['channel']}/") and f"__{sd['channel']}__" in sd["filename"]
        assert sd["filename"].endswith(".jpg" if sd["channel"].startswith("CAM") else ".pcd.bin")
    for record in nusc.map:
        assert (out / record["filename"]).is_file()
    categories = {nusc.get("category", i["category_token"])["name"] for i in nusc.instance}
    assert categories == {"vehicle.car", "vehicle.truck"}
    splits = json.loads((out / VERSION / "splits.json").read_text())
    assert len(splits["val"]) == 2 and len(splits["train"]) == 1
    assert not list(out.parent.glob(".*"))  # no temporary directory left behind


def test_tables_have_the_real_schema_and_tokens(export) -> None:
    tables = _tables(export[0])
    if REAL_SCENE.is_dir():  # the reference lists above are the real dataset's
        for name, fields in REAL_FIELDS.items():
            assert list(json.loads((REAL_SCENE / f"{name}.json").read_text())[0]) == fields, name
    for name in TABLE_NAMES:
        assert tables[name], name
        for record in tables[name]:
            assert list(record) == REAL_FIELDS[name], name
        if name != "visibility":
            tokens = [r["token"] for r in tables[name]]
            assert all(TOKEN.match(t) for t in tokens) and len(set(tokens)) == len(tokens), name
    attributes = {a["token"]: a["name"] for a in tables["attribute"]}
    used = {attributes[t] for a in tables["sample_annotation"] for t in a["attribute_tokens"]}
    assert used <= {"vehicle.moving", "vehicle.stopped"} and "vehicle.moving" in used
    assert {a["visibility_token"] for a in tables["sample_annotation"]} <= {"1", "2", "3", "4"}
    assert all(a["num_radar_pts"] == 0 for a in tables["sample_annotation"])


def test_prev_next_chains_are_consistent(nusc) -> None:
    for scene in nusc.scene:
        tokens, token = [], scene["first_sample_token"]
        while token:
            tokens.append(token)
            token = nusc.get("sample", token)["next"]
        assert len(tokens) == scene["nbr_samples"] and tokens[-1] == scene["last_sample_token"]
        stamps = [nusc.get("sample", t)["timestamp"] for t in tokens]
        assert np.all(np.diff(stamps) == 500_000)  # 2 Hz keyframes, microseconds
        for channel in ("CAM_FRONT", "LIDAR_TOP"):
            sds = [nusc.get("sample", t)["data"][channel] for t in tokens]
            for a, b in zip(sds[:-1], sds[1:]):
                assert nusc.get("sample_data", a)["next"] == b and nusc.get("sample_data", b)["prev"] == a
            assert nusc.get("sample_data", sds[0])["prev"] == "" and nusc.get("sample_data", sds[-1])["next"] == ""
    for inst in nusc.instance:
        chain, token = [], inst["first_annotation_token"]
        while token:
            ann = nusc.get("sample_annotation", token)
            assert ann["instance_token"] == inst["token"]
            assert not chain or ann["prev"] == chain[-1]
            chain.append(token)
            token = ann["next"]
        assert len(chain) == inst["nbr_annotations"] and chain[-1] == inst["last_annotation_token"]
        stamps = [nusc.get("sample", nusc.get("sample_annotation", t)["sample_token"])["timestamp"] for t in chain]
        assert np.all(np.diff(stamps) > 0)


def test_annotations_follow_the_visibility_rule(export, nusc) -> None:
    _, _, rec = export
    b, k, n = np.nonzero(rec.annotated)
    assert len(b) == len(nusc.sample_annotation) and not rec.annotated[:, :, 0].any()  # never the ego
    seen = rec.visibility[b, k, n] > 0.0
    points = rec.num_lidar_pts[b, k, n]
    assert np.array_equal(points > 0, seen) and seen.any() and (~seen).any()
    by_token = {make_token(SEED, "sample_annotation", *i): i for i in zip(b.tolist(), k.tolist(), n.tolist())}
    for ann in nusc.sample_annotation:
        i = by_token[ann["token"]]
        vis = rec.visibility[i]
        assert ann["num_lidar_pts"] == rec.num_lidar_pts[i]
        assert ann["visibility_token"] == ("1" if vis <= 0.4 else "2" if vis <= 0.6 else "3" if vis <= 0.8 else "4")
    # CAM_FRONT sees several vehicles per keyframe on average.
    assert seen.sum() / rec.annotated.shape[0] / rec.annotated.shape[1] >= 2.0


def test_box_velocity_matches_the_simulator(export, nusc) -> None:
    _, _, rec = export
    b, k, n = np.nonzero(rec.annotated)
    speed = {make_token(SEED, "sample_annotation", *i): rec.speed[i] for i in zip(b.tolist(), k.tolist(), n.tolist())}
    errors = []
    for ann in nusc.sample_annotation:
        if not ann["prev"] or not ann["next"]:
            continue
        t_prev, t_next = (
            nusc.get("sample", nusc.get("sample_annotation", ann[key])["sample_token"])["timestamp"]
            for key in ("prev", "next")
        )
        if t_next - t_prev != 1_000_000:  # neighbours in the adjacent keyframes: a centred difference over 1 s
            continue
        v = nusc.box_velocity(ann["token"])
        assert np.all(np.isfinite(v)), ann["token"]
        errors.append(abs(np.linalg.norm(v[:2]) - speed[ann["token"]]))
    errors = np.array(errors)
    assert len(errors) > 100 and np.median(errors) < 0.2 and errors.max() < 1.5, errors.max()


def test_render_sample_data_for_camera_and_lidar(nusc, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    sample = nusc.sample[len(nusc.sample) // 2]
    for channel in ("CAM_FRONT", "LIDAR_TOP"):
        path = tmp_path / f"{channel}.png"
        nusc.render_sample_data(sample["data"][channel], out_path=str(path), verbose=False)
        plt.close("all")
        assert path.is_file() and path.stat().st_size > 10_000
    # Every ego pose lies on the map's road surface.
    mask = nusc.map[0]["mask"]
    poses = np.array([p["translation"] for p in nusc.ego_pose])
    assert (poses[:, :2] > 0).all() and mask.is_on_mask(poses[:, 0], poses[:, 1]).all()


def _submission(nusc, tracking: bool) -> dict:
    """Ground-truth annotations of the val split, as a detector/tracker would submit them: the boxes the
    exported cameras see (num_lidar_pts > 0), velocity from box_velocity, attribute from the annotation."""
    from nuscenes.eval.detection.utils import category_to_detection_name
    from nuscenes.utils.splits import create_splits_scenes

    val = set(create_splits_scenes()["val"])
    attributes = {a["token"]: a["name"] for a in nusc.attribute}
    results = {}
    for sample in nusc.sample:
        if nusc.get("scene", sample["scene_token"])["name"] not in val:
            continue
        boxes = []
        for token in sample["anns"]:
            ann = nusc.get("sample_annotation", token)
            if ann["num_lidar_pts"] == 0:
                continue
            name = category_to_detection_name(ann["category_name"])
            box = {
                "sample_token": sample["token"],
                "translation": ann["translation"],
                "size": ann["size"],
                "rotation": ann["rotation"],
                "velocity": nusc.box_velocity(token)[:2].tolist(),
            }
            if tracking:
                # A confidence that differs between tracks, so the tracking eval sweeps a recall curve.
                score = 0.5 + 0.5 * int(ann["instance_token"][:8], 16) / 0xFFFFFFFF
                box.update(tracking_id=ann["instance_token"], tracking_name=name, tracking_score=score)
            else:
                box.update(
                    detection_name=name, detection_score=1.0, attribute_name=attributes[ann["attribute_tokens"][0]]
                )
            boxes.append(box)
        results[sample["token"]] = boxes
    meta = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}
    return {"meta": meta, "results": results}


def _present_classes(submission: dict) -> set[str]:
    """Classes of the val ground truth the eval keeps (the boxes the exported cameras see)."""
    return {
        box.get("detection_name", box.get("tracking_name")) for boxes in submission["results"].values() for box in boxes
    }


def test_ground_truth_scores_perfectly_in_detection_eval(nusc, tmp_path: Path) -> None:
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    path = tmp_path / "detection.json"
    submission = _submission(nusc, tracking=False)
    path.write_text(json.dumps(submission))
    config = config_factory("detection_cvpr_2019")
    # The synthetic data has cars and trucks only: classes absent from the ground truth would score 0 AP and
    # drag the mean down, so the eval is restricted to the classes present (class_names is a view of the keys).
    present = _present_classes(submission)
    assert "car" in present
    for name in set(config.class_range) - present:
        del config.class_range[name]
    evaluator = DetectionEval(
        nusc, config=config, result_path=str(path), eval_set="val", output_dir=str(tmp_path / "det"), verbose=False
    )
    metrics, _ = evaluator.evaluate()
    assert set(metrics.mean_dist_aps) == present
    assert metrics.mean_ap >= 0.99, metrics.mean_dist_aps
    assert metrics.nd_score >= 0.9


def test_ground_truth_scores_perfectly_in_tracking_eval(export, nusc, tmp_path: Path) -> None:
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.tracking.evaluate import TrackingEval

    path = tmp_path / "tracking.json"
    submission = _submission(nusc, tracking=True)
    path.write_text(json.dumps(submission))
    config = config_factory("tracking_nips_2019")
    present = _present_classes(submission)  # absent classes would score 0 AMOTA (see the detection test)
    config.class_range = {k: v for k, v in config.class_range.items() if k in present}
    config.tracking_names = sorted(present)
    config.class_names = sorted(present)
    evaluator = TrackingEval(
        config=config,
        result_path=str(path),
        eval_set="val",
        output_dir=str(tmp_path / "trk"),
        nusc_version=VERSION,
        nusc_dataroot=str(export[0]),
        verbose=False,
    )
    metrics, _ = evaluator.evaluate()
    summary = metrics.serialize()
    assert summary["amota"] >= 0.99, summary["label_metrics"]["amota"]


# ------------------------------------------------------------------------------------- writing safely
def _tiny(out: Path, **kw) -> DatasetConfig:
    params: dict = {"scenes": 2, "seconds": 1.0, "seed": SEED, "width": 64, "height": 36, "lidar_azimuths": 64, **kw}
    return DatasetConfig(out=out, **params)


def test_same_seed_writes_identical_tables(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    export_dataset(_tiny(a), progress=False)
    export_dataset(_tiny(b), progress=False)
    for name in (*TABLE_NAMES, "splits"):
        assert (a / VERSION / f"{name}.json").read_bytes() == (b / VERSION / f"{name}.json").read_bytes(), name
    files = sorted(p.relative_to(a) for p in (a / "samples").rglob("*.*"))
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    c = tmp_path / "c"
    export_dataset(_tiny(c, seed=SEED + 1), progress=False)
    assert (a / VERSION / "sample.json").read_bytes() != (c / VERSION / "sample.json").read_bytes()


def test_non_empty_out_is_refused_unless_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_dataset(_tiny(out), progress=False)
    assert main(["data", "make", "--out", str(out), "--scenes", "1", "--seconds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drivestack: error:") and "--overwrite" in err and len(err.splitlines()) == 1
    assert (out / "notes.txt").read_text() == "keep me"
    export_dataset(_tiny(out, overwrite=True), progress=False)
    assert not (out / "notes.txt").exists() and (out / VERSION / "scene.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # nothing left beside it


def test_failure_mid_write_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    def boom(*_args, **_kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(nuscenes_export._Writer, "_write", boom)  # the first sensor file fails to write
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_dataset(_tiny(tmp_path / "new"), progress=False)
    assert list(tmp_path.iterdir()) == []
    # Replacing an existing directory: the old contents survive a failed export.
    old = tmp_path / "old"
    old.mkdir()
    (old / "keep.txt").write_text("x")
    with pytest.raises(RuntimeError):
        export_dataset(_tiny(old, overwrite=True), progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["old"] and (old / "keep.txt").read_text() == "x"


def test_terminated_cli_export_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    cmd = [
        sys.executable,
        "-m",
        "drivestack.cli",
        "data",
        "make",
        "--out",
        str(out),
        "--scenes",
        "1",
        "--seconds",
        "60",
        "--width",
        "64",
        "--height",
        "36",
        "--lidar-azimuths",
        "64",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120.0
        while not list(tmp_path.glob(".ds.tmp-*/samples/CAM_FRONT/*.jpg")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # mid-write: some sensor files are on disk
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert list(tmp_path.iterdir()) == []


def test_invalid_options_raise_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="channels"):
        export_dataset(_tiny(tmp_path / "x", channels=("CAM_TOP",)), progress=False)
    with pytest.raises(ValueError, match="road_length"):
        export_dataset(_tiny(tmp_path / "x", road_length=220.0), progress=False)
    with pytest.raises(ValueError, match="version"):
        export_dataset(_tiny(tmp_path / "x", version="v1.0-mini"), progress=False)
    assert not (tmp_path / "x").exists()


def test_default_dataset_is_generated_once_then_reused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DRIVESTACK_CACHE", str(tmp_path))
    root = default_dataset(scenes=2, seconds=1.0, width=64, height=36, lidar_azimuths=64, progress=False)
    assert root.parent == tmp_path / "datasets" and (root / VERSION / "scene.json").is_file()

    def fail(*_args, **_kwargs):
        raise AssertionError("the cached dataset should have been reused")

    monkeypatch.setattr(nuscenes_export, "export_dataset", fail)
    assert default_dataset(scenes=2, seconds=1.0, width=64, height=36, lidar_azimuths=64, progress=False) == root
    with pytest.raises(AssertionError, match="reused"):  # another config is another dataset
        default_dataset(scenes=2, seconds=1.0, width=64, height=36, lidar_azimuths=64, seed=1, progress=False)
