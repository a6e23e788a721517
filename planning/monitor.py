"""What a training run watches: periodic evaluation of the policy, episode metrics, TensorBoard/CSV logging,
checkpoint timing and the progress bar (the SB3 callback `TrainingMonitor`). `planning.train` runs it.

Metrics are the registered ones of `planning.metrics`, so `charts/mean_speed` and `eval/mean_speed` mean what
`drivestack eval policy` reports (pooled distance over pooled time).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
from tqdm import tqdm

from drivestack.planning.metrics import Episodes, compute_metrics
from drivestack.sim.vector_env import SB3DrivingVecEnv

if TYPE_CHECKING:
    from drivestack.planning.train import TrainingRun, TrainPolicyConfig


# ------------------------------------------------------------------------------------------- evaluation


def episode_row(info: dict[str, Any]) -> dict[str, float]:
    """One finished episode of an `SB3DrivingVecEnv` info dict as a row of `planning.metrics.Episodes`."""
    return {
        "returns": info["episode_return"],
        "lengths": info["episode_length"],
        "distances": info["episode_distance"],
        "times": info["episode_time"],
        "lane_changes": info["episode_lane_changes"],
        "mean_abs_jerk": info["episode_mean_abs_jerk"],
        "crashed": bool(info["crashed"]),
        "off_road": bool(info["off_road"]),
    }


# eval/<key> logged after every periodic evaluation: the key of `evaluate_model`'s result -> registered metric
EVAL_METRICS = {
    "return": "return_mean",
    "collision_rate": "collision_rate",
    "off_road_rate": "off_road_rate",
    "mean_speed": "mean_speed",
    "episode_length": "episode_length_mean",
    "episodes": "episodes",
}
# charts/<key> logged from the training episodes finished since the last row -> registered metric
CHART_METRICS = {
    "episodic_return": "return_mean",
    "episode_length": "episode_length_mean",
    "collision_rate": "collision_rate",
    "off_road_rate": "off_road_rate",
    "mean_speed": "mean_speed",
}


def evaluate_model(model: BaseAlgorithm, env: SB3DrivingVecEnv, seed: int) -> dict[str, float]:
    """Deterministic policy, one episode in each of `env`'s environments, all stepped at once.

    Each environment's first episode counts (episodes end by collision, off-road or at the duration).
    Returns the `EVAL_METRICS` of those episodes (`planning.metrics`): mean return, collision rate, off-road
    rate (fraction ended by leaving the road, e.g. missing a merge), mean speed [m/s] (distance over time,
    pooled over episodes, as `drivestack eval policy` reports it), mean episode length [decisions] and the
    episode count.
    """
    env.seed(seed)
    obs = env.reset()
    B = env.num_envs
    finished = np.zeros(B, dtype=bool)
    rows: list[dict[str, float]] = [{} for _ in range(B)]
    config = env.core.config
    for _ in range(config.max_policy_steps):  # every episode ends by then (truncation)
        actions, _ = model.predict(obs, deterministic=True)
        obs, _, dones, infos = env.step(actions)
        for i in np.flatnonzero(dones & ~finished):
            rows[i] = episode_row(infos[i])
        finished |= dones
        if finished.all():
            break
    metrics = compute_metrics(Episodes.from_rows(rows), list(EVAL_METRICS.values()))
    return {key: float(metrics[name]) for key, name in EVAL_METRICS.items()}


def better(result: dict[str, float], best: dict[str, float] | None) -> bool:
    """Whether an evaluation beats the best so far: higher return, ties to the lower collision rate."""
    if best is None:
        return True
    return (result["return"], -result["collision_rate"]) > (best["return"], -best["collision_rate"])


# ------------------------------------------------------------------------------------------- logging


class _AppendingCSV(CSVOutputFormat):
    """SB3's CSV writer, but continuing an existing progress.csv (SB3's truncates it) so a resumed run appends."""

    def __init__(self, filename: str) -> None:
        path = Path(filename)
        exists = path.is_file() and path.stat().st_size > 0
        self.file = open(filename, "r+" if exists else "w+")  # noqa: SIM115 (closed by Logger.close)
        self.keys: list[str] = []
        self.separator, self.quotechar = ",", '"'
        if exists:
            header = self.file.readline().rstrip("\n")
            self.keys = header.split(",") if header else []
            self.file.seek(0, 2)


def make_logger(tb_dir: Path) -> Logger:
    """SB3 logger writing TensorBoard events and progress.csv under `tb_dir` (appending to an earlier run)."""
    tb_dir.mkdir(parents=True, exist_ok=True)
    return Logger(str(tb_dir), [TensorBoardOutputFormat(str(tb_dir)), _AppendingCSV(str(tb_dir / "progress.csv"))])


class TrainingMonitor(BaseCallback):
    """Episode metrics, periodic evaluation, checkpoints and the progress bar.

    Evaluation, checkpoints and log rows happen at the start of a rollout, the one point where the weights,
    optimizer, counters and (DQN) replay buffer all account for exactly `num_timesteps` steps.
    """

    def __init__(self, cfg: TrainPolicyConfig, run: TrainingRun, desc: str = "training") -> None:
        super().__init__()
        self.cfg, self.run, self.desc = cfg, run, desc
        self._episodes: list[dict[str, float]] = []  # `episode_row`s finished since the last log row
        self.consistent_steps = 0
        self.start_time = 0.0
        self.start_steps = self.last_log = 0
        self.next_eval: int | None = None
        self.next_checkpoint: int | None = None
        self.pbar: tqdm | None = None
        self.out_of_time = False

    def _on_training_start(self) -> None:
        self.start_time = time.perf_counter()
        self.start_steps = self.consistent_steps = self.model.num_timesteps
        self.last_log = self.model.num_timesteps
        every = self.cfg.eval_every
        self.next_eval = (self.model.num_timesteps // every + 1) * every if every else None
        every = self.cfg.checkpoint_every
        self.next_checkpoint = (self.model.num_timesteps // every + 1) * every if every else None
        self.pbar = tqdm(
            total=self.cfg.total_timesteps,
            initial=self.model.num_timesteps,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            disable=not self.cfg.progress,
            desc=self.desc,
        )

    def sps(self) -> float:
        elapsed = time.perf_counter() - self.start_time
        return (self.model.num_timesteps - self.start_steps) / max(elapsed, 1e-9)

    def _on_step(self) -> bool:
        dones, infos = self.locals["dones"], self.locals["infos"]
        for i in np.flatnonzero(dones):  # finished environments only: a few per step
            self._episodes.append(episode_row(infos[i]))
        if self.pbar is not None:
            self.pbar.update(len(dones))
        if self.cfg.max_minutes is not None and time.perf_counter() - self.start_time > 60.0 * self.cfg.max_minutes:
            self.out_of_time = True
            return False  # stops learn(); the rollout in progress is not trained on
        return True

    def record_episodes(self) -> None:
        if self._episodes:
            metrics = compute_metrics(Episodes.from_rows(self._episodes), list(CHART_METRICS.values()))
            for key, name in CHART_METRICS.items():
                self.logger.record(f"charts/{key}", float(metrics[name]))
            self._episodes.clear()
        self.logger.record("charts/SPS", self.sps())
        self.logger.record("time/total_timesteps", self.model.num_timesteps)  # the step column of progress.csv

    def dump(self) -> None:
        self.record_episodes()
        self.logger.dump(step=self.model.num_timesteps)
        self.last_log = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        steps = self.model.num_timesteps
        self.consistent_steps = steps
        if self.next_eval is not None and steps >= self.next_eval:
            self.run.evaluate(self.model)
            self.next_eval = (steps // self.cfg.eval_every + 1) * self.cfg.eval_every
            if self.pbar is not None and self.run.last_eval is not None:
                ev = self.run.last_eval
                self.pbar.set_postfix_str(
                    f"eval return {ev['return']:.1f}, collisions {ev['collision_rate']:.0%}, "
                    f"{ev['mean_speed']:.1f} m/s",
                    refresh=False,
                )
            self.dump()
        if self.next_checkpoint is not None and steps >= self.next_checkpoint:
            self.run.save(self.model, f"step_{steps}")
            self.next_checkpoint = (steps // self.cfg.checkpoint_every + 1) * self.cfg.checkpoint_every
        if steps - self.last_log >= self.cfg.log_every:
            self.dump()

    def close(self) -> None:
        if self.pbar is not None:
            self.pbar.close()
