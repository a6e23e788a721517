"""Counter-based draws: the tensor hash equals its Python reference bit for bit, and an episode's numbers do not
depend on the batch it is drawn in."""

from __future__ import annotations

import torch

from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.config import EnvConfig, RoadConfig, TrafficConfig
from drivestack.sim.randomness import MASK64, EpisodeDraws, mix64, mix64_int


def test_mix64_matches_the_python_reference() -> None:
    xs = [0, 1, 2**63 - 1, -1, -(2**63), 12_345_678_901_234, -987_654_321]
    got = mix64(torch.tensor(xs, dtype=torch.int64)).tolist()
    assert [g & MASK64 for g in got] == [mix64_int(x) for x in xs]


def test_episode_draws_depend_on_seed_and_episode_only() -> None:
    big = EpisodeDraws(5, torch.arange(10))
    small = EpisodeDraws(5, torch.tensor([7, 3]))
    for shape in ((4,), (6, 3)):
        a, b = big.rand((10, *shape)), small.rand((2, *shape))
        assert torch.equal(b, a[[7, 3]])
        assert (a >= 0).all() and (a < 1).all()
    k = small.randint(4, (2, 50))
    assert k.min() >= 0 and k.max() <= 3 and len(k.unique()) == 4
    assert not torch.equal(EpisodeDraws(6, torch.arange(2)).rand((2, 8)), EpisodeDraws(5, torch.arange(2)).rand((2, 8)))


def test_an_episode_starts_the_same_in_any_slot_and_batch() -> None:
    config = EnvConfig(traffic=TrafficConfig(num_vehicles=12), road=RoadConfig(length=500.0))
    wide = BatchedDrivingEnv(config, num_envs=6, seed=2)
    wide.reset()
    single = BatchedDrivingEnv(config, num_envs=1, seed=2)
    for k in range(6):  # a single environment reaches episode k after k fresh resets
        single.reset() if k else single.reset(seed=2)
        assert int(single.episode[0]) == k
        for name in ("s", "d", "speed", "length", "lane", "desired_speed"):
            assert torch.equal(getattr(single.state.vehicles, name)[0], getattr(wide.state.vehicles, name)[k]), name
