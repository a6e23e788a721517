"""Bad input and faults of `drivestack eval policy` and `drivestack train policy`, through the real CLI.

Every rejected case exits 2 with one `drivestack: error:` line naming the option, before any work and without
writing anything (no empty run directory, no output folder). The clean cases pass today and must stay clean.
A SIGTERM during training saves a resumable checkpoint and exits 130, as Ctrl-C does.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_faults import assert_one_line_error, tree

from drivestack.planning.checkpoint import latest_checkpoint, read_meta

EVAL = ("eval", "policy", "--episodes", "2", "--videos", "0", "--duration", "3")
# tiny PPO: 4 environments x 8 decisions per rollout, no periodic evaluation or checkpoint
TRAIN = (
    "train",
    "policy",
    "--num-envs",
    "4",
    "--n-steps",
    "8",
    "--batch-size",
    "16",
    "--total-timesteps",
    "32",
    "--eval-episodes",
    "2",
    "--eval-every",
    "0",
    "--checkpoint-every",
    "0",
    "--no-progress",
)

# (id, extra arguments, strings the one error line must name)
EVAL_ERRORS = [
    ("num-envs-huge", ("--num-envs", "100000000"), ("--num-envs", "65536")),
    ("num-envs-zero", ("--num-envs", "0"), ("--num-envs", ">= 1")),
    ("episodes-zero", ("--episodes", "0"), ("--episodes",)),
    ("duration-inf", ("--duration", "inf"), ("--duration", "inf")),
    ("duration-nan", ("--duration", "nan"), ("--duration", "nan")),
    ("duration-negative", ("--duration", "-1"), ("--duration",)),
    ("duration-huge", ("--duration", "1e9"), ("--duration", "3600")),
    ("videos-negative", ("--videos", "-1"), ("--videos",)),
    ("threads-negative", ("--threads", "-1"), ("--threads",)),
    ("device-unknown", ("--device", "gpu7"), ("device", "gpu7")),
    ("env-unknown", ("--env", "drivestack/Nowhere-v0"), ("env", "Nowhere")),
    ("policy-unknown", ("--policies", "nosuchpolicy"), ("nosuchpolicy", "rule")),
]
TRAIN_ERRORS = [
    ("batch-size-zero", ("--batch-size", "0"), ("--batch-size", ">= 2")),
    ("threads-negative", ("--threads", "-1"), ("--threads", ">= 0")),
    ("num-envs-huge", ("--num-envs", "100000000"), ("--num-envs",)),
    ("num-envs-zero", ("--num-envs", "0"), ("--num-envs",)),
    ("total-timesteps-zero", ("--total-timesteps", "0"), ("--total-timesteps",)),
    ("learning-rate-nan", ("--learning-rate", "nan"), ("--learning-rate", "nan")),
    ("learning-rate-inf", ("--learning-rate", "inf"), ("--learning-rate", "inf")),
    ("learning-rate-negative", ("--learning-rate", "-0.1"), ("--learning-rate",)),
    ("gamma-nan", ("--gamma", "nan"), ("--gamma",)),
    ("gamma-above-one", ("--gamma", "1.5"), ("--gamma",)),
    ("gae-lambda-inf", ("--gae-lambda", "inf"), ("--gae-lambda",)),
    ("clip-range-zero", ("--clip-range", "0"), ("--clip-range",)),
    ("ent-coef-nan", ("--ent-coef", "nan"), ("--ent-coef",)),
    ("n-steps-zero", ("--n-steps", "0"), ("--n-steps",)),
    ("n-epochs-zero", ("--n-epochs", "0"), ("--n-epochs",)),
    ("max-minutes-inf", ("--max-minutes", "inf"), ("--max-minutes",)),
    ("max-minutes-negative", ("--max-minutes", "-1"), ("--max-minutes",)),
    ("eval-episodes-zero", ("--eval-episodes", "0"), ("--eval-episodes",)),
    ("eval-every-negative", ("--eval-every", "-5"), ("--eval-every",)),
    ("checkpoint-every-negative", ("--checkpoint-every", "-1"), ("--checkpoint-every",)),
    ("log-every-zero", ("--log-every", "0"), ("--log-every",)),
    ("net-arch-zero", ("--net-arch", "64", "0"), ("--net-arch",)),
    ("device-unknown", ("--device", "gpu7"), ("device", "gpu7")),
    ("dqn-setting-on-ppo", ("--buffer-size", "100"), ("buffer_size", "dqn")),
]


@pytest.mark.parametrize("args, contains", [c[1:] for c in EVAL_ERRORS], ids=[c[0] for c in EVAL_ERRORS])
def test_eval_policy_rejects_before_any_work(run_cli, tmp_path: Path, args, contains) -> None:
    out = tmp_path / "eval"
    result = run_cli(*EVAL, "--out", out, *args)
    assert_one_line_error(result, *contains)
    assert tree(tmp_path) == {}


@pytest.mark.parametrize("args, contains", [c[1:] for c in TRAIN_ERRORS], ids=[c[0] for c in TRAIN_ERRORS])
def test_train_policy_rejects_without_an_empty_run_dir(run_cli, tmp_path: Path, args, contains) -> None:
    run_dir = tmp_path / "run"
    result = run_cli(*TRAIN, "--run-dir", run_dir, *args)
    assert_one_line_error(result, *contains)
    assert not run_dir.exists() and tree(tmp_path) == {}


def test_eval_policy_out_is_a_file_before_any_work(run_cli, tmp_path: Path) -> None:
    file = tmp_path / "results.txt"
    file.write_text("keep")
    before = tree(tmp_path)
    for out in (file, file / "sub"):
        result = run_cli(*EVAL, "--out", out)
        assert_one_line_error(result, "--out", "not a directory")
        assert "eval rule" not in result.err  # nothing was evaluated first
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    "make, contains",
    [
        (lambda p: (p / "checkpoints").mkdir() or (p / "checkpoints" / "best.pt").write_bytes(b"x"), "detector"),
        (lambda p: (p / "samples").mkdir() or (p / "v1.0-mini").mkdir(), "nuscenes-format dataset"),
        (lambda p: (p / "eval.json").write_text("{}"), "evaluation output"),
    ],
    ids=["detector-run", "dataset", "eval-output"],
)
def test_eval_policy_names_a_folder_that_is_not_a_policy(run_cli, tmp_path: Path, make, contains) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    make(folder)
    before = tree(tmp_path)
    result = run_cli(*EVAL, "--out", tmp_path / "eval", "--policies", folder)
    assert_one_line_error(result, "folder", contains)
    assert tree(tmp_path) == before


def test_eval_policy_clean_and_independent_of_num_envs(run_cli, tmp_path: Path) -> None:
    """Clean runs; 1, 2 and 4096 environments (clamped to the 2 episodes) give the same figures."""
    outcomes = []
    for num_envs in (1, 2, 4096):
        out = tmp_path / f"eval{num_envs}"
        result = run_cli(*EVAL, "--policies", "rule", "idle", "--num-envs", num_envs, "--out", out)
        assert result.code == 0, result.err[-2000:]
        report = json.loads((out / "eval.json").read_text())
        outcomes.append({k: v["episodes"] for k, v in report["policies"].items()})
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_train_policy_clean_tiny_run(run_cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli(*TRAIN, "--run-dir", run_dir)
    assert result.code == 0, result.err[-2000:]
    assert (run_dir / "checkpoints" / "final" / "meta.json").is_file() and (run_dir / "config.json").is_file()


def test_train_policy_sigterm_saves_a_resumable_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = list(TRAIN)
    args[args.index("--total-timesteps") + 1] = "100000000"  # would run for hours
    cmd = [sys.executable, "-m", "drivestack.cli", *args, "--run-dir", str(run_dir), "--log-every", "32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120.0
        progress = run_dir / "tb" / "progress.csv"
        # training is under way once a progress row past the first rollout is written
        while not (progress.is_file() and len(progress.read_text().splitlines()) >= 3):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: saved" in out and "Traceback" not in err
    checkpoint = latest_checkpoint(run_dir)  # what --resume continues from
    meta = read_meta(checkpoint)
    assert checkpoint.name == f"step_{meta['num_timesteps']}" and meta["num_timesteps"] > 0
