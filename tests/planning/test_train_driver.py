"""Training on the driver action space with perception noise: the run, its learning curve, and its policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from drivestack.cli import main
from drivestack.planning.checkpoint import read_meta
from drivestack.planning.policy import make_policy
from drivestack.planning.scene import scene_from_world
from drivestack.planning.train import TrainPolicyConfig, eval_env_config, train_env_config
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import env_config

TINY = ["--num-envs", "8", "--n-steps", "32", "--batch-size", "128", "--n-epochs", "2", "--net-arch", "32", "32"]
TINY += ["--eval-every", "256", "--eval-episodes", "8", "--checkpoint-every", "0", "--no-progress"]


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "driver"
    args = ["train", "policy", "--env", "drivestack/HighwayDriver-v0", "--perception-noise", "--total-timesteps"]
    assert main([*args, "512", *TINY, "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_run_trains_with_noise_evaluates_without_and_plots_its_learning_curve(noisy_run: Path) -> None:
    assert (noisy_run / "learning_curve.png").stat().st_size > 10_000
    saved = json.loads((noisy_run / "config.json").read_text())
    assert saved["config"]["perception_noise"] is True
    assert saved["env_config"]["observation"]["noise"]["enabled"] is True
    meta = read_meta(noisy_run / "checkpoints" / "final")
    assert meta["observation"]["shape"] == [51] and meta["observation"]["lane_features"] == {"ttc_horizon": 10.0}
    cfg = TrainPolicyConfig(env="drivestack/HighwayDriver-v0", perception_noise=True)
    assert train_env_config(cfg).observation.noise.enabled
    assert not eval_env_config(train_env_config(cfg)).observation.noise.enabled
    assert not train_env_config(TrainPolicyConfig()).observation.noise.enabled  # opt-in


def test_the_trained_policy_drives_scenes_of_its_action_space_only(noisy_run: Path) -> None:
    driver = env_config("drivestack/HighwayDriver-v0")
    policy = make_policy(str(noisy_run), driver)
    env = BatchedDrivingEnv(driver, num_envs=4, seed=0)
    env.reset()
    actions = policy.act(scene_from_world(env.state, env.road))
    assert actions.shape == (4,) and actions.dtype == torch.long
    with pytest.raises(ValueError, match="action.target_speeds"):
        make_policy(str(noisy_run), env_config("drivestack/Highway-v0"))
