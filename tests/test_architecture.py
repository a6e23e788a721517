"""The import table of docs/architecture.md, read from every module's imports (ast), and the one namespace."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# folder in the repository -> its import name
PACKAGES = {
    "common": "common",
    "control": "control",
    "tracking": "tracking",
    "perception": "perception",
    "sim": "sim",
    "planning": "planning",
    "drivestack": "drivestack",
}
# which drivestack packages each may import (itself always). "drivestack" is the joining code: cli, bench, ...
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "control": {"common"},
    "tracking": {"common"},
    "perception": {"common"},
    "sim": {"common", "control"},
    "planning": {"common", "sim", "control"},
    "drivestack": set(PACKAGES),
}
SUBPACKAGES = {"common", "control", "tracking", "perception", "sim", "planning"}
# Top-level names that belong to other PyPI packages (python-control, perception, ...): never imported bare.
BARE = SUBPACKAGES


def _modules() -> list[tuple[str, Path]]:
    out = []
    for folder in PACKAGES:
        out += [(folder, p) for p in sorted((ROOT / folder).rglob("*.py"))]
    return out


def _imported(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a file, relative imports resolved against its package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.append((node.lineno, f"<relative level {node.level}>.{node.module or ''}"))
            else:
                names.append((node.lineno, node.module or ""))
    return names


def _target(name: str) -> str | None:
    """The drivestack package an import reaches, or None for third-party/stdlib."""
    parts = name.split(".")
    if parts[0] != "drivestack":
        return None
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return parts[1]
    return "drivestack"


def test_every_package_folder_exists() -> None:
    for folder in PACKAGES:
        assert (ROOT / folder / "__init__.py").is_file(), folder


@pytest.mark.parametrize("folder", list(PACKAGES))
def test_imports_follow_the_design_table(folder: str) -> None:
    bad = []
    for pkg, path in _modules():
        if pkg != folder:
            continue
        for line, name in _imported(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {name}"
            if name.startswith("<relative"):
                bad.append(f"{where} (use absolute drivestack.* imports)")
                continue
            if name.split(".")[0] in BARE:
                bad.append(f"{where} (bare top-level name; import drivestack.{name})")
                continue
            target = _target(name)
            if target is not None and target != folder and target not in ALLOWED[folder]:
                bad.append(f"{where} ({folder} may import only {sorted(ALLOWED[folder]) or 'nothing of drivestack'})")
    assert not bad, "\n".join(bad)


def test_tests_use_the_namespace() -> None:
    bad = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for line, name in _imported(path):
            if name.split(".")[0] in BARE:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("from drivestack.sim.road import RoadNetwork\nimport control\nfrom . import x\n")
    names = [n for _, n in _imported(path)]
    assert _target(names[0]) == "sim" and "sim" not in ALLOWED["perception"]
    assert names[1] in BARE and names[2].startswith("<relative")


def test_import_drivestack_registers_the_envs_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, gymnasium as gym\n"
        "env = gym.make('drivestack:drivestack/Highway-v0')\n"  # registers through the module prefix, no import
        "import drivestack\n"
        "print(env.spec.id, sorted(set(drivestack.ENV_IDS) & set(gym.registry)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT.parent, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [
        "drivestack/Highway-v0",
        "['drivestack/Highway-v0',",
        "'drivestack/HighwayDriver-v0',",
        "'drivestack/Merge-v0',",
        "'drivestack/MergeDriver-v0']",
    ]
    cheap = "import sys, drivestack, drivestack.sim; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", cheap], capture_output=True, text=True, cwd=ROOT.parent, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "False", (out.stdout, out.stderr[-2000:])
