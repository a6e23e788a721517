"""Log replay: nuScenes logs through perception -> tracker -> perceived scene -> shadow planners, scored open loop.

Per scene, keyframes in time order (one function per stage; `replay_scene` is the sequence):

    detect   the perception source's boxes of the keyframe, global frame: `oracle` (ground truth corrupted as
             `bench tracking` does, `tracking.oracle`), a detection submission (JSON), or
             `detector:<checkpoint>` (the camera detector on all six images as one batch, merged across cameras)
    track    `tracking.Tracker` in the global frame (ids, velocities); the nearest-neighbour baseline beside it
             for the tracking metrics only
    scene    the tracks scoring at least `agent_min_score` moved into the ego frame of the keyframe; the ego's
             own state (speed, yaw rate) from the logged ego poses just before it (`ego_status`)
    plan     the lane-free IDM shadow planner and the constant-velocity baseline (`planning.open_loop`): 6
             waypoints, 0.5 s apart, ego frame. Planning is batched over a scene's keyframes; each plan sees only
             its own keyframe's tracks, so this equals planning one keyframe at a time.
    score    against the logged ego future and the ground-truth boxes then (`planning.open_loop_metrics`);
             keyframes without a logged future keyframe within FUTURE_TOLERANCE of each waypoint time are left
             out and counted.

Then perception is scored on the same scenes: the tracker's and the baseline's tracks with the devkit's
TrackingEval, and with a detector the merged detections (velocities from the tracker) with DetectionEval over
the full scene (perception/configs/full_scene_v1.json). Writes under --out: replay.json (strict JSON: every
figure, the configs, timings), replay.md (the tables), the evaluation folders, and with --video one MP4 per scene
(`pipeline.replay_video`), with --mcap one MCAP file per scene (`pipeline.replay_mcap`).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see drivestack.bench.perception

import contextlib  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any  # noqa: E402

import numpy as np  # noqa: E402
import tyro  # noqa: E402
from nuscenes import NuScenes  # noqa: E402
from tqdm import tqdm  # noqa: E402

from drivestack.common import nuscenes as ds_nuscenes  # noqa: E402
from drivestack.common.artifacts import check_out_dir  # noqa: E402
from drivestack.common.geometry import wrap_angle  # noqa: E402
from drivestack.common.nuscenes import (  # noqa: E402
    find_version,
    open_nuscenes,
    split_scenes,
)
from drivestack.pipeline.replay_log import (  # noqa: E402
    SceneLog,
    check_map_files,
    drivable_fn,
    read_scene_log,
    to_ego,
)
from drivestack.pipeline.replay_sources import CameraSource, read_submission_frames  # noqa: E402
from drivestack.planning.open_loop import (  # noqa: E402
    Agents,
    ShadowPlannerConfig,
    constant_velocity,
    plan_idm,
)
from drivestack.planning.open_loop_metrics import (  # noqa: E402
    CONVENTIONS,
    HORIZONS,
    FutureBoxes,
    SampleScores,
    score_plans,
    summarize,
)
from drivestack.report import format_number, make_run_dir, markdown_table, write_json, write_text  # noqa: E402
from drivestack.tracking.baseline import NearestNeighbourConfig, NearestNeighbourTracker  # noqa: E402
from drivestack.tracking.data_classes import TRACKING_NAMES, FrameTracks  # noqa: E402
from drivestack.tracking.oracle import OracleConfig, oracle_detections  # noqa: E402
from drivestack.tracking.tracker import Tracker, TrackerConfig  # noqa: E402

PLANNERS = ("idm", "cv")  # the shadow planner and the constant-velocity ego-status baseline
PLANNER_LABELS = {"idm": "IDM shadow planner", "cv": "constant velocity (ego status)"}
DETECTOR_PREFIX = "detector:"


@dataclass(frozen=True)
class ReplayConfig:
    """Replay nuScenes logs through perception, tracking and the shadow planners; score them open loop."""

    dataroot: Path
    """nuScenes-format dataset folder holding <version>/ (the real nuScenes, or one `drivestack data make` wrote)."""
    scene: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """Scene name to replay (e.g. scene-0523), repeatable (--scene A --scene B); give these or --split."""
    split: str | None = None
    """Split to replay: "all", a name in <dataroot>/<version>/splits.json, or a nuScenes split."""
    detections: str = "oracle"
    """Perception source: 'oracle' (ground truth corrupted, see --oracle.*), a nuScenes detection submission
    (JSON), or 'detector:<checkpoint>' (a .pt, a training run folder, or release:<name>, on the six cameras)."""
    version: str | None = None
    """Table folder under dataroot (None: the only one there, e.g. v1.0-trainval or v1.0-mini)."""
    out: Path | None = None
    """Output folder (default runs/replay/<dataroot name>_<source>)."""
    video: bool = True
    """Write one MP4 per scene (six cameras with boxes beside a bird's-eye view with the plans)."""
    mcap: bool = False
    """Write one MCAP file per scene (needs drivestack.pipeline.replay_mcap and the mcap packages)."""
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    """The Kalman filter tracker (with a detector and these defaults: pos_std 1.0 m, the camera setting)."""
    baseline: NearestNeighbourConfig = field(default_factory=NearestNeighbourConfig)
    """The nearest-neighbour tracker scored beside it."""
    oracle: OracleConfig = field(default_factory=OracleConfig)
    """Corruption of the ground truth with --detections oracle."""
    planner: ShadowPlannerConfig = field(default_factory=ShadowPlannerConfig)
    """The lane-free IDM shadow planner."""
    agent_min_score: float = 0.3
    """Tracks scoring below this are left out of the perceived scene the planner sees."""
    use_map: bool = True
    """Bound the planner by the map's drivable area and score off-drivable waypoints (when the dataset has one)."""
    perception_eval: bool = True
    """Score perception with the devkit (TrackingEval; DetectionEval with a detector) on the replayed scenes."""
    eval_config: str = "tracking_nips_2019"
    """nuscenes-devkit tracking config (restricted to the classes with ground truth in the scenes)."""
    device: str = "cpu"
    """Device the detector runs on: cpu, cuda or auto."""
    threads: int = 2
    """torch CPU threads."""
    progress: bool = True
    """Show a progress bar over keyframes."""

    def validate(self) -> ReplayConfig:
        if bool(self.scene) == (self.split is not None):
            raise ValueError("give the scenes to replay with --scene NAME (repeatable) or --split NAME, not both")
        if not 0.0 <= self.agent_min_score <= 1.0:
            raise ValueError(f"agent_min_score must be in [0, 1], got {self.agent_min_score}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.detections.startswith(DETECTOR_PREFIX) and not self.detections[len(DETECTOR_PREFIX) :]:
            raise ValueError(
                "--detections detector:<checkpoint> needs a checkpoint (e.g. detector:release:detector-six)"
            )
        self.planner.validate()
        self.oracle.validate()
        Tracker(self.tracker), NearestNeighbourTracker(self.baseline)  # noqa: B018 (validates their configs)
        return self

    @property
    def source(self) -> str:
        """'oracle', 'detector' or 'submission'."""
        if self.detections == "oracle":
            return "oracle"
        return "detector" if self.detections.startswith(DETECTOR_PREFIX) else "submission"


# ------------------------------------------------------------------------------------------------ stages


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


def perceived_agents(log: SceneLog, tracks: list[FrameTracks], min_score: float) -> Agents:
    """The tracks scoring at least `min_score` of each keyframe in its ego frame, padded (K, N)."""
    K = len(log)
    kept = [np.flatnonzero(f.score >= min_score) for f in tracks]
    N = max([len(k) for k in kept] + [0])
    xy, yaw = np.zeros((K, N, 2)), np.zeros((K, N))
    size, vel, present = np.ones((K, N, 2)), np.zeros((K, N, 2)), np.zeros((K, N), dtype=bool)
    known = np.zeros((K, N), dtype=bool)
    for i, (f, k) in enumerate(zip(tracks, kept)):  # a loop over keyframes: gather into the padded arrays
        n = len(k)
        xy[i, :n], yaw[i, :n], size[i, :n] = f.translation[k, :2], f.yaw[k], f.size[k, :2]
        vel[i, :n], present[i, :n] = np.nan_to_num(f.velocity[k]), True
        # a track first seen now with a zero velocity carries the tracker's prior, not an estimate
        seen = np.isin(f.track_id[k], tracks[i - 1].track_id) if i else np.zeros(n, dtype=bool)
        known[i, :n] = seen | (np.abs(vel[i, :n]).sum(axis=1) > 0)
    ego_xy = to_ego(log, xy)
    c, s = np.cos(log.yaw)[:, None], np.sin(log.yaw)[:, None]
    ego_vel = np.stack([c * vel[..., 0] + s * vel[..., 1], -s * vel[..., 0] + c * vel[..., 1]], axis=-1)
    return Agents(ego_xy, wrap_angle(yaw - log.yaw[:, None]), size, ego_vel, present, known)


def plan(log: SceneLog, agents: Agents, cfg: ShadowPlannerConfig) -> dict[str, np.ndarray]:
    """Each planner's waypoints (K, T, 2) [m] at every keyframe, ego frame."""
    drivable = drivable_fn(log, np.arange(len(log)))
    return {"idm": plan_idm(log.ego, agents, cfg, drivable), "cv": constant_velocity(log.ego)}


def logged_future(log: SceneLog, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, FutureBoxes]:
    """For keyframes `rows` (B,) with a full future: the logged ego positions (B, T, 2) and headings (B, T) and
    the ground-truth boxes at the waypoints' times, all in each keyframe's ego frame."""
    fut = log.future[rows]  # (B, T)
    ego_xy = to_ego(log, log.translation[fut, :2], rows)  # (B, T, 2)
    ego_yaw = wrap_angle(log.yaw[fut] - log.yaw[rows, None])
    boxes = FutureBoxes(
        to_ego(log, log.gt_xy[fut], rows),  # (B, T, N, 2)
        wrap_angle(log.gt_yaw[fut] - log.yaw[rows, None, None]),
        log.gt_size[fut],
        log.gt_present[fut],
    )
    return ego_xy, ego_yaw, boxes


def score(log: SceneLog, plans: dict[str, np.ndarray]) -> dict[str, SampleScores]:
    """Each planner's per-sample scores over the keyframes with a full logged future."""
    rows = np.flatnonzero(log.has_future)
    ego_xy, ego_yaw, boxes = logged_future(log, rows)
    drivable = drivable_fn(log, rows)
    return {name: score_plans(p[rows], ego_xy, ego_yaw, boxes, drivable) for name, p in plans.items()}


# ------------------------------------------------------------------------------------------------ tracking eval


def evaluate_tracking(
    nusc: NuScenes, logs: list[SceneLog], tracks: dict[str, list[list[FrameTracks]]], out: Path, base_config: str
) -> dict[str, Any]:
    """TrackingEval of each tracker's tracks over the replayed scenes (devkit metric files under `out`)."""
    from drivestack.common.submission import write_submission
    from drivestack.tracking.evaluate import evaluate_submission, summary_row
    from drivestack.tracking.nuscenes_io import tracks_to_submission

    scenes = [nusc.get("scene", log.token) for log in logs]
    result: dict[str, Any] = {}
    if any("LIDAR_TOP" not in s["data"] for log in logs for s in log.samples):
        reason = "the devkit's TrackingEval measures ego distances from LIDAR_TOP, which these keyframes lack"
        warnings.warn(f"tracking eval skipped: {reason}", stacklevel=2)
        return {method: {"error": reason} for method in tracks}
    with ds_nuscenes.scene_split(nusc, [log.name for log in logs]) as split:
        for method, scene_tracks in tracks.items():
            submission = tracks_to_submission(scene_tracks)
            write_submission(out / f"tracking_{method}" / "submission.json", submission, "tracking")
            try:
                summary = evaluate_submission(submission, nusc, split, scenes, out / f"tracking_{method}", base_config)
            except ValueError as err:  # the devkit refused the scenes: the replay's own figures still stand
                warnings.warn(f"tracking eval of the {method} skipped: {' '.join(str(err).split())}", stacklevel=2)
                result[method] = {"error": str(err)}
                continue
            result[method] = summary_row(summary) | {"classes": summary["eval_config"]["tracking_names"]}
    return result


# ------------------------------------------------------------------------------------------------ the replay


def _source_name(cfg: ReplayConfig) -> str:
    if cfg.source == "detector":
        return "detector-" + Path(cfg.detections[len(DETECTOR_PREFIX) :].replace("release:", "")).stem
    return "oracle" if cfg.source == "oracle" else Path(cfg.detections).stem


def select_scenes(nusc: NuScenes, cfg: ReplayConfig) -> list[dict[str, Any]]:
    """The scene records to replay, in time order; ValueError listing the valid names for an unknown one."""
    if cfg.split is not None:
        return split_scenes(nusc, cfg.split)
    by_name = {s["name"]: s for s in nusc.scene}
    unknown = [n for n in cfg.scene if n not in by_name]
    if unknown:
        names = sorted(by_name)
        shown = ", ".join(names[:20]) + (f", ... ({len(names)} scenes)" if len(names) > 20 else "")
        raise ValueError(f"scene {unknown[0]!r} is not in {nusc.dataroot}; its scenes: {shown}")
    chosen = [by_name[n] for n in dict.fromkeys(cfg.scene)]
    return sorted(chosen, key=lambda s: nusc.get("sample", s["first_sample_token"])["timestamp"])


def frame_record(log: SceneLog, i: int, tracks: FrameTracks, plans: dict[str, np.ndarray]) -> dict[str, Any]:
    """One keyframe for the MCAP writer: tracks (global) and the plans (ego frame)."""
    from drivestack.common.geometry import yaw_to_quaternion

    quat = yaw_to_quaternion(tracks.yaw)
    return {
        "sample_token": log.samples[i]["token"],
        "timestamp_us": int(log.samples[i]["timestamp"]),
        "tracks": [
            {
                "track_id": int(tracks.track_id[k]),
                "name": TRACKING_NAMES[int(tracks.label[k])],
                "translation": tracks.translation[k].tolist(),
                "size": tracks.size[k].tolist(),
                "rotation": quat[k].tolist(),
                "velocity": np.nan_to_num(tracks.velocity[k]).tolist(),
            }
            for k in range(len(tracks))
        ],
        "plans": {name: p[i].tolist() for name, p in plans.items()},
    }


def run_replay(cfg: ReplayConfig) -> dict[str, Any]:
    """Replay, score, write replay.json / replay.md (and videos, MCAP); returns the results dict."""
    cfg.validate()
    wall0 = time.perf_counter()
    timings: dict[str, float] = {}
    if cfg.source == "submission" and not Path(cfg.detections).is_file():
        raise FileNotFoundError(
            f"--detections {cfg.detections}: no such submission file; give a nuScenes detection JSON, "
            "oracle, or detector:<checkpoint>"
        )
    if cfg.mcap:
        mcap_writer()  # a missing writer fails here, before any work
    name = f"{Path(cfg.dataroot).resolve().name}_{_source_name(cfg)}"
    out = check_out_dir(cfg.out or Path("runs/replay") / name)
    import torch

    torch.set_num_threads(cfg.threads)
    with _timed(timings, "open"):
        version = find_version(cfg.dataroot, cfg.version)
        check_map_files(Path(cfg.dataroot), version)
        nusc = open_nuscenes(cfg.dataroot, version)
        scenes = select_scenes(nusc, cfg)
        logs = [read_scene_log(nusc, s, cfg.use_map) for s in scenes]
        for log in logs:
            if log.map_mask is not None:
                log.map_mask.mask()  # load the PNG now (seconds for a real city map), not inside the first plan
    num_keyframes = sum(len(log) for log in logs)

    # the perception source's detections, per scene and keyframe
    camera: CameraSource | None = None
    with _timed(timings, "open"):
        if cfg.source == "oracle":
            pre = [sf.frames for sf in oracle_detections(nusc, scenes, cfg.oracle)]
        elif cfg.source == "submission":
            pre = read_submission_frames(Path(cfg.detections), nusc, logs)
        else:
            camera = CameraSource(cfg.detections[len(DETECTOR_PREFIX) :], nusc, logs, cfg.device)
    tracker_cfg = cfg.tracker
    if camera is not None and cfg.tracker == TrackerConfig():
        from drivestack.pipeline.detection_velocity import CAMERA_TRACKER

        tracker_cfg = CAMERA_TRACKER
    tracker, baseline = Tracker(tracker_cfg), NearestNeighbourTracker(cfg.baseline)
    make_run_dir(out)
    print(
        f"replay {name}: {len(logs)} scene(s), {num_keyframes} keyframes, source {cfg.detections}, "
        f"map {'yes' if any(log.map_mask is not None for log in logs) else 'no'}"
    )

    bar = tqdm(total=num_keyframes, desc="replay", unit="keyframe", disable=not cfg.progress, dynamic_ncols=True)
    all_tracks: dict[str, list[list[FrameTracks]]] = {"tracker": [], "baseline": []}
    per_scene, scores = [], {p: [] for p in PLANNERS}
    loop0 = time.perf_counter()
    for s, log in enumerate(logs):
        tracker.reset()
        baseline.reset()
        tracks, base_tracks = [], []
        for i in range(len(log)):  # keyframes in time order
            with _timed(timings, "detect"):
                frame = camera.detect(log, i) if camera is not None else pre[s][i]
            with _timed(timings, "track"):
                tracks.append(tracker.step(frame))
            with _timed(timings, "track_baseline"):
                base_tracks.append(baseline.step(frame))
            bar.update(1)
        with _timed(timings, "scene"):
            agents = perceived_agents(log, tracks, cfg.agent_min_score)
        with _timed(timings, "plan"):
            plans = plan(log, agents, cfg.planner)
        with _timed(timings, "score"):
            scene_scores = score(log, plans)
        all_tracks["tracker"].append(tracks)
        all_tracks["baseline"].append(base_tracks)
        for p in PLANNERS:
            scores[p].append(scene_scores[p])
        per_scene.append(
            {
                "scene": log.name,
                "keyframes": len(log),
                "samples_scored": int(log.has_future.sum()),
                "samples_left_out": int((~log.has_future).sum()),
                "map": log.map_mask is not None,
                "planners": {p: summarize(scene_scores[p]) for p in PLANNERS},
            }
        )
        if cfg.video or cfg.mcap:
            _write_media(cfg, nusc, out, log, tracks, plans, agents, timings)
    bar.close()
    loop_seconds = time.perf_counter() - loop0 - timings.get("video", 0.0) - timings.get("mcap", 0.0)

    tracking: dict[str, Any] = {}
    if cfg.perception_eval:
        with _timed(timings, "eval_tracking"):
            tracking = evaluate_tracking(nusc, logs, all_tracks, out, cfg.eval_config)
    detection = None
    if camera is not None and cfg.perception_eval:
        with _timed(timings, "eval_detection"):
            detection = camera.evaluate([f for scene in all_tracks["tracker"] for f in scene], out / "detection")

    planners = {p: summarize(SampleScores.concatenate(scores[p])) for p in PLANNERS}
    left_out = sum(r["samples_left_out"] for r in per_scene)
    results: dict[str, Any] = {
        "name": name,
        "dataroot": str(cfg.dataroot),
        "version": nusc.version,
        "scenes": [log.name for log in logs],
        "source": cfg.source,
        "detections": cfg.detections,
        "keyframes": num_keyframes,
        "samples_scored": planners["idm"]["samples"],
        "samples_left_out": left_out,
        "ego_state_non_causal": int(sum((~log.ego_causal).sum() for log in logs)),
        "map": any(log.map_mask is not None for log in logs),
        "conventions": CONVENTIONS,
        "planners": planners,
        "per_scene": per_scene,
        "tracking": tracking,
        "detection": detection,
        "speed": {
            "keyframes_per_s": num_keyframes / max(loop_seconds, 1e-9),
            "replay_seconds": loop_seconds,
            "stage_seconds": dict(timings),
            "ms_per_keyframe": {k: 1e3 * v / max(num_keyframes, 1) for k, v in timings.items()},
        },
        "config": asdict(cfg),
        "tracker_config": asdict(tracker_cfg),
    }
    results["speed"]["total_seconds"] = time.perf_counter() - wall0
    table = replay_tables(results)
    print(table)
    write_json(out / "replay.json", results)
    write_text(out / "replay.md", f"# replay {name}\n\n{table}\n")
    print(f"wrote {out / 'replay.json'}, {out / 'replay.md'}")
    return results


def _write_media(
    cfg: ReplayConfig,
    nusc: NuScenes,
    out: Path,
    log: SceneLog,
    tracks: list[FrameTracks],
    plans: dict[str, np.ndarray],
    agents: Agents,
    timings: dict[str, float],
) -> None:
    if cfg.video:
        from drivestack.pipeline.replay_video import write_scene_video

        with _timed(timings, "video"):
            write_scene_video(out / "videos" / f"{log.name}.mp4", nusc, log, tracks, plans, cfg.agent_min_score)
    if cfg.mcap:
        write_scene_mcap = mcap_writer()
        with _timed(timings, "mcap"):
            frames = [frame_record(log, i, tracks[i], plans) for i in range(len(log))]
            write_scene_mcap(out / "mcap" / f"{log.name}.mcap", nusc, log.token, frames)


def mcap_writer() -> Any:
    """`drivestack.pipeline.replay_mcap.write_scene_mcap`, imported only for --mcap; ValueError (one line) when it
    or its packages are missing."""
    try:
        from drivestack.pipeline.replay_mcap import write_scene_mcap
    except ImportError as err:
        raise ValueError(
            f"--mcap needs drivestack.pipeline.replay_mcap and its packages (mcap, foxglove-schemas-protobuf): {err}"
        ) from None
    return write_scene_mcap


def replay_tables(results: dict[str, Any]) -> str:
    """The planners' table (both L2 conventions, collisions, off-drivable) and the perception table (markdown)."""
    rows = []
    for p, m in results["planners"].items():
        rows.append(
            [PLANNER_LABELS[p]]
            + [format_number(m[f"l2_avg_{t:g}s"], ".2f") for t in HORIZONS]
            + [format_number(m["l2_avg"], ".2f")]
            + [format_number(m[f"l2_at_{t:g}s"], ".2f") for t in HORIZONS]
            + [format_number(m["l2_at_avg"], ".2f")]
            + [format_number(m[f"collision_at_{t:g}s"], ".1f") for t in HORIZONS]
            + [format_number(m[f"collision_avg_{t:g}s"], ".1f") for t in HORIZONS]
            + [format_number(m["off_drivable"], ".1f") if results["map"] else "no map"]  # "-": no sample with a map
        )
    header = (
        ["planner"]
        + [f"L2 {t:g}s (ST-P3) m" for t in HORIZONS]
        + ["L2 avg (ST-P3) m"]
        + [f"L2 {t:g}s (UniAD) m" for t in HORIZONS]
        + ["L2 avg (UniAD) m"]
        + [f"coll. {t:g}s (UniAD) %" for t in HORIZONS]
        + [f"coll. {t:g}s (ST-P3) %" for t in HORIZONS]
        + ["off-drivable %"]
    )
    first = results["planners"]["idm"]
    lines = [
        markdown_table(header, rows),
        "",
        f"{first['samples']} samples scored ({first['samples_collision']} in the collision rates: "
        f"{first['samples_logged_ego_overlaps']} left out where the logged ego overlaps a box), "
        f"{results['samples_left_out']} keyframes left out (no full 3 s logged future). "
        "ST-P3 = mean over the waypoints up to t (ST-P3/VAD convention); UniAD = at t.",
        "",
    ]
    perception = []
    for method, m in results["tracking"].items():
        if "error" in m:
            perception.append([f"tracking: {method}", "eval failed (see replay.json)", "", "", "", "", ""])
            continue
        perception.append(
            [f"tracking: {method}"]
            + [format_number(m[k], f) for k, f in (("amota", ".3f"), ("amotp", ".3f"), ("recall", ".3f"))]
            + [format_number(m[k], ".0f") for k in ("ids", "fp", "fn")]
        )
    if perception:
        lines.append(markdown_table(["perception", "AMOTA", "AMOTP m", "recall", "IDS", "FP", "FN"], perception))
    if results["detection"] is not None:
        d = results["detection"]
        lines += [
            "",
            f"detection ({d['protocol']}, {len(d['cameras'])} cameras): mAP {d['mAP']:.3f}, NDS {d['NDS']:.3f}",
        ]
    sp = results["speed"]
    lines += [
        "",
        f"speed: {sp['keyframes_per_s']:.2f} keyframes/s (detect -> track -> plan -> score, {results['keyframes']} "
        "keyframes); ms per keyframe: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sp["ms_per_keyframe"].items() if not math.isnan(v)),
    ]
    return "\n".join(lines)
