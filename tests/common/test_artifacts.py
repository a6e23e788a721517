"""Atomic file and directory writes, stale temporaries, strict JSON and run directories (common.artifacts)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
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
    check_out_dir,
    check_out_file,
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


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_final_files_and_dirs_get_the_umask_permissions(tmp_path: Path, umask: int) -> None:
    """What a plain open() / mkdir() would give under the umask, not a temporary's 0600 / 0700."""
    old = os.umask(umask)
    try:
        write_bytes(tmp_path / "a.bin", b"x")
        with atomic_path(tmp_path / "b.npy") as tmp:
            np.save(tmp, np.zeros(2))
        with atomic_dir(tmp_path / "ds") as tmp:
            (tmp / "sub").mkdir()
            (tmp / "sub" / "t.txt").write_text("x")
    finally:
        os.umask(old)
    for name in ("a.bin", "b.npy", "ds/sub/t.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    for name in ("ds", "ds/sub"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o777 & ~umask, name


def test_file_writes_clean_their_stale_temporaries_and_refuse_a_folder(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".v.mp4.tmp-{int(dead.stdout)}-0123abcd.mp4"  # left by a SIGKILLed writer
    stale.write_bytes(b"half a video")
    write_bytes(tmp_path / "v.mp4", b"video")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match=r"d is a folder, not a file") as err:
        write_json(tmp_path / "d", {})
    assert ".tmp-" not in str(err.value) and sorted(p.name for p in tmp_path.iterdir()) == ["d", "v.mp4"]


def test_output_paths_are_checked_before_the_work(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    assert check_out_file(tmp_path / "new" / "r.json") == tmp_path / "new" / "r.json"
    assert check_out_dir(tmp_path / "d") == tmp_path / "d" and check_out_dir(tmp_path / "a" / "b")
    with pytest.raises(IsADirectoryError, match=r"^--out .*d is a folder, not a file"):
        check_out_file(tmp_path / "d")
    with pytest.raises(NotADirectoryError, match=r"^--out .*f is a file, not a directory"):
        check_out_dir(tmp_path / "f")
    for check in (check_out_file, check_out_dir):  # a parent that is a file: the path can never be made
        with pytest.raises(NotADirectoryError, match=r"f is a file, not a directory; choose another --run-dir"):
            check(tmp_path / "f" / "x" / "y", "--run-dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]  # nothing created


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_parent_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError, match=r"locked is not writable"):
            check_out_file(locked / "sub" / "r.json")
    finally:
        locked.chmod(0o700)
