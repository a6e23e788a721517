"""Training targets and losses of the CenterNet-style detector, batched over images and objects.

Targets: each object paints a Gaussian on its class's heat-map channel around the cell of its projected 3D
centre (radius from its 2D box, CenterNet's rule: the radius within which a shifted box still overlaps the
true one at IoU 0.7); the regression targets sit at that cell. Losses: CenterNet's penalty-reduced focal
loss on the heat-map, L1 on the regressions at the object cells, each normalised by the number of objects.
Depth is trained by the negative log-likelihood of a Laplace distribution whose scale the network predicts
(MonoFlex / GUP-Net style): |error| / b + log b. It learns how sure it is of each depth, which inference turns
into a localisation-aware score, and it lets hopeless depths (heavily occluded, far) pull less on the features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from drivestack.perception.boxes import depth_to_target
from drivestack.perception.dataset import TargetBoxes

# Loss weights: depth carries the most error in monocular 3D (nuScenes matches on centre distance), so it
# counts double; the rest as CenterNet.
LOSS_WEIGHTS = {"heatmap": 1.0, "offset": 1.0, "depth": 2.0, "size": 1.0, "rotation": 1.0}
MIN_LOG_DEPTH_SCALE = -5.0  # floor of the predicted log Laplace scale: a relative depth error of 0.7 %
MIN_OVERLAP = 0.7  # IoU a box shifted by the Gaussian radius still has with the true one


@dataclass
class DenseTargets:
    """Targets on the heat-map grid (B images, M objects padded, C classes, cells Hf x Wf)."""

    heatmap: torch.Tensor  # (B, C, Hf, Wf) in [0, 1]; exactly 1 at object cells
    index: torch.Tensor  # (B, M) int64 flat cell index of each object's centre
    mask: torch.Tensor  # (B, M) bool; False for padding
    regression: torch.Tensor  # (B, M, 8) offset (2), log depth (1), log size ratio (3), sin/cos alpha (2)
    # (the network's ninth regression channel, the depth uncertainty, has no target: it is learned by likelihood)


def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float = MIN_OVERLAP) -> torch.Tensor:
    """CenterNet's Gaussian radius [cells] for boxes of `height` x `width` [cells] (elementwise)."""
    b1, c1 = height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt((b1**2 - 4 * c1).clamp(min=0))) / 2
    b2, c2 = 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt((b2**2 - 16 * c2).clamp(min=0))) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt((b3**2 - 4 * a3 * c3).clamp(min=0))) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def build_targets(t: TargetBoxes, size_priors: torch.Tensor, output_size: tuple[int, int], stride: int) -> DenseTargets:
    """Dense targets of a batch.

    Args:
        t: ground truth (B, M) in network-input pixels (after augmentation).
        size_priors: (C, 3) [m] prior w, l, h per class.
        output_size: (Wf, Hf) heat-map cells.
        stride: [px] input pixels per cell.
    """
    Wf, Hf = output_size
    B, M = t.labels.shape
    C = size_priors.shape[0]
    device = t.uv.device
    mask = t.labels >= 0
    cells = t.uv / stride  # (B, M, 2) continuous cell coordinates
    ci = torch.stack([cells[..., 0].floor().clamp(0, Wf - 1), cells[..., 1].floor().clamp(0, Hf - 1)], dim=-1)
    offset = cells - ci  # (B, M, 2) in [0, 1) inside the map

    # Gaussians (B, M, Hf, Wf) around the centre cells, zero for padding; max-combined per class channel.
    w = (t.box2d[..., 2] - t.box2d[..., 0]) / stride
    h = (t.box2d[..., 3] - t.box2d[..., 1]) / stride
    radius = gaussian_radius(h, w).floor().clamp(min=0)
    sigma = (2 * radius + 1) / 6
    xs = torch.arange(Wf, device=device, dtype=torch.float32)
    ys = torch.arange(Hf, device=device, dtype=torch.float32)
    dx2 = (xs.view(1, 1, 1, Wf) - ci[..., 0, None, None]) ** 2
    dy2 = (ys.view(1, 1, Hf, 1) - ci[..., 1, None, None]) ** 2
    gauss = torch.exp(-(dx2 + dy2) / (2 * sigma[..., None, None] ** 2)) * mask[..., None, None]
    heat = torch.zeros(B * C, Hf * Wf, device=device)
    rows = (torch.arange(B, device=device)[:, None] * C + t.labels.clamp(min=0)).reshape(-1)  # (B*M,)
    heat.scatter_reduce_(0, rows[:, None].expand(-1, Hf * Wf), gauss.reshape(B * M, Hf * Wf), "amax")

    label = t.labels.clamp(min=0)
    prior = size_priors.to(device)[label]  # (B, M, 3)
    reg = torch.cat(
        [
            offset,
            depth_to_target(t.depth, t.focal[:, None])[..., None],
            torch.log(t.size.clamp(min=1e-3) / prior),
            torch.sin(t.alpha)[..., None],
            torch.cos(t.alpha)[..., None],
        ],
        dim=-1,
    )
    index = (ci[..., 1] * Wf + ci[..., 0]).long()
    return DenseTargets(heatmap=heat.view(B, C, Hf, Wf), index=index, mask=mask, regression=reg)


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed and divided by the number of peaks."""
    logits = logits.float()
    pos = target.eq(1.0).float()
    # log(sigmoid) through logsigmoid: stable for confident logits, no clamping needed.
    log_p, log_1mp = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos_loss = log_p * (1 - p) ** 2 * pos
    neg_loss = log_1mp * p**2 * (1 - target) ** 4 * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def gather_cells(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Values (B, M, K) of maps (B, K, Hf, Wf) at flat cell indices (B, M)."""
    B, K = maps.shape[:2]
    flat = maps.reshape(B, K, -1)
    return flat.gather(2, index[:, None, :].expand(B, K, index.shape[1])).transpose(1, 2)


def detection_loss(
    heat_logits: torch.Tensor, regression: torch.Tensor, targets: DenseTargets
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted total loss and its named (unweighted) terms.

    Terms: the weighted ones (`LOSS_WEIGHTS`; "depth" is the Laplace negative log-likelihood) and, for the logs,
    "depth_l1", the mean absolute log-depth error.
    """
    pred = gather_cells(regression.float(), targets.index)  # (B, M, 9)
    m = targets.mask[..., None].float()
    count = targets.mask.sum().clamp(min=1).float()
    err = (pred[..., :8] - targets.regression).abs() * m  # (B, M, 8)
    log_scale = pred[..., 8].clamp(min=MIN_LOG_DEPTH_SCALE)
    depth_nll = (err[..., 2] * torch.exp(-log_scale) + log_scale) * m[..., 0]
    terms = {
        "heatmap": focal_loss(heat_logits, targets.heatmap),
        "offset": err[..., 0:2].sum() / count,
        "depth": depth_nll.sum() / count,
        "size": err[..., 3:6].sum() / count,
        "rotation": err[..., 6:8].sum() / count,
    }
    total = sum(LOSS_WEIGHTS[k] * terms[k] for k in LOSS_WEIGHTS)
    terms["depth_l1"] = err[..., 2].sum() / count
    return total, terms  # type: ignore[return-value]
