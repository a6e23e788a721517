"""`drivestack train policy`: tiny PPO and DQN runs, the run directory, resuming, and refusals."""

from __future__ import annotations

import copy
import csv
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from strict_json import strict_json_tree

from drivestack.cli import main
from drivestack.planning import train
from drivestack.planning.checkpoint import latest_checkpoint, load_policy, read_meta
from drivestack.planning.train import Algo, TrainPolicyConfig, run_train

TINY_PPO = [
    "--num-envs",
    "8",
    "--n-steps",
    "32",
    "--batch-size",
    "128",
    "--n-epochs",
    "2",
    "--net-arch",
    "32",
    "32",
    "--eval-every",
    "512",
    "--eval-episodes",
    "8",
    "--checkpoint-every",
    "512",
    "--log-every",
    "256",
    "--no-progress",
]


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory) -> Path:
    """A 1024-step PPO run through the command line."""
    run_dir = tmp_path_factory.mktemp("runs") / "ppo"
    assert (
        main(
            [
                "train",
                "policy",
                "--algo",
                "ppo",
                "--total-timesteps",
                "1024",
                "--seed",
                "3",
                *TINY_PPO,
                "--run-dir",
                str(run_dir),
            ]
        )
        == 0
    )
    return run_dir


def _progress(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "tb" / "progress.csv") as f:
        return list(csv.DictReader(f))


def test_cli_run_writes_config_logs_and_checkpoints(ppo_run: Path) -> None:
    written = strict_json_tree(ppo_run)  # config.json and every checkpoint's meta.json, NaN-free
    assert "config.json" in written and any(name.endswith("meta.json") for name in written)
    config = written["config.json"]
    assert config["config"]["algo"] == "ppo" and config["config"]["num_envs"] == 8
    assert config["config"]["gamma"] == train.PPO_DEFAULTS["gamma"]  # defaults resolved and recorded
    assert config["hyperparameters"]["net_arch"] == [32, 32] and config["env_config"]["traffic"]["num_vehicles"] == 50
    assert len(list((ppo_run / "tb").glob("events.out.tfevents.*"))) == 1
    rows = _progress(ppo_run)
    for key in (
        "charts/episodic_return",
        "charts/episode_length",
        "charts/collision_rate",
        "charts/mean_speed",
        "charts/SPS",
        "eval/return",
        "eval/collision_rate",
        "eval/mean_speed",
        "train/value_loss",
    ):
        assert any(row.get(key) for row in rows), key
    assert int(rows[-1]["time/total_timesteps"]) == 1024
    names = sorted(p.name for p in (ppo_run / "checkpoints").iterdir())
    assert names == ["best", "final", "step_512"]
    assert read_meta(ppo_run / "checkpoints" / "final")["num_timesteps"] == 1024
    assert read_meta(ppo_run / "checkpoints" / "best")["eval"]["episodes"] == 8
    policy = load_policy(ppo_run)
    assert policy.name.endswith("/best") and policy.meta["env_id"] == "drivestack/Highway-v0"


def test_resume_continues_steps_weights_and_logs(ppo_run: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    run_dir = tmp_path / "ppo"
    shutil.copytree(ppo_run, run_dir)
    saved = torch.load(run_dir / "checkpoints" / "final" / "policy.pt", weights_only=True)
    saved_optimizer = torch.load(run_dir / "checkpoints" / "final" / "optimizer.pt", weights_only=True)
    loaded: dict = {}
    real_load = train.load_checkpoint

    def spy(*args, **kwargs):
        model, meta = real_load(*args, **kwargs)
        loaded.update(
            path=args[0],
            steps=model.num_timesteps,
            policy=copy.deepcopy(model.policy.state_dict()),
            optimizer=copy.deepcopy(model.policy.optimizer.state_dict()),
        )
        return model, meta

    monkeypatch.setattr(train, "load_checkpoint", spy)
    assert (
        main(
            [
                "train",
                "policy",
                "--algo",
                "ppo",
                "--total-timesteps",
                "2048",
                "--seed",
                "3",
                *TINY_PPO,
                "--run-dir",
                str(run_dir),
                "--resume",
            ]
        )
        == 0
    )
    assert "run written to" in capsys.readouterr().out
    assert Path(loaded["path"]).name == "final" and loaded["steps"] == 1024
    for key, value in saved.items():
        assert torch.equal(loaded["policy"][key], value), key
    assert loaded["optimizer"]["state"][0]["step"] == saved_optimizer["state"][0]["step"]
    assert read_meta(run_dir / "checkpoints" / "final")["num_timesteps"] == 2048
    assert (run_dir / "checkpoints" / "step_1536").is_dir()
    # TensorBoard and progress.csv go on: the first run's rows kept, the steps keep counting
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 2
    steps = [int(row["time/total_timesteps"]) for row in _progress(run_dir)]
    assert steps[: len(_progress(ppo_run))] == [int(r["time/total_timesteps"]) for r in _progress(ppo_run)]
    assert steps == sorted(steps) and steps[-1] == 2048 and any(1024 < s < 2048 for s in steps)


def test_dqn_run_and_resume_restore_replay_and_counters(tmp_path: Path, monkeypatch) -> None:
    cfg = TrainPolicyConfig(
        algo=Algo.DQN,
        num_envs=8,
        total_timesteps=512,
        learning_starts=128,
        buffer_size=2048,
        batch_size=32,
        net_arch=(32, 32),
        target_update_interval=64,
        eval_every=256,
        eval_episodes=8,
        checkpoint_every=256,
        progress=False,
        run_dir=tmp_path / "dqn",
    )
    summary = run_train(cfg)
    assert summary["num_timesteps"] == 512
    final = tmp_path / "dqn" / "checkpoints" / "final"
    assert (final / "replay.npz").is_file() and not (tmp_path / "dqn" / "checkpoints" / "best" / "replay.npz").exists()
    state = read_meta(final)["training_state"]
    assert state["n_calls"] == 64 and 0.0 < state["exploration_rate"] < 1.0
    with np.load(final / "replay.npz", allow_pickle=False) as replay:
        saved_pos, saved_obs = int(replay["pos"]), replay["observations"].copy()
    loaded: dict = {}
    real_load = train.load_checkpoint

    def spy(*args, **kwargs):
        model, meta = real_load(*args, **kwargs)
        loaded.update(
            pos=model.replay_buffer.pos,
            obs=model.replay_buffer.observations[:saved_pos].copy(),
            n_calls=model._n_calls,
            eps=model.exploration_rate,
            steps=model.num_timesteps,
        )
        return model, meta

    monkeypatch.setattr(train, "load_checkpoint", spy)
    summary = run_train(
        TrainPolicyConfig(
            algo=Algo.DQN,
            total_timesteps=768,
            resume=True,
            progress=False,
            eval_every=0,
            eval_episodes=8,
            run_dir=tmp_path / "dqn",
        )
    )
    assert (loaded["pos"], loaded["n_calls"], loaded["eps"], loaded["steps"]) == (
        saved_pos,
        state["n_calls"],
        state["exploration_rate"],
        512,
    )
    np.testing.assert_array_equal(loaded["obs"], saved_obs)
    assert summary["num_timesteps"] == 768
    assert read_meta(final)["training_state"]["n_calls"] == 96  # the target-update counter kept counting


def test_refusals_are_one_line_value_errors(ppo_run: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="pass --resume to continue it or a new --run-dir"):
        run_train(TrainPolicyConfig(run_dir=ppo_run, num_envs=8, n_steps=32, batch_size=128, progress=False))
    with pytest.raises(ValueError, match=r"algo='ppo', not 'dqn'"):
        run_train(TrainPolicyConfig(algo=Algo.DQN, run_dir=ppo_run, resume=True, total_timesteps=4096))
    with pytest.raises(ValueError, match=r"env='drivestack/Highway-v0', not 'drivestack/Merge-v0'"):
        run_train(TrainPolicyConfig(env="drivestack/Merge-v0", run_dir=ppo_run, resume=True, total_timesteps=4096))
    with pytest.raises(ValueError, match=r"gamma=0.9, not 0.5"):
        run_train(TrainPolicyConfig(run_dir=ppo_run, resume=True, seed=3, gamma=0.5, total_timesteps=4096))
    with pytest.raises(ValueError, match="already at 1024 timesteps"):
        run_train(TrainPolicyConfig(run_dir=ppo_run, resume=True, seed=3, total_timesteps=1024))
    with pytest.raises(ValueError, match="has no checkpoints/"):
        run_train(TrainPolicyConfig(run_dir=tmp_path / "empty", resume=True))
    with pytest.raises(ValueError, match="buffer_size is a dqn setting"):
        run_train(TrainPolicyConfig(buffer_size=1000, run_dir=tmp_path / "x"))
    with pytest.raises(ValueError, match=r"unknown env id 'drivestack/Roundabout-v0'; allowed: drivestack/Highway-v0"):
        run_train(TrainPolicyConfig(env="drivestack/Roundabout-v0", run_dir=tmp_path / "x"))
    assert latest_checkpoint(ppo_run).name == "final"  # nothing above touched the run
    # the command line prints them as one line and exits 2
    assert main(["train", "policy", "--env", "drivestack/Roundabout-v0", "--run-dir", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drivestack: error: unknown env") and "\n" not in err


def test_same_seed_same_weights(tmp_path: Path) -> None:
    def run(name: str) -> dict:
        run_train(
            TrainPolicyConfig(
                num_envs=8,
                total_timesteps=256,
                n_steps=16,
                batch_size=64,
                n_epochs=2,
                net_arch=(16, 16),
                eval_every=0,
                eval_episodes=4,
                checkpoint_every=0,
                progress=False,
                seed=5,
                run_dir=tmp_path / name,
            )
        )
        return torch.load(tmp_path / name / "checkpoints" / "final" / "policy.pt", weights_only=True)

    a, b = run("a"), run("b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_interrupt_saves_a_resumable_checkpoint(tmp_path: Path, monkeypatch) -> None:
    cfg = TrainPolicyConfig(
        num_envs=8,
        total_timesteps=512,
        n_steps=16,
        batch_size=64,
        n_epochs=1,
        net_arch=(16, 16),
        eval_every=0,
        eval_episodes=4,
        checkpoint_every=0,
        progress=False,
        run_dir=tmp_path / "r",
    )
    real_on_step = train.TrainingMonitor._on_step

    def interrupting(self) -> bool:
        if self.model.num_timesteps >= 300:  # mid-rollout: rollouts are 128 steps
            raise KeyboardInterrupt
        return real_on_step(self)

    monkeypatch.setattr(train.TrainingMonitor, "_on_step", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run_train(cfg)
    monkeypatch.undo()
    # saved with the steps its weights were trained on (the last complete rollout), not the partial one
    assert latest_checkpoint(tmp_path / "r").name == "step_256"
    assert run_train(dataclasses.replace(cfg, resume=True))["num_timesteps"] == 512
