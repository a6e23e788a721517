"""`drivestack drive`: the stack in the loop, side by side with the privileged path.

The same policy drives the same episodes (seed, episode ids 0..N-1, so the same traffic) twice: once on the
simulator's ground-truth scene (privileged) and once on the scene perception builds (cameras -> oracle boxes or a
detector -> merge across cameras -> one tracker per environment -> scene). Writes, under `--out`, `drive.json`
(per path: the registered episode metrics and per-episode outcomes, perception in the loop, time per stage), one
MP4 per episode for the perceived path's first `--videos` episodes under `videos/` (cameras with the tracks' boxes
beside a bird's-eye view, `drivestack.pipeline.video`), and prints one table of driving metrics, one of
perception, and one of time per stage. Ctrl-C writes what finished.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated

from drivestack import distributed
from drivestack.common.artifacts import check_out_dir, make_run_dir, write_json
from drivestack.common.checks import check_number
from drivestack.common.host import resolve_device, using_threads
from drivestack.distributed import RAY_OPTION
from drivestack.pipeline.closed_loop import (
    PERCEPTION,
    STAGES,
    DriveResult,
    LoopConfig,
    VideoSpec,
    drive,
    loop_speed,
    merge_results,
)
from drivestack.planning.policy import make_policy, portable_spec
from drivestack.release import resolve_checkpoint_path, resolve_policy_spec
from drivestack.report import DRIVING_COLUMNS, driving_cells, format_number
from drivestack.sim.config import ENV_CONFIGS, EnvConfig, env_config

MAX_SECONDS = 3600.0  # [s] longest episode


DEFAULT_POLICY = "release:ppo-highway"
DEFAULT_DETECTOR = Path("release:detector-six-v2")


@dataclass(frozen=True)
class DriveConfig(LoopConfig):
    """Drive a policy in the closed loop with perception in front of it, and on ground truth, side by side.

    The perceived path's options are `pipeline.LoopConfig`'s (cameras, rates, oracle noise, detector threshold,
    merge radius); the defaults run the whole stack: the release detector on six cameras and the release PPO policy.
    """

    perception: str = "detector"
    """Perceived path's source: detector (--detector) or oracle (true boxes of what the cameras see)."""
    detector: Path | None = DEFAULT_DETECTOR
    """Detector checkpoint, training run directory or `release:<name>` (for --perception detector)."""
    policy: str = DEFAULT_POLICY
    """The policy: `rule`, `random`, `idle`, `release:<name>`, a training run directory or a checkpoint directory."""
    episodes: int = 8
    """Episodes per path (episodes 0..N-1 of --seed: the same traffic on both paths)."""
    first_episode: int = 0
    """Drive episodes F..F+N-1 of --seed instead (a part of a longer run: an episode is a function of the seed and
    its id, so parts driven apart give the figures of one run)."""
    num_envs: int = 8
    """Environments stepped together (at most --episodes)."""
    seconds: float = 20.0
    """[s] episode length."""
    env: str = "drivestack/Highway-v0"
    """Environment id (its default config): drivestack/Highway-v0 or drivestack/Merge-v0."""
    device: str = "cpu"
    """torch device of the simulator, renderer, detector and policy (cpu, cuda, auto)."""
    threads: int = 1
    """torch CPU threads (0: torch's default)."""
    seed: int = 0
    """Seed of the episodes, the camera lighting and the oracle noise."""
    out: Path = Path("runs/drive")
    """Output directory for drive.json."""
    privileged: bool = True
    """Also drive the privileged path (ground-truth scene) for the side-by-side table."""
    videos: int = 1
    """MP4s of the perceived path's first N episodes under --out/videos (0: none): cameras with the tracks' boxes
    beside a bird's-eye view, one frame per camera frame."""
    ray: Annotated[str | None, RAY_OPTION] = None
    """Spread each path's episodes over Ray workers (consecutive episode ranges, one task per CPU): `--ray` alone
    starts a local instance, `--ray auto` joins this machine's cluster, `--ray ray://HOST:10001` a remote one
    (--out must be on a filesystem every node sees). The same driving figures as without; needs the extra: pip
    install -e ".[ray]"."""

    def validate(self) -> tuple[EnvConfig, LoopConfig]:  # type: ignore[override]
        """Check every option before any work (one-line ValueError naming it); returns the env and loop configs."""
        check_number("episodes", self.episodes, low=1, integer=True)
        check_number("first_episode", self.first_episode, low=0, integer=True)
        check_number("num_envs", self.num_envs, low=1, high=4096, integer=True)
        check_number("seconds", self.seconds, low=0.0, low_open=True, high=MAX_SECONDS)
        check_number("threads", self.threads, low=0, integer=True)
        check_number("seed", self.seed, low=0, integer=True)
        check_number("videos", self.videos, low=0, integer=True)
        if self.env not in ENV_CONFIGS:
            raise ValueError(f"unknown env id {self.env!r}; allowed: {', '.join(ENV_CONFIGS)}")
        if self.perception not in PERCEPTION[1:]:
            raise ValueError(f"--perception={self.perception!r}; allowed: {', '.join(PERCEPTION[1:])}")
        resolve_device(self.device)
        check_out_dir(self.out)
        config = replace(env_config(self.env), duration=self.seconds).validate()
        loop_fields = {f.name: getattr(self, f.name) for f in fields(LoopConfig)}
        loop_fields["detector"] = resolve_checkpoint_path(self.detector) if self.perception == "detector" else None
        return config, LoopConfig(**loop_fields).validate(config)


def print_tables(results: dict[str, DriveResult], title: str) -> None:
    """Driving metrics per path, perception in the loop, and time per stage (rich tables)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    table = Table(title=title)
    for column in ("path", *DRIVING_COLUMNS):
        table.add_column(column, justify="left" if column == "path" else "right")
    for path, r in results.items():
        s = r.episodes.summary() if r.episodes.count else None
        cells = driving_cells(s) if s else ["0"] + ["-"] * (len(DRIVING_COLUMNS) - 1)
        table.add_row(path, *cells)
    console.print(table)
    for path, r in results.items():
        p = r.perception
        if not p:
            continue
        pt = Table(title=f"perception in the loop ({path}, {p['camera_frames']} camera frames)")
        for column in (
            "recall",
            "precision",
            "ID switches",
            "band",
            "recall in band",
            "tracks",
            "pos. err m",
            "vel. err m/s",
        ):
            pt.add_column(column, justify="right")
        for i, (band, b) in enumerate(p["bands"].items()):
            head = (
                [format_number(p["recall"]), format_number(p["precision"]), str(p["id_switches"])]
                if i == 0
                else ["", "", ""]
            )
            pt.add_row(
                *head,
                band,
                format_number(b["recall"]),
                str(b["tracks"]),
                format_number(b["position_error"], ".2f"),
                format_number(b["velocity_error"], ".2f"),
            )
        console.print(pt)
    tt = Table(title="time per stage, ms per tick (a tick: one 0.1 s simulation step of all environments)")
    tt.add_column("path")
    for stage in (*STAGES, "ticks/s"):
        tt.add_column(stage, justify="right")
    for path, r in results.items():
        ms = r.timing["ms_per_tick"]
        rate = r.timing["ticks_per_s"]
        tt.add_row(path, *[f"{ms.get(s) or 0.0:.1f}" for s in STAGES], "-" if rate is None else f"{rate:.2f}")
    console.print(tt)


def _report_path(path: str, result: DriveResult, video_dir: Path) -> DriveResult:
    print(f"{path}: {loop_speed(result)}")
    if result.videos:
        print(f"wrote {len(result.videos)} video(s) to {video_dir}")
    return result


def drive_part(
    policy_spec: str,
    config: EnvConfig,
    loop: LoopConfig,
    episodes: int,
    first_episode: int,
    num_envs: int,
    seed: int,
    device: str,
    threads: int,
    video: VideoSpec | None,
) -> DriveResult:
    """Episodes first_episode..first_episode+episodes-1 of one path (a Ray task of `drivestack drive --ray`)."""
    with using_threads(threads):
        policy = make_policy(resolve_policy_spec(policy_spec), config, device, seed)
        return drive(
            policy,
            config,
            loop,
            episodes,
            num_envs,
            seed,
            device,
            progress=False,
            video=video,
            first_episode=first_episode,
        )


def _drive_on_ray(cfg: DriveConfig, config: EnvConfig, loop: LoopConfig, video: VideoSpec | None) -> DriveResult:
    """One path's episodes as Ray tasks of consecutive episode ranges (one per CPU of the cluster), merged."""
    distributed.warn_random_split([cfg.policy])
    ranges = distributed.episode_ranges(cfg.episodes, distributed.cluster_cpus())
    if loop.detector is not None:
        loop = replace(loop, detector=Path(loop.detector).absolute())
    if video is not None:
        video = VideoSpec(video.count, Path(video.out_dir).absolute())
    device = str(resolve_device(cfg.device))
    spec, first_episode = portable_spec(cfg.policy), cfg.first_episode
    arguments = [
        (spec, config, loop, n, first_episode + first, cfg.num_envs, cfg.seed, device, cfg.threads, video)
        for first, n in ranges
    ]
    start = time.perf_counter()
    parts = distributed.run_tasks(
        drive_part, arguments, desc=f"drive {loop.perception} (Ray)", unit="part", num_cpus=max(1, cfg.threads)
    )
    return merge_results(parts, wall=time.perf_counter() - start)


def _episode_range(cfg: DriveConfig) -> str:
    if cfg.first_episode == 0:
        return f"{cfg.episodes} episodes"
    return f"episodes {cfg.first_episode}-{cfg.first_episode + cfg.episodes - 1}"


def run_drive(cfg: DriveConfig) -> dict:
    """Drive both paths, print the tables, write drive.json; returns its content."""
    config, loop = cfg.validate()
    with using_threads(cfg.threads):
        return _run(cfg, config, loop)


def _run(cfg: DriveConfig, config: EnvConfig, loop: LoopConfig) -> dict:
    device = resolve_device(cfg.device)
    policy = make_policy(resolve_policy_spec(cfg.policy), config, device, cfg.seed)
    paths = (["privileged"] if cfg.privileged else []) + [cfg.perception]
    results: dict[str, DriveResult] = {}
    interrupted = False
    video_dir = Path(cfg.out) / "videos"
    with distributed.ray_session(cfg.ray) if cfg.ray is not None else contextlib.nullcontext():
        for path in paths:
            video = VideoSpec(min(cfg.videos, cfg.episodes), video_dir) if path != "privileged" else None
            path_loop = replace(loop, perception=path)
            if cfg.ray is not None:
                try:
                    result = _drive_on_ray(cfg, config, path_loop, video)
                except KeyboardInterrupt:  # the unfinished path's parts are cancelled; the finished paths are kept
                    interrupted = True
                    break
            else:
                result = drive(
                    policy,
                    config,
                    path_loop,
                    cfg.episodes,
                    cfg.num_envs,
                    cfg.seed,
                    device,
                    progress=True,
                    video=video,
                    first_episode=cfg.first_episode,
                )
            results[path] = _report_path(path, result, video_dir)
            if result.interrupted:
                interrupted = True
                break
    title = (
        f"{cfg.env}, policy {cfg.policy}, {_episode_range(cfg)} of {cfg.seconds:g} s, seed {cfg.seed}, "
        f"{len(loop.cameras)} cameras {loop.width}x{loop.height} at {loop.camera_hz:g} Hz, {device}"
    )
    print_tables(results, title)
    report = {
        "env": cfg.env,
        "policy": cfg.policy,
        "episodes": cfg.episodes,
        "first_episode": cfg.first_episode,
        "num_envs": min(cfg.episodes, cfg.num_envs),
        "seconds": cfg.seconds,
        "seed": cfg.seed,
        "device": str(device),
        "loop": {
            "perception": loop.perception,
            "detector": loop.detector,
            "cameras": list(loop.cameras),
            "width": loop.width,
            "height": loop.height,
            "camera_hz": loop.camera_hz,
            "policy_hz": config.policy_frequency,
            "sim_hz": config.sim_frequency,
            "oracle_position_std": loop.oracle_position_std,
            "oracle_velocity": loop.oracle_velocity,
            "min_visible_pixels": loop.min_visible_pixels,
            "merge_radius": loop.merge_radius,
        },
        "interrupted": interrupted,
        "videos": [p.relative_to(cfg.out).as_posix() for r in results.values() for p in r.videos],
        "paths": {path: r.to_json() for path, r in results.items()},
    }
    out = make_run_dir(cfg.out)
    written = write_json(out / "drive.json", report, indent=1)
    print(f"wrote {written}")
    if interrupted:
        raise KeyboardInterrupt  # what finished is written; the CLI exits 130
    return report
