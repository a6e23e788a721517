"""`drivestack bench tracking`: the Kalman filter tracker against a naive nearest-neighbour tracker.

Both trackers run over every scene of a split on the same detections (a nuScenes detection submission,
or `oracle`: ground-truth boxes with controlled noise, drops and false positives) and are scored with
nuscenes-devkit's `TrackingEval` (AMOTA, AMOTP, MOTA, IDS, FRAG, ...). Speed is the tracker alone
(`step` calls on prepared frames, frames/s) on the dataset and on synthetic streams of 50 objects per
frame, clean (0.3 m noise) and noisy (also 10 % dropped, 5 % false positives: births and deaths every
frame). With --seeds N (oracle only) everything is repeated over N oracle seeds and the table shows the
means. Writes, under --out (default runs/bench/tracking/<name>; per seed in seed<k>/ when N > 1): the two
submissions, the devkit's metric files, tracking.json (all figures, per seed, and the configs), tracking.md
(the side-by-side table) and tracking.png (tracks in bird's-eye view and MOTAR over recall, the curve AMOTA
averages). With --ablation the tracker is also scored with each of its stages undone, one row each
(`ablations`), in ablation.md and tracking.json.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from drivestack.common.artifacts import check_out_dir
from drivestack.common.nuscenes import open_nuscenes, split_scenes
from drivestack.common.submission import write_submission
from drivestack.report import format_number, make_run_dir, markdown_table, save_figure, write_json, write_text
from drivestack.tracking.association import Matcher, Metric
from drivestack.tracking.baseline import NearestNeighbourConfig, NearestNeighbourTracker
from drivestack.tracking.data_classes import FrameDetections, FrameTracks
from drivestack.tracking.evaluate import evaluate_submission, load_details, summary_row, tracking_config
from drivestack.tracking.nuscenes_io import SceneFrames, read_detection_submission, tracks_to_submission
from drivestack.tracking.oracle import OracleConfig, ground_truth_frames, oracle_detections
from drivestack.tracking.tracker import MultiTracker, OutputBox, Tracker, TrackerConfig

METHODS = ("tracker", "baseline")
TABLE = (
    ("amota", "AMOTA", 3),
    ("amotp", "AMOTP m", 3),
    ("recall", "recall", 3),
    ("mota", "MOTA", 3),
    ("motp", "MOTP m", 3),
    ("ids", "IDS", 0),
    ("frag", "FRAG", 0),
    ("fp", "FP", 0),
    ("fn", "FN", 0),
    ("mt", "MT", 0),
    ("ml", "ML", 0),
    ("fps_dataset", "frames/s (dataset)", 0),
    ("fps_stream", "frames/s (stream, noisy)", 0),
    ("fps_stream_clean", "frames/s (stream, clean)", 0),
)


@dataclass(frozen=True)
class BenchTrackingConfig:
    """Track every scene of a split, score with the nuScenes tracking metrics, time the tracker."""

    dataroot: Path
    """nuScenes-format dataset folder holding <version>/ (e.g. v1.0-mini/), real or made by `drivestack data make`."""
    split: str = "val"
    """Split to track and score: "all", a name in <dataroot>/<version>/splits.json, or a nuScenes split."""
    detections: str = "oracle"
    """A nuScenes detection submission (JSON), or 'oracle' for corrupted ground truth (see --oracle.*)."""
    version: str | None = None
    """Table folder under dataroot (None: the only one there, e.g. v1.0-trainval or v1.0-mini)."""
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    """The Kalman filter tracker."""
    baseline: NearestNeighbourConfig = field(default_factory=NearestNeighbourConfig)
    """The naive nearest-neighbour tracker."""
    oracle: OracleConfig = field(default_factory=OracleConfig)
    """Corruption of the ground truth when --detections oracle."""
    seeds: int = 1
    """With --detections oracle: repeat with this many oracle seeds (oracle.seed, +1, ...) and report the mean."""
    eval_config: str = "tracking_nips_2019"
    """nuscenes-devkit tracking config (restricted to the classes with ground truth in the split)."""
    speed_objects: int = 50
    """Objects per frame of the synthetic speed stream."""
    speed_frames: int = 2000
    """Frames of the synthetic speed stream (0: skip it)."""
    speed_envs: int = 0
    """Also time `MultiTracker` on this many environments of 20 objects each (one call per frame for all) against
    a loop of as many `Tracker`s, the closed loop's case (0: skip)."""
    name: str | None = None
    """Run name (default: <dataroot name>_<split>_<oracle or detection file stem>)."""
    out: Path | None = None
    """Output folder (default runs/bench/tracking/<name>)."""
    plot: bool = True
    """Write tracking.png."""
    ablation: bool = False
    """Also score the tracker with each of its stages turned back (one row each, on the last seed's
    detections) and write ablation.md: what each stage is worth on this data."""


def ablations(cfg: TrackerConfig) -> list[tuple[str, TrackerConfig]]:
    """The tracker `cfg` with one stage undone per row (first row: `cfg` itself; last: all undone, the tracker
    of issue 16: one set of noises for all classes and no centre-distance gate, Hungarian NLL, no pre-filter,
    one association stage, filtered boxes, confirmation at the third hit)."""
    classes = cfg.classes
    uniform = classes.uniform(pos_std=0.5, accel_std=1.0, init_speed_std=15.0, max_distance=4.0)
    no_filter = replace(classes, min_score=(0.0,) * 7)
    before = replace(
        cfg,
        classes=replace(classes.uniform(pos_std=0.5, accel_std=1.0, init_speed_std=15.0), min_score=(0.0,) * 7),
        metric=Metric.NLL,
        matcher=Matcher.HUNGARIAN,
        nms=False,
        two_stage=False,
        output_box=OutputBox.FILTERED,
        heading_prior=False,
        gate_sigmas=1e6,  # no centre-distance gate: the NLL gate alone, as before
        min_hits=3,
    )
    before = replace(before, classes=replace(before.classes, max_distance=(1e-6,) * 7))
    return [
        ("tracker (all stages)", cfg),
        ("- BEV NMS", replace(cfg, nms=False)),
        ("- two-stage association (one stage, every detection may start a track)", replace(cfg, two_stage=False)),
        ("- score pre-filter (min_score 0)", replace(cfg, classes=no_filter)),
        ("- per-class table (car's gate, one noise set for all classes)", replace(cfg, classes=uniform)),
        ("- greedy (Hungarian instead)", replace(cfg, matcher=Matcher.HUNGARIAN)),
        ("- heading prior for newborns (the filter's isotropic velocity prior)", replace(cfg, heading_prior=False)),
        ("- NLL cost (centre distance instead)", replace(cfg, metric=Metric.CENTER)),
        ("- filtered box output (the detection's box instead)", replace(cfg, output_box=OutputBox.DETECTION)),
        (
            f"- confirmation at hit {cfg.min_hits} (at hit {cfg.min_hits + 1} instead)",
            replace(cfg, min_hits=cfg.min_hits + 1),
        ),
        ("issue 16's tracker (all of the above undone)", before),
    ]


def synthetic_stream(
    num_objects: int, num_frames: int, seed: int = 0, dt: float = 0.5, drop: float = 0.1, false_positive: float = 0.05
) -> list[FrameDetections]:
    """Detections of `num_objects` objects moving at constant velocity (2-15 m/s, cars, trucks, pedestrians)
    in a 200 m square, with 0.3 m noise, a fraction `drop` missed and `false_positive` x num_objects false
    positives per frame (Poisson); an object leaving the square re-enters on the other side (a death and a
    birth). The defaults are the oracle's moderate noise; drop = false_positive = 0 gives the clean stream."""
    rng = np.random.default_rng(seed)
    label = rng.choice([2, 6, 4], num_objects, p=[0.7, 0.15, 0.15])  # car, truck, pedestrian
    speed = np.where(label == 4, rng.uniform(0.5, 2.0, num_objects), rng.uniform(2.0, 15.0, num_objects))
    heading = rng.uniform(-np.pi, np.pi, num_objects)
    velocity = speed[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    size = np.where(
        (label == 4)[:, None], [0.7, 0.7, 1.8], np.where((label == 6)[:, None], [2.5, 8.0, 3.0], [1.9, 4.6, 1.6])
    )
    xy = rng.uniform(-100.0, 100.0, (num_objects, 2))
    frames = []
    for k in range(num_frames):
        xy = (xy + velocity * dt + 100.0) % 200.0 - 100.0
        seen = rng.random(num_objects) >= drop
        num_fp = rng.poisson(false_positive * num_objects)
        centre = np.concatenate(
            [xy[seen] + rng.normal(0.0, 0.3, (int(seen.sum()), 2)), rng.uniform(-100.0, 100.0, (num_fp, 2))]
        )
        n = len(centre)
        fp_label = rng.choice(label, num_fp)
        frames.append(
            FrameDetections.from_boxes(
                f"stream-{k}",
                k * dt,
                np.concatenate([centre, np.ones((n, 1))], axis=1),
                np.concatenate([size[seen], np.tile([1.9, 4.6, 1.6], (num_fp, 1))]),
                np.concatenate([heading[seen], rng.uniform(-np.pi, np.pi, num_fp)]) + rng.normal(0.0, 0.1, n),
                np.concatenate([rng.uniform(0.6, 1.0, int(seen.sum())), rng.uniform(0.1, 0.5, num_fp)]),
                np.concatenate([label[seen], fp_label]),
            )
        )
    return frames


def run_tracker(
    tracker: Tracker | NearestNeighbourTracker, scenes: list[SceneFrames], desc: str = ""
) -> tuple[list[list[FrameTracks]], float]:
    """Track every scene (reset between scenes); returns the tracks and the seconds spent in `step` alone."""
    out, elapsed = [], 0.0
    for scene in tqdm(scenes, desc=desc, unit="scene", disable=not desc, leave=False):
        tracker.reset()
        t0 = time.perf_counter()
        out.append([tracker.step(f) for f in scene.frames])
        elapsed += time.perf_counter() - t0
    return out, elapsed


def warm_up(config: TrackerConfig) -> None:
    """Step a throwaway tracker through a few frames, so that no timed run pays for loading the tracker's compiled
    stages (numba: ~0.3 s once per process from its cache, seconds when it compiles them the first time)."""
    frames = synthetic_stream(20, 3, seed=0, false_positive=0.2)
    tracker = Tracker(config)
    for frame in frames:
        tracker.step(frame)


def stream_fps(tracker: Tracker | NearestNeighbourTracker, frames: list[FrameDetections], repeats: int = 3) -> float:
    """Frames per second of `tracker.step` over a prepared stream (best of `repeats`: the least disturbed)."""
    best = math.inf
    for _ in range(repeats):
        _, elapsed = run_tracker(tracker, [SceneFrames("stream", "stream", frames)])
        best = min(best, elapsed)
    return len(frames) / best


def multi_env_fps(num_envs: int, num_objects: int = 20, num_frames: int = 20, repeats: int = 2) -> dict[str, float]:
    """Environment-frames per second of one `MultiTracker` stepping `num_envs` noisy synthetic streams together,
    and of a loop of `num_envs` `Tracker`s on the same frames (best of `repeats` each)."""
    streams = [synthetic_stream(num_objects, num_frames, seed=b) for b in range(num_envs)]
    best_multi = best_loop = math.inf
    for _ in range(repeats):
        multi = MultiTracker(num_envs=num_envs)
        t0 = time.perf_counter()
        for k in range(num_frames):
            multi.step([s[k] for s in streams])
        best_multi = min(best_multi, time.perf_counter() - t0)
        single = [Tracker() for _ in range(num_envs)]
        t0 = time.perf_counter()
        for k in range(num_frames):
            for b in range(num_envs):  # the loop MultiTracker replaces
                single[b].step(streams[b][k])
        best_loop = min(best_loop, time.perf_counter() - t0)
    frames = num_envs * num_frames
    return {
        "envs": num_envs,
        "objects_per_env": num_objects,
        "multi_env_frames_per_s": frames / best_multi,
        "loop_env_frames_per_s": frames / best_loop,
    }


def _table(rows: dict[str, dict[str, float]]) -> str:
    header = ["method", *(label for _, label, _ in TABLE)]
    cells = (
        [method, *(format_number(m[key], f".{digits}f") for key, _, digits in TABLE)] for method, m in rows.items()
    )
    return markdown_table(header, cells)


def _plot(
    path: Path, gt: list[FrameTracks], tracks: dict[str, list[FrameTracks]], details: dict[str, Any], scene_name: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 6))
    g = np.concatenate([f.translation[:, :2] for f in gt]) if gt else np.zeros((0, 2))
    for ax, (method, frames) in zip(axes[:2], tracks.items()):
        ax.scatter(g[:, 0], g[:, 1], s=30, c="0.85", label="ground truth")
        if frames and sum(len(f) for f in frames):
            xy = np.concatenate([f.translation[:, :2] for f in frames])
            ids = np.concatenate([f.track_id for f in frames])
            ax.scatter(xy[:, 0], xy[:, 1], s=4, c=ids % 20, cmap="tab20")
        ax.set_title(
            f"{method}: {len({int(i) for f in frames for i in f.track_id})} track ids, {scene_name}", fontsize=10
        )
        ax.set_aspect("equal")
        ax.set_xlabel("x m (global)")
        ax.legend(loc="upper right", fontsize=8)
    ax = axes[2]
    for method, det in details.items():
        recall = np.array([d["recall_hypo"] for d in det.values()], dtype=float)[0]  # [thresholds], same per class
        # an unreached recall counts as MOTAR 0 (the devkit's worst value), before the mean over classes
        motar = np.nan_to_num(np.array([d["motar"] for d in det.values()], dtype=float)).mean(axis=0)
        ax.plot(recall, motar, marker=".", label=f"{method} (AMOTA {motar.mean():.3f})")
    ax.set_title("MOTAR over recall (first seed)", fontsize=10)
    ax.set_xlabel("recall")
    ax.set_ylabel("MOTAR (class mean; AMOTA is its mean over recall)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=80, bbox_inches="tight", format="png")


def _score_methods(
    cfg: BenchTrackingConfig,
    nusc: Any,
    scenes: list[dict[str, Any]],
    detections: list[SceneFrames],
    trackers: tuple[Tracker, NearestNeighbourTracker],
    out: Path,
) -> dict[str, dict[str, Any]]:
    """Track `detections` with both trackers, write their submissions and score them under `out`."""
    num_frames = sum(len(s.frames) for s in detections)
    scored = {}
    for method, trk in zip(METHODS, trackers):
        tracks, elapsed = run_tracker(trk, detections, desc=method)
        submission = tracks_to_submission(tracks)
        write_submission(out / f"submission_{method}.json", submission, "tracking")
        summary = evaluate_submission(submission, nusc, cfg.split, scenes, out / f"eval_{method}", cfg.eval_config)
        row = summary_row(summary)
        row["fps_dataset"] = num_frames / max(elapsed, 1e-9)
        scored[method] = {
            "metrics": row,
            "per_class_amota": summary["label_metrics"]["amota"],
            "eval_config": summary["eval_config"],
            "tracks": tracks[0],
            "details": load_details(out / f"eval_{method}"),
        }
    return scored


def run_bench(cfg: BenchTrackingConfig) -> dict[str, Any]:
    """Track, score and time both trackers; print the table and write the files (see the module docstring)."""
    trackers = Tracker(cfg.tracker), NearestNeighbourTracker(cfg.baseline)  # validates their configs
    if cfg.speed_objects < 1 or cfg.speed_frames < 0 or cfg.speed_envs < 0:
        raise ValueError(
            f"speed_objects must be >= 1, speed_frames and speed_envs >= 0, got {cfg.speed_objects}, "
            f"{cfg.speed_frames}, {cfg.speed_envs}"
        )
    if cfg.seeds < 1 or (cfg.seeds > 1 and cfg.detections != "oracle"):
        raise ValueError(f"seeds must be >= 1, and 1 unless --detections oracle (got {cfg.seeds})")
    tracking_config(cfg.eval_config)  # an unknown protocol fails here, before any work
    source = "oracle" if cfg.detections == "oracle" else Path(cfg.detections).stem
    name = cfg.name or f"{Path(cfg.dataroot).resolve().name}_{cfg.split}_{source}"
    out = check_out_dir(cfg.out or Path("runs/bench/tracking") / name)  # created once the inputs are read
    nusc = open_nuscenes(cfg.dataroot, cfg.version)
    scenes = split_scenes(nusc, cfg.split)
    warm_up(cfg.tracker)  # before anything is timed
    runs = []  # one per oracle seed
    for k in range(cfg.seeds):
        if cfg.detections == "oracle":
            detections = oracle_detections(nusc, scenes, replace(cfg.oracle, seed=cfg.oracle.seed + k))
        else:
            detections = read_detection_submission(Path(cfg.detections), nusc, scenes)
        if k == 0:
            make_run_dir(out)
            num_frames = sum(len(s.frames) for s in detections)
            print(
                f"{name}: {len(scenes)} scenes, {num_frames} frames, "
                f"{sum(len(f) for s in detections for f in s.frames)} detections ({source})"
            )
        runs.append(
            _score_methods(
                cfg, nusc, scenes, detections, trackers, out if cfg.seeds == 1 else out / f"seed{cfg.oracle.seed + k}"
            )
        )

    # the table: mean over seeds (the first seed's files are the ones the plot shows)
    rows = {
        m: {key: float(np.mean([r[m]["metrics"][key] for r in runs])) for key in runs[0][m]["metrics"]} for m in METHODS
    }
    for m in METHODS:
        rows[m]["fps_stream"] = rows[m]["fps_stream_clean"] = math.nan
    results: dict[str, Any] = {
        "name": name,
        "dataroot": str(cfg.dataroot),
        "split": cfg.split,
        "detections": source,
        "scenes": len(scenes),
        "frames": num_frames,
        "seeds": [cfg.oracle.seed + k for k in range(cfg.seeds)],
        "config": asdict(cfg),
        "eval_config": runs[0]["tracker"]["eval_config"],
        "methods": {
            m: {
                "metrics": rows[m],
                "amota_min_over_seeds": min(r[m]["metrics"]["amota"] for r in runs),
                "per_seed": [r[m]["metrics"] for r in runs],
                "per_class_amota": runs[0][m]["per_class_amota"],
            }
            for m in METHODS
        },
    }
    if cfg.speed_frames:
        stream = synthetic_stream(cfg.speed_objects, cfg.speed_frames)
        clean = synthetic_stream(cfg.speed_objects, cfg.speed_frames, drop=0.0, false_positive=0.0)
        for method, trk in zip(METHODS, trackers):
            rows[method]["fps_stream"] = stream_fps(trk, stream)
            rows[method]["fps_stream_clean"] = stream_fps(trk, clean)
        results["speed_stream"] = {
            "objects": cfg.speed_objects,
            "frames": cfg.speed_frames,
            "detections_per_frame": float(np.mean([len(f) for f in stream])),
            "noisy": "0.3 m noise, 10 % dropped, 5 % false positives",
            "clean": "0.3 m noise",
            "cpu_load_average_1min": _load(),
        }
    table = _table(rows)
    if cfg.speed_envs:
        results["speed_envs"] = multi = multi_env_fps(cfg.speed_envs)
        table += (
            f"\n\nMultiTracker, {cfg.speed_envs} environments x 20 objects: "
            f"{multi['multi_env_frames_per_s']:.0f} environment-frames/s in one call per frame, "
            f"{multi['loop_env_frames_per_s']:.0f} with a loop of Trackers"
        )
    if cfg.seeds > 1:
        table += f"\n\nmean over oracle seeds {results['seeds']}; AMOTA min over seeds: " + ", ".join(
            f"{m} {results['methods'][m]['amota_min_over_seeds']:.3f}" for m in METHODS
        )
    print(table)
    if cfg.ablation:
        results["ablation"] = _ablation(cfg, nusc, scenes, detections, out / "ablation")
        write_text(out / "ablation.md", f"# tracker ablation: {name}\n\n{results['ablation']['table']}\n")
    write_json(out / "tracking.json", results)
    write_text(out / "tracking.md", f"# tracking benchmark: {name}\n\n{table}\n")
    if cfg.plot:
        _plot(
            out / "tracking.png",
            ground_truth_frames(nusc, scenes[0]),
            {m: runs[0][m]["tracks"] for m in METHODS},
            {m: runs[0][m]["details"] for m in METHODS},
            scenes[0]["name"],
        )
    print(f"\nwrote {out}/tracking.json, tracking.md" + (", tracking.png" if cfg.plot else ""))
    return results


def _ablation(
    cfg: BenchTrackingConfig, nusc: Any, scenes: list[dict[str, Any]], detections: list[SceneFrames], out: Path
) -> dict[str, Any]:
    """Score each row of `ablations(cfg.tracker)` on `detections` (the last seed's); returns the rows and a table."""
    rows = {}
    for label, tcfg in tqdm(ablations(cfg.tracker), desc="ablation", unit="variant", leave=False):
        tracks, _ = run_tracker(Tracker(tcfg), detections)
        key = f"{len(rows):02d}"
        summary = evaluate_submission(tracks_to_submission(tracks), nusc, cfg.split, scenes, out / key, cfg.eval_config)
        rows[label] = {**summary_row(summary), "per_class_amota": summary["label_metrics"]["amota"]}
    classes = sorted(next(iter(rows.values()))["per_class_amota"])
    header = ["variant", "AMOTA", "AMOTP m", "MOTA", "IDS", "FP", "FN", *classes]
    cells = (
        [
            label,
            *(format_number(r[k], f".{d}f") for k, d in (("amota", 3), ("amotp", 3), ("mota", 3))),
            *(format_number(r[k], ".0f") for k in ("ids", "fp", "fn")),
            *(format_number(r["per_class_amota"][c], ".2f") for c in classes),
        ]
        for label, r in rows.items()
    )
    table = markdown_table(header, cells)
    print(f"\nablation (each row undoes one stage of the first):\n{table}")
    return {"rows": rows, "table": table}


def _load() -> float:
    try:
        return os.getloadavg()[0]  # other processes on the machine slow the timing: record how busy it was
    except OSError:
        return math.nan
