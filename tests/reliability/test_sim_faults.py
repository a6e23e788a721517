"""Bad input and faults of the simulator commands: `sim demo`, `bench sim`, `bench render`, `bench control`.

Every bad case is one line `drivestack: error: ...` naming the option, before any work, and leaves the output
folder as it was; the clean cases (tiny budgets) pass and keep passing.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from cli_faults import assert_one_line_error, tree

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")

DEMO = ["sim", "demo", "--seconds", "1", "--throughput-envs", "4", "--throughput-seconds", "0.05"]
BENCH_SIM = ["bench", "sim", "--num-envs", "2", "--vehicles", "4", "--no-compile", "--no-reference"]
BENCH_SIM += ["--seconds", "0.05"]
RENDER = ["bench", "render", "--resolutions", "32", "18", "--batch-sizes", "1", "--no-lidar", "--seconds", "0.05"]

# (id, arguments after the command; "{tmp}" is the test's folder, holding `afile` and `adir`, strings the
# error must name, marks)
BAD = [
    ("demo-seconds-nan", [*DEMO, "--seconds", "nan", "--out", "{tmp}/e.mp4"], ["--seconds=nan"]),
    ("demo-seconds-inf", [*DEMO, "--seconds", "inf", "--out", "{tmp}/e.mp4"], ["--seconds=inf", "finite"]),
    ("demo-throughput-nan", [*DEMO, "--throughput-seconds", "nan", "--out", "{tmp}/e.mp4"], ["--throughput-seconds"]),
    ("demo-throughput-neg", [*DEMO, "--throughput-seconds", "-1", "--out", "{tmp}/e.mp4"], ["--throughput-seconds"]),
    ("demo-envs-neg", [*DEMO, "--throughput-envs", "-4", "--out", "{tmp}/e.mp4"], ["--throughput-envs=-4", ">= 0"]),
    ("demo-out-folder", [*DEMO, "--out", "{tmp}/adir"], ["--out", "adir", "is a folder"]),
    ("demo-out-under-file", [*DEMO, "--out", "{tmp}/afile/e.mp4"], ["--out", "afile is a file"]),
    ("demo-out-not-mp4", [*DEMO, "--out", "{tmp}/e.avi"], ["--out", ".mp4"]),
    ("demo-device-tpu", [*DEMO, "--device", "tpu", "--out", "{tmp}/e.mp4"], ["device", "tpu"]),
    ("demo-scenario", [*DEMO, "--scenario", "roundabout", "--out", "{tmp}/e.mp4"], ["roundabout"]),
    ("sim-seconds-nan", [*BENCH_SIM, "--seconds", "nan", "--out", "{tmp}/s.json"], ["--seconds=nan"]),
    ("sim-reference-inf", [*BENCH_SIM, "--reference-seconds", "inf", "--out", "{tmp}/s.json"], ["reference-seconds"]),
    ("sim-num-envs-0", [*BENCH_SIM, "--num-envs", "0", "--out", "{tmp}/s.json"], ["--num-envs=0"]),
    ("sim-out-folder", [*BENCH_SIM, "--out", "{tmp}/adir"], ["--out", "adir", "is a folder"]),
    ("sim-out-under-file", [*BENCH_SIM, "--out", "{tmp}/afile/s.json"], ["afile is a file"]),
    ("sim-device-tpu", [*BENCH_SIM, "--device", "tpu", "--out", "{tmp}/s.json"], ["device", "tpu"]),
    ("render-seconds-nan", [*RENDER, "--seconds", "nan", "--out", "{tmp}/r"], ["--seconds=nan"]),
    ("render-seconds-inf", [*RENDER, "--seconds", "inf", "--out", "{tmp}/r"], ["--seconds=inf"]),
    ("render-out-file", [*RENDER, "--out", "{tmp}/afile"], ["--out", "afile", "is a file"]),
    ("render-device-tpu", [*RENDER, "--device", "tpu", "--out", "{tmp}/r"], ["device", "tpu"]),
    ("control-out-file", ["bench", "control", "--out", "{tmp}/afile"], ["--out", "afile", "is a file"]),
    ("control-out-under-file", ["bench", "control", "--out", "{tmp}/afile/c"], ["afile is a file"]),
]
CUDA_BAD = [
    ("demo-cuda", [*DEMO, "--device", "cuda", "--out", "{tmp}/e.mp4"], ["cuda", "not available"]),
    ("sim-cuda", [*BENCH_SIM, "--device", "cuda", "--out", "{tmp}/s.json"], ["cuda", "not available"]),
    ("render-cuda", [*RENDER, "--device", "cuda", "--out", "{tmp}/r"], ["cuda", "not available"]),
]


def _setup(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "afile").write_text("keep me")
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "inside.txt").write_text("keep me too")
    return tree(tmp_path)


@pytest.mark.parametrize(
    "args, contains",
    [pytest.param(a, c, id=i) for i, a, c in BAD] + [pytest.param(a, c, id=i, marks=NO_CUDA) for i, a, c in CUDA_BAD],
)
def test_bad_input_is_one_line_and_writes_nothing(run_cli, tmp_path: Path, args: list[str], contains: list[str]):
    before = _setup(tmp_path)
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert_one_line_error(result, *contains)
    assert tree(tmp_path) == before  # nothing written, nothing left behind (no hidden temporaries either)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]


def test_sim_demo_clean_writes_a_readable_mp4(run_cli, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        result = run_cli(*DEMO, "--out", tmp_path / "v" / "e.mp4")
    finally:
        os.umask(old)
    assert result.code == 0, result.err
    assert "throughput:" in result.out and "nan" not in result.out
    video = tmp_path / "v" / "e.mp4"
    assert stat.S_IMODE(video.stat().st_mode) == 0o644  # a plain file under umask 022, not a temporary's 0600
    assert sorted(p.name for p in video.parent.iterdir()) == ["e.mp4"]


def test_bench_sim_without_reference_prints_no_nan(run_cli, tmp_path: Path) -> None:
    result = run_cli(*BENCH_SIM, "--out", tmp_path / "s.json")
    assert result.code == 0, result.err
    row = next(line for line in result.out.splitlines() if line.startswith("drivestack eager"))
    assert "nan" not in result.out.lower() and " - " in row
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_bench_render_clean(run_cli, tmp_path: Path) -> None:
    result = run_cli(*RENDER, "--out", tmp_path / "r")
    assert result.code == 0, result.err
    assert (tmp_path / "r" / "render.json").is_file() and "nan" not in result.out.lower()
