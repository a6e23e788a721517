"""The built wheel installs one top-level name, `drivestack`, and carries every module and data file.

Builds the wheel from a copy of the source (no network: --no-build-isolation --no-index) and reads it;
nothing is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "drivestack": "drivestack",
    "common": "drivestack/common",
    "control": "drivestack/control",
    "perception": "drivestack/perception",
    "planning": "drivestack/planning",
    "sim": "drivestack/sim",
    "tracking": "drivestack/tracking",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(dist),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = dist.glob("drivestack-*.whl")
    return zipfile.ZipFile(path)


def test_the_only_top_level_name_is_drivestack(wheel: zipfile.ZipFile) -> None:
    tops = {n.split("/")[0] for n in wheel.namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"drivestack"}
    (top_level,) = [n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt")]
    assert wheel.read(top_level).decode().split() == ["drivestack"]


def test_every_module_and_data_file_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    missing = []
    for folder, target in FOLDERS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".json", ".pt") and "__pycache__" not in path.parts:
                inside = f"{target}/{path.relative_to(ROOT / folder).as_posix()}"
                if inside not in names:
                    missing.append(inside)
    assert not missing, f"not in the wheel (add the package to pyproject.toml): {missing}"
