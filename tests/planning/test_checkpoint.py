"""Policy checkpoints: round trips, refusals with one-line messages, no code execution on load, atomic saves."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from drivestack.planning import checkpoint as ckpt
from drivestack.planning.checkpoint import load_checkpoint, load_policy, make_meta, make_model, save_checkpoint
from drivestack.planning.policy import Policy, make_policy
from drivestack.planning.scene import scene_from_world
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import EnvConfig, ObservationConfig, ObservationType, RoadConfig, TrafficConfig
from drivestack.sim.observation import kinematics
from drivestack.sim.vector_env import SB3DrivingVecEnv

SMALL = EnvConfig(traffic=TrafficConfig(num_vehicles=6), road=RoadConfig(length=600.0), duration=10.0)
PPO_HYPER = dict(
    learning_rate=1e-3, n_steps=16, batch_size=32, n_epochs=2, gamma=0.9, net_arch=[16, 16], activation_fn="tanh"
)
DQN_HYPER = dict(
    learning_rate=1e-3,
    buffer_size=1000,
    learning_starts=0,
    batch_size=16,
    gamma=0.9,
    train_freq=1,
    gradient_steps=1,
    target_update_interval=64,
    exploration_fraction=0.5,
    net_arch=[16, 16],
    activation_fn="relu",
)
NUM_ENVS = 4


def _train(algo: str, hyper: dict, steps: int = 128, seed: int = 0):
    env = SB3DrivingVecEnv(num_envs=NUM_ENVS, config=SMALL, seed=seed)
    model = make_model(algo, hyper, env, seed=seed)
    model.learn(steps)
    meta = make_meta(algo, "drivestack/Highway-v0", SMALL, hyper, seed, num_envs=NUM_ENVS)
    return model, meta


@pytest.fixture(scope="module")
def ppo(tmp_path_factory):
    model, meta = _train("ppo", PPO_HYPER)
    path = save_checkpoint(model, tmp_path_factory.mktemp("ppo") / "step_128", meta)
    return model, path


def _observations(n: int = 32) -> np.ndarray:
    env = SB3DrivingVecEnv(num_envs=n, config=SMALL, seed=7)
    obs = env.reset()
    obs2, *_ = env.step(np.random.default_rng(0).integers(0, 5, n))
    return np.concatenate([obs, obs2])


def _assert_state_equal(a: object, b: object) -> None:
    """Nested state dicts (tensors, numbers, lists) equal exactly."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            _assert_state_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_state_equal(x, y)
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    else:
        assert a == b


def test_ppo_round_trip_same_actions_and_optimizer(ppo) -> None:
    model, path = ppo
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "optimizer.pt", "policy.pt"]
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == "drivestack-policy/1" and meta["algo"] == "ppo" and meta["num_timesteps"] == 128
    assert meta["observation"] == {
        "type": "kinematics",
        "shape": [5, 5],
        "features": ["presence", "x", "y", "vx", "vy"],
        "normalization": {"x_range": 100.0, "y_range": 12.0, "v_range": 80.0},
    }
    assert meta["action"] == {"type": "meta", "n": 5} and meta["env_config"]["road"]["scenario"] == "highway"

    loaded, loaded_meta = load_checkpoint(path, env=SB3DrivingVecEnv(num_envs=NUM_ENVS, config=SMALL, seed=1))
    assert loaded.num_timesteps == 128 and loaded_meta["hyperparameters"] == meta["hyperparameters"]
    _assert_state_equal(model.policy.state_dict(), loaded.policy.state_dict())
    _assert_state_equal(model.policy.optimizer.state_dict(), loaded.policy.optimizer.state_dict())
    assert loaded.policy.optimizer.state_dict()["state"], "Adam moments restored"
    obs = _observations()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize("buffer_size", [1000, 64])  # partly filled; full and wrapped around
def test_dqn_round_trip_restores_replay_and_counters(tmp_path: Path, buffer_size: int) -> None:
    model, meta = _train("dqn", {**DQN_HYPER, "buffer_size": buffer_size}, steps=160)
    path = save_checkpoint(model, tmp_path / "ck", meta)
    with np.load(path / "replay.npz", allow_pickle=False) as saved:
        assert len(saved["observations"]) == (buffer_size // NUM_ENVS if model.replay_buffer.full else 40)
    loaded, _ = load_checkpoint(path, env=SB3DrivingVecEnv(num_envs=NUM_ENVS, config=SMALL, seed=1))
    a, b = model.replay_buffer, loaded.replay_buffer
    assert (a.pos, a.full) == (b.pos, b.full) and b.full == (buffer_size == 64)
    for name in ckpt.REPLAY_ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (loaded._n_calls, loaded._n_updates, loaded.exploration_rate) == (
        model._n_calls,
        model._n_updates,
        model.exploration_rate,
    )
    _assert_state_equal(model.policy.state_dict(), loaded.policy.state_dict())  # q_net and q_net_target
    obs = _observations()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    # the replay buffer's layout is tied to num_envs: another one is refused with a fix
    with pytest.raises(ValueError, match="num_envs"):
        load_checkpoint(path, env=SB3DrivingVecEnv(num_envs=2, config=SMALL, seed=1))


def test_refuses_other_algo_env_or_observation(ppo) -> None:
    _, path = ppo
    with pytest.raises(ValueError, match=r"algo='ppo', expected algo='dqn'"):
        load_checkpoint(path, expect={"algo": "dqn"})
    with pytest.raises(ValueError, match=r"env_id='drivestack/Highway-v0', expected env_id='drivestack/Merge-v0'"):
        load_checkpoint(path, expect={"env_id": "drivestack/Merge-v0"})
    other = ckpt.observation_meta(ObservationConfig(features=("presence", "x", "y", "cos_h", "sin_h")))
    with pytest.raises(ValueError, match="observation features"):
        load_checkpoint(path, expect={"observation": other})
    occupancy = ckpt.observation_meta(ObservationConfig(type=ObservationType.OCCUPANCY))
    with pytest.raises(ValueError, match="observation type"):
        load_checkpoint(path, expect={"observation": occupancy})
    occupancy_env = SB3DrivingVecEnv(
        num_envs=1, config=replace(SMALL, observation=ObservationConfig(type=ObservationType.OCCUPANCY)), seed=0
    )
    with pytest.raises(ValueError, match="shape"):
        load_checkpoint(path, env=occupancy_env)
    # matching expectations load
    load_checkpoint(
        path,
        expect={
            "algo": "ppo",
            "env_id": "drivestack/Highway-v0",
            "observation": ckpt.observation_meta(SMALL.observation),
        },
    )


def test_load_policy_acts_on_scenes_like_the_model_on_observations(ppo, tmp_path: Path) -> None:
    """The SB3 policy acting on a ground-truth scene (encoded by encode_kinematics_scene) chooses what the model
    chooses from the environment's own observation, step after step."""
    model, path = ppo
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    os.symlink(path, run / "checkpoints" / "step_128")
    policy = load_policy(run)  # no best/: the latest step_*
    assert policy.name == "ppo:run/step_128" and policy.meta["num_timesteps"] == 128
    assert isinstance(policy, Policy)
    env = BatchedDrivingEnv(SMALL, num_envs=16, seed=3)
    obs, _ = env.reset()
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        actions = policy.act(scene_from_world(env.state, env.road))
        assert actions.dtype == torch.long and actions.shape == (16,) and actions.device == env.device
        np.testing.assert_array_equal(actions.numpy(), model.predict(obs.numpy(), deterministic=True)[0])
        obs, *_ = env.step(torch.randint(0, 5, (16,), generator=g))
    # the policy encodes scenes with its own observation config, whatever the environment's
    other = BatchedDrivingEnv(replace(SMALL, observation=ObservationConfig(vehicles_count=7)), num_envs=2, seed=0)
    other.reset()
    scene = scene_from_world(other.state, other.road)
    expected = model.predict(kinematics(other.state, other.road, SMALL.observation).numpy(), deterministic=True)[0]
    np.testing.assert_array_equal(policy.act(scene).numpy(), expected)
    # the registry gives the same policy from the run directory
    assert make_policy(str(run), SMALL).name == "ppo:run/step_128"
    # a best/ checkpoint wins over the latest one
    os.symlink(path, run / "checkpoints" / "best")
    assert load_policy(run).name == "ppo:run/best"
    assert load_policy(path).meta["algo"] == "ppo"  # a checkpoint directory itself


def test_a_policy_no_scene_can_drive_is_refused_in_one_line(tmp_path: Path) -> None:
    occupancy = replace(SMALL, observation=ObservationConfig(type=ObservationType.OCCUPANCY))
    env = SB3DrivingVecEnv(num_envs=2, config=occupancy, seed=0)
    model = make_model("ppo", PPO_HYPER, env, seed=0)
    meta = make_meta("ppo", "drivestack/Highway-v0", occupancy, PPO_HYPER, 0, num_envs=2)
    path = save_checkpoint(model, tmp_path / "occupancy", meta)
    with pytest.raises(ValueError, match="trained on 'occupancy' observations; only kinematics") as err:
        make_policy(str(path), SMALL)
    assert "\n" not in str(err.value)


def _one_line_error(path: Path, match: str) -> str:
    with pytest.raises(ValueError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_broken_checkpoints_give_one_line_errors(ppo, tmp_path: Path) -> None:
    _, good = ppo
    assert "drivestack train policy" in _one_line_error(tmp_path / "nope", "does not exist")
    with pytest.raises(ValueError, match="has no checkpoints/"):
        load_policy(tmp_path)  # an empty directory is no run

    def copy(name: str) -> Path:
        dst = tmp_path / name
        dst.mkdir()
        for f in good.iterdir():
            (dst / f.name).write_bytes(f.read_bytes())
        return dst

    broken = copy("no_meta")
    (broken / "meta.json").unlink()
    assert str(broken) in _one_line_error(broken, "has no meta.json")
    broken = copy("corrupt_meta")
    (broken / "meta.json").write_text('{"format": "drivestack-policy/1", "algo": ')
    assert "meta.json is not valid JSON" in _one_line_error(broken, "corrupt checkpoint")
    broken = copy("wrong_format")
    meta = json.loads((broken / "meta.json").read_text())
    (broken / "meta.json").write_text(json.dumps({**meta, "format": "sb3-zip"}))
    _one_line_error(broken, "format 'sb3-zip', expected 'drivestack-policy/1'")
    broken = copy("truncated")
    data = (broken / "policy.pt").read_bytes()
    (broken / "policy.pt").write_bytes(data[: len(data) // 2])
    assert "policy.pt" in _one_line_error(broken, "unreadable checkpoint file")
    broken = copy("no_optimizer")
    (broken / "optimizer.pt").unlink()
    _one_line_error(broken, "optimizer.pt is missing")


class _Payload:
    """Pickles to a call of os.mkdir: loading it with plain pickle would create `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_nothing_executes_on_load(ppo, tmp_path: Path, monkeypatch) -> None:
    _, good = ppo
    calls: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(good)
    assert len(calls) == 2 and all(kw.get("weights_only") is True for kw in calls)
    monkeypatch.undo()

    # a policy.pt holding code is refused, and the code does not run
    evil = tmp_path / "evil"
    evil.mkdir()
    for f in good.iterdir():
        (evil / f.name).write_bytes(f.read_bytes())
    marker = tmp_path / "pwned"
    torch.save({"weights": _Payload(marker)}, evil / "policy.pt")
    _one_line_error(evil, "unreadable checkpoint file")
    assert not marker.exists()
    # the payload is live: unpickling it calls what __reduce__ returns (done here directly, not by unpickling)
    run, args = _Payload(marker).__reduce__()
    run(*args)
    assert marker.exists()


def test_replay_is_read_without_pickle(tmp_path: Path, monkeypatch) -> None:
    model, meta = _train("dqn", DQN_HYPER, steps=64)
    path = save_checkpoint(model, tmp_path / "ck", meta)
    calls: list[dict] = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    load_checkpoint(path, env=SB3DrivingVecEnv(num_envs=NUM_ENVS, config=SMALL, seed=1))
    assert calls and all(kw.get("allow_pickle") is False for kw in calls)


def test_save_is_atomic(ppo, tmp_path: Path, monkeypatch) -> None:
    model, good = ppo
    meta = json.loads((good / "meta.json").read_text())
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        if str(f).endswith("optimizer.pt"):
            raise OSError("disk full")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, tmp_path / "ckpts" / "step_1", meta)
    assert list((tmp_path / "ckpts").iterdir()) == []  # neither the checkpoint nor its temporary directory

    # replacing an existing checkpoint: a failed save leaves the old one intact
    monkeypatch.undo()
    target = save_checkpoint(model, tmp_path / "ckpts" / "best", meta)
    before = {f.name: f.read_bytes() for f in target.iterdir()}
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        save_checkpoint(model, target, meta)
    assert {f.name: f.read_bytes() for f in target.iterdir()} == before
    assert [p.name for p in (tmp_path / "ckpts").iterdir()] == ["best"]
