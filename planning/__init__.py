"""Scene model, policies acting on scenes, policy training (stable-baselines3 PPO/DQN) and policy evaluation.

- `planning.scene`: the ego-centric `Scene` a policy sees (ego with what it knows about itself: target lane,
  speed set-point, where it may change lanes; agents with stable ids; lanes with their ends), built from the
  simulator's ground truth by `scene_from_world` (the tracker will build it from tracks), and
  `encode_kinematics_scene`, which feeds it to `sim.observation.encode_kinematics`: the one encoder, so a
  ground-truth scene encodes bit for bit like the simulator's own observation.
- `planning.policy`: the `Policy` protocol (`name`, `act(scene) -> (B,) long maneuvers`, meta-action order)
  and `make_policy(spec, env_config, device, seed)`, the one registry: `rule`, `random`, `idle`, a training
  run directory or a checkpoint directory.
- `planning.baselines`: `RandomPolicy`, `IdlePolicy` and `RulePolicy` (IDM speed keeping + MOBIL lane
  changes as meta-actions, batched, with mandatory merging off a lane that ends).
- `planning.metrics`: episode metrics as pure functions registered by name (`METRICS`, `compute_metrics`
  over an `Episodes` table), shared by evaluation and the training monitor.
- `planning.evaluate`: `evaluate(policy, env_config, episodes)` runs exactly that many episodes on the
  batched simulator and returns per-episode outcomes and summary metrics (`EvalResult`).
- `planning.train`, `planning.monitor`, `planning.checkpoint`: PPO/DQN training, its evaluation and logging
  callback, and safe checkpoints (`load_policy` gives a trained policy behind the same `Policy` protocol,
  encoding scenes with `encode_kinematics_scene`).
"""

from drivestack.planning.baselines import IdlePolicy, RandomPolicy, RuleConfig, RulePolicy, rule_actions
from drivestack.planning.evaluate import EvalResult, evaluate
from drivestack.planning.metrics import METRICS, Episodes, compute_metrics, register_metric
from drivestack.planning.policy import Policy, make_policy
from drivestack.planning.scene import Scene, encode_kinematics_scene, encode_scene, scene_from_world

__all__ = [
    "METRICS",
    "Episodes",
    "EvalResult",
    "IdlePolicy",
    "Policy",
    "RandomPolicy",
    "RuleConfig",
    "RulePolicy",
    "Scene",
    "compute_metrics",
    "encode_kinematics_scene",
    "encode_scene",
    "evaluate",
    "make_policy",
    "register_metric",
    "rule_actions",
    "scene_from_world",
]
