"""The `drivestack` command line: smoke runs with tiny budgets and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
from strict_json import load_strict_json, strict_json_tree

from drivestack.bench.sim import BenchSimConfig, run_bench
from drivestack.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drivestack.cli", *args], capture_output=True, text=True, timeout=300)


def test_top_level_help_lists_commands(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "sim demo" in out and "bench sim" in out


def test_sim_demo_writes_mp4_and_prints_throughput(tmp_path: Path) -> None:
    out = tmp_path / "demo" / "episode.mp4"
    proc = _run(
        "sim",
        "demo",
        "--seconds",
        "3",
        "--out",
        str(out),
        "--throughput-envs",
        "16",
        "--throughput-seconds",
        "0.2",
        "--scenario",
        "merge",
    )
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and not list(out.parent.glob("*.tmp*"))
    assert len(iio.imread(out)) >= 10
    assert "throughput:" in proc.stdout and "policy steps/s" in proc.stdout


def test_bench_sim_prints_ratio_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    proc = _run(
        "bench",
        "sim",
        "--num-envs",
        "8",
        "--vehicles",
        "10",
        "--seconds",
        "0.2",
        "--reference-seconds",
        "0.5",
        "--no-compile",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "highway-env highway-v0" in proc.stdout and "drivestack eager" in proc.stdout
    result = load_strict_json(out)
    assert result["highway_env"]["policy_steps_per_s"] > 0
    assert result["drivestack_eager"]["ratio_vs_highway_env"] > 1.0


def test_bench_sim_without_reference_writes_strict_json(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    cfg = BenchSimConfig(num_envs=2, vehicles=4, seconds=0.01, compile=False, reference=False, out=out)
    results = run_bench(cfg)
    assert results["drivestack_eager"]["ratio_vs_highway_env"] != results["drivestack_eager"]["ratio_vs_highway_env"]
    written = load_strict_json(out)  # the NaN ratio (no reference) is written as null
    assert written["drivestack_eager"]["ratio_vs_highway_env"] is None
    assert written["machine"]["torch"] and written["machine"]["gpu"] is None


def test_bad_input_is_one_line_error() -> None:
    proc = _run("sim", "demo", "--scenario", "roundabout", "--throughput-envs", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown scenario 'roundabout'" in proc.stderr
    proc = _run("bench", "sim", "--vehicles", "0", "--no-reference")
    assert proc.returncode == 2 and "traffic.num_vehicles" in proc.stderr
    proc = _run("nonsense", "command")
    assert proc.returncode == 2 and "unknown command" in proc.stderr


def test_bench_control_writes_table_plot_and_json(tmp_path: Path) -> None:
    proc = _run("bench", "control", "--controllers", "lqr", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert set(strict_json_tree(tmp_path)) == {"control.json"}
    result = load_strict_json(tmp_path / "control.json")
    assert set(result) >= {"keep straight 30 m/s", "keep R150 30 m/s", "lane change 30 m/s", "stop-and-go"}
    lqr = result["keep R150 30 m/s"]["lqr"]
    assert lqr["rms_cte"] < 0.3 and lqr["late_cte_swing"] < 0.02  # the curve target; no oscillation
    change = result["lane change 30 m/s"]["lqr"]
    assert change["lc_duration"] <= 4.0 and change["lc_overshoot"] <= 0.2
    assert "highway-env" in result["lane change 30 m/s"]
    assert (tmp_path / "control.png").stat().st_size > 10_000 and (tmp_path / "control.md").exists()
    proc = _run("bench", "control", "--controllers", "mpc")
    assert proc.returncode == 2


def test_bench_train_measures_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    args = ("--seconds", "2", "--reference-workers", "2", "--num-envs", "32", "--no-compile", "--out", str(out))
    proc = _run("bench", "train", *args)  # --compile (default) adds 30-45 s of compilation
    assert proc.returncode == 0, proc.stderr
    result = load_strict_json(out)
    assert result["highway_env"]["env_steps_per_s"] > 0 and result["drivestack"]["env_steps_per_s"] > 0
    for side in ("highway_env", "drivestack"):  # where the time went: rollouts and updates make up the whole
        r = result[side]
        assert r["rollout_s"] > 0 and r["update_s"] >= 0
        assert abs(r["rollout_s"] + r["update_s"] - r["seconds"]) < 1e-6
    assert "drivestack_compiled" not in result
    assert (
        result["ratio_vs_highway_env"]
        == result["drivestack"]["env_steps_per_s"] / result["highway_env"]["env_steps_per_s"]
    )
