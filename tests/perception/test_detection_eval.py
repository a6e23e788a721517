"""Submission JSON, the devkit DetectionEval wrapper, and the vectorised 2D COCO AP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.common.loaders import load_prediction
from nuscenes.eval.detection.data_classes import DetectionBox

from drivestack.common.artifacts import write_json
from drivestack.common.nuscenes import open_nuscenes
from drivestack.perception.ap2d import box_iou, coco_ap
from drivestack.perception.dataset import CameraFrame, load_frames
from drivestack.perception.evaluate import eval_gt_mask, evaluate_detections, load_protocol, submission
from drivestack.perception.infer import Detections

CLASS_RANGE = config_factory("detection_cvpr_2019").class_range


def perfect_detections(frames: list[CameraFrame], classes: tuple[str, ...], noise: float = 0.0) -> Detections:
    """The scored ground truth of each frame as detections (score 0.9), optionally shifted by `noise` [m] in x."""
    K = max(len(f.names) for f in frames)
    boxes, scores = torch.zeros(len(frames), K, 7), torch.zeros(len(frames), K)
    labels = torch.zeros(len(frames), K, dtype=torch.long)
    for i, f in enumerate(frames):
        m = len(f.names)
        boxes[i, :m] = torch.from_numpy(f.boxes).float()
        keep = eval_gt_mask(f, CLASS_RANGE) & np.array([n in classes for n in f.names])
        scores[i, :m] = 0.9 * torch.from_numpy(keep).float()
        labels[i, :m] = torch.tensor([classes.index(n) if n in classes else 0 for n in f.names])
    boxes[..., 0] += noise
    return Detections(boxes, scores, labels, classes)


def test_submission_loads_with_the_devkit(tiny_root: Path, tmp_path: Path) -> None:
    nusc = open_nuscenes(tiny_root)
    frames = load_frames(nusc, "val")
    dets = perfect_detections(frames, ("car", "truck"))
    sub = submission(frames, dets, {"car": "vehicle.moving", "truck": "vehicle.moving"}, 0.05, 500)
    path = write_json(tmp_path / "submission.json", sub)
    boxes, meta = load_prediction(str(path), 500, DetectionBox)
    assert meta["use_camera"] and not meta["use_lidar"]
    assert set(boxes.sample_tokens) == {f.sample_token for f in frames}
    assert sum(len(boxes[t]) for t in boxes.sample_tokens) == int((dets.scores >= 0.05).sum())
    # Global boxes are the annotations.
    ann = {
        tuple(np.round(nusc.get("sample_annotation", t)["translation"], 3)): nusc.get("sample_annotation", t)
        for t in nusc.get("sample", frames[0].sample_token)["anns"]
    }
    for box in boxes[frames[0].sample_token]:
        ref = ann[tuple(np.round(box.translation, 3))]
        assert np.allclose(box.size, ref["size"], atol=1e-5)
        assert abs(abs(np.dot(box.rotation, ref["rotation"])) - 1) < 1e-6  # same rotation (q or -q)


def test_perfect_detections_score_one(tiny_root: Path, tmp_path: Path) -> None:
    nusc = open_nuscenes(tiny_root)
    frames = load_frames(nusc, "all")
    result = evaluate_detections(
        nusc,
        frames,
        perfect_detections(frames, ("car", "truck")),
        {"car": "vehicle.moving", "truck": "vehicle.moving"},
        tmp_path,
        plots=True,
    )
    assert result["mAP"] == pytest.approx(1.0, abs=1e-6)
    assert result["tp_errors"]["trans_err"] < 1e-4 and result["tp_errors"]["orient_err"] < 1e-4
    assert result["tp_errors"]["attr_err"] == 0.0
    assert result["coco_2d"]["AP"] == pytest.approx(1.0, abs=1e-6)
    assert set(result["classes"]) <= {"car", "truck"} and result["detection_config"]["class_range"]
    assert (tmp_path / "pr_curves.png").stat().st_size > 1000
    write_json(tmp_path / "metrics.json", result)  # NaN (e.g. an undefined TP error) becomes null: strict JSON
    json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


def test_shifted_detections_lose_the_strict_thresholds(tiny_root: Path, tmp_path: Path) -> None:
    nusc = open_nuscenes(tiny_root)
    frames = load_frames(nusc, "all")
    result = evaluate_detections(
        nusc, frames, perfect_detections(frames, ("car", "truck"), noise=0.7), {}, tmp_path, plots=False
    )
    # 0.7 m off: missed at the 0.5 m threshold, found at 1, 2 and 4 m -> AP 3/4 per class.
    for name in result["classes"]:
        assert result["AP"][name] == pytest.approx(0.75, abs=1e-6)
    assert result["tp_errors"]["trans_err"] == pytest.approx(0.7, abs=1e-3)


def test_classes_without_detector_output_are_listed_not_scored(real_root: Path, tmp_path: Path) -> None:
    nusc = open_nuscenes(real_root)
    frames = load_frames(nusc, "val")[:6]
    result = evaluate_detections(nusc, frames, perfect_detections(frames, ("car",)), {}, tmp_path, plots=False)
    assert result["classes"] == ["car"] and result["AP"]["car"] == pytest.approx(1.0, abs=1e-6)
    assert result["unscored_gt_classes"]["barrier"] > 0
    with pytest.raises(ValueError, match=r"none of the detector's classes \['bicycle'\] has ground truth"):
        evaluate_detections(nusc, frames, perfect_detections(frames, ("bicycle",)), {}, tmp_path, plots=False)


def test_protocol_errors(tmp_path: Path) -> None:
    assert load_protocol()["name"] == "camera_front_v1"
    with pytest.raises(FileNotFoundError, match="eval protocol .*nope.json does not exist; available: camera_front_v1"):
        load_protocol("nope")
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x"}')
    with pytest.raises(ValueError, match="lacks field 'base'"):
        load_protocol(bad)


# --------------------------------------------------------------------------------------------- 2D COCO AP


def test_coco_ap_hand_built() -> None:
    gt = torch.tensor([[[0, 0, 10, 10], [20, 20, 30, 30]], [[0, 0, 10, 10], [0, 0, 0, 0]]], dtype=torch.float32)
    gt_labels, gt_valid = torch.tensor([[0, 0], [0, -1]]), torch.tensor([[True, True], [True, False]])
    det = gt.clone()
    ones = torch.ones(2, 2, dtype=torch.bool)
    perfect = coco_ap(
        det,
        torch.tensor([[0.9, 0.8], [0.7, 0.1]]),
        torch.zeros(2, 2, dtype=torch.long),
        ones & gt_valid,
        gt,
        gt_labels,
        gt_valid,
        ("car",),
    )
    assert perfect["AP"] == pytest.approx(1.0)
    # One false positive ranked first among 3 GT: precision 0, 1/2, 2/3, 3/4 at recall 0, 1/3, 2/3, 1.
    det_fp = torch.cat([torch.tensor([[[50, 50, 60, 60]], [[70, 70, 80, 80]]], dtype=torch.float32), det], 1)
    scores = torch.tensor([[0.99, 0.9, 0.8], [0.0, 0.7, 0.1]])
    valid = torch.tensor([[True, True, True], [False, True, False]])
    res = coco_ap(det_fp, scores, torch.zeros(2, 3, dtype=torch.long), valid, gt, gt_labels, gt_valid, ("car",))
    # Interpolated precision: 3/4 at every recall point (envelope) -> AP 0.75 at every IoU threshold.
    assert res["AP"] == pytest.approx(0.75) and res["per_class"]["car"]["num_gt"] == 3
    # A box shifted by 2 px (IoU 0.667 with a 10 px box) counts at IoU 0.5-0.65 only: 4 of 10 thresholds.
    shifted = gt[:1, :1] + torch.tensor([2.0, 0, 2.0, 0])
    res = coco_ap(
        shifted,
        torch.ones(1, 1),
        torch.zeros(1, 1, dtype=torch.long),
        torch.ones(1, 1, dtype=torch.bool),
        gt[:1, :1],
        gt_labels[:1, :1],
        gt_valid[:1, :1],
        ("car",),
    )
    assert float(box_iou(shifted, gt[:1, :1])[0, 0, 0]) == pytest.approx(80 / 120)
    assert res["AP"] == pytest.approx(0.4)


def test_coco_ap_matches_pycocotools() -> None:
    pytest.importorskip("pycocotools", reason="pycocotools is an optional reference, not a dependency")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    g = torch.Generator().manual_seed(3)
    N, G, K = 6, 5, 8
    xy = torch.rand(N, G, 2, generator=g) * 200
    gt = torch.cat([xy, xy + 20 + torch.rand(N, G, 2, generator=g) * 60], -1)
    gt_labels = torch.randint(0, 2, (N, G), generator=g)
    gt_valid = torch.rand(N, G, generator=g) < 0.8
    pick = torch.randint(0, G, (N, K), generator=g)
    det = gt.gather(1, pick[..., None].expand(-1, -1, 4)) + torch.randn(N, K, 4, generator=g) * 6
    det_labels = torch.where(
        torch.rand(N, K, generator=g) < 0.85, gt_labels.gather(1, pick), 1 - gt_labels.gather(1, pick)
    )
    scores = torch.rand(N, K, generator=g)
    det_valid = torch.ones(N, K, dtype=torch.bool)
    ours = coco_ap(det, scores, det_labels, det_valid, gt, gt_labels, gt_valid, ("car", "truck"))

    def xywh(b: torch.Tensor) -> list[float]:
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    images = [{"id": i, "width": 400, "height": 400} for i in range(N)]
    anns = [
        {
            "id": len(images) * 100 + i * G + j,
            "image_id": i,
            "category_id": int(gt_labels[i, j]) + 1,
            "bbox": xywh(gt[i, j]),
            "area": float((gt[i, j, 2] - gt[i, j, 0]) * (gt[i, j, 3] - gt[i, j, 1])),
            "iscrowd": 0,
        }
        for i in range(N)
        for j in range(G)
        if gt_valid[i, j]
    ]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1}, {"id": 2}]}
    coco.createIndex()
    dets = coco.loadRes(
        [
            {
                "image_id": i,
                "category_id": int(det_labels[i, k]) + 1,
                "bbox": xywh(det[i, k]),
                "score": float(scores[i, k]),
            }
            for i in range(N)
            for k in range(K)
        ]
    )
    ev = COCOeval(coco, dets, "bbox")
    ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
    ev.evaluate()
    ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # (T, R, C)
    for c, name in enumerate(("car", "truck")):
        assert ours["per_class"][name]["AP"] == pytest.approx(float(precision[:, :, c].mean()), abs=1e-6)


def test_centre_errors_split_a_depth_error_from_a_bearing_error(tiny_root: Path) -> None:
    """Detections pushed 0.7 m farther along each camera ray: radial bias +0.7, no lateral error, all within 1 m,
    none within 0.5 m; unmatched (too far off) boxes count as scored but not matched."""
    from drivestack.perception.evaluate import centre_errors

    frames = load_frames(open_nuscenes(tiny_root), "all")
    classes = ("car", "truck")
    dets = perfect_detections(frames, classes)
    camera = torch.from_numpy(np.stack([f.cam2ego[:2, 3] for f in frames])).float()[:, None, :]
    ray = dets.boxes[..., :2] - camera
    dets.boxes[..., :2] += 0.7 * ray / ray.norm(dim=-1, keepdim=True)
    rows = centre_errors(frames, dets, classes, CLASS_RANGE, score_threshold=0.5)
    assert rows and sum(r["scored"] for r in rows) == sum(int(eval_gt_mask(f, CLASS_RANGE).sum()) for f in frames)
    for r in rows:
        assert r["matched"] == r["scored"]
        assert r["radial_bias"] == pytest.approx(0.7, abs=1e-4) and r["radial_std"] < 1e-4
        assert r["lateral_std"] < 1e-4 and r["within_1"] == 1.0 and r["within_0.5"] == 0.0
    dets.boxes[..., 1] += 50.0  # beyond the 4 m search radius of every box: nothing matches
    far = centre_errors(frames, dets, classes, CLASS_RANGE, score_threshold=0.5)
    assert all(r["matched"] == 0 and r["radial_bias"] != r["radial_bias"] for r in far)  # NaN when none
