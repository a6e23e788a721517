"""Policy checkpoints that never execute code on load.

stable-baselines3's own `.zip` keeps its tensors loadable with `weights_only=True`, but its `data` JSON
also holds cloudpickled objects (spaces, schedules, the policy class), and unpickling those runs code. A
drivestack checkpoint is a directory of plain data instead:

    meta.json       format "drivestack-policy/1", algo, env id and full env config, observation and
                    action layout, num_timesteps, the hyperparameters the model is rebuilt from, seed,
                    creation time, and the counters a resumed run needs (`training_state`)
    policy.pt       model.policy.state_dict()                (torch.load(weights_only=True))
    optimizer.pt    model.policy.optimizer.state_dict()      (torch.load(weights_only=True))
    replay.npz      DQN only, optional: the filled part of the replay buffer (np.load(allow_pickle=False))

A save writes a hidden temporary sibling directory and renames it into place, so an interrupted save
never leaves a directory that looks like a complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import typing
import warnings
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from drivestack.common.artifacts import atomic_dir, to_jsonable, write_json
from drivestack.planning.scene import Scene, encode_scene
from drivestack.sim.batched_env import action_space
from drivestack.sim.config import EnvConfig, ObservationConfig, ObservationType
from drivestack.sim.observation import OCCUPANCY_CHANNELS, observation_space

FORMAT = "drivestack-policy/1"
ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "dqn": DQN}
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}
# SB3 constructor arguments a checkpoint may carry, per algorithm (plus net_arch and activation_fn, which
# go into policy_kwargs). Anything else in meta.json is refused rather than passed through.
ALGO_KWARGS: dict[str, tuple[str, ...]] = {
    "ppo": (
        "learning_rate",
        "n_steps",
        "batch_size",
        "n_epochs",
        "gamma",
        "gae_lambda",
        "clip_range",
        "ent_coef",
        "vf_coef",
        "max_grad_norm",
        "target_kl",
    ),
    "dqn": (
        "learning_rate",
        "buffer_size",
        "learning_starts",
        "batch_size",
        "tau",
        "gamma",
        "train_freq",
        "gradient_steps",
        "target_update_interval",
        "exploration_fraction",
        "exploration_initial_eps",
        "exploration_final_eps",
        "max_grad_norm",
    ),
}
REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
HINT = "train one with `drivestack train policy`"


# --------------------------------------------------------------------------------------------------- meta


def env_config_to_dict(config: EnvConfig) -> dict[str, Any]:
    """`dataclasses.asdict` of an env config with enums as their values and tuples as lists (JSON-ready)."""
    return to_jsonable(dataclasses.asdict(config))


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue  # a field added after the checkpoint was written keeps its default
        kind, value = hints[f.name], data[f.name]
        if dataclasses.is_dataclass(kind):
            kwargs[f.name] = _from_dict(kind, value, f"{where}.{f.name}")  # type: ignore[arg-type]
        elif isinstance(kind, type) and issubclass(kind, Enum):
            kwargs[f.name] = kind(value)
        elif typing.get_origin(kind) is tuple:
            kwargs[f.name] = tuple(value)
        else:
            kwargs[f.name] = value
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"{where} has unknown fields {unknown}; was it written by a newer drivestack?")
    return cls(**kwargs)


def env_config_from_dict(data: dict[str, Any]) -> EnvConfig:
    """Inverse of `env_config_to_dict` (validated)."""
    return _from_dict(EnvConfig, data, "env_config").validate()


def observation_meta(config: ObservationConfig) -> dict[str, Any]:
    """What a policy's input looks like: type, shape, features (occupancy: channels) and normalisation."""
    kind = ObservationType(config.type)
    meta: dict[str, Any] = {"type": kind.value, "shape": list(observation_space(config).shape)}
    if kind == ObservationType.KINEMATICS:
        meta["features"] = list(config.features)
        meta["normalization"] = {"x_range": config.x_range, "y_range": config.y_range, "v_range": config.v_range}
        if config.lane_features:  # only then: the meta of checkpoints without them stays as it was
            meta["lane_features"] = {"ttc_horizon": config.ttc_horizon}
    else:
        meta["features"] = list(OCCUPANCY_CHANNELS)
        meta["normalization"] = {"grid_step": list(config.grid_step), "v_range": config.v_range}
    return meta


def action_meta(space: Any) -> dict[str, Any]:
    """Action layout: {"type": "meta", "n": 5} for discrete meta-actions, {"type": "continuous", "shape"} else."""
    if hasattr(space, "n"):
        return {"type": "meta", "n": int(space.n)}
    return {"type": "continuous", "shape": list(space.shape)}


def make_meta(
    algo: str, env_id: str, env_config: EnvConfig, hyperparameters: dict[str, Any], seed: int, **extra: Any
) -> dict[str, Any]:
    """The run-level part of meta.json (num_timesteps and the counters are added by `save_checkpoint`)."""
    return {
        "format": FORMAT,
        "algo": algo,
        "env_id": env_id,
        "env_config": env_config_to_dict(env_config),
        "observation": observation_meta(env_config.observation),
        "action": action_meta(action_space(env_config)),
        "hyperparameters": to_jsonable(hyperparameters),
        "seed": seed,
        **to_jsonable(extra),
    }


# --------------------------------------------------------------------------------------------------- model


def make_model(
    algo: str, hyperparameters: dict[str, Any], env: VecEnv, seed: int | None = None, device: str = "cpu"
) -> BaseAlgorithm:
    """A fresh SB3 model (MlpPolicy) from a plain hyperparameter dict as stored in meta.json.

    Args:
        algo: "ppo" or "dqn".
        hyperparameters: SB3 constructor arguments of `algo` (see `ALGO_KWARGS`) plus `net_arch` (list of
            hidden-layer widths, shared layout for actor and critic) and `activation_fn` ("tanh" | "relu").
        env: the VecEnv the model trains or acts on (its spaces and num_envs size the buffers).
    """
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; allowed: {', '.join(ALGOS)}")
    hyper = dict(hyperparameters)
    policy_kwargs: dict[str, Any] = {}
    if "net_arch" in hyper:
        policy_kwargs["net_arch"] = [int(w) for w in hyper.pop("net_arch")]
    if "activation_fn" in hyper:
        name = hyper.pop("activation_fn")
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation_fn {name!r}; allowed: {', '.join(ACTIVATIONS)}")
        policy_kwargs["activation_fn"] = ACTIVATIONS[name]
    unknown = sorted(set(hyper) - set(ALGO_KWARGS[algo]))
    if unknown:
        raise ValueError(f"hyperparameters {unknown} are not {algo} settings; allowed: {', '.join(ALGO_KWARGS[algo])}")
    if algo == "dqn" and isinstance(hyper.get("train_freq"), list):
        hyper["train_freq"] = tuple(hyper["train_freq"])
    return ALGOS[algo]("MlpPolicy", env, policy_kwargs=policy_kwargs, seed=seed, device=device, verbose=0, **hyper)


def training_state(model: BaseAlgorithm) -> dict[str, Any]:
    """Counters a resumed run continues from (DQN: target-update and exploration; both: update count)."""
    state: dict[str, Any] = {
        "n_updates": int(getattr(model, "_n_updates", 0)),
        "episode_num": int(getattr(model, "_episode_num", 0)),
    }
    if isinstance(model, DQN):
        state["n_calls"] = int(model._n_calls)
        state["exploration_rate"] = float(model.exploration_rate)
    return state


def _restore_training_state(model: BaseAlgorithm, state: dict[str, Any]) -> None:
    model._n_updates = int(state.get("n_updates", 0))
    model._episode_num = int(state.get("episode_num", 0))
    if isinstance(model, DQN):
        model._n_calls = int(state.get("n_calls", 0))
        model.exploration_rate = float(state.get("exploration_rate", model.exploration_rate))


# --------------------------------------------------------------------------------------------------- save


def _save_replay(model: DQN, path: Path) -> None:
    buffer = model.replay_buffer
    assert buffer is not None
    filled = buffer.buffer_size if buffer.full else buffer.pos  # only the rows written so far
    arrays = {name: getattr(buffer, name)[:filled] for name in REPLAY_ARRAYS if getattr(buffer, name) is not None}
    np.savez(
        path,
        pos=np.int64(buffer.pos),
        full=np.bool_(buffer.full),
        n_envs=np.int64(buffer.n_envs),
        buffer_size=np.int64(buffer.buffer_size),
        **arrays,
    )


def save_checkpoint(model: BaseAlgorithm, path: str | Path, meta: dict[str, Any], replay: bool = True) -> Path:
    """Write `model` as a checkpoint directory at `path` (replacing one already there), atomically.

    Args:
        model: a PPO or DQN model.
        path: the checkpoint directory to create (its parent is created if needed).
        meta: run-level metadata from `make_meta`; `num_timesteps`, `training_state` and `created` are
            filled in here.
        replay: DQN: also write the replay buffer (needed to resume training; not to act).
    Returns:
        The checkpoint directory.
    """
    path = Path(path)
    with atomic_dir(path) as tmp:  # also deletes what a killed save left
        torch.save(model.policy.state_dict(), tmp / "policy.pt")
        torch.save(model.policy.optimizer.state_dict(), tmp / "optimizer.pt")
        has_replay = replay and isinstance(model, DQN) and model.replay_buffer is not None
        if has_replay:
            _save_replay(model, tmp / "replay.npz")  # type: ignore[arg-type]
        full_meta = {
            **meta,
            "format": FORMAT,
            "num_timesteps": int(model.num_timesteps),
            "training_state": training_state(model),
            "has_replay": bool(has_replay),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(tmp / "meta.json", full_meta)  # written last: a directory with meta.json is complete
    return path


# --------------------------------------------------------------------------------------------------- load


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def read_meta(path: str | Path) -> dict[str, Any]:
    """meta.json of the checkpoint directory `path`, checked for format; one-line ValueError otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"not a drivestack checkpoint: {path} does not exist or is not a directory ({HINT})")
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise ValueError(
            f"not a drivestack checkpoint: {path} has no meta.json (the save was interrupted or "
            f"this is another kind of directory; use another checkpoint or {HINT})"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"corrupt checkpoint: {meta_path} is not valid JSON ({_one_line(err)}); use another checkpoint or {HINT}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"not a drivestack checkpoint: {meta_path} has format {found!r}, expected {FORMAT!r} ({HINT})")
    for key in ("algo", "env_id", "env_config", "observation", "action", "hyperparameters", "num_timesteps"):
        if key not in meta:
            raise ValueError(f"corrupt checkpoint: {meta_path} lacks {key!r}; use another checkpoint or {HINT}")
    if meta["algo"] not in ALGOS:
        raise ValueError(f"corrupt checkpoint: {meta_path} has algo {meta['algo']!r}; allowed: {', '.join(ALGOS)}")
    return meta


def _load_tensors(path: Path, device: str) -> Any:
    if not path.is_file():
        raise ValueError(f"incomplete checkpoint: {path} is missing; use another checkpoint or {HINT}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle refused by weights_only, ...
        raise ValueError(
            f"unreadable checkpoint file {path} ({_one_line(err)}); use another checkpoint or {HINT}"
        ) from None


def _load_replay(model: DQN, path: Path) -> None:
    buffer = model.replay_buffer
    assert buffer is not None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as err:
        raise ValueError(f"unreadable checkpoint file {path} ({_one_line(err)}); use another checkpoint") from None
    saved = (int(arrays["n_envs"]), int(arrays["buffer_size"]))
    if saved != (buffer.n_envs, buffer.buffer_size):
        raise ValueError(
            f"replay buffer in {path} holds {saved[1]} x {saved[0]} envs, the model's is "
            f"{buffer.buffer_size} x {buffer.n_envs}: resume with the run's num_envs and buffer_size"
        )
    for name in REPLAY_ARRAYS:
        if name in arrays and getattr(buffer, name) is not None:
            rows = arrays[name]
            getattr(buffer, name)[: len(rows)] = rows
    buffer.pos = int(arrays["pos"])
    buffer.full = bool(arrays["full"])


def _describe_mismatch(saved: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    for key in ("type", "shape", "features", "normalization"):
        if key in wanted and key in saved and saved[key] != wanted[key]:
            return f"observation {key} {saved[key]} (checkpoint) != {wanted[key]} (expected)"
    return None


def check_expectations(meta: dict[str, Any], expect: dict[str, Any] | None, where: Path | str) -> None:
    """Refuse a checkpoint whose algo, env id or observation layout differs from `expect` (ValueError)."""
    for key in ("algo", "env_id"):
        if expect and key in expect and expect[key] is not None and meta.get(key) != expect[key]:
            raise ValueError(
                f"checkpoint {where} was trained with {key}={meta.get(key)!r}, expected "
                f"{key}={expect[key]!r}: pick a checkpoint of the same {key} or change it"
            )
    if expect and expect.get("observation") is not None:
        mismatch = _describe_mismatch(meta["observation"], expect["observation"])
        if mismatch:
            raise ValueError(
                f"checkpoint {where} does not match the environment: {mismatch}; evaluate it on the "
                f"env config it was trained with (meta.json env_config)"
            )


def load_checkpoint(
    path: str | Path,
    env: VecEnv | None = None,
    device: str = "cpu",
    expect: dict[str, Any] | None = None,
    replay: bool = True,
    optimizer: bool = True,
) -> tuple[BaseAlgorithm, dict]:
    """Rebuild the SB3 model of a checkpoint and load its weights, optimizer and counters.

    Only `json.loads`, `torch.load(weights_only=True)` and `np.load(allow_pickle=False)` read the files:
    nothing in a checkpoint can execute code.

    Args:
        path: checkpoint directory (holding meta.json).
        env: VecEnv to attach (None: a one-environment `SB3DrivingVecEnv` of the checkpoint's env config).
        device: torch device of the model.
        expect: optional {"algo", "env_id", "observation"} the checkpoint must match (ValueError naming
            which does not).
        replay: DQN: also restore the replay buffer when the checkpoint has one.
        optimizer: also restore the optimizer (needed to resume training; a release checkpoint for acting only
            ships without optimizer.pt).
    Returns:
        (model, meta).
    """
    path = Path(path)
    meta = read_meta(path)
    check_expectations(meta, expect, path)
    policy_state = _load_tensors(path / "policy.pt", device)
    optimizer_state = _load_tensors(path / "optimizer.pt", device) if optimizer else None
    if env is None:
        from drivestack.sim.vector_env import SB3DrivingVecEnv

        try:
            env_config = env_config_from_dict(meta["env_config"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"corrupt checkpoint: {path / 'meta.json'} env_config: {_one_line(err)}") from None
        env = SB3DrivingVecEnv(num_envs=1, config=env_config, seed=0)
    inference = env.num_envs != meta.get("num_envs", env.num_envs)
    shape = list(env.observation_space.shape or ())
    if shape != list(meta["observation"]["shape"]):
        raise ValueError(
            f"checkpoint {path} expects observations of shape {meta['observation']['shape']}, the "
            f"environment gives {shape}: use the env config it was trained with"
        )
    with warnings.catch_warnings():
        if inference:  # PPO warns that batch_size does not divide a one-environment rollout: irrelevant to acting
            warnings.filterwarnings("ignore", message="You have specified a mini-batch size")
        model = make_model(meta["algo"], meta["hyperparameters"], env, seed=meta.get("seed"), device=device)
    try:
        model.policy.load_state_dict(policy_state)
        if optimizer_state is not None:
            model.policy.optimizer.load_state_dict(optimizer_state)
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(
            f"checkpoint {path} does not fit its own hyperparameters ({_one_line(err)}); use another checkpoint"
        ) from None
    model.num_timesteps = int(meta["num_timesteps"])
    _restore_training_state(model, meta.get("training_state", {}))
    if replay and isinstance(model, DQN) and meta.get("has_replay"):
        if not (path / "replay.npz").is_file():
            raise ValueError(f"incomplete checkpoint: {path / 'replay.npz'} is missing; use another checkpoint")
        _load_replay(model, path / "replay.npz")
    return model, meta


# --------------------------------------------------------------------------------------------------- runs


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints (with meta.json) under `run_dir/checkpoints`, step_* sorted by step, then final."""
    root = Path(run_dir) / "checkpoints"
    steps = [p for p in root.glob("step_*") if p.name[5:].isdigit() and (p / "meta.json").is_file()]
    steps.sort(key=lambda p: int(p.name[5:]))
    final = root / "final"
    return steps + ([final] if (final / "meta.json").is_file() else [])


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint of `run_dir` with the most timesteps (step_* or final); ValueError if none."""
    run_dir = Path(run_dir)
    candidates = list_checkpoints(run_dir)
    if not candidates:
        raise ValueError(f"not a drivestack run directory: {run_dir} has no checkpoints/ ({HINT})")
    return max(candidates, key=lambda p: (read_meta(p)["num_timesteps"], p.name == "final"))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory itself, or for a run directory its `checkpoints/best`, else its latest one."""
    path = Path(path)
    if (path / "meta.json").is_file():
        return path
    if not path.exists():
        raise ValueError(f"not a drivestack run directory: {path} does not exist ({HINT})")
    best = path / "checkpoints" / "best"
    if (best / "meta.json").is_file():
        return best
    return latest_checkpoint(path)


class SB3Policy:
    """A trained SB3 policy behind the planning `Policy` protocol: `act(scene)` -> (B,) long maneuvers.

    The scene is encoded with `planning.scene.encode_scene` under the observation config the policy was
    trained with (kinematics rows, plus the lane features when it had them), which reproduces the simulator's
    observation bit for bit; acts
    deterministically (greedy / distribution mode). `meta` is the checkpoint's meta.json. Only policies
    trained on kinematics observations with meta-actions can act on scenes (ValueError otherwise).
    """

    def __init__(self, model: BaseAlgorithm, meta: dict[str, Any], name: str) -> None:
        self.model = model
        self.meta = meta
        self.name = name
        kind = meta["observation"].get("type")
        if kind != ObservationType.KINEMATICS.value:
            raise ValueError(
                f"policy {name} was trained on {kind!r} observations; only kinematics-observation policies "
                f"act on scenes (encode_scene), so retrain it with the kinematics observation"
            )
        if meta["action"].get("type") != "meta":
            raise ValueError(
                f"policy {name} outputs {meta['action']} actions; only meta-action policies choose maneuvers"
            )
        try:
            trained = env_config_from_dict(meta["env_config"])
            self.observation, self.action = trained.observation, trained.action
        except (TypeError, ValueError) as err:
            raise ValueError(f"corrupt checkpoint of policy {name}: meta.json env_config: {_one_line(err)}") from None

    def check_env_config(self, env_config: EnvConfig) -> None:
        """Raise ValueError unless the environment takes the meta-actions the policy was trained to choose."""
        if self.meta["action"] != action_meta(action_space(env_config)):
            raise ValueError(
                f"policy {self.name} outputs {self.meta['action']} actions, the environment takes "
                f"{action_meta(action_space(env_config))}"
            )
        ours, theirs = self.action, env_config.action
        for name in ("target_speeds", "speed_control"):  # what a maneuver means: the set-points and their control
            if getattr(ours, name) != getattr(theirs, name):
                raise ValueError(
                    f"policy {self.name} was trained with action.{name}={getattr(ours, name)!r}, the environment "
                    f"has {getattr(theirs, name)!r}; drive it in an environment with its action config "
                    "(the *Driver-v0 env ids have the driver action space, Highway-v0 / Merge-v0 highway-env's)"
                )

    def act(self, scene: Scene) -> torch.Tensor:
        """Maneuvers (B,) long on the scene's device, from the encoded scene (B, K, F)."""
        obs = encode_scene(scene, self.observation)
        actions, _ = self.model.predict(obs.detach().cpu().numpy(), deterministic=True)
        return torch.as_tensor(np.asarray(actions), dtype=torch.long, device=scene.ego_speed.device).reshape(
            scene.num_envs
        )


def load_policy(path: str | Path, device: str = "cpu") -> SB3Policy:
    """Load a trained policy for evaluation from a run directory (best, else latest checkpoint) or a checkpoint.

    Raises ValueError (one line) for a folder that is no checkpoint or run, and for a policy that cannot act
    on scenes (trained on occupancy observations or continuous actions).
    """
    checkpoint = resolve_checkpoint(path)
    model, meta = load_checkpoint(checkpoint, device=device, replay=False, optimizer=False)
    model.policy.set_training_mode(False)
    run = checkpoint.parent.parent.name if checkpoint.parent.name == "checkpoints" else None
    name = f"{meta['algo']}:{run}/{checkpoint.name}" if run else f"{meta['algo']}:{checkpoint.name}"
    return SB3Policy(model, meta, name)
