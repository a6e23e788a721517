"""Run reports: results written so that an interrupted run never leaves a half-written file."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: Path, data: object) -> Path:
    """Write `data` as indented JSON to `path` atomically (temporary sibling, then rename); creates parents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
    return path
