"""Score detections with the official nuScenes metrics (nuscenes-devkit DetectionEval) and 2D COCO AP.

`submission` builds the nuScenes detection submission (global frame, one entry per sample of the split;
`drivestack.common.submission` validates and writes it); `evaluate_detections` scores it under a versioned
protocol (perception/configs/*.json) and returns one metric dict (mAP, NDS, per-class AP, TP errors, 2D COCO AP,
the protocol and the resolved DetectionConfig).

The scoring itself is the devkit's (`accumulate`, `calc_ap`, `calc_tp`, `DetectionMetrics`). What
`CameraDetectionEval` changes is which boxes enter it. Two protocols:

- camera_front_v1 (`gt_filter` "center_in_image"), for a detector that sees one camera: the ground truth is
  restricted to boxes whose centre lies in that camera's image, and the distance to the ego is measured from the
  camera keyframe's ego pose (the devkit reads LIDAR_TOP's, which a camera-only dataset may not have).
- full_scene_v1 (`gt_filter` "full_scene"), for the six cameras merged per sample (`infer.merge_frames`): every
  annotation the devkit keeps (class range, at least one lidar / radar point, bike racks), wherever it is; the
  ego distance from the sample's ego pose (LIDAR_TOP's, as the devkit, else the first camera's). Its 2D COCO AP
  is per image: each camera's own boxes (before the merge) against the scored boxes whose centre is in its image.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.common.data_classes import EvalBoxes
from nuscenes.eval.common.loaders import filter_eval_boxes, load_gt_of_sample_tokens, load_prediction_of_sample_tokens
from nuscenes.eval.detection.constants import ATTRIBUTE_NAMES as _ATTRIBUTE_NAMES
from nuscenes.eval.detection.data_classes import DetectionBox, DetectionConfig
from nuscenes.eval.detection.evaluate import DetectionEval
from nuscenes.nuscenes import NuScenes

from drivestack.common.artifacts import atomic_path, to_jsonable
from drivestack.common.geometry import yaw_to_quaternion
from drivestack.common.submission import write_submission
from drivestack.perception.ap2d import coco_ap
from drivestack.perception.boxes import boxes_to_image_boxes
from drivestack.perception.config import sort_classes
from drivestack.perception.dataset import CameraFrame, visible_mask
from drivestack.perception.infer import Detections

PROTOCOL_DIR = Path(__file__).parent / "configs"
DEFAULT_PROTOCOL = "camera_front_v1"
FULL_SCENE_PROTOCOL = "full_scene_v1"
IN_IMAGE, FULL_SCENE = "center_in_image", "full_scene"  # the protocols' ground-truth filters (`gt_filter`)
ATTRIBUTE_NAMES = frozenset(_ATTRIBUTE_NAMES) | {""}  # what the devkit's DetectionBox accepts
SUBMISSION_META = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}


# --------------------------------------------------------------------------------------------------- protocol


def load_protocol(protocol: str | Path = DEFAULT_PROTOCOL) -> dict[str, Any]:
    """An evaluation protocol: a name under perception/configs/ or a path to a JSON file."""
    path = Path(protocol) if str(protocol).endswith(".json") else PROTOCOL_DIR / f"{protocol}.json"
    if not path.is_file():
        names = sorted(p.stem for p in PROTOCOL_DIR.glob("*.json"))
        raise FileNotFoundError(f"eval protocol {path} does not exist; available: {', '.join(names)}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"eval protocol {path} is not valid JSON ({err})") from None
    for key in ("name", "base", "score_threshold", "max_boxes_per_sample"):
        if key not in data:
            raise ValueError(f"eval protocol {path} lacks field {key!r}")
    return data


def default_protocol(cameras: tuple[str, ...]) -> str:
    """The protocol a detector reading `cameras` is scored with: camera_front_v1 for CAM_FRONT alone, else
    full_scene_v1 (the cameras merged per sample)."""
    return DEFAULT_PROTOCOL if tuple(cameras) == ("CAM_FRONT",) else FULL_SCENE_PROTOCOL


def protocol_scope(protocol: dict[str, Any], cameras: tuple[str, ...]) -> bool:
    """Whether `protocol` scores the full scene (True) or one camera's image (False); ValueError (one line) when
    it cannot score detections of `cameras`."""
    gt_filter = protocol.get("gt_filter", IN_IMAGE)
    if gt_filter == FULL_SCENE:
        return True
    if gt_filter != IN_IMAGE:
        raise ValueError(
            f"eval protocol {protocol['name']}: gt_filter={gt_filter!r}; allowed: {IN_IMAGE}, {FULL_SCENE}"
        )
    camera = protocol.get("camera", "CAM_FRONT")
    if tuple(cameras) != (camera,):
        raise ValueError(
            f"eval protocol {protocol['name']} scores {camera} alone, but cameras={list(cameras)}; use --cameras "
            f"{camera} or --protocol {FULL_SCENE_PROTOCOL}"
        )
    return False


def detection_config(classes: tuple[str, ...], protocol: dict[str, Any]) -> DetectionConfig:
    """The protocol's base devkit config with class_range restricted to `classes`."""
    base = config_factory(protocol["base"])
    config = DetectionConfig(
        base.class_range,
        base.dist_fcn,
        base.dist_ths,
        base.dist_th_tp,
        base.min_recall,
        base.min_precision,
        int(protocol["max_boxes_per_sample"]),
        base.mean_ap_weight,
    )
    # DetectionConfig insists on all ten classes at construction; the metrics only iterate class_names.
    config.class_range = {c: base.class_range[c] for c in classes}
    config.class_names = config.class_range.keys()
    return config


def eval_gt_mask(frame: CameraFrame, class_range: dict[str, float], in_image: bool = True) -> np.ndarray:
    """(M,) bool: the boxes of `frame` the protocol scores (in the image unless not `in_image`, in range, seen
    by some point)."""
    if not frame.names:
        return np.zeros(0, dtype=bool)
    offset = frame.boxes[:, :3] @ frame.ego2global[:3, :3].T  # (M, 3) global-frame offset from the ego
    dist = np.hypot(offset[:, 0], offset[:, 1])
    limit = np.array([class_range.get(n, -1.0) for n in frame.names])
    mask = (dist < limit) & (frame.num_pts != 0)
    return visible_mask(frame) & mask if in_image else mask


def gt_counts(frames: list[CameraFrame], class_range: dict[str, float], in_image: bool = True) -> dict[str, int]:
    """Scored ground-truth boxes per class over `frames`."""
    counts: dict[str, int] = {}
    for frame in frames:
        for name, keep in zip(frame.names, eval_gt_mask(frame, class_range, in_image)):
            counts[name] = counts.get(name, 0) + int(keep)
    return {name: counts[name] for name in sort_classes([n for n, c in counts.items() if c > 0])}


# ------------------------------------------------------------------------------------------------ submission


def global_boxes(frames: list[CameraFrame], boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Global centres (N, K, 3) and yaw-only quaternions (N, K, 4) of ego-frame boxes (N, K, 7)."""
    ego2global = torch.from_numpy(np.stack([f.ego2global for f in frames])).to(boxes.dtype)  # (N, 4, 4)
    rot, trans = ego2global[:, None, :3, :3], ego2global[:, None, :3, 3]
    center = (rot @ boxes[..., :3, None])[..., 0] + trans
    heading = torch.stack([torch.cos(boxes[..., 6]), torch.sin(boxes[..., 6]), torch.zeros_like(boxes[..., 6])], -1)
    heading = (rot @ heading[..., None])[..., 0]
    return center, yaw_to_quaternion(torch.atan2(heading[..., 1], heading[..., 0]))


def submission(
    frames: list[CameraFrame], dets: Detections, attributes: dict[str, str], score_threshold: float, max_boxes: int
) -> dict[str, Any]:
    """The nuScenes detection submission of `dets` (one entry per frame, boxes in the global frame; velocities
    as `dets.velocity` gives them, else zero)."""
    center, quat = global_boxes(frames, dets.boxes.double())
    keep = dets.scores >= score_threshold
    velocity = torch.zeros(*dets.scores.shape, 2) if dets.velocity is None else dets.velocity
    results: dict[str, list[dict[str, Any]]] = {}
    for i, frame in enumerate(frames):  # JSON rows: one dict per kept box
        idx = torch.nonzero(keep[i]).flatten()[:max_boxes].tolist()
        c, q, s = center[i].tolist(), quat[i].tolist(), dets.boxes[i, :, 3:6].tolist()
        scores, labels = dets.scores[i].tolist(), dets.labels[i].tolist()
        v = velocity[i].tolist()
        results[frame.sample_token] = [
            {
                "sample_token": frame.sample_token,
                "translation": c[k],
                "size": s[k],
                "rotation": q[k],
                "velocity": v[k],
                "detection_name": dets.classes[labels[k]],
                "detection_score": scores[k],
                "attribute_name": attributes.get(dets.classes[labels[k]], ""),
            }
            for k in idx
        ]
    return {"meta": dict(SUBMISSION_META), "results": results}


# ------------------------------------------------------------------------------------------------- scoring


class CameraDetectionEval(DetectionEval):
    """nuScenes DetectionEval over given frames (one per sample), with the ground truth restricted to the
    camera's view (`in_image`, camera_front_v1) or not (full_scene_v1); ego distances from the frames' poses.

    `DetectionEval.__init__` is not called: it selects samples by official split name and measures ego
    distances from LIDAR_TOP. `evaluate` and `render` are the devkit's, unchanged.
    """

    def __init__(
        self,
        nusc: NuScenes,
        config: DetectionConfig,
        result_path: Path,
        frames: list[CameraFrame],
        output_dir: Path,
        verbose: bool = False,
        in_image: bool = True,
        predictions: dict[str, Any] | None = None,
    ) -> None:
        self.nusc, self.cfg, self.verbose = nusc, config, verbose
        self.result_path, self.eval_set = str(result_path), "custom"
        self.output_dir, self.plot_dir = str(output_dir), os.path.join(str(output_dir), "plots")
        tokens = [f.sample_token for f in frames]
        with contextlib.redirect_stderr(io.StringIO()):  # the devkit's loaders draw progress bars
            if predictions is None:
                pred, self.meta = load_prediction_of_sample_tokens(
                    self.result_path, config.max_boxes_per_sample, DetectionBox, tokens
                )
            else:
                pred, self.meta = _prediction_boxes(predictions, tokens), dict(predictions["meta"])
            gt = load_gt_of_sample_tokens(nusc, tokens, DetectionBox)
        classes = set(config.class_names)
        for frame in frames:
            token = frame.sample_token
            boxes = gt.boxes[token]
            assert len(boxes) == len(frame.names), "frame and devkit disagree on the sample's annotations"
            keep = visible_mask(frame) if in_image else np.ones(len(boxes), dtype=bool)
            gt.boxes[token] = [b for b, k in zip(boxes, keep) if k and b.detection_name in classes]
            pred.boxes[token] = [b for b in pred.boxes[token] if b.detection_name in classes]
            ego = frame.ego2global[:3, 3]
            for box in gt.boxes[token] + pred.boxes[token]:
                box.ego_translation = tuple(float(v) for v in np.asarray(box.translation) - ego)
        self.gt_boxes = _filter(nusc, gt, config)
        self.pred_boxes = _filter(nusc, pred, config)
        self.sample_tokens = self.gt_boxes.sample_tokens


def _prediction_boxes(data: dict[str, Any], tokens: list[str]) -> EvalBoxes:
    """The devkit's boxes of a validated submission's samples in `tokens`, in the submission's own order (the
    devkit's `load_prediction` keeps the file's order, which breaks score ties in its AP), velocities NaN when
    unknown (as the devkit reads a file's NaN)."""
    wanted = set(tokens)
    rows = {
        token: [
            {
                "sample_token": token,
                "attribute_name": "",
                **box,
                "velocity": box.get("velocity", [math.nan, math.nan]),
            }
            for box in boxes
        ]
        for token, boxes in data["results"].items()
        if token in wanted
    }
    pred = EvalBoxes.deserialize(rows, DetectionBox)
    for token in tokens:  # every sample has an entry (an empty one for none)
        pred.boxes.setdefault(token, [])
    return pred


def _filter(nusc: NuScenes, boxes: EvalBoxes, config: DetectionConfig) -> EvalBoxes:
    if not any(boxes.boxes.values()):  # the devkit's filter cannot tell the box type of an empty set
        return boxes
    with contextlib.redirect_stdout(io.StringIO()):
        return filter_eval_boxes(nusc, boxes, config.class_range)


def _image_boxes(frames: list[CameraFrame], boxes: torch.Tensor) -> torch.Tensor:
    """2D boxes (N, K, 4) [px] of ego-frame boxes (N, K, 7) in each frame's image, clipped to it."""
    intrinsic = torch.from_numpy(np.stack([f.intrinsic for f in frames])).float()
    cam2ego = torch.from_numpy(np.stack([f.cam2ego for f in frames])).float()
    out = boxes_to_image_boxes(boxes.float(), intrinsic, cam2ego, (math.inf, math.inf))
    size = torch.tensor([f.image_size for f in frames], dtype=torch.float32)[:, None, :]  # (N, 1, 2)
    return torch.minimum(out, size.repeat(1, 1, 2))


def _eval_detections(
    dets: Detections, classes: tuple[str, ...], score_threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-class index (N, K) of each detection (-1: not scored) and whether it is submitted (N, K)."""
    index = {c: i for i, c in enumerate(classes)}
    det_labels = torch.tensor([index.get(c, -1) for c in dets.classes])[dets.labels]
    return det_labels, (dets.scores >= score_threshold) & (det_labels >= 0)


def _padded_gt(
    frames: list[CameraFrame], classes: tuple[str, ...], class_range: dict[str, float], in_image: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground truth padded to (N, G): ego-frame boxes (N, G, 7), eval-class index, scored mask."""
    index = {c: i for i, c in enumerate(classes)}
    G = max([1] + [len(f.names) for f in frames])
    gt = torch.zeros(len(frames), G, 7)
    gt_labels = torch.full((len(frames), G), -1)
    gt_valid = torch.zeros(len(frames), G, dtype=torch.bool)
    for i, frame in enumerate(frames):  # padding the per-frame arrays
        m = len(frame.names)
        gt[i, :m] = torch.from_numpy(frame.boxes).float()
        gt_labels[i, :m] = torch.tensor([index.get(n, -1) for n in frame.names], dtype=torch.long)
        gt_valid[i, :m] = torch.from_numpy(eval_gt_mask(frame, class_range, in_image))
    return gt, gt_labels, gt_valid & (gt_labels >= 0)


DISTANCE_BINS = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0)  # [m] camera-distance bins of the centre-error table


def centre_errors(
    frames: list[CameraFrame],
    dets: Detections,
    classes: tuple[str, ...],
    class_range: dict[str, float],
    score_threshold: float,
    max_distance: float = 4.0,
    in_image: bool = True,
) -> list[dict[str, Any]]:
    """Centre error of each scored ground-truth box's nearest same-class detection (within `max_distance` m,
    ego xy), split along the camera's viewing ray (radial; + is too far) and across it (lateral), per bin of
    the box's distance from the camera, classes pooled (not `in_image`, the full scene: every scored box, rays
    and distances from the ego origin). A diagnostic beside the devkit's metrics (which match greedily by
    score): it shows whether depth or bearing is off, and whether by a bias or by spread.
    """
    det_labels, det_valid = _eval_detections(dets, classes, score_threshold)
    gt, gt_labels, gt_valid = _padded_gt(frames, classes, class_range, in_image)
    pred = dets.boxes.float()
    dist = torch.cdist(gt[..., :2], pred[..., :2])  # (N, G, K)
    same = (gt_labels[..., None] == det_labels[:, None, :]) & det_valid[:, None, :]
    best, k = torch.where(same, dist, torch.inf).min(dim=-1)  # (N, G)
    found = gt_valid & (best <= max_distance)
    near = pred.gather(1, k[..., None].expand(-1, -1, 7))  # (N, G, 7) the nearest detection's box
    camera = torch.from_numpy(np.stack([f.cam2ego[:2, 3] for f in frames])).float()[:, None, :]  # (N, 1, 2)
    if not in_image:
        camera = torch.zeros_like(camera)  # the ego origin
    ray = gt[..., :2] - camera
    range_ = ray.norm(dim=-1).clamp(min=1e-6)
    unit = ray / range_[..., None]
    err = near[..., :2] - gt[..., :2]
    radial = (err * unit).sum(-1)
    lateral = err[..., 1] * unit[..., 0] - err[..., 0] * unit[..., 1]
    rows = []
    edges = (*DISTANCE_BINS, math.inf)
    for lo, hi in zip(edges[:-1], edges[1:]):  # a handful of bins
        in_bin = gt_valid & (range_ >= lo) & (range_ < hi)
        m = found & in_bin
        if not in_bin.any():
            continue
        r, lat, n = radial[m], lateral[m], int(m.sum())
        total = torch.hypot(r, lat)
        rows.append(
            {
                "distance": f"{lo:g}-{hi:g}" if hi < math.inf else f">{lo:g}",
                "scored": int(in_bin.sum()),
                "matched": n,
                "radial_bias": float(r.mean()) if n else math.nan,
                "radial_std": float(r.std(unbiased=False)) if n else math.nan,
                "lateral_std": float(lat.std(unbiased=False)) if n else math.nan,
                "within_0.5": float((total < 0.5).float().mean()) if n else math.nan,
                "within_1": float((total < 1.0).float().mean()) if n else math.nan,
            }
        )
    return rows


def coco_2d(
    frames: list[CameraFrame],
    dets: Detections,
    classes: tuple[str, ...],
    class_range: dict[str, float],
    score_threshold: float,
) -> dict[str, Any]:
    """2D COCO AP of the projected detections against the projected scored ground truth."""
    det_labels, det_valid = _eval_detections(dets, classes, score_threshold)
    gt, gt_labels, gt_valid = _padded_gt(frames, classes, class_range)
    return coco_ap(
        _image_boxes(frames, dets.boxes),
        dets.scores,
        det_labels,
        det_valid,
        _image_boxes(frames, gt),
        gt_labels,
        gt_valid,
        classes,
    )


def plot_pr_curves(md_list: Any, metrics: Any, config: DetectionConfig, path: Path) -> Path:
    """Precision-recall curves per class (one line per centre-distance threshold) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(config.class_names)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        for dist in config.dist_ths:
            md = md_list[(name, dist)]
            ap = metrics.get_label_ap(name, dist)
            ax.plot(md.recall, md.precision, label=f"{dist:g} m: AP {ap:.2f}")
        ax.set(
            title=f"{name}: AP {metrics.mean_dist_aps[name]:.3f}",
            xlabel="recall",
            ylabel="precision",
            xlim=(0, 1),
            ylim=(0, 1.02),
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path


def evaluate_detections(
    nusc: NuScenes,
    frames: list[CameraFrame],
    dets: Detections,
    attributes: dict[str, str],
    out_dir: Path,
    protocol: str | Path | dict[str, Any] = DEFAULT_PROTOCOL,
    score_all_classes: bool = False,
    plots: bool = True,
    images: tuple[list[CameraFrame], Detections] | None = None,
) -> dict[str, Any]:
    """Write the submission of `dets` (N frames, K boxes) under `out_dir` and score it.

    Returns mAP, NDS, per-class AP and TP errors (nuScenes), 2D COCO AP, the ground-truth counts, the protocol
    and the devkit DetectionConfig used. Classes scored: those with ground truth in `frames` that the detector
    outputs (all with ground truth if `score_all_classes`).

    Under a full-scene protocol `frames` holds one frame per sample and `dets` the merged boxes
    (`infer.merge_frames`); `images` (every camera's frame and its own detections) gives the per-image 2D COCO
    AP (None: no 2D AP, "coco_2d" is None).
    """
    protocol = protocol if isinstance(protocol, dict) else load_protocol(protocol)
    in_image = protocol.get("gt_filter", IN_IMAGE) != FULL_SCENE
    counts = gt_counts(frames, config_factory(protocol["base"]).class_range, in_image)
    classes = sort_classes([c for c in counts if score_all_classes or c in dets.classes])
    if not classes:
        raise ValueError(
            f"none of the detector's classes {list(dets.classes)} has ground truth in these "
            f"{len(frames)} samples (classes with ground truth: {list(counts) or 'none'})"
        )
    config = detection_config(classes, protocol)
    threshold = float(protocol["score_threshold"])
    path = write_submission(
        out_dir / "submission.json",
        submission(frames, dets, attributes, threshold, config.max_boxes_per_sample),
        "detection",
        sample_tokens=[f.sample_token for f in frames],
    )
    return detection_report(nusc, frames, dets, protocol, config, counts, path, out_dir, plots, images)


def detection_report(
    nusc: NuScenes,
    frames: list[CameraFrame],
    dets: Detections,
    protocol: dict[str, Any],
    config: DetectionConfig,
    counts: dict[str, int],
    path: Path,
    out_dir: Path,
    plots: bool,
    images: tuple[list[CameraFrame], Detections] | None,
    predictions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score the submission at `path` (or the validated `predictions`, the same boxes with NaN velocities) with
    the devkit and add the diagnostics of `dets`: the metric dict of `evaluate_detections`."""
    in_image = protocol.get("gt_filter", IN_IMAGE) != FULL_SCENE
    threshold = float(protocol["score_threshold"])
    classes = tuple(config.class_names)
    devkit = CameraDetectionEval(nusc, config, path, frames, out_dir, in_image=in_image, predictions=predictions)
    metrics, md_list = devkit.evaluate()
    if in_image:
        coco = coco_2d(frames, dets, classes, config.class_range, threshold)
    else:  # per image: each camera's own boxes against the scored boxes in its image
        coco = None if images is None else coco_2d(*images, classes, config.class_range, threshold)
    summary = metrics.serialize()
    result = {
        "mAP": summary["mean_ap"],
        "NDS": summary["nd_score"],
        "AP": summary["mean_dist_aps"],
        "tp_errors": summary["tp_errors"],
        "label_tp_errors": summary["label_tp_errors"],
        "label_aps": summary["label_aps"],
        "coco_2d": coco,
        "centre_errors": centre_errors(frames, dets, classes, config.class_range, threshold, in_image=in_image),
        "classes": list(classes),
        "gt_counts": {c: counts.get(c, 0) for c in classes},
        "unscored_gt_classes": {c: n for c, n in counts.items() if c not in classes},
        "num_samples": len(frames),
        "protocol": protocol,
        "detection_config": config.serialize(),
        "submission": str(path),
    }
    if plots:
        result["pr_curves"] = str(plot_pr_curves(md_list, metrics, config, out_dir / "pr_curves.png"))
    return to_jsonable(result)  # as metrics.json holds it: string keys ("2.0"), None for NaN
