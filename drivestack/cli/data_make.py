"""`drivestack data make`: simulate scenes and write a nuScenes-format dataset (see sim/nuscenes_export.py)."""

from __future__ import annotations

import signal
import threading
from dataclasses import asdict

from drivestack.sim.nuscenes_export import DatasetConfig, export_dataset

__all__ = ["DatasetConfig", "run_make"]


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_make(cfg: DatasetConfig) -> dict:
    """Write the dataset (progress bar, then one summary line); returns the summary as a dict.

    SIGTERM is turned into KeyboardInterrupt while it runs, so a terminated export removes its temporary
    directory like an interrupted one (the CLI then exits 130).
    """
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        return asdict(export_dataset(cfg))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return asdict(export_dataset(cfg))
    finally:
        signal.signal(signal.SIGTERM, previous)
