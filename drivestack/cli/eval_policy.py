"""`drivestack eval policy`: score driving policies side by side on the batched simulator.

Every policy (a trained run directory or checkpoint, or a baseline: `rule`, `random`, `idle`) drives the
same number of episodes from the same seed; the command prints one table row per policy and writes, under
`--out`: `eval.json` (summary and per-episode outcomes), `eval.png` (the metrics as bar charts) and a few
MP4s per policy, rendered at the simulation rate on a separate single environment.

Run directories whose names differ only by a trailing `-<seed>` (`runs/train/ppo-a-0 ... ppo-a-2`: one recipe,
several training seeds) also get a row `runs/train/ppo-a (3 seeds)` of each metric's mean ± standard deviation
over the seeds (`planning.evaluate.seed_groups` / `seed_summary`), and eval.json a "groups" entry; `--no-group-seeds`
leaves them out.

With `--ray [ADDRESS]` each policy's episodes are split into consecutive ranges of episode ids, one Ray task each
(`evaluate_spec`); episode k is a function of (seed, k) alone, so the figures are those of one process (every
policy but `random`, whose one generator serves the whole batch). Videos are recorded here.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import torch
from tqdm import tqdm

from drivestack.common.artifacts import check_out_dir
from drivestack.common.checks import check_number
from drivestack.common.host import resolve_device, using_threads
from drivestack.distributed import RAY_OPTION
from drivestack.planning.evaluate import EvalResult, evaluate, seed_groups, seed_summary
from drivestack.planning.policy import BASELINES, Policy, make_policy, portable_spec
from drivestack.planning.scene import scene_from_world
from drivestack.release import resolve_policy_spec
from drivestack.report import DRIVING_COLUMNS, driving_cells, make_run_dir, save_figure, write_json
from drivestack.sim.action import MetaAction
from drivestack.sim.batched_env import MAX_NUM_ENVS, BatchedDrivingEnv
from drivestack.sim.config import ENV_CONFIGS, EnvConfig, env_config
from drivestack.sim.video import write_mp4

# (summary key, axis label, scale) of the comparison plot; return_mean gets return_std as its error bar
PLOTTED = (
    ("collision_rate", "collisions [%]", 100.0),
    ("off_road_rate", "off-road [%]", 100.0),
    ("mean_speed", "mean speed [m/s]", 1.0),
    ("distance_per_episode", "distance / episode [m]", 1.0),
    ("lane_changes_per_minute", "lane changes / min", 1.0),
    ("mean_abs_jerk", "mean |jerk| [m/s^3]", 1.0),
    ("return_mean", "episode return", 1.0),
)
MAX_DURATION = 3600.0  # [s] longest episode an evaluation may ask for (an hour of driving)


@dataclass(frozen=True)
class EvalPolicyConfig:
    """Evaluate driving policies side by side: table, eval.json, eval.png and MP4s per policy."""

    policies: tuple[str, ...] = ("rule", "random")
    """Policies to compare, each a run directory, a checkpoint directory, `release:<name>` (a shipped release),
    `rule`, `random` or `idle`."""
    env: str = "drivestack/Highway-v0"
    """Environment id (its default config): drivestack/Highway-v0, drivestack/Merge-v0, or their driver-action
    versions drivestack/HighwayDriver-v0, drivestack/MergeDriver-v0 (docs/policies.md)."""
    episodes: int = 500
    """Episodes per policy (every policy drives the same episodes: same seed, same starts)."""
    device: str = "cpu"
    """torch device of the simulator (and of trained policies)."""
    threads: int = 1
    """torch CPU threads (0: torch's default, one per core). The batches here are small: on a 2-core machine
    with the other core busy, 500 highway episodes took 6 s on 1 thread and 50 s on 2."""
    seed: int = 0
    """Seed of the evaluation environments (videos use seed, seed + 1, ...)."""
    out: Path = Path("runs/eval")
    """Directory for eval.json, eval.png and the MP4s."""
    videos: int = 2
    """Episodes recorded as MP4 per policy (0: none)."""
    num_envs: int | None = None
    """Environments stepped together (default 512; never more than --episodes, at most 65,536). The figures do
    not depend on it: episode k of a seed plays out the same in any batch."""
    duration: float | None = None
    """[s] episode length override (default: the environment's own, 40 s highway, 30 s merge; at most 3600)."""
    group_seeds: bool = True
    """Add a row per group of policies whose names differ only by a trailing -<seed> (runs/train/ppo-a-0,
    runs/train/ppo-a-1, ...): each metric's mean ± std (ddof 1) over the seeds, in the table and eval.json."""
    ray: Annotated[str | None, RAY_OPTION] = None
    """Spread the episodes over Ray workers: alone, a local Ray instance on this machine's cores; `auto` or
    `ray://HOST:10001`, a cluster (run directories must be on a filesystem every node sees). Same figures as
    without (`random` aside). Needs the extra: pip install -e ".[ray]"."""

    def validate(self) -> EnvConfig:
        """Check every option before any work (one-line ValueError naming the option); returns the env config."""
        if not self.policies:
            raise ValueError(
                f"no policies given; pass --policies with run directories, checkpoints or {', '.join(BASELINES)}"
            )
        check_number("episodes", self.episodes, low=1, integer=True)
        check_number("videos", self.videos, low=0, integer=True)
        check_number("threads", self.threads, low=0, integer=True)
        check_number("seed", self.seed, integer=True)
        if self.num_envs is not None:
            check_number("num_envs", self.num_envs, low=1, high=MAX_NUM_ENVS, integer=True)
        if self.env not in ENV_CONFIGS:
            raise ValueError(f"unknown env id {self.env!r}; allowed: {', '.join(ENV_CONFIGS)}")
        resolve_device(self.device)
        _check_writable_dir(self.out)
        config = env_config(self.env)
        if self.duration is not None:
            check_number("duration", self.duration, low=0.0, low_open=True, high=MAX_DURATION)
            config = replace(config, duration=self.duration)
        return config.validate()


def _check_writable_dir(path: Path, option: str = "--out") -> None:
    """`path` can become an output directory: not a file, and its nearest existing ancestor is a directory."""
    check_out_dir(path, option)
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{option} {path}: {parent} is a file, not a directory; choose another {option}")


def _labels(specs: tuple[str, ...]) -> list[str]:
    """Unique labels of the policy strings (a repeated string gets #2, #3, ...)."""
    labels: list[str] = []
    for spec in specs:
        label, k = spec, 2
        while label in labels:
            label, k = f"{spec}#{k}", k + 1
        labels.append(label)
    return labels


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_.") or "policy"


@torch.no_grad()
def record_episode(policy: Policy, config: EnvConfig, path: Path, seed: int, device: str = "cpu") -> Path:
    """Drive one episode with `policy` and write it as an MP4 at the simulation rate.

    The environment steps at the simulation rate (policy_frequency = sim_frequency) so every step is a
    frame; the policy decides every `config.substeps` steps, as in training, and IDLE fills the steps
    between (a meta-action is a decision, not a held command).
    """
    hold = config.substeps
    fine = replace(config, policy_frequency=config.sim_frequency)
    env = BatchedDrivingEnv(fine, num_envs=1, device=device, seed=seed, autoreset=False)
    env.reset()
    frames = [env.render(0)]
    idle = torch.full((1,), int(MetaAction.IDLE), dtype=torch.long, device=env.device)
    for t in tqdm(range(fine.max_policy_steps), desc=f"video {path.name}", unit="step", leave=False):
        action = policy.act(scene_from_world(env.state, env.road)) if t % hold == 0 else idle
        _, _, terminated, truncated, _ = env.step(action)
        frames.append(env.render(0))
        if bool(terminated[0] | truncated[0]):
            break
    return write_mp4(frames, path, fps=fine.sim_frequency)


def plot_results(
    results: dict[str, EvalResult], path: Path, title: str = "", groups: dict[str, dict] | None = None
) -> Path:
    """Bar charts of the metrics, one bar per policy, then one per group of seeds (`seed_report`: the mean over
    the seeds, the std as error bar), written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # (label, figures, error bars) per bar; a policy's return gets its std over episodes as error bar
    bars_of: list[tuple[str, dict[str, float], dict[str, float]]] = []
    for label, result in results.items():
        s = result.summary()
        bars_of.append((label, s, {"return_mean": s["return_std"]}))
    for name, group in (groups or {}).items():
        metrics = {k: v for k, v in group["summary"].items() if "mean" in v}
        bars_of.append((name, {k: v["mean"] for k, v in metrics.items()}, {k: v["std"] for k, v in metrics.items()}))
    labels = [label for label, _, _ in bars_of]
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    colors = [plt.get_cmap("tab10")(i % 10) for i in range(len(labels))]
    x = range(len(labels))
    for ax, (key, axis_title, scale) in zip(axes.flat, PLOTTED):
        values = [figures[key] * scale for _, figures, _ in bars_of]
        errors = [errs[key] * scale if key in errs else math.nan for _, _, errs in bars_of]  # NaN: no error bar
        bars = ax.bar(x, values, yerr=errors, color=colors, capsize=4)
        ax.bar_label(bars, fmt="%.3g", fontsize=8, padding=2)
        top = max([v + (0.0 if math.isnan(e) else e) for v, e in zip(values, errors)] + [0.0])
        ax.set_ylim(min(0.0, min(values)) * 1.15, top * 1.18 if top > 0 else 1.0)
        ax.set_title(axis_title, fontsize=10)
        ax.set_xticks(list(x), [_short(k) for k in labels], rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    last = axes.flat[len(PLOTTED)]
    last.axis("off")
    counts = [f"{_short(k)}: {r.episodes} episodes" for k, r in results.items()]
    counts += [f"{_short(k)}: mean ± std over seeds" for k in groups or {}]
    last.text(0.0, 0.9, "\n".join(counts), va="top", fontsize=9, transform=last.transAxes)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def _short(label: str, width: int = 24) -> str:
    return label if len(label) <= width else "..." + label[-(width - 3) :]


def print_table(results: dict[str, EvalResult], title: str, groups: dict[str, dict] | None = None) -> None:
    """One rich table row per policy, then one per group of seeds (`seed_report`): mean±std over the seeds."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    columns = ("policy", *DRIVING_COLUMNS, "return", "time s")
    for column in columns:
        if column == "policy":  # long run paths fold over lines rather than end in "...": they tell runs apart
            table.add_column(column, justify="left", overflow="fold")
        else:
            table.add_column(column, justify="right", no_wrap=True)
    for label, result in results.items():
        s = result.summary()
        table.add_row(
            f"{label} ({result.policy})" if result.policy != label else label,
            *driving_cells(s),
            f"{s['return_mean']:.2f}±{s['return_std']:.2f}",
            f"{s['wall_time']:.1f}",
        )
    for name, group in (groups or {}).items():
        metrics = group["summary"]
        mean = {k: v["mean"] for k, v in metrics.items() if "mean" in v}
        std = {k: v["std"] for k, v in metrics.items() if "std" in v}
        counts = metrics["episodes"]["values"]
        episodes = f"{len(counts)}x{counts[0]}" if len(set(counts)) == 1 else "+".join(map(str, counts))
        table.add_row(
            name,
            *driving_cells(mean, std, episodes=episodes),
            f"{mean['return_mean']:.2f}±{std['return_mean']:.2f}",
            f"{sum(results[m].wall_time for m in group['members']):.1f}",
            style="bold",
        )
    console = Console()
    # a terminal gets its width (at least 120); a log or pipe the table's own width: no path is folded there
    natural = Console(width=10_000).measure(table).maximum
    Console(width=max(console.width, 120) if console.is_terminal else max(natural, 120)).print(table)


def seed_report(results: dict[str, EvalResult]) -> dict[str, dict]:
    """The groups of seeds among the labels of `results`: {"<name> (<k> seeds)": {"members", "summary"}}, the
    summary `seed_summary`'s mean, std and per-seed values (return: of the per-seed mean returns)."""
    return {
        f"{name} ({len(members)} seeds)": {
            "members": members,
            "summary": seed_summary([results[m].summary() for m in members]),
        }
        for name, members in seed_groups(list(results)).items()
    }


def run_eval(cfg: EvalPolicyConfig) -> dict:
    """Evaluate every policy of `cfg`, print the table, write eval.json, eval.png and the MP4s; return the
    JSON content (with the written paths under "files")."""
    config = cfg.validate()  # every option checked before any work
    with using_threads(cfg.threads):  # 0: torch's default; the previous count is restored after
        return _run(cfg, config)


def _run(cfg: EvalPolicyConfig, config: EnvConfig) -> dict:
    labels = _labels(cfg.policies)
    policies = {
        label: make_policy(resolve_policy_spec(spec), config, cfg.device, cfg.seed)
        for label, spec in zip(labels, cfg.policies)
    }
    results: dict[str, EvalResult] = {}
    if cfg.ray is not None:
        results = _evaluate_on_ray(cfg, config, labels)
    for label, policy in policies.items():
        if label not in results:
            results[label] = evaluate(
                policy, config, cfg.episodes, device=cfg.device, seed=cfg.seed, num_envs=cfg.num_envs
            )
    title = f"{cfg.env}, {cfg.episodes} episodes, seed {cfg.seed}, {cfg.device}"
    groups = seed_report(results) if cfg.group_seeds else {}
    print_table(results, title, groups)

    out = make_run_dir(cfg.out)
    videos: dict[str, list[str]] = {}
    for label, policy in policies.items():
        videos[label] = [
            str(record_episode(policy, config, out / f"{_slug(label)}_{k}.mp4", cfg.seed + k, cfg.device))
            for k in range(cfg.videos)
        ]
    plot = plot_results(results, out / "eval.png", title, groups)
    report = {
        "env": cfg.env,
        "episodes": cfg.episodes,
        "seed": cfg.seed,
        "device": cfg.device,
        "duration": config.duration,
        "policies": {label: {"spec": spec, **results[label].to_json()} for label, spec in zip(labels, cfg.policies)},
        "groups": groups,
    }
    path = write_json(out / "eval.json", report, indent=1)
    files = {"json": str(path), "plot": str(plot), "videos": videos}
    print(f"wrote {path}, {plot} and {sum(len(v) for v in videos.values())} videos under {out}")
    return {**report, "files": files}


def evaluate_spec(
    spec: str,
    config: EnvConfig,
    episodes: int,
    first_episode: int,
    device: str,
    seed: int,
    num_envs: int | None,
    threads: int,
) -> EvalResult:
    """Episodes first_episode..first_episode+episodes-1 of `seed` driven by the policy `spec` (made here, in the
    process that runs it: a Ray task)."""
    with using_threads(threads):
        policy = make_policy(resolve_policy_spec(spec), config, device, seed)
        return evaluate(
            policy,
            config,
            episodes,
            device=device,
            seed=seed,
            num_envs=num_envs,
            progress=False,
            first_episode=first_episode,
        )


def _evaluate_on_ray(cfg: EvalPolicyConfig, config: EnvConfig, labels: list[str]) -> dict[str, EvalResult]:
    """Every policy's episodes as Ray tasks of consecutive episode ranges (two per CPU of the cluster: the slow
    ones do not hold the rest up), joined in episode order. Each result's wall time is the whole Ray evaluation's."""
    from drivestack import distributed

    distributed.warn_random_split(cfg.policies)
    with distributed.ray_session(cfg.ray):
        ranges = distributed.episode_ranges(cfg.episodes, 2 * distributed.cluster_cpus())
        specs = [portable_spec(spec) for spec in cfg.policies]
        arguments = [
            (spec, config, n, first, cfg.device, cfg.seed, cfg.num_envs, cfg.threads)
            for spec in specs
            for first, n in ranges
        ]
        start = time.perf_counter()
        parts = distributed.run_tasks(
            evaluate_spec, arguments, desc="eval (Ray)", unit="part", num_cpus=max(1, cfg.threads)
        )
        elapsed = time.perf_counter() - start
    k = len(ranges)
    return {
        label: EvalResult.concatenate(parts[i * k : (i + 1) * k], wall_time=elapsed) for i, label in enumerate(labels)
    }
