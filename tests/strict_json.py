"""Strict JSON reading for the tests: what a run wrote must parse without NaN / Infinity (any strict parser's rule)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _refuse(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name} (NaN / Infinity are not JSON)")


def load_strict_json(path: Path) -> Any:
    """Parse the JSON file `path` strictly: NaN, Infinity and -Infinity fail the test, naming the file."""
    try:
        return json.loads(Path(path).read_text(), parse_constant=_refuse)
    except ValueError as err:
        raise AssertionError(f"{path} is not strict JSON: {err}") from None


def strict_json_tree(root: Path) -> dict[str, Any]:
    """{path relative to `root`: data} of every *.json under the folder `root` (at least one), each parsed strictly."""
    found = {str(p.relative_to(root)): load_strict_json(p) for p in sorted(Path(root).rglob("*.json"))}
    assert found, f"no JSON file under {root}"
    return found
