"""Bad input and faults of `drivestack bench tracking` (detections, nuScenes tables, options), through the real CLI.

Every rejected case exits 2 with one `drivestack: error:` line naming what is wrong (the option, or the file, sample
and field), before any work and without writing anything (no output folder). A box far from the ego is dropped
with one warning line and leaves the scores exactly as without it. The clean cases pass today and must stay clean.
All of it on the hand-built tracking dataset (`tiny_nuscenes`: split 'tiny', one scene of 8 keyframes).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_faults import assert_one_line_error, error_lines, tree
from nuscenes.eval.detection.utils import category_to_detection_name

from drivestack.common.nuscenes import open_nuscenes, split_sample_tokens

BENCH = ("bench", "tracking", "--split", "tiny", "--speed-frames", "0", "--no-plot")

Submission = dict[str, Any]


@pytest.fixture(scope="module")
def clean_detections(tiny_nuscenes: Path) -> Submission:
    """A detection submission of split 'tiny': every annotation as a detection (score 0.9, velocity unknown)."""
    nusc = open_nuscenes(tiny_nuscenes)
    results = {}
    for token in split_sample_tokens(nusc, "tiny"):
        anns = [nusc.get("sample_annotation", a) for a in nusc.get("sample", token)["anns"]]
        results[token] = [
            {
                "sample_token": token,
                "translation": a["translation"],
                "size": a["size"],
                "rotation": a["rotation"],
                "velocity": [None, None],
                "detection_name": category_to_detection_name(a["category_name"]),
                "detection_score": 0.9,
                "attribute_name": "",
            }
            for a in anns
        ]
    return {"meta": {"use_camera": False, "use_lidar": True}, "results": results}


def _first(sub: Submission) -> tuple[str, list[dict[str, Any]]]:
    token = next(iter(sub["results"]))
    return token, sub["results"][token]


def _far(x: float) -> Callable[[Submission], None]:
    def change(sub: Submission) -> None:
        _, boxes = _first(sub)
        boxes.insert(0, {**boxes[0], "translation": [x, x, 0.5]})  # first box of the first frame: the first track

    return change


def _set(field: str, value: Any) -> Callable[[Submission], None]:
    def change(sub: Submission) -> None:
        _first(sub)[1][1][field] = value

    return change


def _results(value: Any) -> Callable[[Submission], None]:
    def change(sub: Submission) -> None:
        sub["results"] = value(sub) if callable(value) else value

    return change


# (id, change to the clean detections, strings the one error line must name; "<first>": the first sample token)
DETECTION_ERRORS = [
    ("results-empty", _results({}), ("'results' is empty",)),
    ("results-string", _results("abc"), ("'results' must map sample tokens",)),
    (
        "results-value-string",
        _results(lambda s: {t: "abc" for t in s["results"]}),
        ("<first>", "results value is a str"),
    ),
    ("size-negative", _set("size", [1.9, -4.5, 1.6]), ("<first>", "box 1", "'size'", "> 0")),
    ("size-zero", _set("size", [0.0, 4.5, 1.6]), ("<first>", "'size'")),
    ("rotation-zero", _set("rotation", [0.0, 0.0, 0.0, 0.0]), ("<first>", "box 1", "'rotation'", "zero quaternion")),
    ("translation-string", _set("translation", ["1", 2, 3]), ("<first>", "'translation'")),
    ("translation-nan", _set("translation", [float("nan"), 2.0, 3.0]), ("<first>", "'translation'")),
    ("score-missing", _set("detection_score", None), ("<first>", "'detection_score'")),
    ("name-unknown", _set("detection_name", "spaceship"), ("<first>", "'detection_name'")),
]


def _write(path: Path, sub: Submission) -> Path:
    path.write_text(json.dumps(sub))  # non-strict on purpose: what another tool might write
    return path


@pytest.mark.parametrize(
    ("change", "contains"), [e[1:] for e in DETECTION_ERRORS], ids=[e[0] for e in DETECTION_ERRORS]
)
def test_bad_detections_are_one_line_and_write_nothing(
    change, contains, run_cli, tiny_nuscenes: Path, clean_detections: Submission, tmp_path: Path
) -> None:
    sub = json.loads(json.dumps(clean_detections))
    first, _ = _first(sub)
    change(sub)
    path = _write(tmp_path / "dets.json", sub)
    out = tmp_path / "out"
    result = run_cli(*BENCH, "--dataroot", tiny_nuscenes, "--detections", path, "--out", out)
    assert_one_line_error(result, str(path), *(first if c == "<first>" else c for c in contains))
    assert not out.exists()  # not even an empty folder


def _drop_field(field: str) -> Callable[[list[dict[str, Any]]], Any]:
    def change(rows: list[dict[str, Any]]) -> Any:
        del rows[-1][field]  # the last record: a check of the first alone would miss it
        return rows

    return change


def _set_field(field: str, value: Any) -> Callable[[list[dict[str, Any]]], Any]:
    def change(rows: list[dict[str, Any]]) -> Any:
        rows[-1][field] = value
        return rows

    return change


# (id, table, change of its rows (None: truncate the file), strings the one error line must name)
TABLE_ERRORS = [
    (
        "annotation-no-translation",
        "sample_annotation",
        _drop_field("translation"),
        ("'translation'",),
    ),
    (
        "annotation-points-string",
        "sample_annotation",
        _set_field("num_lidar_pts", "x"),
        ("num_lidar_pts",),
    ),
    ("ego-pose-short", "ego_pose", _set_field("translation", [1.0, 2.0]), ("'translation'",)),
    ("scene-no-first-sample", "scene", _drop_field("first_sample_token"), ("first_sample_token",)),
    ("instance-no-category", "instance", _drop_field("category_token"), ("category_token",)),
    ("sample-not-a-list", "sample", lambda rows: {"rows": rows}, ("is malformed", "not a JSON list")),
    ("sample-data-invalid-json", "sample_data", None, ("not valid JSON",)),
]


@pytest.mark.parametrize(
    ("table", "change", "contains"), [e[1:] for e in TABLE_ERRORS], ids=[e[0] for e in TABLE_ERRORS]
)
def test_malformed_tables_name_the_file(table, change, contains, run_cli, tiny_nuscenes: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(tiny_nuscenes, root)
    path = root / "v1.0-trainval" / f"{table}.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2] if change is None else json.dumps(change(json.loads(text))))
    out = tmp_path / "out"
    result = run_cli(*BENCH, "--dataroot", root, "--detections", "oracle", "--out", out)
    assert_one_line_error(result, str(path), *contains)
    assert not out.exists()


# (id, extra arguments, strings the one error line must name)
OPTION_ERRORS = [
    ("eval-config-unknown", ("--eval-config", "nosuch"), ("eval config 'nosuch'", "tracking_nips_2019")),
    ("eval-config-detection", ("--eval-config", "detection_cvpr_2019"), ("detection_cvpr_2019",)),
    ("split-unknown", ("--split", "nosuch"), ("unknown split 'nosuch'", "tiny")),
    ("seeds-zero", ("--seeds", "0"), ("seeds",)),
]


@pytest.mark.parametrize(("args", "contains"), [e[1:] for e in OPTION_ERRORS], ids=[e[0] for e in OPTION_ERRORS])
def test_bad_options_fail_before_any_work(args, contains, run_cli, tiny_nuscenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(*BENCH, "--dataroot", tiny_nuscenes, "--detections", "oracle", "--out", out, *args)
    assert_one_line_error(result, *contains)
    assert not out.exists()


def test_out_that_is_a_file_is_refused_before_any_work(run_cli, tiny_nuscenes: Path, tmp_path: Path) -> None:
    (tmp_path / "results.txt").write_text("keep me")
    before = tree(tmp_path)
    result = run_cli(*BENCH, "--dataroot", tiny_nuscenes, "--detections", "oracle", "--out", tmp_path / "results.txt")
    assert_one_line_error(result, "--out", "results.txt", "is a file")
    assert tree(tmp_path) == before  # the file intact, nothing else written


def _messages(result) -> list[str]:
    """The `drivestack:` lines on stderr (the progress bars' frames are not messages)."""
    return [line for line in error_lines(result) if line.startswith("drivestack:") or "Traceback" in line]


def _amota(out: Path) -> dict[str, float]:
    methods = json.loads((out / "tracking.json").read_text())["methods"]
    return {m: methods[m]["metrics"]["amota"] for m in methods}


@pytest.mark.parametrize("matcher", ["hungarian", "greedy"])
def test_clean_runs_and_a_far_box_changes_nothing(
    matcher: str, run_cli, tiny_nuscenes: Path, clean_detections: Submission, tmp_path: Path
) -> None:
    args = (*BENCH, "--dataroot", tiny_nuscenes, "--tracker.matcher", matcher)
    clean = run_cli(*args, "--detections", _write(tmp_path / "clean.json", clean_detections), "--out", tmp_path / "a")
    assert clean.code == 0 and not _messages(clean), clean.err[-2000:]
    expected = _amota(tmp_path / "a")
    assert expected["tracker"] == pytest.approx(1.0, abs=0.05)  # perfect detections: (almost) perfect tracks
    for far in (1e10, 1e20, 1e150):
        sub = json.loads(json.dumps(clean_detections))
        _far(far)(sub)
        first, _ = _first(sub)
        out = tmp_path / f"far{far:g}"
        result = run_cli(*args, "--detections", _write(tmp_path / f"far{far:g}.json", sub), "--out", out)
        assert result.code == 0, result.err[-2000:]
        (warning,) = _messages(result)  # one line for the file
        assert warning.startswith("drivestack: warning:") and "dropped 1 box" in warning and first in warning
        assert _amota(out) == expected


def test_oracle_run_is_clean(run_cli, tiny_nuscenes: Path, tmp_path: Path) -> None:
    result = run_cli(*BENCH, "--dataroot", tiny_nuscenes, "--detections", "oracle", "--out", tmp_path / "o")
    assert result.code == 0 and not _messages(result), result.err[-2000:]
    assert {"tracking.json", "tracking.md", "submission_tracker.json"} <= set(tree(tmp_path / "o"))
