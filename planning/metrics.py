"""Episode metrics: pure functions of per-episode accumulations, registered by name.

Every evaluator (`drivestack eval policy` through `planning.evaluate`, the training monitor's charts/* and
the periodic eval/* of `planning.train`) computes its figures from an `Episodes` table with the functions
registered here, so a name means one thing everywhere. Rates are over episodes; speed, lane changes and
jerk are pooled over driving time (a long episode weighs more than a crash after 3 s).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np

MetricFn = Callable[["Episodes"], float]
METRICS: dict[str, MetricFn] = {}
"""Registered metrics, name -> function of an `Episodes` table (in registration order)."""


@dataclass(frozen=True)
class Episodes:
    """Outcomes of E finished episodes, numpy arrays shaped (E,)."""

    returns: np.ndarray  # episode return (sum of per-step rewards)
    lengths: np.ndarray  # policy steps (decisions)
    distances: np.ndarray  # [m] driven along the road
    times: np.ndarray  # [s] simulated duration
    lane_changes: np.ndarray  # lane changes of the ego
    mean_abs_jerk: np.ndarray  # [m/s^3] mean over the episode's simulation steps of |d accel / dt|
    crashed: np.ndarray  # bool: ended in a collision
    off_road: np.ndarray  # bool: ended off the road

    @property
    def count(self) -> int:
        return int(self.returns.shape[0])

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, float]]) -> Episodes:
        """A table from one dict per episode holding every field (bools for crashed / off_road)."""
        return cls(
            **{
                f.name: np.asarray([r[f.name] for r in rows], dtype=bool if f.name in _BOOLS else np.float64)
                for f in fields(cls)
            }
        )


_BOOLS = ("crashed", "off_road")
# The simulator's end-of-episode info keys that carry an episode's outcome (sim.vector_env / BatchedDrivingEnv),
# in `Episodes` field order, plus the episode id that says which episode it was.
EPISODE_INFO_KEYS: tuple[str, ...] = (
    "episode_return",
    "episode_length",
    "episode_distance",
    "episode_time",
    "episode_lane_changes",
    "episode_mean_abs_jerk",
    "crashed",
    "off_road",
    "episode_id",
)


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Decorator: register `fn(episodes) -> float` under `name` (ValueError if the name is taken)."""

    def add(fn: MetricFn) -> MetricFn:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        METRICS[name] = fn
        return fn

    return add


def compute_metrics(episodes: Episodes, names: Sequence[str] | None = None) -> dict[str, float]:
    """The metrics `names` (default: every registered one, in registration order) of `episodes`.

    Raises ValueError naming the registered metrics for an unknown name.
    """
    names = list(METRICS) if names is None else list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; registered: {', '.join(METRICS)}")
    return {n: METRICS[n](episodes) for n in names}


def _per_time(total: float, episodes: Episodes) -> float:
    time = float(episodes.times.sum())
    return total / time if time > 0 else 0.0


@register_metric("episodes")
def episodes(e: Episodes) -> float:
    """Number of episodes."""
    return e.count


@register_metric("collision_rate")
def collision_rate(e: Episodes) -> float:
    """Fraction of episodes that ended in a collision of the ego."""
    return float(e.crashed.mean())


@register_metric("off_road_rate")
def off_road_rate(e: Episodes) -> float:
    """Fraction of episodes that ended with the ego off the road (e.g. a missed merge)."""
    return float(e.off_road.mean())


@register_metric("mean_speed")
def mean_speed(e: Episodes) -> float:
    """[m/s] distance driven along the road over time driven, both summed over all episodes (0 without time).

    Pooled, not a mean of per-episode speeds: every second driven counts once, so a crash after a few
    seconds does not weigh as much as a full episode. This is the figure the README's policy table quotes.
    """
    return _per_time(float(e.distances.sum()), e)


@register_metric("distance_per_episode")
def distance_per_episode(e: Episodes) -> float:
    """[m] mean distance driven along the road per episode."""
    return float(e.distances.mean())


@register_metric("lane_changes_per_minute")
def lane_changes_per_minute(e: Episodes) -> float:
    """[1/min] lane changes of the ego over time driven, pooled over episodes."""
    return _per_time(60.0 * float(e.lane_changes.sum()), e)


@register_metric("mean_abs_jerk")
def mean_abs_jerk(e: Episodes) -> float:
    """[m/s^3] mean |jerk| over every second driven (per-episode means weighted by duration)."""
    return _per_time(float((e.mean_abs_jerk * e.times).sum()), e)


@register_metric("return_mean")
def return_mean(e: Episodes) -> float:
    """Mean episode return."""
    return float(e.returns.mean())


@register_metric("return_std")
def return_std(e: Episodes) -> float:
    """Standard deviation of the episode return over episodes (population, ddof 0)."""
    return float(e.returns.std())


@register_metric("episode_time_mean")
def episode_time_mean(e: Episodes) -> float:
    """[s] mean simulated episode duration."""
    return float(e.times.mean())


@register_metric("episode_length_mean")
def episode_length_mean(e: Episodes) -> float:
    """[decisions] mean episode length in policy steps."""
    return float(e.lengths.mean())
