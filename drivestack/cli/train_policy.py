"""`drivestack train policy`: train a driving policy (stable-baselines3 PPO or DQN) on the batched simulator.

The options are `planning.train.TrainPolicyConfig`'s fields; the run directory it writes holds config.json,
TensorBoard logs under tb/, and checkpoints (step_<n>, best, final) that `planning.checkpoint.load_policy`
reads back without executing code.
"""

from __future__ import annotations

from drivestack.planning.train import Algo, TrainPolicyConfig, run_train

__all__ = ["Algo", "TrainPolicyConfig", "run_train"]
