"""`drivestack bench perception`: run the camera detector over a split, score it, and time it.

`--cameras` chooses the camera images detected (CAM_FRONT by default; `all` for the six); with several, each
sample's cameras are merged (`perception.infer.merge_frames`) and scored over the full scene
(perception/configs/full_scene_v1.json), the protocol chosen by default; `--protocol` chooses it explicitly.

`--detections FILE` scores a nuScenes detection submission instead (anyone's detector, lidar or camera) with the
same report, detector speed left out: the devkit reads every box as submitted (no score threshold, velocities as
given), the ten classes are scored (mAP as the devkit's own DetectionEval gives it), under full_scene_v1 by default
(2D AP per image of the six cameras: the boxes whose centre is in each image) or camera_front_v1 (the boxes whose
centre is in CAM_FRONT's image). Only the tables and calibration are read, not the images.

Writes into --out: submission.json (nuScenes detection format), metrics.json (mAP, NDS, per-class AP, TP
errors, 2D COCO AP, speed, the eval protocol and devkit config), summary.md (the table printed at the end) and
pr_curves.png (precision-recall per class at the four centre-distance thresholds).
"""

from __future__ import annotations

import os

# Before torch loads: OpenMP threads spinning while they wait starve each other when the cores are shared (one
# other busy process made batch-1 CPU latency 540 ms instead of 41 ms); passive waiting costs nothing idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from drivestack.common.artifacts import check_out_dir  # noqa: E402
from drivestack.common.host import host_info, resolve_device, set_threads  # noqa: E402
from drivestack.common.nuscenes import open_nuscenes  # noqa: E402
from drivestack.common.submission import read_submission  # noqa: E402
from drivestack.perception.checkpoint import check_compatible, load_checkpoint, model_from_checkpoint  # noqa: E402
from drivestack.perception.config import CAMERAS, ModelConfig, resolve_cameras, sort_classes  # noqa: E402
from drivestack.perception.dataset import dataset_cameras, load_frames, read_image, resize_image  # noqa: E402
from drivestack.perception.evaluate import (  # noqa: E402
    FULL_SCENE,
    default_protocol,
    evaluate_detections,
    load_protocol,
    protocol_scope,
)
from drivestack.perception.infer import Detector, detect_frames, merge_frames  # noqa: E402
from drivestack.perception.merge import DEFAULT_RADIUS  # noqa: E402
from drivestack.perception.speed import measure_speed  # noqa: E402
from drivestack.perception.submission_eval import check_submission_samples, evaluate_submission  # noqa: E402
from drivestack.release import resolve_checkpoint_path  # noqa: E402
from drivestack.report import format_number, make_run_dir, write_json, write_text  # noqa: E402

SPEED_IMAGE_SIZE = (800, 450)  # [px] (W, H) camera images are timed at (the synthetic dataset's size)


@dataclass(frozen=True)
class BenchPerceptionConfig:
    """Run the detector over a split: nuScenes mAP / NDS, 2D COCO AP, images/s and latency."""

    checkpoint: Path | None = None
    """Detector checkpoint (.pt), a training run directory (its checkpoints/best.pt) or `release:<name>`; or
    give a detection submission with --detections instead."""
    detections: Path | None = None
    """A nuScenes detection submission (JSON, global frame; anyone's detector, lidar or camera) scored
    with the same report instead of a checkpoint: every box as submitted (no score threshold, velocities as
    given), the ten classes by default, no timing; the full-scene protocol by default (2D AP over the six
    cameras)."""
    dataroot: Path | None = None
    """nuScenes-format dataset (None: the embedded synthetic dataset, generated on first use)."""
    version: str | None = None
    """Table folder under dataroot (None: the only one there)."""
    split: str = "val"
    """Split scored: a name in <version>/splits.json, an official nuScenes split, or "all"."""
    out: Path | None = None
    """Output directory (None: runs/bench/perception-<dataset folder>-<split>)."""
    device: str = "auto"
    """Device the split is detected on: auto (cuda when present), cpu or cuda."""
    batch_size: int = 16
    """Images per inference batch while detecting the split."""
    num_workers: int = 2
    """DataLoader workers decoding JPEGs."""
    cameras: tuple[str, ...] | None = None
    """Cameras detected: nuScenes channel names or "all" (None: CAM_FRONT, or all six under a full-scene
    protocol). Several are merged per sample."""
    protocol: str | None = None
    """Eval protocol: a name under perception/configs/ or a JSON path (None: camera_front_v1 for CAM_FRONT
    alone, full_scene_v1 otherwise)."""
    score_all_classes: bool = False
    """Score every class with ground truth, also those the detector has no output for (AP 0)."""
    classes: tuple[str, ...] | None = None
    """Refuse a checkpoint whose classes differ from these (None: accept its classes); with a submission
    given by --detections, the classes scored (None: the official ten)."""
    input_width: int | None = None
    """Refuse a checkpoint trained at another network input width [px] (None: accept)."""
    input_height: int | None = None
    """Refuse a checkpoint trained at another network input height [px] (None: accept)."""
    speed: bool = True
    """Time the detector: batch 1 and --speed-batch, on the CPU and on CUDA when present."""
    speed_batch: int = 64
    """Batch size of the batched timing."""
    speed_iters: int = 20
    """Timed batches per setting."""
    threads: int = 2
    """torch CPU threads (the CPU timings use this many)."""
    depth_confidence: bool = True
    """Rank boxes by heat-map peak x the network's depth confidence (False: the peak alone, for ablation)."""
    velocity: str = "tracker"
    """Velocities submitted: tracker (each detection takes the velocity of the drivestack tracker's track it
    updates, tracking each scene in time order; see drivestack.pipeline.detection_velocity) or zero (the single-frame
    detector alone: mAVE is then the ground truth's speed)."""
    plots: bool = True
    """Write pr_curves.png."""
    progress: bool = True
    """Show progress bars."""


def _expected(cfg: BenchPerceptionConfig, have: ModelConfig) -> ModelConfig:
    want = have
    if cfg.classes is not None:
        classes = sort_classes(cfg.classes)
        if len(classes) != len(set(cfg.classes)):
            raise ValueError(f"classes={list(cfg.classes)}: each must be a nuScenes detection name")
        want = replace(want, classes=classes)
    if cfg.input_width is not None:
        want = replace(want, input_width=cfg.input_width)
    if cfg.input_height is not None:
        want = replace(want, input_height=cfg.input_height)
    return want


def speed_table(
    detector_cpu: Detector,
    images: torch.Tensor,
    intrinsic: torch.Tensor,
    cam2ego: torch.Tensor,
    cfg: BenchPerceptionConfig,
    state: dict[str, Any],
) -> list[dict[str, Any]]:
    """Timings at batch 1 and `speed_batch` on the CPU, and on CUDA when present."""
    rows = []
    for batch in (1, cfg.speed_batch):
        rows.append(
            measure_speed(
                detector_cpu,
                images,
                intrinsic,
                cam2ego,
                batch,
                iters=cfg.speed_iters if batch == 1 else max(3, cfg.speed_iters // 4),
            )
        )
    if torch.cuda.is_available():
        gpu = Detector(model_from_checkpoint(state), state["attributes"], device="cuda")
        for batch in (1, cfg.speed_batch, 4 * cfg.speed_batch):
            rows.append(
                measure_speed(gpu, images, intrinsic, cam2ego, batch, iters=cfg.speed_iters, warmup=10, min_seconds=2.0)
            )
        rows[-1]["gpu"] = host_info("cuda")["gpu"]
    return rows


def summary_markdown(metrics: dict[str, Any]) -> str:
    lines = ["| metric | value |", "|---|---|"]
    if "protocol" in metrics and "cameras" in metrics:
        lines.append(f"| protocol / cameras | {metrics['protocol']['name']} / {', '.join(metrics['cameras'])} |")
    lines += [f"| mAP | {metrics['mAP']:.4f} |", f"| NDS | {metrics['NDS']:.4f} |"]
    lines += [f"| AP {c} | {v:.4f} |" for c, v in metrics["AP"].items()]
    lines += [
        f"| AP {c} at {' / '.join(by_dist)} m | {' / '.join(f'{v:.3f}' for v in by_dist.values())} |"
        for c, by_dist in metrics.get("label_aps", {}).items()
    ]
    names = {
        "trans_err": "mATE [m]",
        "scale_err": "mASE",
        "orient_err": "mAOE [rad]",
        "vel_err": "mAVE [m/s]",
        "attr_err": "mAAE",
    }
    lines += [f"| {names[k]} | {v:.4f} |" for k, v in metrics["tp_errors"].items()]
    coco = metrics["coco_2d"]
    if coco is not None:  # None: a full-scene run without per-image detections
        lines += [f"| 2D COCO AP / AP50 / AP75 | {coco['AP']:.4f} / {coco['AP50']:.4f} / {coco['AP75']:.4f} |"]
    lines += [f"| samples / scored GT boxes | {metrics['num_samples']} / {sum(metrics['gt_counts'].values())} |"]
    for row in metrics.get("speed", []):
        lines.append(
            f"| speed {row['device']} batch {row['batch_size']} | {row['images_per_s']:.1f} images/s, "
            f"{row['latency_ms']:.2f} ms per batch (p90 {row['latency_ms_p90']:.2f}) |"
        )
    if metrics.get("centre_errors"):  # a second table: the centre error by camera (full scene: ego) distance
        origin = "ego" if metrics.get("protocol", {}).get("gt_filter") == FULL_SCENE else "camera"
        lines += [
            "",
            f"| {origin} distance m | matched / scored | radial bias m | radial std m | lateral std m | "
            "within 0.5 m | within 1 m |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['distance']} | {r['matched']} / {r['scored']} | {format_number(r['radial_bias'], '+.2f')} | "
            f"{format_number(r['radial_std'], '.2f')} | {format_number(r['lateral_std'], '.2f')} | "
            f"{format_number(r['within_0.5'], '.2f')} | {format_number(r['within_1'], '.2f')} |"
            for r in metrics["centre_errors"]
        ]
    return "\n".join(lines) + "\n"


def _source(cfg: BenchPerceptionConfig) -> None:
    if cfg.checkpoint is not None and cfg.detections is not None:
        raise ValueError(
            "--checkpoint and --detections both given; score either a detector checkpoint or a detection "
            "submission, not both"
        )
    if cfg.checkpoint is None and cfg.detections is None:
        raise ValueError(
            "nothing to score; give --checkpoint (a detector checkpoint, run directory or release:<name>) or "
            "--detections (a nuScenes detection submission JSON)"
        )


def _protocol_and_cameras(cfg: BenchPerceptionConfig, full_by_default: bool) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The eval protocol and the cameras of a run (None options resolved; see the fields' docs)."""
    protocol = load_protocol(cfg.protocol) if cfg.protocol is not None else None
    if cfg.cameras is not None:
        cameras = resolve_cameras(cfg.cameras)
    elif protocol is not None:
        cameras = CAMERAS if protocol.get("gt_filter") == FULL_SCENE else (protocol.get("camera", "CAM_FRONT"),)
    else:
        cameras = CAMERAS if full_by_default else ("CAM_FRONT",)
    return protocol or load_protocol(default_protocol(cameras)), cameras


def _write_report(out: Path, metrics: dict[str, Any], cfg: BenchPerceptionConfig, protocol: dict[str, Any]) -> None:
    write_json(out / "metrics.json", metrics)
    table = summary_markdown(metrics)
    what = f"{cfg.detections}, " if cfg.detections is not None else ""
    title = f"# perception benchmark: {what}{cfg.dataroot} split {cfg.split}, protocol {protocol['name']}"
    write_text(out / "summary.md", f"{title}, cameras {', '.join(metrics['cameras'])}\n\n{table}")
    print(table, end="")
    print(
        f"wrote {out / 'metrics.json'}, {out / 'summary.md'}, {out / 'submission.json'}"
        + (f", {out / 'pr_curves.png'}" if cfg.plots else "")
    )


def run_submission_bench(cfg: BenchPerceptionConfig) -> dict[str, Any]:
    """Score the detection submission `cfg.detections` on the split (no detector, no timing); returns the metrics
    dict also written to metrics.json."""
    assert cfg.detections is not None
    for name in ("input_width", "input_height"):
        if getattr(cfg, name) is not None:
            raise ValueError(f"{name.replace('_', '-')} applies to --checkpoint only; drop it with --detections")
    classes = None
    if cfg.classes is not None:
        classes = sort_classes(cfg.classes)
        if len(classes) != len(set(cfg.classes)):
            raise ValueError(f"classes={list(cfg.classes)}: each must be a nuScenes detection name")
    protocol, cameras = _protocol_and_cameras(cfg, full_by_default=True)
    full_scene = protocol_scope(protocol, cameras)
    if not cfg.detections.is_file():
        raise FileNotFoundError(
            f"--detections {cfg.detections}: no such file; give a nuScenes detection submission JSON"
        )
    if cfg.out is not None:
        check_out_dir(cfg.out)
    if cfg.dataroot is None:
        from drivestack.sim.nuscenes_export import default_dataset

        cfg = replace(cfg, dataroot=default_dataset(progress=cfg.progress))
    assert cfg.dataroot is not None
    nusc = open_nuscenes(cfg.dataroot, cfg.version)
    if cfg.cameras is None and full_scene:  # the 2D AP over the cameras the dataset has
        have = dataset_cameras(nusc)
        cameras = tuple(c for c in cameras if c in have) or cameras
    # The geometry alone: a submission is scored without the images (2D AP needs only the calibration).
    frames = load_frames(nusc, cfg.split, cameras, "sample" if full_scene else "camera", require_images=False)
    samples = [f for i, f in enumerate(frames) if i == 0 or f.sample_token != frames[i - 1].sample_token]
    data = read_submission(
        cfg.detections,
        "detection",
        sample_tokens=[f.sample_token for f in samples],
        dataset_tokens=[s["token"] for s in nusc.sample],
    )
    out = check_out_dir(
        cfg.out or Path("runs/bench") / f"perception-{Path(cfg.dataroot).name}-{cfg.split}-{cfg.detections.stem}"
    )
    check_submission_samples(data, [f.sample_token for f in samples], protocol, cfg.detections)
    make_run_dir(out)
    metrics = evaluate_submission(
        nusc,
        samples,
        data,
        out,
        protocol,
        classes=classes,
        plots=cfg.plots,
        images=frames if full_scene else None,
        source=cfg.detections,
    )
    metrics.update(
        detections=str(cfg.detections),
        dataroot=str(cfg.dataroot),
        split=cfg.split,
        cameras=list(cameras),
        num_images=len(frames),
        host=host_info("cpu"),
    )
    _write_report(out, metrics, cfg, protocol)
    return metrics


def run_bench(cfg: BenchPerceptionConfig) -> dict[str, Any]:
    """Detect, score and time (or score a submission, `--detections`); returns the metrics dict also written to
    metrics.json."""
    # Options first: a mistake is one line before the embedded dataset is generated or anything is read.
    _source(cfg)
    if cfg.detections is not None:
        return run_submission_bench(cfg)
    for name in ("batch_size", "speed_batch", "speed_iters", "threads"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)}; allowed: >= 1")
    if cfg.velocity not in ("tracker", "zero"):
        raise ValueError(f"velocity={cfg.velocity!r}; allowed: tracker or zero")
    if cfg.num_workers < 0:
        raise ValueError(f"num_workers={cfg.num_workers}; allowed: >= 0")
    protocol, cameras = _protocol_and_cameras(cfg, full_by_default=False)
    full_scene = protocol_scope(protocol, cameras)
    threshold = float(protocol["score_threshold"])
    device = str(resolve_device(cfg.device))  # "auto": CUDA when present
    if cfg.out is not None:
        check_out_dir(cfg.out)
    if cfg.dataroot is None:
        from drivestack.sim.nuscenes_export import default_dataset

        cfg = replace(cfg, dataroot=default_dataset(progress=cfg.progress))
    assert cfg.dataroot is not None
    set_threads(cfg.threads)

    assert cfg.checkpoint is not None
    state = load_checkpoint(resolve_checkpoint_path(cfg.checkpoint))
    have = ModelConfig.from_dict(state["model_config"])
    check_compatible(have, _expected(cfg, have), state["path"])
    nusc = open_nuscenes(cfg.dataroot, cfg.version)
    frames = load_frames(nusc, cfg.split, cameras, ego_frame="sample" if full_scene else "camera")
    out = check_out_dir(cfg.out or Path("runs/bench") / f"perception-{Path(cfg.dataroot).name}-{cfg.split}")

    detector = Detector(
        model_from_checkpoint(state), state["attributes"], device=device, depth_confidence=cfg.depth_confidence
    )
    image_dets = detect_frames(detector, frames, cfg.batch_size, cfg.num_workers, cfg.progress)
    samples, dets = frames, image_dets
    if full_scene:  # one set of boxes per sample: the cameras merged
        radius = float(protocol.get("merge_radius", DEFAULT_RADIUS))
        samples, dets = merge_frames(frames, image_dets, threshold, radius)
    if cfg.velocity == "tracker":
        from drivestack.pipeline.detection_velocity import tracker_velocities

        dets = tracker_velocities(nusc, samples, dets, threshold)
    make_run_dir(out)  # only once the split is detected: a failed run leaves no empty folder
    metrics = evaluate_detections(
        nusc,
        samples,
        dets,
        detector.attributes,
        out,
        protocol,
        score_all_classes=cfg.score_all_classes,
        plots=cfg.plots,
        images=(frames, image_dets) if full_scene else None,
    )
    if cfg.speed:
        cpu = detector if device == "cpu" else Detector(model_from_checkpoint(state), state["attributes"])
        sample = frames[: min(len(frames), 8)]
        images = torch.stack([resize_image(read_image(f.image_path), SPEED_IMAGE_SIZE) for f in sample])
        from drivestack.perception.boxes import scale_intrinsic

        intrinsic = torch.stack(
            [
                scale_intrinsic(
                    torch.from_numpy(f.intrinsic).float(),
                    SPEED_IMAGE_SIZE[0] / f.image_size[0],
                    SPEED_IMAGE_SIZE[1] / f.image_size[1],
                )
                for f in sample
            ]
        )
        cam2ego = torch.stack([torch.from_numpy(f.cam2ego).float() for f in sample])
        metrics["speed"] = speed_table(cpu, images, intrinsic, cam2ego, cfg, state)
    metrics.update(
        checkpoint=state["path"],
        dataroot=str(cfg.dataroot),
        split=cfg.split,
        cameras=list(cameras),
        num_images=len(frames),
        device=device,
        velocity=cfg.velocity,
        depth_confidence=cfg.depth_confidence,
        model_config=have.to_dict(),
        host=host_info(device),
    )
    _write_report(out, metrics, cfg, protocol)
    return metrics
