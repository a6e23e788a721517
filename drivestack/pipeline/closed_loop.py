"""The stack in the loop: B simulated environments driven by a policy that sees the world through perception.

One policy step of B environments (`drive`), as the data flow of docs/architecture.md draws it:

    scene  = perceive()                          # at the policy rate (1 Hz), from the latest camera frame
    action = policy.act(scene)                   # maneuvers
    env.step(action, on_substep=camera_frame)    # 10 simulation steps; the maneuver controller runs inside
                                                 # camera_frame at the camera rate (2 Hz):
                                                 #   render -> detect -> merge -> track

`perception` chooses where the scene comes from: `privileged` is the simulator's ground truth
(`planning.scene_from_world`, what `drivestack eval policy` drives on); `oracle` gives the true boxes of the
vehicles the cameras actually see (one box per camera view, so the merge has work), optionally noisy;
`detector` runs a camera detector checkpoint on every image. Between camera frames the trackers predict; camera
frames fall on policy steps (the camera rate is a multiple of the policy rate), so the policy always acts on a
frame of its own time. Episodes are those of `sim.batched_env` (episode k a function of (seed, k)), so the
privileged and the perceived path drive the same traffic; their outcomes are `planning.evaluate.EvalResult`s and
are scored by the registered `planning.metrics`, as `drivestack eval policy` scores them.

Every stage is timed (CUDA synchronised before the clock is read); `timing` reports ms per tick (a tick = one
simulation step of the B environments) and the share of each stage.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from drivestack.common.checks import check_number, require
from drivestack.common.host import synchronize
from drivestack.perception.infer import Detector
from drivestack.pipeline import perceived
from drivestack.pipeline.loop_metrics import PerceptionScore
from drivestack.pipeline.video import DriveVideos
from drivestack.planning.baselines import RandomPolicy
from drivestack.planning.evaluate import EvalResult
from drivestack.planning.metrics import EPISODE_INFO_KEYS
from drivestack.planning.policy import Policy
from drivestack.planning.scene import Scene, scene_from_world
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.camera import CAMERA_CHANNELS, CameraConfig, camera_rig
from drivestack.sim.camera_render import VehicleAppearance, vehicle_appearance
from drivestack.sim.config import EnvConfig
from drivestack.sim.randomness import mix64_int
from drivestack.sim.state import WorldState
from drivestack.tracking.data_classes import FrameTracks
from drivestack.tracking.tracker import MultiTracker, TrackerConfig

PERCEPTION = ("privileged", "oracle", "detector")
STAGES = ("render", "detect", "merge", "track", "scene", "policy", "sim")
MAX_AGENTS = 64  # agent slots of a perceived scene (tracks beyond are dropped)


@dataclass(frozen=True)
class LoopConfig:
    """Where the policy's scene comes from and how the perceived path runs."""

    perception: str = "oracle"
    """privileged (ground-truth scene), oracle (true boxes of what the cameras see) or detector (a checkpoint)."""
    detector: Path | None = None
    """Detector checkpoint (file or training run directory) for perception=detector."""
    cameras: tuple[str, ...] = CAMERA_CHANNELS
    """nuScenes camera channels on the ego."""
    width: int = 512
    """[px] camera image width."""
    height: int = 288
    """[px] camera image height."""
    camera_hz: float = 2.0
    """[Hz] camera and tracker rate: divides the simulation rate and is a multiple of the policy rate."""
    min_visible_pixels: int = 20
    """A camera sees a vehicle with at least this many visible pixels (oracle detections and the scoring)."""
    oracle_position_std: float = 0.0
    """[m] Gaussian noise on each oracle view's centre x and y (0: exact boxes)."""
    oracle_velocity: bool = True
    """Oracle boxes carry the true velocity (False: none, the tracker estimates it as it must for the detector)."""
    score_threshold: float = 0.1
    """Detector boxes scoring below this are dropped before the merge. Boxes between it and `birth_score` only
    extend existing tracks (the tracker's second association stage)."""
    birth_score: float = 0.15
    """Detector boxes scoring at least this may start tracks (every class). On the release detector's synthetic
    val (six cameras merged, vehicles within 50 m) precision within 2 m is 0.87 / 0.72 / 0.65 at 0.3 / 0.15 / 0.1
    and recall of vehicles within 8 m 0.48 / 0.81 / 0.86 (a car beside the ego overflows its image and scores
    low). In the loop (rule, 16 episodes x 20 s) 0.15 against 0.3: 1 collision against 1, 27 lane-change
    decisions against 30, decisions equal to the ground-truth scene's 79 % against 66 %."""
    merge_radius: float = 2.0
    """[m] centre distance within which boxes of one class from two cameras are one object."""
    coast_seconds: float = 3.0
    """[s] a confirmed track no camera has confirmed for this long is dropped; until then the policy's scene holds
    it at its predicted box (a vehicle beside the ego overflows every image: it is the tracker's memory that
    keeps it in the scene, not the detector). Counted in camera frames: round(coast_seconds x camera_hz)."""

    def validate(self, env_config: EnvConfig) -> LoopConfig:
        """Raise a one-line ValueError naming the first bad field; returns self."""
        require(self.perception in PERCEPTION, "perception", ", ".join(PERCEPTION), self.perception)
        bad = [c for c in self.cameras if c not in CAMERA_CHANNELS]
        require(bool(self.cameras) and not bad, "cameras", f"one or more of {', '.join(CAMERA_CHANNELS)}", bad or "")
        require(len(set(self.cameras)) == len(self.cameras), "cameras", "each camera once", self.cameras)
        check_number("width", self.width, low=16, high=4096, integer=True)
        check_number("height", self.height, low=16, high=4096, integer=True)
        check_number("camera_hz", self.camera_hz, low=0.0, low_open=True, high=env_config.sim_frequency)
        stride = env_config.sim_frequency / self.camera_hz
        require(
            abs(stride - round(stride)) < 1e-9 and env_config.substeps % round(stride) == 0,
            "camera_hz",
            f"a rate that divides the simulation rate ({env_config.sim_frequency:g} Hz) and is a multiple of the "
            f"policy rate ({env_config.policy_frequency:g} Hz), e.g. 1, 2, 5 or 10",
            self.camera_hz,
        )
        check_number("min_visible_pixels", self.min_visible_pixels, low=1, integer=True)
        check_number("oracle_position_std", self.oracle_position_std, low=0.0, high=100.0)
        check_number("score_threshold", self.score_threshold, low=0.0, high=1.0)
        check_number("birth_score", self.birth_score, low=0.0, high=1.0)
        check_number("merge_radius", self.merge_radius, low=0.0, low_open=True, high=100.0)
        check_number("coast_seconds", self.coast_seconds, low=0.0, high=60.0)
        if self.perception == "detector":
            if self.detector is None:
                raise ValueError("--perception detector needs --detector PATH (a checkpoint or a training run)")
            if not Path(self.detector).exists():
                raise FileNotFoundError(f"--detector {self.detector}: no such checkpoint file or run directory")
        return self

    def camera_stride(self, env_config: EnvConfig) -> int:
        """Simulation steps between camera frames."""
        return round(env_config.sim_frequency / self.camera_hz)


@dataclass(frozen=True)
class VideoSpec:
    """Which episodes of the perceived path become videos (`pipeline.video`), and where they go."""

    count: int
    """Record episode ids 0..count-1 (0: none)."""
    out_dir: Path
    """Folder of the MP4s."""


@dataclass
class StageTimer:
    """Wall-clock time per stage [s] (CUDA synchronised at both ends) and the number of calls."""

    device: torch.device
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            self.calls[stage] = self.calls.get(stage, 0) + 1

    def total(self, stages: tuple[str, ...] | None = None) -> float:
        """[s] time of `stages` (default: every timed stage, the bookkeeping ones included)."""
        return sum(v for s, v in self.seconds.items() if stages is None or s in stages)

    def summary(self, ticks: int, wall: float) -> dict:
        """ms per tick and per call of every stage, each pipeline stage's share of the pipeline's time (STAGES;
        `score` and `shadow`, the loop's own scoring, are timed but not shared), ticks/s."""
        staged = self.total(STAGES)
        return {
            "ticks": ticks,
            "wall_s": wall,
            "ticks_per_s": ticks / wall if wall > 0 else None,
            "ms_per_tick": {s: 1e3 * v / ticks if ticks else None for s, v in self.seconds.items()},
            "ms_per_call": {s: 1e3 * v / self.calls[s] if self.calls.get(s) else None for s, v in self.seconds.items()},
            "calls": dict(self.calls),
            "share": {s: self.seconds[s] / staged if staged > 0 else None for s in STAGES},
        }


@dataclass
class DriveResult:
    """Outcome of one path: the episodes (EvalResult, the registered metrics), perception figures, timing."""

    episodes: EvalResult
    perception: dict | None
    timing: dict
    decision_agreement: float | None  # share of decisions equal to the policy's on the ground-truth scene
    interrupted: bool = False
    videos: list[Path] = field(default_factory=list)  # MP4s of the recorded episodes, by episode id
    score: PerceptionScore | None = None  # the perception figures' sums (`perception` is their summary)
    agreement: tuple[int, int] = (0, 0)  # decisions equal to the ground-truth scene's, of all compared

    def to_json(self) -> dict:
        """The episodes (summary and per-episode arrays; no summary when none finished), perception, timing."""
        episodes = self.episodes.to_json() if self.episodes.count else {"policy": self.episodes.policy, "summary": {}}
        return {
            **episodes,
            "perception_in_loop": self.perception,
            "decision_agreement": self.decision_agreement,
            "timing": self.timing,
            "interrupted": self.interrupted,
            "videos": [str(p) for p in self.videos],
        }


class PerceivedWorld:
    """The perceived path's state over episodes: cameras, detector, the environments' batched tracker, the global
    frame and the latest tracks; `camera_frame` runs render -> detect -> merge -> track, `scene` builds the
    policy's scene from the latest tracks."""

    def __init__(
        self,
        env: BatchedDrivingEnv,
        cfg: LoopConfig,
        seed: int,
        timer: StageTimer,
        video: VideoSpec | None = None,
        tracker: TrackerConfig | None = None,
        first_episode: int = 0,
        last_episode: int | None = None,
    ) -> None:
        self.env, self.cfg, self.seed, self.timer = env, cfg, seed, timer
        self.last_episode = last_episode if last_episode is not None else 2**62  # episode ids below it are scored
        device = env.device
        self.rig = camera_rig(CameraConfig(channels=cfg.cameras, width=cfg.width, height=cfg.height), device)
        self.detector = Detector.from_checkpoint(cfg.detector, device=device) if cfg.perception == "detector" else None
        self.lighting = perceived.episode_lighting(seed, env.episode)  # (B, 16): per episode, drawn at its start
        self.noise = torch.Generator(device=device).manual_seed(seed + 1)
        coast_frames = round(cfg.coast_seconds * cfg.camera_hz)
        tracker_cfg = tracker or perceived.default_tracker_config(cfg.perception, coast_frames, cfg.birth_score)
        self.tracker = MultiTracker(tracker_cfg, num_envs=env.num_envs)
        # a camera detector (or the oracle without velocities) measures no motion: new tracks get a velocity prior
        self.measures_no_velocity = cfg.perception == "detector" or not cfg.oracle_velocity
        B, N = env.state.vehicles.shape
        self.frame_ref = perceived.GlobalFrame(env.road, env.state.vehicles.s[:, 0])
        self.appearance = self._appearance(env.state, torch.ones(B, dtype=torch.bool, device=device), None)
        self.tracks: list[FrameTracks] = [FrameTracks(f"env{b}", 0.0, *_empty_tracks()) for b in range(B)]
        self.score = PerceptionScore(B, N)
        self.video = (
            DriveVideos(video.out_dir, cfg.perception, video.count, B, env.road, self.rig, cfg.camera_hz, first_episode)
            if video is not None and video.count > 0
            else None
        )  # None: nothing is recorded, nothing copied

    def _appearance(self, state: WorldState, mask: torch.Tensor, old: VehicleAppearance | None) -> VehicleAppearance:
        """Heights and colours drawn per episode from (seed, episode id), for the environments in `mask`."""
        height = old.height.clone() if old is not None else torch.zeros_like(state.vehicles.s)
        color = (
            old.color.clone() if old is not None else torch.zeros((*state.vehicles.s.shape, 3), device=height.device)
        )
        for b in mask.nonzero().squeeze(1).tolist():  # at episode starts only
            g = torch.Generator(device=height.device).manual_seed(
                mix64_int(self.seed * 1_000_003 + int(self.env.episode[b])) >> 1
            )
            one = vehicle_appearance(state.index(slice(b, b + 1)), g)
            height[b], color[b] = one.height[0], one.color[0]
        return VehicleAppearance(height=height, color=color)

    def new_episodes(self, mask: torch.Tensor) -> None:
        """Environments in `mask` (B,) bool started new episodes: forget their tracks, draw their looks."""
        state = self.env.state
        self.frame_ref.reset(mask, state.vehicles.s[:, 0])
        self.appearance = self._appearance(state, mask, self.appearance)
        self.lighting = self.lighting.clone()
        self.lighting[mask] = perceived.episode_lighting(self.seed, self.env.episode[mask])
        done = mask.cpu().numpy()
        self.tracker.reset(done)
        for b in np.flatnonzero(done).tolist():
            self.tracks[b] = FrameTracks(f"env{b}", 0.0, *_empty_tracks())
        self.score.reset(done)
        if self.video is not None:
            with self.timer("video_write"):
                self.video.new_episodes(done)

    def camera_frame(self, state: WorldState) -> None:
        """render -> detect -> merge -> track for all B environments at `state`'s time."""
        cfg, timer = self.cfg, self.timer
        with timer("track"):
            self.frame_ref.advance(state.vehicles.s[:, 0], self.tracker)
        s_ego = self.frame_ref.s_unwrapped
        with timer("render"):
            frame, ego_pose, boxes_global, boxes_ego = perceived.render(
                self.env.road, state, self.rig, self.appearance, self.lighting, s_ego
            )
            velocity = perceived.gt_velocity(state, boxes_global)
        with timer("detect"):
            if self.detector is None:
                dets = perceived.oracle_detect(
                    frame,
                    state,
                    boxes_ego,
                    velocity,
                    cfg.min_visible_pixels,
                    cfg.oracle_position_std,
                    cfg.oracle_velocity,
                    self.noise,
                )
            else:
                dets = perceived.detector_detect(self.detector, frame, self.rig, cfg.score_threshold)
        with timer("merge"):
            merged = perceived.merge(dets, cfg.merge_radius)
        with timer("track"):
            self.tracks = perceived.track(self.tracker, merged, ego_pose, state.time.double().cpu().numpy())
            if self.measures_no_velocity:
                ego_yaw, ego_speed = ego_pose[:, 3].double(), state.vehicles.speed[:, 0].double()
                ego_velocity = torch.stack([ego_speed * torch.cos(ego_yaw), ego_speed * torch.sin(ego_yaw)], 1)
                self.tracks = perceived.velocity_prior(self.tracks, self.tracker.table, ego_velocity.cpu().numpy())
        with timer("score"):
            visible = perceived.visible_mask(frame, state, cfg.min_visible_pixels).any(dim=1)  # (B, N)
            scored = (self.env.episode < self.last_episode).cpu().numpy()  # unscored episodes leave no figures
            self.score.add(visible, boxes_ego, boxes_global, velocity, merged.boxes, merged.env, self.tracks, scored)
        if self.video is not None:
            with timer("video"):
                self.video.camera_frame(state, frame, ego_pose, self.tracks)

    def scene(self, state: WorldState) -> Scene:
        return perceived.tracks_to_scene(self.tracks, state, self.env.road, self.frame_ref.s_unwrapped, MAX_AGENTS)


def _empty_tracks() -> tuple[np.ndarray, ...]:
    z = np.zeros
    return (z(0, np.int64), z((0, 3)), z((0, 3)), z(0), z((0, 2)), z(0), z(0, np.int64), z(0, np.int64))


def _result(rows: dict[str, list[np.ndarray]], name: str, wall: float) -> EvalResult:
    col = {k: np.concatenate(v) if v else np.zeros(0) for k, v in rows.items()}
    order = np.argsort(col["episode_id"], kind="stable")  # by episode id
    col = {k: v[order] for k, v in col.items()}
    f64 = lambda k: col[k].astype(np.float64)  # noqa: E731
    return EvalResult(
        policy=name,
        returns=f64("episode_return"),
        lengths=f64("episode_length"),
        distances=f64("episode_distance"),
        times=f64("episode_time"),
        lane_changes=f64("episode_lane_changes"),
        mean_abs_jerk=f64("episode_mean_abs_jerk"),
        crashed=col["crashed"].astype(bool),
        off_road=col["off_road"].astype(bool),
        wall_time=wall,
    )


@torch.no_grad()
def drive(
    policy: Policy,
    env_config: EnvConfig,
    cfg: LoopConfig,
    episodes: int,
    num_envs: int = 8,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    decisions: list[torch.Tensor] | None = None,
    video: VideoSpec | None = None,
    tracker: TrackerConfig | None = None,
    first_episode: int = 0,
) -> DriveResult:
    """Drive episodes 0..episodes-1 of `seed` with `policy` on the scene `cfg.perception` gives.

    Args:
        policy: the policy (acts once per policy step on a Scene).
        env_config: the environment (meta actions; its duration is the episode length).
        cfg: perception source and settings (validated here).
        episodes: number of episodes to score (>= 1).
        num_envs: B, environments stepped together (at most `episodes`).
        seed: seed of the episodes (and of the camera lighting and oracle noise).
        device: torch device of the simulator, renderer and detector.
        progress: tqdm bar over episodes.
        decisions: if given, each policy step's (B,) maneuvers are appended (for tests).
        video: MP4s of the perceived path's first episodes (None or count 0: none; the privileged path has none).
        tracker: the trackers' settings (None: `perceived.default_tracker_config` of the perception source).
        first_episode: drive episodes first_episode..first_episode+episodes-1 of the seed instead (a part of a run
            spread over workers; `merge_results` joins the parts).
    Returns:
        DriveResult. A KeyboardInterrupt returns what finished so far, with `interrupted` set.
    """
    cfg.validate(env_config)
    check_number("episodes", episodes, low=1, integer=True)
    check_number("num_envs", num_envs, low=1, integer=True)
    check_number("first_episode", first_episode, low=0, integer=True)
    B = min(episodes, num_envs)
    device = torch.device(device)
    timer = StageTimer(device)
    env = BatchedDrivingEnv(env_config, num_envs=B, device=device, seed=seed, autoreset=True)
    env.reset()  # environment i runs episodes i, i + B, ...
    if first_episode > 0:  # a reset without a seed starts the B ids after the highest so far
        env.episode.fill_(first_episode - 1)
        env.reset()  # ... or first + i, first + i + B, ...
    world = None
    if cfg.perception != "privileged":
        world = PerceivedWorld(env, cfg, seed, timer, video, tracker, first_episode, first_episode + episodes)
    stride, substeps = cfg.camera_stride(env_config), env_config.substeps
    shadow = world is not None and not isinstance(policy, RandomPolicy)  # stateless policies can be asked twice
    agree = total = 0
    rows: dict[str, list[np.ndarray]] = {k: [] for k in EPISODE_INFO_KEYS}
    collected, ticks, interrupted = 0, 0, False

    def on_substep(j: int, state: WorldState) -> None:
        # camera frames inside the policy step; the one at its end is taken after the resets below
        if j < substeps - 1 and (j + 1) % stride == 0:
            world.camera_frame(state)

    bar = tqdm(total=episodes, desc=f"drive {cfg.perception}", unit="ep", disable=not progress, leave=False)
    start = time.perf_counter()
    try:
        if world is not None:
            world.camera_frame(env.state)
        max_steps = -(-episodes // B) * env_config.max_policy_steps
        for _ in range(max_steps):
            if collected >= episodes:
                break
            with timer("scene"):
                scene = scene_from_world(env.state, env.road) if world is None else world.scene(env.state)
            with timer("policy"):
                action = policy.act(scene)
            if decisions is not None:
                decisions.append(action.clone())
            if world is not None and world.video is not None:
                world.video.decided(action)
            if shadow:
                with timer("shadow"):
                    truth = policy.act(scene_from_world(env.state, env.road))
                    scored = env.episode < first_episode + episodes  # (B,) unscored episodes are not compared
                    agree += int(((truth == action) & scored).sum())
                    total += int(scored.sum())
            staged = timer.total()
            step_start = time.perf_counter()
            _, _, terminated, truncated, info = env.step(action, on_substep if world is not None else None)
            synchronize(device)
            timer.seconds["sim"] += time.perf_counter() - step_start - (timer.total() - staged)
            timer.calls["sim"] += 1
            ticks += substeps
            done = terminated | truncated
            if bool(done.any()):
                take = done & (info["episode_id"] < first_episode + episodes)  # later episodes are not scored
                for k in EPISODE_INFO_KEYS:
                    rows[k].append(info[k][take].cpu().numpy())
                collected += int(take.sum())
                bar.update(int(take.sum()))
                if world is not None:
                    world.new_episodes(done)
            if world is not None:
                world.camera_frame(env.state)  # the frame at the policy step's end (new episodes: their first)
    except KeyboardInterrupt:
        interrupted = True
    bar.close()
    wall = time.perf_counter() - start
    videos = world.video.close() if world is not None and world.video is not None else []
    name = f"{policy.name} [{cfg.perception}]"
    return DriveResult(
        episodes=_result(rows, name, wall),
        perception=world.score.summary() if world is not None else None,
        timing=timer.summary(ticks, wall),
        decision_agreement=agree / total if total else None,
        interrupted=interrupted,
        videos=videos,
        score=world.score if world is not None else None,
        agreement=(agree, total),
    )


def merge_results(parts: list[DriveResult], wall: float) -> DriveResult:
    """One result of parts that drove consecutive episode ranges (in order) of the same policy, loop and seed: the
    episodes in order, the perception sums and stage times added up, ticks/s over `wall` [s], the whole run's."""
    ticks = sum(p.timing["ticks"] for p in parts)
    timer = StageTimer(torch.device("cpu"))
    for p in parts:
        for stage, ms in p.timing["ms_per_tick"].items():
            timer.seconds[stage] = timer.seconds.get(stage, 0.0) + (ms or 0.0) * p.timing["ticks"] / 1e3
        for stage, n in p.timing["calls"].items():
            timer.calls[stage] = timer.calls.get(stage, 0) + n
    scores = [p.score for p in parts if p.score is not None]
    score = PerceptionScore.merged(scores) if scores else None
    agree, total = sum(p.agreement[0] for p in parts), sum(p.agreement[1] for p in parts)
    return DriveResult(
        episodes=EvalResult.concatenate([p.episodes for p in parts], wall_time=wall),
        perception=score.summary() if score is not None else None,
        timing=timer.summary(ticks, wall),
        decision_agreement=agree / total if total else None,
        interrupted=any(p.interrupted for p in parts),
        videos=[v for p in parts for v in p.videos],
        score=score,
        agreement=(agree, total),
    )


def loop_speed(result: DriveResult) -> str:
    """One line: ticks/s and ms per tick of each stage."""
    t = result.timing
    parts = ", ".join(f"{s} {v:.1f}" for s, v in t["ms_per_tick"].items() if v is not None and v > 0)
    rate = t["ticks_per_s"] or math.nan
    return f"{rate:.2f} ticks/s; ms per tick: {parts}"
