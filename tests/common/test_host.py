"""Host facts, torch threads, device names and sync points (common.host)."""

from __future__ import annotations

import json

import pytest
import torch

from drivestack.common.host import host_info, resolve_device, set_threads, synchronize, using_threads


def test_host_info_is_plain_data() -> None:
    info = host_info("cpu")
    assert {"platform", "machine", "cpu_count", "cpu_threads", "python", "torch", "cuda", "gpu"} <= set(info)
    assert info["gpu"] is None and info["torch"] == torch.__version__
    assert info["cpu_threads"] == torch.get_num_threads()
    json.dumps(info, allow_nan=False)


def test_threads_are_set_and_restored() -> None:
    before = torch.get_num_threads()
    try:
        with using_threads(1) as n:
            assert n == 1 == torch.get_num_threads()
        assert torch.get_num_threads() == before
        assert set_threads(0) == before and torch.get_num_threads() == before  # 0: torch's default, unchanged
        with pytest.raises(ValueError, match="threads=-1"):
            set_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "mps"):
        with pytest.raises(ValueError) as err:
            resolve_device(bad)
        assert repr(bad) in str(err.value) and "\n" not in str(err.value)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    else:
        with pytest.raises(ValueError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    synchronize("cpu")  # a no-op on the CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_host_info_and_sync() -> None:
    assert resolve_device("cuda").type == "cuda"
    assert host_info("cuda")["gpu"] == torch.cuda.get_device_name()
    synchronize("cuda")
