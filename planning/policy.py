"""The `Policy` protocol (scene in, maneuvers out) and the one registry that builds policies by name.

A policy maps a planning `Scene` of B environments to one maneuver per environment: (B,) long on the
scene's device, in highway-env's meta-action order (`sim.action.MetaAction`: LANE_LEFT, IDLE, LANE_RIGHT,
FASTER, SLOWER). It never reads the simulator, so the same policy drives from the ground-truth scene
(`scene_from_world`) and from a perceived one (tracks).

`make_policy(spec, env_config, device, seed)` is how every command builds a policy from a string: a
baseline name (`rule`, `random`, `idle`), a training run directory (its best checkpoint, else the latest)
or a checkpoint directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from drivestack.planning.baselines import IdlePolicy, RandomPolicy, RulePolicy
from drivestack.planning.scene import Scene
from drivestack.sim.config import EnvConfig


@runtime_checkable
class Policy(Protocol):
    """Anything that drives: a `name` and `act(scene) -> (B,) long maneuvers` on the scene's device."""

    name: str

    def act(self, scene: Scene) -> torch.Tensor:
        """Maneuvers (B,) long (meta-action order) for the B environments of `scene`."""
        ...


# name -> builder(env_config, seed); a builder gets what the baselines need from the environment.
BASELINES: dict[str, Callable[[EnvConfig, int], Policy]] = {
    "rule": lambda config, seed: RulePolicy(target_speeds=config.action.target_speeds),
    "random": lambda config, seed: RandomPolicy(seed),
    "idle": lambda config, seed: IdlePolicy(),
}
CHOICES = f"{', '.join(BASELINES)}, a training run directory or a checkpoint directory"


def _what_folder(path: Path) -> str:
    """What a folder that holds no policy checkpoint looks like, for the error message."""
    names = {p.name for p in path.iterdir()}
    if any((path / "checkpoints").glob("*.pt")) or {"best.pt", "last.pt"} & names:
        return "a detector training run (checkpoints/*.pt), not a policy"
    if (path / "checkpoints").is_dir():
        return "a run directory without any complete policy checkpoint (no checkpoints/*/meta.json)"
    if "eval.json" in names:
        return "a policy evaluation output (eval.json), not a policy"
    if {"v1.0-trainval", "v1.0-mini", "samples", "sweeps", "maps"} & names:
        return "a nuScenes-format dataset, not a policy"
    return "no training run or checkpoint (no meta.json, no checkpoints/)"


def make_policy(spec: str, env_config: EnvConfig, device: str | torch.device = "cpu", seed: int = 0) -> Policy:
    """The policy a string names.

    Args:
        spec: `rule`, `random`, `idle`, a training run directory (`checkpoints/best`, else its latest
            checkpoint) or a checkpoint directory (holding meta.json).
        env_config: the environment the policy will drive (the rule's set-points; trained policies must
            take its meta-actions).
        device: torch device of trained policies' networks.
        seed: seed of the random policy.
    Returns:
        The policy. Raises ValueError (one line) for an unknown name, a missing path, or a folder that
        is not a policy (naming what it looks like), or a trained policy a scene cannot drive.
    """
    if spec in BASELINES:
        return BASELINES[spec](env_config, seed)
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"unknown policy {spec!r}: not an existing path; choose {CHOICES}")
    if not path.is_dir():
        raise ValueError(f"policy {spec!r} is a file; choose {CHOICES}")
    is_run = any((path / "checkpoints").glob("*/meta.json"))
    if not (path / "meta.json").is_file() and not is_run:
        raise ValueError(f"policy {spec!r} is {_what_folder(path)}; choose {CHOICES}")
    from drivestack.planning.checkpoint import load_policy  # deferred: stable-baselines3 only for trained ones

    policy = load_policy(path, str(device))
    policy.check_env_config(env_config)
    return policy


def portable_spec(spec: str) -> str:
    """A policy spec another process can open wherever it starts (a Ray worker): existing paths made absolute."""
    return str(Path(spec).absolute()) if spec not in BASELINES and Path(spec).exists() else spec
