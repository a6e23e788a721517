"""The learning curve of a training run: `learning_curve.png` next to its numbers (tb/progress.csv).

Three panels over environment steps: episode return, collision rate and mean speed, each with the training
episodes (`charts/*`, the exploring policy) and the periodic evaluations of the greedy policy (`eval/*`).
`drivestack train policy` writes it at the end of every run (and of a resumed run: the whole curve).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from drivestack.common.artifacts import atomic_path

PANELS = (  # (progress.csv column suffix, axis label, scale)
    ("return", "episode return", 1.0),
    ("collision_rate", "collisions [%]", 100.0),
    ("mean_speed", "mean speed [m/s]", 1.0),
)
TRAIN_COLUMNS = {"return": "charts/episodic_return", "collision_rate": "charts/collision_rate"}


def _series(rows: list[dict[str, str]], column: str, scale: float) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for row in rows:
        value, step = row.get(column) or "", row.get("time/total_timesteps") or ""
        try:
            v, t = float(value) * scale, float(step)
        except ValueError:
            continue
        if math.isfinite(v) and math.isfinite(t):
            steps.append(t)
            values.append(v)
    return steps, values


def plot_learning_curve(run_dir: Path, title: str = "") -> Path | None:
    """Write `run_dir/learning_curve.png` from `run_dir/tb/progress.csv`; returns its path (None: no rows yet)."""
    progress = Path(run_dir) / "tb" / "progress.csv"
    if not progress.is_file():
        return None
    with progress.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 4))
    for ax, (name, label, scale) in zip(axes, PANELS):
        train = _series(rows, TRAIN_COLUMNS.get(name, f"charts/{name}"), scale)
        evaluation = _series(rows, f"eval/{name}", scale)
        ax.plot(*train, alpha=0.6, label="training episodes")
        ax.plot(*evaluation, marker="o", label="evaluation (greedy)")
        ax.set_xlabel("environment steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(run_dir) / "learning_curve.png"
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
