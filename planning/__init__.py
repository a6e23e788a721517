"""Scene model, policy training (stable-baselines3 PPO/DQN), baselines and policy evaluation.

- `planning.scene`: the ego-centric `Scene` a policy sees (ego, agents with stable ids, lanes), built from
  the simulator's ground truth by `scene_from_world` (the tracker will build it from tracks), and
  `encode_kinematics_scene`, which feeds it to `sim.observation.encode_kinematics`: the one encoder, so a
  ground-truth scene encodes bit for bit like the simulator's own observation.
- `planning.baselines`: the `Policy` protocol (`name`, `act(env, obs) -> (B,) meta-actions`),
  `RandomPolicy`, `IdlePolicy` and `RulePolicy` (IDM speed keeping + MOBIL lane changes as meta-actions,
  batched, with mandatory merging off a lane that ends).
- `planning.evaluate`: `evaluate(policy, env_config, episodes)` runs exactly that many episodes on the
  batched simulator and returns per-episode outcomes and summary metrics (`EvalResult`).
- `planning.train`, `planning.checkpoint`: PPO/DQN training and safe checkpoints (`load_policy` gives a
  trained policy behind the same `Policy` protocol).
"""

from drivestack.planning.baselines import IdlePolicy, Policy, RandomPolicy, RuleConfig, RulePolicy, rule_actions
from drivestack.planning.evaluate import EvalResult, evaluate
from drivestack.planning.scene import Scene, encode_kinematics_scene, scene_from_world

__all__ = [
    "EvalResult",
    "IdlePolicy",
    "Policy",
    "RandomPolicy",
    "RuleConfig",
    "RulePolicy",
    "Scene",
    "encode_kinematics_scene",
    "evaluate",
    "rule_actions",
    "scene_from_world",
]
