"""`drivestack data make`: simulate scenes and write a nuScenes-format dataset (see sim/nuscenes_export.py)."""

from __future__ import annotations

from dataclasses import asdict

from drivestack.sim.nuscenes_export import DatasetConfig, export_dataset

__all__ = ["DatasetConfig", "run_make"]


def run_make(cfg: DatasetConfig) -> dict:
    """Write the dataset (progress bar, then one summary line); returns the summary as a dict.

    The CLI turns SIGTERM into KeyboardInterrupt, so a terminated export removes its temporary directory like an
    interrupted one (exit 130).
    """
    return asdict(export_dataset(cfg))
