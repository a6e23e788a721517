"""COCO-style 2D average precision, vectorised in torch (no pycocotools needed).

The protocol follows COCO's `bbox` evaluation for one area range ("all") and at most `K` detections per image:
per class and IoU threshold (0.50:0.05:0.95), detections are matched greedily in descending score order to the
unmatched ground-truth box of highest IoU at or above the threshold; precision is made monotone and read at
101 recall points. Matching loops over detection rank only (at most K steps), each step batched over all
images and IoU thresholds at once.
"""

from __future__ import annotations

import torch

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # COCO's 0.50:0.05:0.95
RECALL_POINTS = 101


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU (..., K, G) of boxes a (..., K, 4) and b (..., G, 4), (x1, y1, x2, y2)."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=1e-9)


def match(iou: torch.Tensor, det_valid: torch.Tensor, gt_valid: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Greedy COCO matching; returns (T, N, K) bool true positives.

    Args:
        iou: (N, K, G) IoU of each image's detections (sorted by descending score) with its ground truth.
        det_valid: (N, K) and gt_valid: (N, G) bool masks (padding, other classes: False).
        thresholds: (T,) IoU thresholds.
    """
    N, K, G = iou.shape
    T = thresholds.shape[0]
    taken = torch.zeros(T, N, G, dtype=torch.bool, device=iou.device)
    tp = torch.zeros(T, N, K, dtype=torch.bool, device=iou.device)
    iou = torch.where(gt_valid[:, None, :], iou, torch.full_like(iou, -1.0))
    for k in range(K):  # rank order: a detection may only take what higher-scoring ones left
        cand = torch.where(taken, torch.full_like(taken, -1.0, dtype=iou.dtype), iou[None, :, k, :])  # (T, N, G)
        best, arg = cand.max(dim=2) if G else (torch.full((T, N), -1.0), torch.zeros(T, N, dtype=torch.long))
        hit = (best >= thresholds[:, None]) & det_valid[None, :, k]
        tp[:, :, k] = hit
        if G:
            taken.scatter_(2, arg[..., None], hit[..., None] | taken.gather(2, arg[..., None]))
    return tp


def average_precision(tp: torch.Tensor, scores: torch.Tensor, det_valid: torch.Tensor, num_gt: int) -> torch.Tensor:
    """COCO 101-point interpolated AP per threshold (T,) from matches (T, N, K); nan if there is no GT."""
    T = tp.shape[0]
    if num_gt == 0:
        return torch.full((T,), float("nan"))
    flat_scores = scores[det_valid]  # (D,)
    order = torch.argsort(flat_scores, descending=True, stable=True)
    hits = tp[:, det_valid][:, order].float()  # (T, D)
    ctp, cfp = hits.cumsum(1), (1 - hits).cumsum(1)
    recall = ctp / num_gt
    precision = ctp / (ctp + cfp).clamp(min=1e-9)
    # Monotone envelope: the best precision at this recall or any higher one.
    precision = precision.flip(1).cummax(1).values.flip(1)
    points = torch.linspace(0, 1, RECALL_POINTS, dtype=recall.dtype)
    idx = torch.searchsorted(recall.contiguous(), points.expand(T, -1).contiguous(), side="left")  # (T, R)
    padded = torch.cat([precision, torch.zeros(T, 1)], dim=1)  # recall never reached: precision 0
    return padded.gather(1, idx.clamp(max=padded.shape[1] - 1)).mean(1)


def coco_ap(
    det_boxes: torch.Tensor,
    det_scores: torch.Tensor,
    det_labels: torch.Tensor,
    det_valid: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_valid: torch.Tensor,
    classes: tuple[str, ...],
) -> dict[str, object]:
    """COCO bbox AP of detections against ground truth, per class and averaged over classes with GT.

    Args:
        det_boxes: (N, K, 4) [px]; det_scores, det_labels, det_valid: (N, K) (labels index `classes`).
        gt_boxes: (N, G, 4) [px]; gt_labels, gt_valid: (N, G).

    Returns:
        {"AP", "AP50", "AP75": means over classes with GT, "per_class": {name: {"AP", "AP50", "AP75",
        "num_gt"}}, "iou_thresholds": [...]}
    """
    order = torch.argsort(
        torch.where(det_valid, det_scores, torch.full_like(det_scores, -1.0)), dim=1, descending=True, stable=True
    )
    det_boxes, det_scores = det_boxes.gather(1, order[..., None].expand(-1, -1, 4)), det_scores.gather(1, order)
    det_labels, det_valid = det_labels.gather(1, order), det_valid.gather(1, order)
    thresholds = torch.tensor(IOU_THRESHOLDS)
    iou = box_iou(det_boxes.float(), gt_boxes.float())  # (N, K, G)
    per_class: dict[str, dict[str, float]] = {}
    for c, name in enumerate(classes):  # a handful of classes
        dv, gv = det_valid & (det_labels == c), gt_valid & (gt_labels == c)
        num_gt = int(gv.sum())
        ap = average_precision(match(iou, dv, gv, thresholds), det_scores, dv, num_gt)
        per_class[name] = {"AP": float(ap.mean()), "AP50": float(ap[0]), "AP75": float(ap[5]), "num_gt": num_gt}
    scored = [v for v in per_class.values() if v["num_gt"] > 0]
    mean = {k: (sum(v[k] for v in scored) / len(scored) if scored else float("nan")) for k in ("AP", "AP50", "AP75")}
    return {**mean, "per_class": per_class, "iou_thresholds": list(IOU_THRESHOLDS)}
