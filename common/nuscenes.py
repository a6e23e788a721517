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
records, in time order (by the timestamp of their first sample; ties keep table order); samples likewise.

Submissions (detection and tracking results in and out) live in `drivestack.common.submission`.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

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
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the devkit prints a loading banner
            return NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    except json.JSONDecodeError as err:
        raise ValueError(f"table {_bad_table(dataroot / version)} is not valid JSON ({err})") from None
    except (KeyError, TypeError, IndexError) as err:
        raise ValueError(
            f"a table in {dataroot / version} is malformed: the devkit could not read field {err} "
            "(compare with the nuScenes schema)"
        ) from None


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


def split_scene_names(nusc: NuScenes, split: str) -> list[str]:
    """Scene names `split` lists (the module docstring gives the rule); ValueError for an unknown name."""
    if split == ALL_SPLIT:
        return [s["name"] for s in nusc.scene]
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
