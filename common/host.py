"""The machine a run is on: host facts for results files, torch CPU threads, devices and CUDA sync points."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

DEVICE_NAMES = "cpu, cuda, cuda:<index> or auto"


def host_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """Facts about this machine, recorded next to a run's figures.

    Args:
        device: the device the run uses; the GPU named is that device's when it is a CUDA one (None: the
            current CUDA device, if there is one).
    Returns:
        platform (OS string), machine (CPU architecture), cpu_count (logical cores), cpu_threads (torch's
        intra-op threads now), python, torch, cuda (the CUDA version torch was built with, or None) and gpu (the
        CUDA device's name, or None).
    """
    gpu = None
    if device is None:
        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    elif torch.device(device).type == "cuda":
        gpu = torch.cuda.get_device_name(torch.device(device))
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": gpu,
    }


def set_threads(num_threads: int) -> int:
    """Set torch's intra-op CPU threads to `num_threads` (0: leave torch's default); returns the count before.

    One thread is often fastest for the small batches here on a shared machine (no OpenMP spin-wait between
    threads); ValueError for a negative count.
    """
    if num_threads < 0:
        raise ValueError(f"threads={num_threads}; allowed: >= 0 (0: torch's default)")
    before = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    return before


@contextmanager
def using_threads(num_threads: int) -> Iterator[int]:
    """Run a block with `set_threads(num_threads)`, restoring the previous count after; yields the count in use."""
    before = set_threads(num_threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def synchronize(device: str | torch.device) -> None:
    """Wait for the queued CUDA kernels of `device` to finish; nothing on the CPU.

    Note: this is a CPU-GPU sync point. Kernels run asynchronously, so a timer must sync before it reads the
    clock to time finished work; everywhere else it only stalls the pipeline.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device `name` asks for: "cpu", "cuda", "cuda:<index>", or "auto" (CUDA when present, else CPU).

    Raises:
        ValueError: (one line) an unknown name, or CUDA asked for where it is not available / no such index.
    """
    if isinstance(name, str) and name.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {str(name)!r}; use {DEVICE_NAMES}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {str(name)!r}; use {DEVICE_NAMES}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name} but CUDA is not available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={name} but this machine has {torch.cuda.device_count()} CUDA device(s); use cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
    return device
