"""Release checkpoints the project trains itself and ships in the package, with a manifest.

`manifest.json` lists each release: its files with their sha256 and size, the command that trained it, the seed,
and the metrics measured on it. A release is loaded only after every file matches the manifest, and only by the
safe loaders (`torch.load(weights_only=True)`, JSON); nothing is downloaded.

    release_path("ppo-highway")           # the verified checkpoint folder
    resolve_policy_spec("release:ppo-highway")  # what `--policy` / `--policies` accept

`package_release(...)` is how a release is (re)made from a training run's checkpoint: it copies the files a
consumer needs (for a policy: meta.json and policy.pt, not the optimizer) and records them in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from drivestack.common.artifacts import write_json

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "manifest.json"
PREFIX = "release:"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    """The manifest: {"releases": {name: {"kind", "files": {file: {"sha256", "bytes"}}, "command", ...}}}."""
    if not path.is_file():
        return {"format": "drivestack-release/1", "releases": {}}
    return json.loads(path.read_text())


def release_names() -> list[str]:
    """The names of the shipped releases."""
    return sorted(read_manifest()["releases"])


def release_path(name: str, root: Path = ROOT) -> Path:
    """The folder of release `name`, after checking every file against the manifest's sha256.

    Raises:
        ValueError (one line) for an unknown name, a missing file or a checksum mismatch (a corrupt or
        modified release: reinstall drivestack).
    """
    manifest = read_manifest(root / "manifest.json")
    releases = manifest["releases"]
    if name not in releases:
        raise ValueError(f"unknown release {name!r}; shipped: {', '.join(sorted(releases)) or 'none'}")
    folder = root / name
    for file, entry in releases[name]["files"].items():
        path = folder / file
        if not path.is_file():
            raise ValueError(f"release {name}: {path} is missing; reinstall drivestack")
        if _sha256(path) != entry["sha256"]:
            raise ValueError(f"release {name}: {path} does not match its sha256 in the manifest; reinstall drivestack")
    return folder


def resolve_policy_spec(spec: str) -> str:
    """`release:<name>` -> the verified release folder (as a string); any other spec unchanged."""
    if spec.startswith(PREFIX):
        return str(release_path(spec[len(PREFIX) :]))
    return spec


def resolve_checkpoint_path(path: Path | str | None) -> Path | None:
    """A checkpoint option that may name a release (`release:<name>`): the verified release folder, else `path`."""
    if path is None:
        return None
    return Path(resolve_policy_spec(str(path)))


def package_release(
    name: str,
    source: Path,
    files: list[str],
    kind: str,
    command: str,
    metrics: dict[str, Any],
    notes: str = "",
    root: Path = ROOT,
) -> Path:
    """Copy `files` of checkpoint folder `source` into release `name` and record them in the manifest.

    Args:
        name: release name (a folder under drivestack/release/).
        source: the checkpoint folder to ship.
        files: the files a consumer needs (e.g. meta.json and policy.pt).
        kind: what it is ("policy", "detector").
        command: the command that trained it (for the README and reproducibility).
        metrics: figures measured on it (and the command that measured them).
        notes: anything a user should know.
    Returns:
        The release folder.
    """
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for file in files:
        shutil.copyfile(source / file, folder / file)
        entries[file] = {"sha256": _sha256(folder / file), "bytes": (folder / file).stat().st_size}
    manifest = read_manifest(root / "manifest.json")
    manifest["releases"][name] = {
        "kind": kind,
        "files": entries,
        "command": command,
        "metrics": metrics,
        "notes": notes,
    }
    write_json(root / "manifest.json", manifest)
    return folder
