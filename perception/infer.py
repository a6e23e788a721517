"""Batched inference: camera images in, 3D boxes in the ego frame out, on any device.

`Detector` wraps a trained network: it resizes uint8 images to the network input (adjusting the intrinsic),
normalises, runs the network (channels-last; float16 autocast on CUDA) and decodes the heat-map peaks into
boxes, all as batched tensor code. `detect_frames` runs it over a list of nuScenes frames with JPEG decoding
in DataLoader workers.

Several cameras: `detect_cameras` runs the detector on every camera image of B samples (environments) as one
batch and merges each sample's cameras (`merge_detections`: the score threshold, then
`perception.merge.merge_cameras`, a class-aware centre-distance NMS across cameras), returning one set of
ego-frame boxes per sample; `merge_frames` does the same for nuScenes frames already detected (one set per
sample token, for the submission).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from drivestack.perception.boxes import BoxEncoding, decode_boxes, focal, scale_intrinsic, target_to_depth
from drivestack.perception.checkpoint import load_checkpoint, model_from_checkpoint
from drivestack.perception.config import IMAGE_MEAN, IMAGE_STD, MATCH_DISTANCES, ModelConfig
from drivestack.perception.dataset import CameraFrame, read_image, resize_image
from drivestack.perception.loss import gather_cells
from drivestack.perception.merge import DEFAULT_RADIUS, merge_cameras
from drivestack.perception.model import CenterNet3D

MERGE_SCORE_THRESHOLD = 0.05  # boxes below this score are dropped before merging (the protocols' threshold)
MERGE_CHUNK = 1024  # candidate boxes per merge call (bounds the (M, M) comparison to ~(2 x 1024)^2 entries)


@dataclass
class Detections:
    """Detections of B images (or B samples, merged), K peaks each (sorted by score; filter with
    `scores >= threshold`; merged sets are padded with score 0)."""

    boxes: torch.Tensor  # (B, K, 7) ego frame: x, y, z [m], w, l, h [m], yaw [rad]
    scores: torch.Tensor  # (B, K) in [0, 1]
    labels: torch.Tensor  # (B, K) int64 index into `classes`
    classes: tuple[str, ...]
    velocity: torch.Tensor | None = None  # (B, K, 2) [m/s] global vx, vy; None: not estimated (submitted as 0)

    def to(self, device: torch.device | str) -> Detections:
        velocity = None if self.velocity is None else self.velocity.to(device)
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device), self.classes, velocity)


def localization_confidence(depth: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Probability that a centre at `depth` [m] with Laplace log-depth scale exp(`log_scale`) lies within each of
    nuScenes' match distances of the truth, averaged over them (elementwise, in [0, 1]).

    The depth error dominates a monocular centre's error, and a relative log-depth error b is about b * depth
    metres, so P(|error| < t) = 1 - exp(-t / (b * depth)).
    """
    sigma = (torch.exp(log_scale) * depth).clamp(min=1e-6)  # [m]
    t = torch.tensor(MATCH_DISTANCES, device=depth.device, dtype=depth.dtype)
    return (1 - torch.exp(-t / sigma[..., None])).mean(dim=-1)


def decode_outputs(
    heat_logits: torch.Tensor,
    regression: torch.Tensor,
    intrinsic: torch.Tensor,
    cam2ego: torch.Tensor,
    cfg: ModelConfig,
    depth_confidence: bool = True,
) -> Detections:
    """Boxes of the top `cfg.max_detections` heat-map peaks (3x3 local maxima) of each image.

    Args:
        heat_logits: (B, C, Hf, Wf); regression: (B, 9, Hf, Wf) (see `CenterNet3D.forward`).
        intrinsic: (B, 3, 3) [px] of the network-input image; cam2ego: (B, 4, 4).
        depth_confidence: score = heat-map peak x `localization_confidence` (boxes whose depth the network is
            sure of rank first); False: the heat-map peak alone.
    """
    heat = torch.sigmoid(heat_logits.float())
    B, C, Hf, Wf = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)  # non-maxima suppressed
    k = min(cfg.max_detections, C * Hf * Wf)
    scores, flat = peaks.reshape(B, -1).topk(k, dim=1)  # (B, K)
    labels, cell = flat // (Hf * Wf), flat % (Hf * Wf)
    reg = gather_cells(regression.float(), cell)  # (B, K, 9)
    s = cfg.head_stride
    uv = torch.stack([((cell % Wf).float() + reg[..., 0]) * s, ((cell // Wf).float() + reg[..., 1]) * s], dim=-1)
    priors = torch.tensor(cfg.size_priors(), device=heat.device)[labels]  # (B, K, 3)
    intrinsic, cam2ego = intrinsic.float(), cam2ego.float()
    depth = target_to_depth(reg[..., 2], focal(intrinsic)[:, None])
    enc = BoxEncoding(
        uv=uv,
        depth=depth,
        size=torch.exp(reg[..., 3:6].clamp(-3, 3)) * priors,
        alpha=torch.atan2(reg[..., 6], reg[..., 7]),
    )
    boxes = decode_boxes(enc, intrinsic, cam2ego)
    if depth_confidence:
        scores = scores * localization_confidence(depth, reg[..., 8])
        scores, order = scores.sort(dim=1, descending=True)
        boxes = boxes.gather(1, order[..., None].expand_as(boxes))
        labels = labels.gather(1, order)
    return Detections(boxes=boxes, scores=scores, labels=labels, classes=cfg.classes)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """float images in [0, 1] (B, 3, H, W) -> network input (ImageNet mean / std), channels-last."""
    mean = torch.tensor(IMAGE_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=images.device).view(1, 3, 1, 1)
    return ((images - mean) / std).contiguous(memory_format=torch.channels_last)


class Detector:
    """A trained detector ready for inference on `device` (eval mode, channels-last, AMP on CUDA)."""

    def __init__(
        self,
        model: CenterNet3D,
        attributes: dict[str, str] | None = None,
        device: str | torch.device = "cpu",
        amp: bool = True,
        depth_confidence: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.depth_confidence = depth_confidence
        self.model = model.to(self.device).eval().to(memory_format=torch.channels_last)
        self.cfg = model.cfg
        self.attributes = dict(attributes or {})
        self.amp = amp and self.device.type == "cuda"

    @classmethod
    def from_checkpoint(
        cls, path: Path | str, device: str | torch.device = "cpu", amp: bool = True, depth_confidence: bool = True
    ) -> Detector:
        data = load_checkpoint(path)
        return cls(
            model_from_checkpoint(data), data["attributes"], device=device, amp=amp, depth_confidence=depth_confidence
        )

    def preprocess(self, images: torch.Tensor, intrinsic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (B, 3, H, W) + intrinsics (B, 3, 3) -> normalised network input and its intrinsics."""
        height, width = images.shape[-2:]
        size = self.cfg.input_size
        x = images.float().div_(255.0)
        if (width, height) != size:
            x = F.interpolate(x, size=(size[1], size[0]), mode="bilinear", antialias=True, align_corners=False)
        k_in = scale_intrinsic(intrinsic.float(), size[0] / width, size[1] / height)
        return normalize(x), k_in

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, intrinsic: torch.Tensor, cam2ego: torch.Tensor) -> Detections:
        """Detect objects in uint8 images (B, 3, H, W) [any size] of cameras with intrinsics (B, 3, 3) [px]
        and camera-to-ego transforms (B, 4, 4); returns boxes in the ego frame."""
        images = images.to(self.device, non_blocking=True)
        x, k_in = self.preprocess(images, intrinsic.to(self.device))
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            heat, reg = self.model(x, k_in)
        return decode_outputs(heat, reg, k_in, cam2ego.to(self.device), self.cfg, self.depth_confidence)


class _FrameImages(Dataset):
    """Frames' images decoded (and resized to the network input) in DataLoader workers."""

    def __init__(self, frames: list[CameraFrame], size: tuple[int, int]) -> None:
        self.frames, self.size = frames, size

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frame = self.frames[i]
        image = read_image(frame.image_path)
        height, width = image.shape[-2:]
        k_in = scale_intrinsic(torch.from_numpy(frame.intrinsic).float(), self.size[0] / width, self.size[1] / height)
        return resize_image(image, self.size), k_in, torch.from_numpy(frame.cam2ego).float()


def detect_frames(
    detector: Detector, frames: list[CameraFrame], batch_size: int = 16, num_workers: int = 0, progress: bool = True
) -> Detections:
    """Run `detector` over every frame; returns (N, K) detections on the CPU, in frame order.

    An image that is missing or cannot be decoded raises the original FileNotFoundError / ValueError naming its
    file (one line), with DataLoader workers (`num_workers` > 0) as without.
    """
    from tqdm import tqdm

    dataset = _FrameImages(frames, detector.cfg.input_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=detector.device.type == "cuda",
    )
    parts = []
    batches = iter(tqdm(loader, desc="detecting", unit="batch", disable=not progress, dynamic_ncols=True))
    while True:
        try:
            images, k_in, cam2ego = next(batches)
        except StopIteration:
            break
        except (ValueError, OSError):
            if num_workers == 0:
                raise  # already the original error, naming the image file
            # A worker's error arrives re-wrapped with the worker's traceback in its message; batches come in
            # order, so read the failing batch's images here to raise the original (one line, with the path).
            start = len(parts) * batch_size
            for i in range(start, min(start + batch_size, len(frames))):
                _ = dataset[i]
            raise
        parts.append(detector(images, k_in, cam2ego).to("cpu"))
    return Detections(
        boxes=torch.cat([p.boxes for p in parts]),
        scores=torch.cat([p.scores for p in parts]),
        labels=torch.cat([p.labels for p in parts]),
        classes=detector.cfg.classes,
    )


# ------------------------------------------------------------------------------------------- several cameras


def merge_detections(
    dets: Detections,
    sample: torch.Tensor,
    num_samples: int,
    score_threshold: float = MERGE_SCORE_THRESHOLD,
    radius: float = DEFAULT_RADIUS,
) -> Detections:
    """Merge the detections of N images (several cameras of S samples) into one set of boxes per sample.

    Boxes scoring below `score_threshold` are dropped; the rest go through `merge_cameras` (a box is dropped
    when a higher-scoring box of the same class from another image of its sample lies within `radius` m, BEV
    centre distance). The boxes of a sample's images must be in one ego frame (the sample's).

    Args:
        dets: (N, K) detections of N images; `velocity`, when set, is carried along.
        sample: (N,) int64 sample index in [0, num_samples) of each image.
        num_samples: S.
        score_threshold: boxes scoring less are dropped first.
        radius: [m] merge radius (see `merge_cameras`).
    Returns:
        (S, K') detections per sample, sorted by score; K' is the most any sample keeps (at least 1); the padding
        has score 0, label 0 and a zero box (below any score threshold > 0).
    """
    N, K = dets.scores.shape
    device = dets.scores.device
    sample = sample.to(device)
    image = torch.arange(N, device=device)[:, None].expand(N, K)
    candidate = dets.scores >= score_threshold  # (N, K)
    keep = torch.zeros_like(candidate)
    # Chunks of whole samples with about MERGE_CHUNK candidates each: the NMS is (M, M) in its candidates.
    counts = torch.zeros(num_samples, dtype=torch.long, device=device).index_add_(0, sample, candidate.sum(1))
    chunk = (torch.cumsum(counts, 0) - counts) // MERGE_CHUNK  # (S,) samples starting in one block share a chunk
    cand_chunk = chunk[sample][:, None].expand(N, K)[candidate]  # (M,)
    rows, cols = torch.nonzero(candidate, as_tuple=True)
    for c in torch.unique(cand_chunk).tolist():  # one chunk per ~MERGE_CHUNK candidates (a few per batch)
        sel = cand_chunk == c
        r, k = rows[sel], cols[sel]
        boxes, scores, labels = dets.boxes[r, k], dets.scores[r, k], dets.labels[r, k]
        keep[r, k] = merge_cameras(boxes, scores, labels, sample[r], image[r, k], radius)
    # Per sample: its kept boxes of every image, sorted by score, padded to the largest count.
    kept_per_sample = torch.zeros(num_samples, dtype=torch.long, device=device).index_add_(0, sample, keep.sum(1))
    width = max(1, int(kept_per_sample.max())) if num_samples else 1
    order = torch.argsort(sample, stable=True)  # images grouped by sample
    sorted_sample = sample[order]
    slot = torch.arange(N, device=device) - torch.searchsorted(sorted_sample, sorted_sample)  # rank in its sample
    per = int(torch.bincount(sample, minlength=num_samples).max()) if N else 1  # images of the largest sample
    score = torch.where(keep, dets.scores, torch.full_like(dets.scores, -1.0))
    grid_score = torch.full((num_samples, per * K), -1.0, device=device, dtype=score.dtype)
    index = torch.full((num_samples, per * K), -1, device=device, dtype=torch.long)
    flat = (torch.arange(N * K, device=device)).view(N, K)[order]  # (N, K) flat index into dets, in sample order
    dst = (slot[:, None] * K + torch.arange(K, device=device)[None, :]).reshape(-1)
    grid_score[sorted_sample.repeat_interleave(K), dst] = score[order].reshape(-1)
    index[sorted_sample.repeat_interleave(K), dst] = flat.reshape(-1)
    top, pos = grid_score.topk(min(width, per * K), dim=1)  # (S, K')
    src = index.gather(1, pos)
    valid = top >= 0  # kept boxes (scores are >= 0); the rest is padding
    src = src.clamp(min=0)

    def take(t: torch.Tensor) -> torch.Tensor:  # (N, K, ...) -> (S, K', ...) with the padding zeroed
        out = t.reshape(N * K, *t.shape[2:])[src]
        return torch.where(valid.view(*valid.shape, *([1] * (out.dim() - 2))), out, torch.zeros_like(out))

    velocity = None if dets.velocity is None else take(dets.velocity)
    return Detections(take(dets.boxes), take(dets.scores), take(dets.labels), dets.classes, velocity)


def detect_cameras(
    detector: Detector,
    images: torch.Tensor,
    intrinsic: torch.Tensor,
    cam2ego: torch.Tensor,
    score_threshold: float = MERGE_SCORE_THRESHOLD,
    radius: float = DEFAULT_RADIUS,
) -> Detections:
    """Detect in the C camera images of B samples (environments) as one batch and merge each sample's cameras.

    Args:
        images: (B, C, 3, H, W) uint8; intrinsic: (B, C, 3, 3) [px] of those images; cam2ego: (B, C, 4, 4)
            camera -> the sample's ego frame.
        score_threshold, radius: see `merge_detections`.
    Returns:
        (B, K') ego-frame detections per sample (see `merge_detections`).
    """
    B, C = images.shape[:2]
    dets = detector(images.flatten(0, 1), intrinsic.flatten(0, 1), cam2ego.flatten(0, 1))  # (B * C, K)
    sample = torch.arange(B, device=dets.scores.device).repeat_interleave(C)
    return merge_detections(dets, sample, B, score_threshold, radius)


def merge_frames(
    frames: list[CameraFrame],
    dets: Detections,
    score_threshold: float = MERGE_SCORE_THRESHOLD,
    radius: float = DEFAULT_RADIUS,
) -> tuple[list[CameraFrame], Detections]:
    """Merge the detections of nuScenes frames (several cameras per sample token) per sample.

    The frames of a sample must share one ego frame (`load_frames(..., ego_frame="sample")`); ValueError
    otherwise. Returns one frame per sample (its first camera's, carrying the sample's ego pose and ground
    truth), in order of first appearance, and the (S, K') merged detections.
    """
    index: dict[str, int] = {}
    firsts: list[CameraFrame] = []
    for frame in frames:
        if frame.sample_token not in index:
            index[frame.sample_token] = len(firsts)
            firsts.append(frame)
        elif not np.allclose(frame.ego2global, firsts[index[frame.sample_token]].ego2global, rtol=0.0, atol=1e-6):
            raise ValueError(
                f"sample {frame.sample_token}: its cameras are in different ego frames; load them with "
                "load_frames(..., ego_frame='sample') to merge them"
            )
    sample = torch.tensor([index[f.sample_token] for f in frames], dtype=torch.long)
    return firsts, merge_detections(dets, sample, len(firsts), score_threshold, radius)
