"""nuScenes format access: open a dataroot, resolve splits, walk scenes and samples in time order.

The one reader of nuScenes-format datasets (the real nuScenes, or the synthetic one `drivestack data make`
writes) for perception, tracking and the benchmarks. `open_nuscenes` finds the version folder by itself
(v1.0-trainval, v1.0-mini, v1.0-test or any folder holding the tables) and checks the layout before
nuscenes-devkit sees it, so a wrong path, a missing or malformed table is one clear error naming the file.

Splits. A split name resolves, in this order:
  1. "all": every scene of the dataset;
  2. a split of `<dataroot>/<version>/splits.json` (a JSON object: split name -> list of scene names; the
     simulator writes one): it wins over the devkit's list of the same name;
  3. an official nuScenes split (`nuscenes.utils.splits.create_splits_scenes`: train, val, mini_val, ...).
A split is usable only when some of its scenes are in the dataset. Scenes come back as the devkit's scene
records, in time order (by the timestamp of their first sample; ties keep table order); samples likewise. The
devkit's own evaluators look split names up in their hard-coded list: `devkit_split` makes them score exactly the
scenes of the rule above.

Every table is checked on opening (`check_table`: the fields the devkit and drivestack read, numbers where numbers
belong), so a malformed table is one error naming the file, the record and the field, not a KeyError later.

Submissions (detection and tracking results in and out) live in `drivestack.common.submission`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.splits import create_splits_scenes

TABLES = (
    "attribute",
    "calibrated_sensor",
    "category",
    "ego_pose",
    "instance",
    "log",
    "map",
    "sample",
    "sample_annotation",
    "sample_data",
    "scene",
    "sensor",
    "visibility",
)
SPLITS_FILE = "splits.json"  # custom splits of a dataset, in its version folder
ALL_SPLIT = "all"  # every scene of the dataset

Record = dict[str, Any]


def find_version(dataroot: Path | str, version: str | None = None) -> str:
    """The version folder name of `dataroot` (e.g. v1.0-mini).

    Args:
        dataroot: dataset folder holding `<version>/` with the tables.
        version: an explicit folder name to check; None finds the only folder holding sample.json.
    Returns:
        The folder name. FileNotFoundError for a missing dataroot, version folder or none found; ValueError
        when several are found and `version` is None.
    """
    dataroot = Path(dataroot)
    if not dataroot.is_dir():
        what = "does not exist" if not dataroot.exists() else "is not a directory"
        raise FileNotFoundError(
            f"dataroot {dataroot} {what}; point --dataroot at a nuScenes-format dataset "
            "(the folder holding v1.0-trainval/ or v1.0-mini/; make one with `drivestack data make`)"
        )
    if version is not None:
        if not (dataroot / version).is_dir():
            folders = sorted(p.name for p in dataroot.iterdir() if p.is_dir())
            raise FileNotFoundError(
                f"version folder {dataroot / version} does not exist; folders there: {folders} "
                "(leave --version out to find it automatically)"
            )
        return version
    found = sorted(p.name for p in dataroot.iterdir() if (p / "sample.json").is_file())
    if not found:
        raise FileNotFoundError(
            f"{dataroot} has no version folder (one holding sample.json, e.g. v1.0-trainval or v1.0-mini); "
            "point --dataroot at the folder above it"
        )
    if len(found) > 1:
        raise ValueError(f"{dataroot} has several version folders {found}; choose one with --version")
    return found[0]


def open_nuscenes(dataroot: Path | str, version: str | None = None) -> NuScenes:
    """Load a nuScenes-format dataset with the devkit, quietly, after checking its layout.

    Args:
        dataroot: dataset folder holding `<version>/` with the 13 tables.
        version: version folder name; None finds it (see `find_version`).
    Returns:
        The devkit's NuScenes. FileNotFoundError naming a missing folder or table; ValueError naming a table
        that is not valid JSON or lacks a field.
    """
    dataroot = Path(dataroot)
    version = find_version(dataroot, version)
    for table in TABLES:
        path = dataroot / version / f"{table}.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"table {path} is missing; a nuScenes version folder holds {', '.join(t + '.json' for t in TABLES)}"
            )
    folder = dataroot / version
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the devkit prints a loading banner
            nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    except json.JSONDecodeError as err:
        raise ValueError(f"table {_bad_table(folder)} is not valid JSON ({err})") from None
    except (KeyError, TypeError, IndexError, AttributeError) as err:
        for table in TABLES:  # only on the error path: name the table (and record) the devkit tripped on
            check_table(folder / f"{table}.json", json.loads((folder / f"{table}.json").read_text()))
        raise ValueError(
            f"a table in {folder} is malformed: the devkit could not read field {err} "
            "(compare with the nuScenes schema)"
        ) from None
    for table in TABLES:  # what loads may still lack a field or hold a string for a number: name the file now
        check_table(folder / f"{table}.json", getattr(nusc, table))
    return nusc


# the fields of each table that the devkit's loader and drivestack read (records may hold more), and the checked
# types of some: fixed-length vectors of finite numbers, and integers
TABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "attribute": ("token", "name"),
    "calibrated_sensor": ("token", "sensor_token", "translation", "rotation", "camera_intrinsic"),
    "category": ("token", "name"),
    "ego_pose": ("token", "timestamp", "translation", "rotation"),
    "instance": ("token", "category_token", "first_annotation_token", "last_annotation_token"),
    "log": ("token",),
    "map": ("token", "log_tokens"),
    "sample": ("token", "timestamp", "scene_token", "prev", "next"),
    "sample_annotation": (
        *("token", "sample_token", "instance_token", "translation", "size", "rotation"),
        *("num_lidar_pts", "num_radar_pts", "attribute_tokens", "visibility_token", "prev", "next"),
    ),
    "sample_data": (
        *("token", "sample_token", "ego_pose_token", "calibrated_sensor_token", "timestamp", "is_key_frame"),
        *("filename", "prev", "next"),
    ),
    "scene": ("token", "log_token", "first_sample_token", "last_sample_token", "name"),
    "sensor": ("token", "channel", "modality"),
    "visibility": ("token", "level"),
}
VECTOR_FIELDS = {"translation": 3, "size": 3, "rotation": 4}  # [m], [m] (w, l, h), quaternion (w, x, y, z)
INTEGER_FIELDS = ("timestamp", "num_lidar_pts", "num_radar_pts")  # timestamps in microseconds


def check_table(path: Path, records: Any) -> None:
    """Check one nuScenes table: a list of objects holding `TABLE_FIELDS[table]` (vectors of finite numbers,
    integers where `VECTOR_FIELDS` / `INTEGER_FIELDS` say so).

    Args:
        path: the table file `<version>/<table>.json` (its stem is the table name); named in the error.
        records: its parsed content.
    Raises:
        ValueError naming the file, the record (index and token) and the field.
    """
    if not isinstance(records, list):
        raise ValueError(f"table {path} is malformed: not a JSON list of records but a {type(records).__name__}")
    fields = TABLE_FIELDS.get(path.stem, ("token",))
    required = frozenset(fields)
    for i, record in enumerate(records):  # the fast check: ~0.4 s per million records
        if not isinstance(record, dict) or not required <= record.keys():
            _record_error(path, i, record, fields)
    for field in fields:  # numbers: one array per field (fast); the record is searched only when one is wrong
        if field in VECTOR_FIELDS or field in INTEGER_FIELDS:
            shape = (len(records), VECTOR_FIELDS[field]) if field in VECTOR_FIELDS else (len(records),)
            try:
                values = np.array([r[field] for r in records]).reshape(shape)
                ok = values.dtype.kind in ("iu" if field in INTEGER_FIELDS else "iuf") and np.isfinite(values).all()
            except (ValueError, TypeError):  # ragged or wrong length
                ok = False
            bad = None if ok else next((i for i, r in enumerate(records) if not _value_ok(r[field], field)), None)
            if bad is not None:  # (None: numpy merely disliked a mix it cannot hold, e.g. an integer past int64)
                _record_error(path, bad, records[bad], fields, field)


def _value_ok(value: Any, field: str) -> bool:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if field in INTEGER_FIELDS:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, list) and len(value) == VECTOR_FIELDS[field] and all(number(v) for v in value)


def _record_error(path: Path, index: int, record: Any, fields: tuple[str, ...], field: str = "") -> None:
    if not isinstance(record, dict):
        raise ValueError(f"table {path} is malformed: record {index} is a {type(record).__name__}, not an object")
    where = f"table {path} is malformed: record {index} (token {record.get('token', '?')!r})"
    if not field:
        missing = [f for f in fields if f not in record]
        raise ValueError(f"{where} lacks field {missing[0]!r} (each {path.stem} record holds {', '.join(fields)})")
    what = "an integer" if field in INTEGER_FIELDS else f"{VECTOR_FIELDS[field]} finite numbers"
    raise ValueError(f"{where}: field {field!r} must be {what}, got {record[field]!r:.80}")


def _bad_table(folder: Path) -> Path:
    for table in TABLES:  # only on the error path: find which table failed to parse
        try:
            json.loads((folder / f"{table}.json").read_text())
        except json.JSONDecodeError:
            return folder / f"{table}.json"
    return folder


def custom_splits(nusc: NuScenes) -> dict[str, list[str]]:
    """The splits of `<dataroot>/<version>/splits.json` (split name -> scene names); {} without the file.

    ValueError naming the file when it is not a JSON object, and the key when a value is not a list of names.
    """
    path = Path(nusc.dataroot) / nusc.version / SPLITS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must be a JSON object mapping split names to lists of scene names")
    for key, value in data.items():
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{path}: split {key!r} must be a list of scene names, got {type(value).__name__}")
    return data


def available_splits(nusc: NuScenes) -> list[str]:
    """Split names usable on `nusc` (sorted): its custom splits and the official ones holding some of its
    scenes, then "all"."""
    scenes = {s["name"] for s in nusc.scene}
    custom = custom_splits(nusc)
    names = {name for name, members in custom.items() if scenes & set(members)}
    names |= {n for n, members in create_splits_scenes().items() if n not in custom and scenes & set(members)}
    return sorted(names) + [ALL_SPLIT]


_TEMPORARY_SPLITS: dict[str, list[str]] = {}  # split name -> scene names, while a `scene_split` block runs


def split_scene_names(nusc: NuScenes, split: str) -> list[str]:
    """Scene names `split` lists (the module docstring gives the rule); ValueError for an unknown name."""
    if split == ALL_SPLIT:
        return [s["name"] for s in nusc.scene]
    if split in _TEMPORARY_SPLITS:
        return list(_TEMPORARY_SPLITS[split])
    custom = custom_splits(nusc)
    if split in custom:
        return list(custom[split])
    official = create_splits_scenes()
    if split in official:
        return list(official[split])
    raise ValueError(f"unknown split {split!r} for {nusc.dataroot}; available: {', '.join(available_splits(nusc))}")


def split_scenes(nusc: NuScenes, split: str) -> list[Record]:
    """The scene records of `split` present in the dataset, in time order.

    Args:
        nusc: an opened dataset.
        split: "all", a name in splits.json, or an official nuScenes split (in that order of precedence).
    Returns:
        Scene records (devkit dicts) sorted by their first sample's timestamp. ValueError listing the
        available splits when the name is unknown or none of its scenes is in the dataset.
    """
    wanted = set(split_scene_names(nusc, split))
    scenes = [s for s in nusc.scene if s["name"] in wanted]
    if not scenes:
        raise ValueError(
            f"split {split!r} has no scene in {nusc.dataroot}; available: {', '.join(available_splits(nusc))}"
        )
    return sorted(scenes, key=lambda s: _timestamp(nusc.get("sample", s["first_sample_token"])))


@contextlib.contextmanager
def scene_split(nusc: NuScenes, scene_names: list[str]) -> Iterator[str]:
    """A split name that holds exactly `scene_names` of the dataset, for code that takes a split (`split_scenes`,
    `devkit_split`, the evaluators): an existing split when one holds exactly them ("all", splits.json, official),
    else a temporary name this module answers inside the block. Not thread-safe (a module-level table).

    Args:
        nusc: the opened dataset.
        scene_names: names of scenes in it (ValueError naming one that is not).
    Yields:
        The split name.
    """
    present = {s["name"] for s in nusc.scene}
    wanted = set(scene_names)
    missing = sorted(wanted - present)
    if missing:
        raise ValueError(f"scene {missing[0]!r} is not in {nusc.dataroot}; scenes there: {', '.join(sorted(present))}")
    for name in available_splits(nusc):
        if set(split_scene_names(nusc, name)) & present == wanted:
            yield name
            return
    name = "scenes-" + hashlib.sha1(",".join(sorted(wanted)).encode()).hexdigest()[:8]
    _TEMPORARY_SPLITS[name] = sorted(wanted)
    try:
        yield name
    finally:
        _TEMPORARY_SPLITS.pop(name, None)


# where nuscenes-devkit looks split names up: the modules that hold (a copy of) these functions in their namespace
# (1.1: common.loaders and tracking.loaders import create_splits_scenes; 1.2 also reads splits.json through
# get_scenes_of_custom_split, and tracking.loaders goes through utils.splits.get_scenes_of_split)
_DEVKIT_SPLIT_MODULES = (
    "nuscenes.utils.splits",
    "nuscenes.eval.common.loaders",
    "nuscenes.eval.tracking.loaders",
    "nuscenes.eval.detection.evaluate",
    "nuscenes.eval.tracking.evaluate",
)


@contextlib.contextmanager
def devkit_split(nusc: NuScenes, split: str) -> Iterator[list[str]]:
    """Make nuscenes-devkit's evaluators (DetectionEval, TrackingEval) see `split` as this module resolves it.

    The devkit looks an official name (train, val, ...) up in its own hard-coded list, so where splits.json
    redefines `val` it would score other scenes than ours. Inside the block, the devkit's split lookups
    (`create_splits_scenes`, and `get_scenes_of_custom_split` for other names, "all" included) return exactly
    `split_scene_names(nusc, split)` for `split`, and their usual answer for every other name. Not thread-safe:
    it swaps module attributes of the devkit for the duration of the block.

    Args:
        nusc: the opened dataset (its splits.json is read).
        split: a split name (see the module docstring); ValueError when unknown.
    Yields:
        The scene names of the split.
    """
    import importlib

    from nuscenes.utils import splits as devkit_splits

    names = split_scene_names(nusc, split)
    official = devkit_splits.create_splits_scenes
    custom = getattr(devkit_splits, "get_scenes_of_custom_split", None)  # devkit >= 1.2
    active = True  # a devkit module first imported inside the block keeps the swapped function: after the block
    # it must answer as the original

    def create_splits_scenes_ours(verbose: bool = False) -> dict[str, list[str]]:
        scenes = official(verbose=verbose)
        if active and split in scenes:  # an official name stays official (the devkit's version checks)
            scenes[split] = list(names)
        return scenes

    def get_scenes_of_custom_split_ours(split_name: str, nusc: NuScenes) -> list[str]:
        if active and split_name == split:
            return list(names)
        return custom(split_name=split_name, nusc=nusc)

    swaps = [(official, create_splits_scenes_ours)] + ([(custom, get_scenes_of_custom_split_ours)] if custom else [])
    patched = []  # (module, attribute, original)
    try:
        for module_name in _DEVKIT_SPLIT_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:  # another devkit version: no such module there
                continue
            for attr, value in list(vars(module).items()):
                for original, ours in swaps:
                    if value is original:
                        patched.append((module, attr, value))
                        setattr(module, attr, ours)
        yield names
    finally:
        active = False
        for module, attr, value in reversed(patched):
            setattr(module, attr, value)


def scene_samples(nusc: NuScenes, scene: Record) -> list[Record]:
    """The keyframe (sample) records of a scene in time order (its first_sample_token / next chain).

    ValueError naming the table when a sample lacks its timestamp or the chain runs backwards in time or loops.
    """
    out, token = [], scene["first_sample_token"]
    while token:
        sample = nusc.get("sample", token)
        out.append(sample)
        if len(out) > len(nusc.sample):
            raise ValueError(f"sample table of {nusc.dataroot}: the next chain of scene {scene['name']} loops")
        token = sample["next"]
    stamps = [_timestamp(s) for s in out]
    if any(b < a for a, b in zip(stamps, stamps[1:])):
        raise ValueError(
            f"sample table of {nusc.dataroot}: scene {scene['name']}'s next chain is not in time order "
            "(timestamps decrease); fix the prev / next links"
        )
    return out


def sample_ego_pose(nusc: NuScenes, sample: Record) -> Record:
    """The ego_pose record of a keyframe: that of its LIDAR_TOP sample_data (the devkit's reference for the
    ego distance of a box), or of its first channel when it has no lidar (camera-only synthetic data)."""
    channel = "LIDAR_TOP" if "LIDAR_TOP" in sample["data"] else next(iter(sample["data"]))
    return nusc.get("ego_pose", nusc.get("sample_data", sample["data"][channel])["ego_pose_token"])


def split_sample_tokens(nusc: NuScenes, split: str) -> list[str]:
    """Keyframe sample tokens of `split`, scene by scene (scenes and samples in time order)."""
    return [s["token"] for scene in split_scenes(nusc, split) for s in scene_samples(nusc, scene)]


def sample_time(sample: Record) -> float:
    """A sample record's timestamp in seconds (the table holds microseconds)."""
    return _timestamp(sample) * 1e-6


def _timestamp(record: Record, table: str = "sample") -> int:
    if "timestamp" not in record:
        raise ValueError(f"{table} table: record {record.get('token', '?')} has no 'timestamp' (microseconds)")
    return record["timestamp"]
