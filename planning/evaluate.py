"""Policy evaluation: run exactly N episodes of a policy on the batched simulator and score them.

The N episodes are episodes 0..N-1 of the seed (`sim.batched_env.BatchedDrivingEnv`: environment i runs
episodes i, i + B, i + 2B, ...; each episode's traffic is a function of (seed, episode id) alone), so the
result does not depend on how many environments step together, and short episodes (crashes) are not
over-represented the way "the first N episodes to finish" would over-represent them. Each finished episode
is read once from the `episode_*` entries of the step info and kept as one row of per-episode arrays,
ordered by episode id; the summary metrics are the registered episode metrics of `planning.metrics` over
those arrays. The policy acts on the ground-truth scene of every step (`scene_from_world`).
"""

from __future__ import annotations

import re
import time
from dataclasses import KW_ONLY, dataclass, fields

import numpy as np
import torch
from tqdm import tqdm

from drivestack.common.checks import check_number
from drivestack.planning.metrics import EPISODE_INFO_KEYS, Episodes, compute_metrics
from drivestack.planning.policy import Policy
from drivestack.planning.scene import scene_from_world
from drivestack.sim.batched_env import MAX_NUM_ENVS, BatchedDrivingEnv
from drivestack.sim.config import EnvConfig

MAX_EVAL_ENVS = 512  # B of an evaluation unless num_envs says otherwise
# The registered metrics of `EvalResult.summary` (then wall_time), in the order eval.json lists them.
SUMMARY_METRICS = (
    "episodes",
    "collision_rate",
    "off_road_rate",
    "mean_speed",
    "distance_per_episode",
    "lane_changes_per_minute",
    "mean_abs_jerk",
    "return_mean",
    "return_std",
    "episode_time_mean",
)
# The summary metrics `seed_summary` averages over seeds (a seed's figure is its own evaluation's).
SEED_METRICS = SUMMARY_METRICS[1:8]  # collision_rate ... return_mean
_SEED_SUFFIX = re.compile(r"^(?P<name>.*[^/])-(?P<seed>\d+)/*$")  # "runs/train/ppo-a-2/" -> ("runs/train/ppo-a", 2)


@dataclass(frozen=True)
class EvalResult(Episodes):
    """Per-episode outcomes of one policy (the `Episodes` arrays, shaped (episodes,)) and the run's bookkeeping."""

    _: KW_ONLY
    policy: str  # the policy's name
    wall_time: float = 0.0  # [s] wall-clock time of the evaluation

    @property
    def episodes(self) -> int:
        return int(self.returns.shape[0])

    @property
    def outcomes(self) -> Episodes:
        """The per-episode arrays as the plain `planning.metrics` table."""
        return Episodes(**{f.name: getattr(self, f.name) for f in fields(Episodes)})

    def summary(self) -> dict[str, float]:
        """The `SUMMARY_METRICS` (see `planning.metrics`: rates over episodes, speed, lane changes and jerk
        pooled over driving time) and the wall time [s]."""
        return {**compute_metrics(self.outcomes, SUMMARY_METRICS), "wall_time": float(self.wall_time)}

    def to_json(self) -> dict:
        """A JSON-serialisable dict: the summary and the per-episode arrays (`from_json` reads it back)."""
        per_episode = {
            f.name: getattr(self, f.name).tolist()
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }
        return {"policy": self.policy, "summary": self.summary(), "episodes": per_episode}

    @classmethod
    def concatenate(cls, parts: list[EvalResult], wall_time: float) -> EvalResult:
        """One result from parts that scored consecutive episode ranges (in order) of the same policy and seed."""
        arrays = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Episodes)}
        return cls(policy=parts[0].policy, wall_time=wall_time, **arrays)

    @classmethod
    def from_json(cls, data: dict) -> EvalResult:
        arrays = {
            k: np.asarray(v, dtype=bool if k in ("crashed", "off_road") else np.float64)
            for k, v in data["episodes"].items()
        }
        return cls(policy=data["policy"], wall_time=float(data["summary"].get("wall_time", 0.0)), **arrays)


@torch.no_grad()
def evaluate(
    policy: Policy,
    env_config: EnvConfig,
    episodes: int,
    device: str | torch.device = "cpu",
    seed: int = 0,
    num_envs: int | None = None,
    progress: bool = True,
    first_episode: int = 0,
) -> EvalResult:
    """Run exactly `episodes` episodes of `policy` and collect their outcomes.

    Args:
        policy: the policy (see `planning.policy.Policy`), acting on the ground-truth scene.
        env_config: the environment (meta actions).
        episodes: number of episodes to score (>= 1).
        device: torch device of the simulator.
        seed: seed of the environments' generator.
        num_envs: B, environments stepped together (default 512; never more than `episodes`, at most
            `MAX_NUM_ENVS`). The result is the same for every B (up to float rounding on CUDA).
        progress: show a tqdm progress bar over episodes.
        first_episode: score episodes first_episode..first_episode+episodes-1 of the seed instead (a part of a
            larger evaluation run elsewhere: `EvalResult.concatenate` of the parts equals the whole, rows and
            figures, for a policy that decides per environment (every one but `random`)).
    Returns:
        EvalResult with one row per episode, episodes first_episode.. of the seed in order.
    """
    check_number("episodes", episodes, low=1, integer=True)
    check_number("first_episode", first_episode, low=0, integer=True)
    if num_envs is not None:
        check_number("num_envs", num_envs, low=1, high=MAX_NUM_ENVS, integer=True)
    B = min(episodes, MAX_EVAL_ENVS if num_envs is None else num_envs)  # more environments than episodes idle
    start = time.perf_counter()
    env = BatchedDrivingEnv(env_config, num_envs=B, device=device, seed=seed, autoreset=True)
    env.reset()  # environment i runs episodes i, i + B, ...
    if first_episode > 0:  # a reset without a seed starts the B ids after the highest so far
        env.episode.fill_(first_episode - 1)
        env.reset()  # ... or first + i, first + i + B, ...: the first `episodes` ids from there are scored
    last = first_episode + episodes
    collected = 0
    keys = EPISODE_INFO_KEYS
    rows: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    bar = tqdm(total=episodes, desc=f"eval {policy.name}", unit="ep", disable=not progress, leave=False)
    # Environment i runs ceil((episodes - i) / B) scored episodes of at most max_policy_steps each.
    max_steps = -(-episodes // B) * env.config.max_policy_steps
    for _ in range(max_steps):
        if collected >= episodes:
            break
        _, _, terminated, truncated, info = env.step(policy.act(scene_from_world(env.state, env.road)))
        done = terminated | truncated
        if not bool(done.any()):
            continue
        take = done & (info["episode_id"] < last)  # episodes past the N-th are not scored
        if bool(take.any()):
            for k in keys:
                rows[k].append(info[k][take].cpu().numpy())
            n = int(take.sum())
            collected += n
            bar.update(n)
    bar.close()
    assert collected == episodes, "every episode finishes within its step budget"
    order = np.argsort(np.concatenate(rows["episode_id"]), kind="stable")  # by episode id
    col = {k: np.concatenate(v)[order] for k, v in rows.items()}
    return EvalResult(
        policy=policy.name,
        returns=col["episode_return"].astype(np.float64),
        lengths=col["episode_length"].astype(np.float64),
        distances=col["episode_distance"].astype(np.float64),
        times=col["episode_time"].astype(np.float64),
        lane_changes=col["episode_lane_changes"].astype(np.float64),
        mean_abs_jerk=col["episode_mean_abs_jerk"].astype(np.float64),
        crashed=col["crashed"].astype(bool),
        off_road=col["off_road"].astype(bool),
        wall_time=time.perf_counter() - start,
    )


def format_summary(summary: dict[str, float]) -> str:
    """One line of the headline metrics (for logs)."""
    return (
        f"{summary['episodes']} episodes: collisions {100 * summary['collision_rate']:.1f} %, off-road "
        f"{100 * summary['off_road_rate']:.1f} %, {summary['mean_speed']:.1f} m/s, "
        f"{summary['lane_changes_per_minute']:.2f} lane changes/min, jerk {summary['mean_abs_jerk']:.2f} m/s^3, "
        f"return {summary['return_mean']:.2f} +- {summary['return_std']:.2f} ({summary['wall_time']:.1f} s)"
    )


def seed_groups(labels: list[str]) -> dict[str, list[str]]:
    """Labels that differ only by a trailing `-<seed>` (run directories of one recipe), grouped by the rest.

    `["rule", "runs/ppo-0", "runs/ppo-1/", "runs/dqn-0"]` -> `{"runs/ppo": ["runs/ppo-0", "runs/ppo-1/"]}`: only
    names shared by two or more labels with distinct seeds form a group; groups in the order of their first label.
    """
    groups: dict[str, list[str]] = {}
    seeds: dict[str, set[int]] = {}
    for label in labels:
        match = _SEED_SUFFIX.match(label)
        if match is None:
            continue
        name, seed = match["name"], int(match["seed"])
        if seed in seeds.setdefault(name, set()):
            continue  # the same run twice is not another seed
        seeds[name].add(seed)
        groups.setdefault(name, []).append(label)
    return {name: members for name, members in groups.items() if len(members) >= 2}


def seed_summary(summaries: list[dict[str, float]]) -> dict[str, dict]:
    """Mean and standard deviation over seeds of each `SEED_METRICS` figure of per-seed summaries.

    Args:
        summaries: one `EvalResult.summary()` per seed (two or more).
    Returns:
        {metric: {"mean", "std", "values"}}, std the sample standard deviation (ddof = 1: the seeds are a sample
        of the recipe's outcomes), values the per-seed figures in the given order; plus "episodes": the
        per-seed episode counts.
    """
    assert len(summaries) >= 2, "a spread over seeds needs two or more"
    out: dict[str, dict] = {}
    for key in SEED_METRICS:
        values = np.asarray([s[key] for s in summaries], dtype=np.float64)
        out[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)), "values": values.tolist()}
    out["episodes"] = {"values": [int(s["episodes"]) for s in summaries]}
    return out
