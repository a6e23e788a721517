"""`--ray`: data make, eval policy and train policy --sweep on a local Ray instance give what one process gives.

One Ray instance (2 CPUs, no dashboard) serves the module; the commands see it is up and use it as it is. Without
the `ray` extra these tests are skipped, except the one that checks the one-line error naming the extra.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from drivestack import distributed
from drivestack.cli import main

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason='ray is not installed (the extra: pip install -e ".[ray]")')

# 3 scenes of 1 s (2 keyframes), one scene per batch: 3 shards over 2 workers
TINY = dict(scenes=3, seconds=1.0, width=64, height=48, lidar_beams=8, lidar_azimuths=64, batch_scenes=1, seed=3)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def single_dataset(tmp_path_factory) -> tuple[Path, dict]:
    """The tiny dataset written by one process (no Ray)."""
    from drivestack.cli.data_make import DatasetConfig, run_make

    out = tmp_path_factory.mktemp("single") / "data"
    return out, run_make(DatasetConfig(out=out, **TINY))


@needs_ray
def test_data_make_on_ray_writes_the_same_bytes(ray_local, single_dataset, tmp_path):
    from drivestack.cli.data_make import DatasetConfig, run_make

    single_root, single = single_dataset
    sharded = run_make(DatasetConfig(out=tmp_path / "ray", ray="local", **TINY))
    a, b = _files(single_root), _files(tmp_path / "ray")
    assert sorted(a) == sorted(b)
    assert len(a) == 3 * 2 * 2 + 13 + 2  # JPEG and lidar per keyframe, 13 tables, splits.json, the map
    assert [name for name in a if a[name] != b[name]] == []
    assert sharded["keyframes"] == single["keyframes"] == 6
    assert sharded["annotations"] == single["annotations"]
    assert [p.name for p in tmp_path.iterdir()] == ["ray"]  # no temporary folder left


@needs_ray
def test_data_make_shard_whose_worker_dies_is_redone(ray_local, single_dataset, tmp_path):
    from drivestack.sim.nuscenes_export import DatasetConfig, export_dataset, export_layout, export_shard

    marker = tmp_path / "died-once"

    def flaky_shard(cfg, root, first, nb):  # shard 1's first try dies after leaving half-written files
        batch = export_shard(cfg, root, first, nb)
        if first == 1 and not marker.exists():
            marker.touch()
            for path in root.rglob(f"{export_layout(cfg).logfiles[first]}*"):
                path.write_bytes(b"partial")
            os._exit(1)
        return batch

    def run_shards(cfg, root, batches):
        arguments = [(cfg, root.absolute(), first, nb) for first, nb in batches]
        return distributed.run_tasks(flaky_shard, arguments, desc="t", max_retries=1, progress=False)

    export_dataset(DatasetConfig(out=tmp_path / "ray", **TINY), progress=False, run_shards=run_shards)
    assert marker.exists()
    a, b = _files(single_dataset[0]), _files(tmp_path / "ray")
    assert sorted(a) == sorted(b) and [name for name in a if a[name] != b[name]] == []


@needs_ray
def test_eval_policy_on_ray_gives_the_same_figures(ray_local, tmp_path):
    from drivestack.cli.eval_policy import EvalPolicyConfig, run_eval
    from drivestack.distributed import episode_ranges

    assert episode_ranges(5, 4) == [(0, 1), (1, 1), (2, 1), (3, 2)]
    assert episode_ranges(2, 8) == [(0, 1), (1, 1)]
    cfg = EvalPolicyConfig(policies=("rule", "idle"), episodes=5, duration=4.0, videos=0, out=tmp_path / "one")
    one = run_eval(cfg)
    spread = run_eval(replace(cfg, out=tmp_path / "ray", ray="local"))  # 4 tasks of 1-2 episodes per policy
    for label in ("rule", "idle"):
        a, b = one["policies"][label], spread["policies"][label]
        assert a["episodes"] == b["episodes"]
        assert {k: v for k, v in a["summary"].items() if k != "wall_time"} == {
            k: v for k, v in b["summary"].items() if k != "wall_time"
        }
    written = json.loads((tmp_path / "ray" / "eval.json").read_text())
    assert written["policies"]["rule"]["episodes"] == one["policies"]["rule"]["episodes"]


@needs_ray
def test_drive_on_ray_gives_the_same_figures(ray_local, tmp_path):
    from drivestack.cli.drive import DriveConfig, run_drive

    cfg = DriveConfig(
        perception="oracle",
        policy="rule",
        episodes=3,
        num_envs=2,
        seconds=2.0,
        width=96,
        height=54,
        videos=1,
        out=tmp_path / "one",
    )
    one = run_drive(cfg)
    spread = run_drive(replace(cfg, out=tmp_path / "ray", ray="local"))  # 2 parts: episodes 0 and 1-2
    for path in ("privileged", "oracle"):
        a, b = one["paths"][path], spread["paths"][path]
        assert a["episodes"] == b["episodes"]
        assert {k: v for k, v in a["summary"].items() if k != "wall_time"} == {
            k: v for k, v in b["summary"].items() if k != "wall_time"
        }
    a, b = (dict(r["paths"]["oracle"]["perception_in_loop"]) for r in (one, spread))
    a.pop("camera_frames"), b.pop("camera_frames")  # frames of a batch: counted per part
    assert a == b
    assert spread["videos"] == ["videos/oracle_episode000.mp4"] and (tmp_path / "ray" / spread["videos"][0]).is_file()


@needs_ray
def test_a_task_whose_worker_dies_runs_again(ray_local, tmp_path):
    marker = tmp_path / "died-once"

    def square(x: int) -> int:  # a local function: Ray pickles it by value
        if x == 2 and not marker.exists():
            marker.touch()
            os._exit(1)  # the worker process dies mid-task, as on a lost node
        return x * x

    assert distributed.run_tasks(square, [(x,) for x in range(4)], desc="t", max_retries=1, progress=False) == [
        0,
        1,
        4,
        9,
    ]
    assert marker.exists()


@needs_ray
def test_a_task_error_a_user_caused_is_raised_as_itself(ray_local):
    def check(x: int) -> int:
        if x == 1:
            raise ValueError("--thing 1 is wrong; allowed: 0")
        return x

    with pytest.raises(ValueError, match=r"^--thing 1 is wrong; allowed: 0$"):
        distributed.run_tasks(check, [(0,), (1,)], desc="t", progress=False)


def test_ray_address_checked():
    assert distributed.check_address("auto") == "auto"
    assert distributed.check_address("ray://head:10001") == "ray://head:10001"
    assert distributed.check_address("10.0.0.2:6379") == "10.0.0.2:6379"
    with pytest.raises(ValueError, match="not a Ray address"):
        distributed.check_address("head")
    with pytest.raises(ValueError, match="nothing answers there"):
        distributed._check_listening("ray://127.0.0.1:1")  # nothing listens on port 1: one line, no minutes of retries


def test_ray_option_without_the_extra_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra
    status = main(["data", "make", "--out", str(tmp_path / "d"), "--scenes", "1", "--seconds", "1", "--ray"])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("drivestack: error: --ray needs Ray") and 'pip install -e ".[ray]"' in err
    assert not (tmp_path / "d").exists()
    status = main(["eval", "policy", "--policies", "rule", "--out", str(tmp_path / "e"), "--ray", "auto"])
    assert status == 2 and 'pip install -e ".[ray]"' in capsys.readouterr().err


def test_data_make_on_ray_needs_a_fixed_thread_count(tmp_path):
    from drivestack.cli.data_make import DatasetConfig, run_make

    with pytest.raises(ValueError, match="--threads 0 .* with --ray"):
        run_make(DatasetConfig(out=tmp_path / "d", ray="local", threads=0, **TINY))
    assert not (tmp_path / "d").exists()


def test_evaluate_a_range_of_episodes_equals_that_part_of_the_whole():
    from drivestack.planning.baselines import RulePolicy
    from drivestack.planning.evaluate import EvalResult, evaluate
    from drivestack.sim.config import env_config

    config = replace(env_config("drivestack/Highway-v0"), duration=3.0)
    whole = evaluate(RulePolicy(), config, 5, seed=4, progress=False)
    parts = [
        evaluate(RulePolicy(), config, n, seed=4, progress=False, first_episode=first, num_envs=b)
        for first, n, b in ((0, 2, 1), (2, 3, 2))
    ]
    joined = EvalResult.concatenate(parts, wall_time=0.0)
    np.testing.assert_array_equal(joined.returns, whole.returns)
    np.testing.assert_array_equal(joined.distances, whole.distances)
    assert {k: v for k, v in joined.summary().items() if k != "wall_time"} == {
        k: v for k, v in whole.summary().items() if k != "wall_time"
    }


def test_merge_needs_every_scene_once():
    from drivestack.sim.nuscenes_rollout import scene_batches

    assert scene_batches(5, 2) == [(0, 2), (2, 2), (4, 1)]
    assert scene_batches(3, 16) == [(0, 3)]
    assert np.sum([nb for _, nb in scene_batches(10, 3)]) == 10


@needs_ray
def test_sweep_two_trials_each_a_run_directory(ray_local, tmp_path):
    from drivestack.cli.train_policy import TrainPolicyConfig, run_train

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"search": {"learning_rate": {"grid": [3e-4, 1e-3]}}, "grace_timesteps": 32}))
    cfg = TrainPolicyConfig(
        sweep=spec,
        ray="local",
        run_dir=tmp_path / "sweep",
        num_envs=4,
        n_steps=8,
        batch_size=32,
        n_epochs=1,
        total_timesteps=64,
        eval_every=32,
        eval_episodes=2,
        checkpoint_every=0,
        log_every=32,
        progress=False,
    )
    summary = run_train(cfg)
    trials = summary["trials"]
    assert len(trials) == 2
    assert sorted(t["params"]["learning_rate"] for t in trials) == [3e-4, 1e-3]
    for t in trials:
        assert t["curve"] and t["curve"][0]["timesteps"] == 32  # the first evaluation reached Tune
        assert t["status"] in ("completed", "stopped")  # ASHA may stop the worse trial after its grace period
        run_dir = Path(t["run_dir"])
        assert (run_dir / "config.json").is_file() and (run_dir / "tb" / "progress.csv").is_file()
    assert any(t["status"] == "completed" and t["timesteps"] == 64 for t in trials)
    for name in ("sweep.json", "sweep.csv", "sweep.png"):
        assert (tmp_path / "sweep" / name).stat().st_size > 0
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["trials"][0]["trial"] == trials[0]["trial"]


def test_sweep_spec_mistakes_are_one_line(tmp_path):
    from drivestack.cli.train_policy import TrainPolicyConfig, load_spec, run_train

    cfg = TrainPolicyConfig(run_dir=tmp_path / "s")
    spec = tmp_path / "spec.json"
    for content, message in (
        ({"search": {}}, 'non-empty "search"'),
        ({"search": {"learning_rate": {"normal": [0, 1]}}}, "must be one of"),
        ({"search": {"run_dir": {"choice": ["a"]}}}, "not a training option"),
        ({"search": {"buffer_size": {"choice": [1000]}}}, "dqn setting"),  # the default algo is PPO
        ({"search": {"gamma": {"uniform": [0.9]}}}, r"\[low, high\]"),
        ({"search": {"gamma": {"choice": [0.9]}}, "metric": "speed"}, "metric 'speed'"),
        ({"search": {"gamma": {"choice": [0.9]}}, "samples": 3}, "unknown key 'samples'"),
    ):
        spec.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=message):
            load_spec(spec, cfg)
    with pytest.raises(ValueError, match="--ray needs --sweep"):
        run_train(replace(cfg, ray="local"))
