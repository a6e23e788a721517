"""Atomic file and directory writes, stale temporaries, strict JSON and run directories (common.artifacts)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from enum import Enum
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from drivestack.common.artifacts import (
    atomic_dir,
    atomic_path,
    clean_stale,
    make_run_dir,
    to_jsonable,
    write_bytes,
    write_json,
    write_text,
)


def _strict(text: str):
    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


class Color(Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: float
    where: Path
    color: Color


def test_text_and_bytes_replace_the_file(tmp_path: Path) -> None:
    path = write_text(tmp_path / "a" / "b.md", "one\n")  # parents created
    assert path.read_text() == "one\n"
    write_bytes(path, b"two", fsync=True)
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["b.md"]


def test_exception_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = write_text(tmp_path / "metrics.json", "old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(path) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("disk on fire")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    with pytest.raises(TypeError):  # unserialisable data: nothing is written at all
        write_json(path, {"x": object()})
    assert path.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_temp_path_keeps_the_suffix_for_format_detection(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".plot.png.tmp-")
        seen = tmp
        iio.imwrite(tmp, np.zeros((4, 4, 3), np.uint8))  # the format comes from the suffix
    assert not seen.exists() and iio.imread(tmp_path / "plot.png").shape == (4, 4, 3)
    with atomic_path(tmp_path / "arrays.npz") as tmp:
        np.savez(tmp, a=np.arange(3))
    assert np.load(tmp_path / "arrays.npz")["a"].tolist() == [0, 1, 2]
    with atomic_path(tmp_path / "t.pt") as tmp:
        torch.save({"w": torch.ones(2)}, tmp)
    assert torch.load(tmp_path / "t.pt", weights_only=True)["w"].tolist() == [1.0, 1.0]


def test_directory_write_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".ckpt.tmp-")
        (tmp / "a.txt").write_text("1")
        assert not target.exists()  # nothing under the final name until the end
    assert (target / "a.txt").read_text() == "1"

    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            (tmp / "b.txt").write_text("2")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"] and sorted(os.listdir(target)) == ["a.txt"]

    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(os.listdir(target)) == ["b.txt"]  # replaced as a whole
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # the old copy is gone

    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        with atomic_dir(tmp_path / "file"):
            pass


def test_stale_temporaries_of_killed_runs_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited
    stale = tmp_path / f".ds.tmp-{dead_pid}-0123abcd"
    (stale / "samples").mkdir(parents=True)
    legacy = tmp_path / ".ds.tmp-k2x9_q"  # tempfile.mkdtemp's naming: no pid, nothing can still own it
    legacy.mkdir()
    live = tmp_path / f".ds.tmp-{os.getppid()}-0123abcd"  # a running process: kept
    live.mkdir()
    other = tmp_path / f".dsx.tmp-{dead_pid}-0123abcd"  # another target: kept
    other.mkdir()
    with atomic_dir(tmp_path / "ds") as tmp:
        (tmp / "x").write_text("x")
    assert not stale.exists() and not legacy.exists()
    assert live.exists() and other.exists() and (tmp_path / "ds" / "x").is_file()
    assert clean_stale(tmp_path / "ds") == []


def test_to_jsonable_makes_strict_json() -> None:
    data = {
        "nan": float("nan"),
        "inf": -math.inf,
        "np": [np.float32(1.5), np.int64(3), np.bool_(True), np.float64("nan")],
        "array": np.array([[1.0, np.nan], [np.inf, 2.0]]),
        "tensor": torch.tensor([0.5, float("nan")]),
        "scalar_tensor": torch.tensor(7),
        "path": Path("runs/x"),
        "enum": Color.RED,
        "point": Point(x=float("inf"), where=Path("/a"), color=Color.RED),
        "nested": {2.0: (1, {"deep": [np.nan]}), Color.RED: {"s": {3}}},
    }
    plain = to_jsonable(data)
    assert plain == {
        "nan": None,
        "inf": None,
        "np": [1.5, 3, True, None],
        "array": [[1.0, None], [None, 2.0]],
        "tensor": [0.5, None],
        "scalar_tensor": 7,
        "path": "runs/x",
        "enum": "red",
        "point": {"x": None, "where": "/a", "color": "red"},
        "nested": {"2.0": [1, {"deep": [None]}], "red": {"s": [3]}},
    }
    assert type(plain["np"][0]) is float and type(plain["np"][1]) is int and type(plain["np"][2]) is bool
    json.dumps(plain, allow_nan=False)
    with pytest.raises(TypeError, match="object"):
        to_jsonable({"x": object()})


def test_write_json_is_strict(tmp_path: Path) -> None:
    path = write_json(tmp_path / "r.json", {"ratio": float("nan"), "v": np.float32(2.0)})
    assert _strict(path.read_text()) == {"ratio": None, "v": 2.0}
    write_json(path, [1, 2], indent=None)
    assert path.read_text() == "[1, 2]\n"


def test_make_run_dir(tmp_path: Path) -> None:
    out = make_run_dir(tmp_path / "a" / "b")
    assert out.is_dir() and make_run_dir(out) == out  # an existing directory is reused
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError) as err:
        make_run_dir(tmp_path / "f", option="--run-dir")
    assert "--run-dir" in str(err.value) and "is a file" in str(err.value) and "\n" not in str(err.value)
