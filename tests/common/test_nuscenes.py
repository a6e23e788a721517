"""nuScenes format access: version autodetect, layout errors, splits, time order, submissions in and out."""

from __future__ import annotations

import copy
import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
from nuscenes_fixture import make_tiny_nuscenes

from drivestack.common.nuscenes import (
    available_splits,
    devkit_split,
    find_version,
    open_nuscenes,
    scene_samples,
    scene_split,
    split_sample_tokens,
    split_scenes,
)
from drivestack.common.submission import drop_far_boxes, read_submission, validate_submission, write_submission


def _copy(src: Path, dst: Path, version: str = "v1.0-trainval") -> Path:
    """A copy of the dataset `src` with its version folder renamed to `version`."""
    shutil.copytree(src, dst)
    if version != "v1.0-trainval":
        (dst / "v1.0-trainval").rename(dst / version)
    return dst


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------------------------------------ opening


def test_version_folder_is_found_automatically(tiny_nuscenes: Path, tmp_path: Path) -> None:
    assert open_nuscenes(tiny_nuscenes).version == "v1.0-trainval"
    mini = _copy(tiny_nuscenes, tmp_path / "mini", "v1.0-mini")
    nusc = open_nuscenes(mini)
    assert nusc.version == "v1.0-mini" and [s["name"] for s in split_scenes(nusc, "tiny")] == ["scene-tiny-a"]
    custom = _copy(tiny_nuscenes, tmp_path / "custom", "v2.0-mine")  # any folder holding the tables
    assert find_version(custom) == "v2.0-mine"
    assert open_nuscenes(mini, "v1.0-mini").version == "v1.0-mini"  # an explicit version still works


def test_layout_errors_are_one_line_and_name_the_path(tiny_nuscenes: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"dataroot {tmp_path / 'missing'} does not exist") as err:
        open_nuscenes(tmp_path / "missing")
    assert "--dataroot" in _one_line(err)
    (tmp_path / "file").write_text("")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        open_nuscenes(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'empty'} has no version folder") as err:
        open_nuscenes(tmp_path / "empty")
    _one_line(err)

    both = _copy(tiny_nuscenes, tmp_path / "both")
    shutil.copytree(both / "v1.0-trainval", both / "v1.0-mini")
    with pytest.raises(ValueError, match=r"several version folders \['v1.0-mini', 'v1.0-trainval'\]; choose") as err:
        open_nuscenes(both)
    assert "--version" in _one_line(err)
    assert open_nuscenes(both, "v1.0-mini").version == "v1.0-mini"
    with pytest.raises(FileNotFoundError, match=f"version folder {both / 'v1.0-test'} does not exist"):
        open_nuscenes(both, "v1.0-test")

    root = _copy(tiny_nuscenes, tmp_path / "no-table")
    (root / "v1.0-trainval" / "instance.json").unlink()
    with pytest.raises(FileNotFoundError, match=f"table {root / 'v1.0-trainval' / 'instance.json'} is missing") as err:
        open_nuscenes(root)
    _one_line(err)

    root = _copy(tiny_nuscenes, tmp_path / "bad-json")
    (root / "v1.0-trainval" / "ego_pose.json").write_text('[{"token": ')
    with pytest.raises(ValueError, match=f"table {root / 'v1.0-trainval' / 'ego_pose.json'} is not valid JSON") as err:
        open_nuscenes(root)
    _one_line(err)


# ------------------------------------------------------------------------------------------------ splits


def test_splits_json_wins_over_the_official_list(tmp_path: Path) -> None:
    # scene-0003 and scene-0012 are both in the official val list
    names = ("scene-0003", "scene-0012")
    root = make_tiny_nuscenes(tmp_path / "ds", names, {"val": ["scene-0012"], "first": ["scene-0003"], "none": []})
    nusc = open_nuscenes(root)
    assert [s["name"] for s in split_scenes(nusc, "val")] == ["scene-0012"]  # splits.json's val, not the devkit's
    assert [s["name"] for s in split_scenes(nusc, "first")] == ["scene-0003"]
    assert [s["name"] for s in split_scenes(nusc, "all")] == list(names)
    assert available_splits(nusc) == ["first", "val", "all"]  # "none" holds no scene: not usable

    (root / "v1.0-trainval" / "splits.json").unlink()  # without splits.json the official list applies
    nusc = open_nuscenes(root)
    assert [s["name"] for s in split_scenes(nusc, "val")] == list(names)
    assert available_splits(nusc) == ["val", "all"]


def test_devkit_split_makes_the_devkit_see_our_split(tmp_path: Path) -> None:
    # splits.json redefines the official val: inside the block the devkit's lookups answer with our scenes
    from nuscenes.eval.common import loaders
    from nuscenes.utils import splits as devkit_splits

    names = ("scene-0003", "scene-0012")  # both in the official val list
    root = make_tiny_nuscenes(tmp_path / "ds", names, {"val": ["scene-0012"], "first": ["scene-0003"]})
    nusc = open_nuscenes(root)
    official = devkit_splits.create_splits_scenes()
    with devkit_split(nusc, "val") as scenes:
        assert scenes == ["scene-0012"]
        assert loaders.create_splits_scenes()["val"] == ["scene-0012"]
        assert devkit_splits.get_scenes_of_split("val", nusc) == ["scene-0012"]
        assert loaders.create_splits_scenes()["train"] == official["train"]  # other names unchanged
    with devkit_split(nusc, "all"):  # not a devkit split at all: served through its custom-split path
        assert devkit_splits.get_scenes_of_split("all", nusc) == list(names)
        assert devkit_splits.get_scenes_of_split("first", nusc) == ["scene-0003"]
    assert loaders.create_splits_scenes()["val"] == official["val"]  # restored
    assert devkit_splits.get_scenes_of_split("val", nusc) == official["val"]
    with pytest.raises(ValueError, match="unknown split 'nosuch'"):
        with devkit_split(nusc, "nosuch"):
            pass


def test_split_errors_list_the_valid_splits(tmp_path: Path) -> None:
    root = make_tiny_nuscenes(tmp_path / "ds", splits={"tiny": ["scene-tiny-a"], "empty": []})
    nusc = open_nuscenes(root)
    with pytest.raises(ValueError, match="unknown split 'nope' .*; available: tiny, all") as err:
        split_scenes(nusc, "nope")
    _one_line(err)
    with pytest.raises(ValueError, match="split 'empty' has no scene .*; available: tiny, all") as err:
        split_scenes(nusc, "empty")
    _one_line(err)
    with pytest.raises(ValueError, match="split 'mini_val' has no scene"):  # official, none of its scenes here
        split_sample_tokens(nusc, "mini_val")

    path = root / "v1.0-trainval" / "splits.json"
    path.write_text(json.dumps({"tiny": "scene-tiny-a"}))
    with pytest.raises(ValueError, match=f"{path}: split 'tiny' must be a list of scene names") as err:
        split_scenes(nusc, "tiny")
    _one_line(err)
    path.write_text(json.dumps(["scene-tiny-a"]))
    with pytest.raises(ValueError, match=f"{path} must be a JSON object"):
        split_scenes(nusc, "tiny")


# ------------------------------------------------------------------------------------------------ time order


def _rewrite(path: Path, change: Any) -> None:
    rows = json.loads(path.read_text())
    path.write_text(json.dumps(change(rows)))


def test_scenes_and_samples_come_in_time_order(tiny_nuscenes: Path, tmp_path: Path) -> None:
    root = _copy(tiny_nuscenes, tmp_path / "shuffled")
    tables = root / "v1.0-trainval"
    _rewrite(tables / "scene.json", lambda rows: rows[::-1])  # scene b first in the table
    _rewrite(tables / "sample.json", lambda rows: rows[::-1])
    nusc = open_nuscenes(root)
    scenes = split_scenes(nusc, "all")
    assert [s["name"] for s in scenes] == ["scene-tiny-a", "scene-tiny-b"]
    samples = scene_samples(nusc, scenes[0])
    assert [s["token"] for s in samples] == [f"scene-0-s{k}" for k in range(8)]
    stamps = [nusc.get("sample", t)["timestamp"] for t in split_sample_tokens(nusc, "all")]
    assert stamps == sorted(stamps) and len(stamps) == 16

    def _drop_timestamp(rows: list[dict]) -> list[dict]:
        del rows[3]["timestamp"]
        return rows

    root = _copy(tiny_nuscenes, tmp_path / "no-timestamp")
    _rewrite(root / "v1.0-trainval" / "sample.json", _drop_timestamp)
    # caught on opening, naming the file and the record
    message = r"sample\.json is malformed: record 3 \(token 'scene-0-s3'\) lacks field 'timestamp'"
    with pytest.raises(ValueError, match=message) as err:
        split_sample_tokens(open_nuscenes(root), "tiny")
    _one_line(err)

    def _backwards(rows: list[dict]) -> list[dict]:
        rows[1]["timestamp"], rows[2]["timestamp"] = rows[2]["timestamp"], rows[1]["timestamp"]
        return rows

    root = _copy(tiny_nuscenes, tmp_path / "backwards")
    _rewrite(root / "v1.0-trainval" / "sample.json", _backwards)
    with pytest.raises(ValueError, match="sample table of .*scene-tiny-a's next chain is not in time order"):
        split_sample_tokens(open_nuscenes(root), "tiny")


# ------------------------------------------------------------------------------------------------ submissions


def _box(token: str, task: str, i: int) -> dict[str, Any]:
    box: dict[str, Any] = {
        "sample_token": token,
        "translation": [10.0 + i, -2.0, 1.0],
        "size": [1.9, 4.5, 1.6],
        "rotation": [math.cos(0.2), 0.0, 0.0, math.sin(0.2)],
        "velocity": [math.nan, math.nan] if i == 0 else [3.0, -1.0],  # NaN: unknown
    }
    if task == "detection":
        box.update(detection_name="car", detection_score=0.9 - 0.1 * i, attribute_name="")
    else:
        box.update(tracking_name="pedestrian", tracking_score=0.5, tracking_id=str(i))
    return box


def _submission(tokens: list[str], task: str) -> dict[str, Any]:
    results = {t: [_box(t, task, i) for i in range(k % 3)] for k, t in enumerate(tokens)}
    return {"meta": {"use_camera": False, "use_lidar": True}, "results": results}


@pytest.fixture(scope="module")
def tiny_tokens(tiny_nuscenes: Path) -> list[str]:
    return split_sample_tokens(open_nuscenes(tiny_nuscenes), "tiny")


@pytest.mark.parametrize("task", ["detection", "tracking"])
def test_submission_round_trip_is_strict_and_atomic(task: str, tiny_tokens: list[str], tmp_path: Path) -> None:
    sub = _submission(tiny_tokens, task)
    path = write_submission(tmp_path / "out" / "sub.json", sub, task, sample_tokens=tiny_tokens)
    text = path.read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a strict JSON file"))  # NaN written as null
    assert [p.name for p in path.parent.iterdir()] == ["sub.json"]  # no temporary file left
    back = read_submission(path, task, sample_tokens=tiny_tokens)
    assert back["meta"] == sub["meta"] and list(back["results"]) == tiny_tokens
    for token in tiny_tokens:
        for got, want in zip(back["results"][token], sub["results"][token], strict=True):
            assert got["translation"] == want["translation"] and got["rotation"] == want["rotation"]
            assert got["velocity"] == pytest.approx(want["velocity"], nan_ok=True)
    # a refused write leaves the file as it was
    bad = copy.deepcopy(sub)
    bad["results"][tiny_tokens[1]][0]["size"] = [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="field 'size'"):
        write_submission(path, bad, task)
    assert path.read_text() == text


DETECTION_ERRORS = [
    ("translation", lambda b: b.update(translation=[1.0, math.nan, 0.0]), "'translation' must be 3 finite"),
    ("translation", lambda b: b.update(translation=[1.0, 2.0]), "'translation' must be 3 finite"),
    ("size", lambda b: b.update(size=[1.0, -4.0, 1.5]), "'size' must be > 0"),
    ("size", lambda b: b.update(size=[1.0, math.inf, 1.5]), "'size' must be 3 finite"),
    ("rotation", lambda b: b.update(rotation=[0.0, 0.0, 0.0, 0.0]), "'rotation' is a zero quaternion"),
    ("rotation", lambda b: b.update(rotation=[1.0, 0.0, 0.0]), "'rotation' must be 4 finite"),
    ("velocity", lambda b: b.update(velocity=[1.0, math.inf]), "'velocity' must be 2 finite"),
    ("velocity", lambda b: b.update(velocity=[1.0, math.nan]), "'velocity' must be 2 finite"),
    ("velocity", lambda b: b.update(velocity=[1.0]), "'velocity' must be 2 finite"),
    ("detection_name", lambda b: b.update(detection_name="spaceship"), "'detection_name' is 'spaceship', not one"),
    ("detection_score", lambda b: b.update(detection_score=math.nan), "'detection_score' must be a finite"),
    ("detection_score", lambda b: b.pop("detection_score"), "lacks field 'detection_score'"),
    ("sample_token", lambda b: b.update(sample_token="elsewhere"), "'sample_token' is 'elsewhere'"),
]
TRACKING_ERRORS = [
    ("tracking_name", lambda b: b.update(tracking_name="barrier"), "'tracking_name' is 'barrier', not one"),
    ("tracking_score", lambda b: b.update(tracking_score="high"), "'tracking_score' must be a finite"),
    ("tracking_id", lambda b: b.update(tracking_id=1.5), "'tracking_id' must be a string or an integer"),
    ("tracking_id", lambda b: b.pop("tracking_id"), "lacks field 'tracking_id'"),
    ("translation", lambda b: b.update(translation=[math.inf, 0.0, 0.0]), "'translation' must be 3 finite"),
]


@pytest.mark.parametrize(
    ("task", "field", "change", "message"),
    [("detection", *e) for e in DETECTION_ERRORS] + [("tracking", *e) for e in TRACKING_ERRORS],
)
def test_each_box_error_names_the_sample_and_the_field(
    task: str, field: str, change: Any, message: str, tiny_tokens: list[str], tmp_path: Path
) -> None:
    sub = _submission(tiny_tokens, task)
    token = tiny_tokens[2]  # the third sample has two boxes: spoil the second
    change(sub["results"][token][1])
    path = tmp_path / "sub.json"
    path.write_text(json.dumps(sub))  # non-strict on purpose: what another tool might write
    with pytest.raises(ValueError, match=f"{path}: sample {token}: box 1") as err:
        read_submission(path, task, sample_tokens=tiny_tokens)
    assert field in _one_line(err) and message in str(err.value)


def test_submission_level_errors(tiny_tokens: list[str], tiny_nuscenes: Path, tmp_path: Path) -> None:
    sub = _submission(tiny_tokens, "detection")
    foreign = split_sample_tokens(open_nuscenes(tiny_nuscenes), "other")[0]
    for data, message in (
        ({**sub, "results": {**sub["results"], foreign: []}}, f"sample {foreign} is not in the split"),
        ({**sub, "results": {}}, "'results' is empty"),
        ({**sub, "results": {tiny_tokens[0]: {"translation": [0, 0, 0]}}}, f"sample {tiny_tokens[0]}: results value"),
        ({**sub, "results": [1, 2]}, "'results' must map sample tokens to lists of boxes"),
        ({"results": sub["results"]}, "not a nuScenes detection submission"),
        ({**sub, "meta": []}, "'meta' must be an object"),
    ):
        with pytest.raises(ValueError, match=message) as err:
            validate_submission(data, "detection", "sub.json", sample_tokens=tiny_tokens)
        assert str(err.value).startswith("sub.json: ") and "\n" not in str(err.value)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json: not a nuScenes tracking submission: invalid JSON"):
        read_submission(tmp_path / "broken.json", "tracking")
    with pytest.raises(FileNotFoundError, match="absent.json: no such detection submission"):
        read_submission(tmp_path / "absent.json", "detection")
    with pytest.raises(ValueError, match="submission task 'segmentation' is unknown"):
        validate_submission(sub, "segmentation")


def test_samples_the_dataset_lacks_are_left_out_with_one_warning(tiny_tokens: list[str], tiny_nuscenes: Path) -> None:
    """A submission for a larger dataset (the whole val set) scores on an extract of it; another split's sample
    of this dataset stays an error, as does a submission with no sample of the split."""
    nusc = open_nuscenes(tiny_nuscenes)
    every = [s["token"] for s in nusc.sample]
    sub = _submission(tiny_tokens, "detection")
    larger = {**sub, "results": {"f" * 32: [{"broken": 1}], **sub["results"], "e" * 32: []}}
    with pytest.warns(UserWarning, match="left out the results of 2 of its") as caught:
        out = validate_submission(larger, "detection", "sub.json", sample_tokens=tiny_tokens, dataset_tokens=every)
    assert len(caught) == 1 and list(out["results"]) == list(sub["results"])
    assert out == validate_submission(sub, "detection", "sub.json", sample_tokens=tiny_tokens)
    foreign = split_sample_tokens(nusc, "other")[0]
    with pytest.raises(ValueError, match=f"sample {foreign} is not in the split"):
        validate_submission(
            {**larger, "results": {**larger["results"], foreign: []}},
            "detection",
            "sub.json",
            sample_tokens=tiny_tokens,
            dataset_tokens=every,
        )
    with pytest.raises(ValueError, match="sub.json: none of its 2 samples is in the split"):
        validate_submission(
            {**sub, "results": {"f" * 32: [], foreign: []}},
            "detection",
            "sub.json",
            sample_tokens=tiny_tokens,
            dataset_tokens=every,
        )


def test_far_boxes_are_dropped_with_one_warning(tiny_tokens: list[str]) -> None:
    sub = validate_submission(_submission(tiny_tokens, "detection"), "detection")
    ego = {t: (100.0, 0.0) for t in tiny_tokens}
    far = copy.deepcopy(sub)
    for token in tiny_tokens[1:3]:
        for x in (1e10, 1e150):
            far["results"][token].append({**far["results"][token][0], "translation": [x, x, 0.5]})
    with pytest.warns(UserWarning) as record:
        out = drop_far_boxes(far, ego, "sub.json")
    assert len(record) == 1  # one line per file, not one per box
    message = str(record[0].message)
    assert "sub.json: dropped 4 box(es) more than 500 m from the ego" in message and tiny_tokens[1] in message
    assert out["results"] == sub["results"]  # exactly the near boxes are left
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert drop_far_boxes(sub, ego)["results"] == sub["results"]  # nothing far: no warning, nothing dropped


# ------------------------------------------------------------------------------------------------ real scene


def test_real_scene_and_its_centerpoint_detections(real_root: Path) -> None:
    nusc = open_nuscenes(real_root)
    assert nusc.version == "v1.0-trainval" and "val" in available_splits(nusc)
    (scene,) = split_scenes(nusc, "val")
    samples = scene_samples(nusc, scene)
    assert len(samples) == 40 and all(a["timestamp"] < b["timestamp"] for a, b in zip(samples, samples[1:]))
    sub = read_submission(
        real_root / "detections" / "centerpoint-lidar.json", "detection", sample_tokens=[s["token"] for s in samples]
    )
    boxes = [b for bs in sub["results"].values() for b in bs]
    assert len(sub["results"]) == 40 and len(boxes) == 5545
    assert all(math.isnan(v) for b in boxes for v in b["velocity"])  # the export holds no velocities


def test_scene_split_names_exactly_the_scenes(tiny_root: Path) -> None:
    nusc = open_nuscenes(tiny_root)
    names = sorted(s["name"] for s in nusc.scene)
    with scene_split(nusc, names) as split:
        assert split == "all"  # an existing split holding exactly them
    with scene_split(nusc, names[:1]) as split:
        assert [s["name"] for s in split_scenes(nusc, split)] == names[:1]
    with pytest.raises(ValueError, match="unknown split"):
        split_scenes(nusc, split)  # gone after the block
    with pytest.raises(ValueError, match="'scene-nope' is not in"), scene_split(nusc, ["scene-nope"]):
        pass
