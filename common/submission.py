"""nuScenes detection and tracking submissions: read, validate, write (strict JSON, atomic).

A submission is a JSON object {"meta": {...}, "results": {sample_token: [box, ...]}}, boxes in the global
frame. Each box holds translation (3 finite [m]), size (3 finite > 0 [m], w l h), rotation (4 finite, non-zero
norm, w x y z), optionally velocity (2 values [m/s]: finite, or both NaN / null for unknown, as the devkit's
own ground truth and the real CenterPoint detections write it), and per task:
  detection: detection_name (a nuScenes detection class), detection_score (finite);
  tracking:  tracking_name (a nuScenes tracking class), tracking_score (finite), tracking_id (str or int).
Every error is one ValueError line naming the file, the sample token, the box index and the field.

Read against a dataset, a box farther than MAX_BOX_RANGE from the ego is a fault of the file, not a detection:
`drop_far_boxes` removes such boxes with one warning per file (the count and the first sample holding one).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nuscenes.eval.detection.constants import DETECTION_NAMES as _DETECTION_NAMES

from drivestack.common.artifacts import to_jsonable, write_json

TASKS = ("detection", "tracking")
DETECTION_NAMES: tuple[str, ...] = tuple(_DETECTION_NAMES)
# the devkit's tracking classes (tracking_nips_2019 tracking_names; the devkit has no constant for them)
TRACKING_NAMES: tuple[str, ...] = ("bicycle", "bus", "car", "motorcycle", "pedestrian", "trailer", "truck")

Submission = dict[str, Any]
# [m] ground-plane distance from the ego beyond which a box is dropped as a fault: 10 x the devkit's largest class
# range (50 m), far beyond what any sensor of the rig sees. One such box (a stray 1e10 m) used to wreck a scene.
MAX_BOX_RANGE = 500.0


def _fields(task: str) -> tuple[str, str]:
    if task not in TASKS:
        raise ValueError(f"submission task {task!r} is unknown; use one of {', '.join(TASKS)}")
    return f"{task}_name", f"{task}_score"


def _numbers(value: Any, count: int) -> list[float] | None:
    """`value` as `count` floats (None / NaN kept as NaN), or None when it is not such a list."""
    if not isinstance(value, (list, tuple)) or len(value) != count:
        return None
    out = []
    for v in value:
        if v is None:
            out.append(math.nan)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            return None
    return out


def _check_box(box: Any, task: str, names: Collection[str], where: str) -> dict[str, Any]:
    """One validated box (velocity None -> NaN); ValueError naming `where` and the field."""
    if not isinstance(box, dict):
        raise ValueError(f"{where} is a {type(box).__name__}, not a box object")
    name_key, score_key = _fields(task)
    required = ["translation", "size", "rotation", name_key, score_key] + (
        ["tracking_id"] if task == "tracking" else []
    )
    missing = [k for k in required if k not in box]
    if missing:
        raise ValueError(f"{where} lacks field {missing[0]!r} (a {task} box needs {', '.join(required)})")
    out = dict(box)
    for key, count in (("translation", 3), ("size", 3), ("rotation", 4)):
        values = _numbers(box[key], count)
        if values is None or not all(math.isfinite(v) for v in values):
            raise ValueError(f"{where}: field {key!r} must be {count} finite numbers, got {box[key]!r}")
        out[key] = values
    if min(out["size"]) <= 0:
        raise ValueError(f"{where}: field 'size' must be > 0 [m] (w, l, h), got {box['size']!r}")
    if math.fsum(v * v for v in out["rotation"]) == 0.0:
        raise ValueError(f"{where}: field 'rotation' is a zero quaternion; give (w, x, y, z) of unit norm")
    if "velocity" in box:
        values = _numbers(box["velocity"], 2)
        unknown = values is not None and all(math.isnan(v) for v in values)
        if values is None or not (unknown or all(math.isfinite(v) for v in values)):
            raise ValueError(f"{where}: field 'velocity' must be 2 finite numbers (or both NaN / null for unknown)")
        out["velocity"] = values
    if box[name_key] not in names:
        raise ValueError(f"{where}: field {name_key!r} is {box[name_key]!r}, not one of {', '.join(sorted(names))}")
    score = box[score_key]
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
        raise ValueError(f"{where}: field {score_key!r} must be a finite number, got {score!r}")
    out[score_key] = float(score)
    if task == "tracking" and (not isinstance(box["tracking_id"], (str, int)) or isinstance(box["tracking_id"], bool)):
        raise ValueError(f"{where}: field 'tracking_id' must be a string or an integer, got {box['tracking_id']!r}")
    return out


def validate_submission(
    data: Any,
    task: str,
    source: str | Path = "submission",
    sample_tokens: Iterable[str] | None = None,
    class_names: Collection[str] | None = None,
    dataset_tokens: Iterable[str] | None = None,
) -> Submission:
    """A validated copy of a submission (velocity null -> NaN, numbers as floats).

    Args:
        data: the parsed JSON object.
        task: "detection" or "tracking".
        source: file or label named in errors.
        sample_tokens: the split's sample tokens; results for any other sample are refused (None: no check).
        class_names: allowed names (default: the task's nuScenes classes).
        dataset_tokens: every sample token of the dataset the split belongs to. Given, results for samples the
            dataset does not have (a submission for a larger dataset: the whole val set scored on an extract of
            a few scenes) are left out, unchecked, with one warning; results for a sample of another split of
            this dataset stay an error, and so does a submission none of whose samples is in the split.
    Returns:
        {"meta": dict, "results": {sample_token: [box, ...]}}. ValueError naming the sample token and field.
    """
    names = set(
        class_names if class_names is not None else (DETECTION_NAMES if task == "detection" else TRACKING_NAMES)
    )
    _fields(task)
    if not isinstance(data, dict) or "results" not in data or "meta" not in data:
        raise ValueError(
            f"{source}: not a nuScenes {task} submission (a JSON object with 'meta' and a 'results' dict of "
            "sample token -> list of boxes)"
        )
    if not isinstance(data["meta"], dict):
        raise ValueError(f"{source}: 'meta' must be an object, got {type(data['meta']).__name__}")
    results = data["results"]
    if not isinstance(results, dict):
        raise ValueError(f"{source}: 'results' must map sample tokens to lists of boxes")
    if not results:
        raise ValueError(f"{source}: 'results' is empty; a submission holds one entry per sample of the split")
    if sample_tokens is not None:
        allowed = set(sample_tokens)
        if dataset_tokens is not None:
            results = _within_dataset(results, set(dataset_tokens) | allowed, allowed, source)
        outside = [t for t in results if t not in allowed]
        if outside:
            more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
            raise ValueError(
                f"{source}: sample {outside[0]}{more} is not in the split ({len(allowed)} samples); "
                "evaluate the split the results were made for"
            )
    checked: dict[str, list[dict[str, Any]]] = {}
    for token, boxes in results.items():
        if not isinstance(boxes, list):
            raise ValueError(
                f"{source}: sample {token}: results value is a {type(boxes).__name__}, not a list of boxes"
            )
        checked[token] = [_check_box(b, task, names, f"{source}: sample {token}: box {i}") for i, b in enumerate(boxes)]
        for i, box in enumerate(checked[token]):
            if box.get("sample_token", token) != token:
                raise ValueError(
                    f"{source}: sample {token}: box {i}: field 'sample_token' is {box['sample_token']!r}, "
                    "not the results key it is listed under"
                )
    return {"meta": dict(data["meta"]), "results": checked}


def _within_dataset(results: dict[str, Any], known: set[str], split: set[str], source: str | Path) -> dict[str, Any]:
    """`results` without the samples the dataset does not have (one warning naming how many); ValueError when
    none of its samples is in the split."""
    kept = {t: boxes for t, boxes in results.items() if t in known}
    if not any(t in split for t in kept):
        where = "the dataset" if split == known else "the split"
        raise ValueError(
            f"{source}: none of its {len(results)} samples is in {where} ({len(split)} samples); give the "
            "dataset and split the results were made for"
        )
    if len(kept) < len(results):
        warnings.warn(
            f"{source}: left out the results of {len(results) - len(kept)} of its {len(results)} samples, which "
            "this dataset does not have (a submission for a larger dataset)",
            stacklevel=3,
        )
    return kept


def read_submission(
    path: Path | str,
    task: str,
    sample_tokens: Iterable[str] | None = None,
    class_names: Collection[str] | None = None,
    dataset_tokens: Iterable[str] | None = None,
) -> Submission:
    """Read and validate a submission JSON file (see `validate_submission` for the arguments).

    FileNotFoundError for a missing file; ValueError for invalid JSON or content, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {task} submission; give a nuScenes {task} results JSON file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a nuScenes {task} submission: invalid JSON ({err})") from None
    return validate_submission(data, task, path, sample_tokens, class_names, dataset_tokens)


def write_submission(
    path: Path | str,
    data: Submission,
    task: str,
    sample_tokens: Iterable[str] | None = None,
    class_names: Collection[str] | None = None,
) -> Path:
    """Validate a submission and write it as strict JSON (NaN as null), atomically (temp file + os.replace).

    Args:
        path: output file; parent folders are created.
        data, task, sample_tokens, class_names: as for `validate_submission`.
    Returns:
        `path`. ValueError naming the sample token and field of an invalid box (nothing is written).
    """
    path = Path(path)
    clean = to_jsonable(data)  # NaN / inf -> null, numpy -> Python
    validate_submission(clean, task, path, sample_tokens, class_names)
    return write_json(path, clean, indent=None)


def drop_far_boxes(
    data: Submission,
    ego_xy: Mapping[str, Sequence[float]],
    source: str | Path = "submission",
    max_range: float = MAX_BOX_RANGE,
) -> Submission:
    """A validated submission without the boxes farther than `max_range` [m] from the ego (ground plane).

    Args:
        data: a validated submission (see `validate_submission`).
        ego_xy: sample token -> ego position (x, y) [m], global frame, at that sample; samples not in it are kept.
        source: file or label named in the warning.
        max_range: [m] largest ego distance kept.
    Returns:
        A shallow copy with the far boxes removed; when any is, one UserWarning for the whole submission names
        the count and the first sample (in results order) that held one.
    """
    results: dict[str, list[dict[str, Any]]] = {}
    num_dropped, first = 0, ""
    for token, boxes in data["results"].items():
        ego = ego_xy.get(token)
        if ego is None:
            results[token] = boxes
            continue
        kept = [b for b in boxes if math.hypot(b["translation"][0] - ego[0], b["translation"][1] - ego[1]) <= max_range]
        if len(kept) < len(boxes):
            num_dropped += len(boxes) - len(kept)
            first = first or token
        results[token] = kept
    if num_dropped:
        warnings.warn(
            f"{source}: dropped {num_dropped} box(es) more than {max_range:g} m from the ego, first in sample "
            f"{first}; check that the boxes are in the global frame",
            stacklevel=2,
        )
    return {**data, "results": results}
