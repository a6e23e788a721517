"""Merge the detections of several cameras of one vehicle into one set of boxes in the ego frame.

Neighbouring nuScenes cameras overlap by about 10 degrees, so a vehicle at a seam is detected twice, once in each
image, with slightly different centres. The merge is a class-aware non-maximum suppression in the bird's-eye
view on centre distance (not IoU: a monocular centre is mostly off along the viewing ray, so two views of one car
can have a small IoU yet centres a metre or two apart): a box is dropped when a higher-scoring box of the same
class, from the same frame (same environment or sample), lies within `radius` metres. Detections of one camera
never suppress each other (the detector's own peak extraction already did that), so two cars parked close in
one image both stay.

All batched tensor code: the suppression is one (M, M) comparison per call over the M candidate boxes (after
the score threshold), processed in score order with a fixed-point iteration, no Python loop over boxes.
"""

from __future__ import annotations

import torch

DEFAULT_RADIUS = 2.0  # [m] nuScenes' middle match distance; two views of one car land well within it


def merge_cameras(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    frame: torch.Tensor,
    camera: torch.Tensor,
    radius: float = DEFAULT_RADIUS,
) -> torch.Tensor:
    """Which of M detections to keep after merging the cameras of each frame.

    Args:
        boxes: (M, 7) ego frame x, y, z [m], w, l, h [m], yaw [rad] (only x, y are used).
        scores: (M,) detection scores.
        labels: (M,) int class indices.
        frame: (M,) int frame (environment or sample) each detection belongs to; frames never interact.
        camera: (M,) int camera index; detections of one camera never suppress each other.
        radius: [m] centre distance within which a lower-scoring box of the same class from another camera is
            a duplicate.
    Returns:
        keep: (M,) bool. Greedy NMS semantics: a box survives unless a *surviving* higher-scoring duplicate exists.
    """
    if not radius > 0.0:
        raise ValueError(f"merge radius={radius!r}; allowed: > 0 [m]")
    M = boxes.shape[0]
    if M == 0:
        return torch.zeros(0, dtype=torch.bool, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    xy = boxes[order, :2]
    same = (
        (labels[order][:, None] == labels[order][None, :])
        & (frame[order][:, None] == frame[order][None, :])
        & (camera[order][:, None] != camera[order][None, :])
    )
    near = torch.cdist(xy.double(), xy.double()) < radius  # (M, M); float64: far-off boxes stay exact
    # dup[i, j]: j (earlier in score order) would suppress i
    rank = torch.arange(M, device=boxes.device)
    dup = same & near & (rank[None, :] < rank[:, None])
    # Greedy NMS as a fixed point: keep_i = not any_j (dup[i, j] and keep_j). Iterating from "keep all" converges
    # in at most (longest suppression chain) steps; each step is one batched (M, M) reduction.
    keep_sorted = torch.ones(M, dtype=torch.bool, device=boxes.device)
    for _ in range(M):
        new = ~(dup & keep_sorted[None, :]).any(dim=1)
        if torch.equal(new, keep_sorted):
            break
        keep_sorted = new
    keep = torch.empty_like(keep_sorted)
    keep[order] = keep_sorted
    return keep
