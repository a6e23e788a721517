"""Run reports of the benches: files written atomically (strict JSON, markdown, figures) and markdown tables.

The writers are `drivestack.common.artifacts`' (re-exported here): an interrupted run never leaves a
half-written file, and every JSON file parses with a strict parser (NaN / inf are written as null).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from drivestack.common.artifacts import atomic_path, make_run_dir, write_json, write_text

__all__ = [
    "DRIVING_COLUMNS",
    "driving_cells",
    "format_number",
    "make_run_dir",
    "markdown_table",
    "save_figure",
    "write_json",
    "write_text",
]

# Columns of a driving-metrics table row (`driving_cells`), after the row's label.
DRIVING_COLUMNS = ("episodes", "collisions", "off-road", "speed m/s", "dist. m", "LC/min", "jerk m/s^3")


def driving_cells(
    summary: dict[str, float], spread: dict[str, float] | None = None, episodes: str | None = None
) -> list[str]:
    """The `DRIVING_COLUMNS` cells of a `planning.metrics` summary (eval policy and drive print the same).

    With `spread` (a standard deviation per metric, e.g. over seeds) each figure it holds reads "mean±std";
    `episodes` replaces the episode count's cell (eval policy's "3x500" for a row over seeds).
    """
    s, d = summary, spread or {}

    def cell(key: str, fmt: str, scale: float = 1.0, unit: str = "") -> str:
        text = format(scale * s[key], fmt)
        return (text + "±" + format(scale * d[key], fmt) if key in d else text) + unit

    return [
        str(int(s["episodes"])) if episodes is None else episodes,
        cell("collision_rate", ".1f", 100.0, "%"),
        cell("off_road_rate", ".1f", 100.0, "%"),
        cell("mean_speed", ".2f"),
        cell("distance_per_episode", ".0f"),
        cell("lane_changes_per_minute", ".2f"),
        cell("mean_abs_jerk", ".2f"),
    ]


def format_number(value: float | None, fmt: str = ".3f") -> str:
    """`value` formatted with `fmt` ("-" for None, NaN and inf: a figure that does not exist)."""
    if value is None or not math.isfinite(value):
        return "-"
    return format(value, fmt)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub markdown table: `header` cells, a `|---|` rule, then one line per row of (already formatted) cells."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def save_figure(fig: Any, path: Path, **savefig: Any) -> Path:
    """Save the matplotlib figure `fig` to `path` atomically (format from its suffix), then close it.

    Args:
        fig: a matplotlib Figure.
        path: the image file (parents created).
        savefig: keyword arguments of `Figure.savefig` (dpi, bbox_inches, ...).
    Returns:
        `path`.
    """
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, **savefig)
    finally:
        plt.close(fig)
    return Path(path)
