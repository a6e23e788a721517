"""Read any nuScenes-format dataset (the real nuScenes or the simulator's) through nuscenes-devkit.

Opening the dataset and resolving splits is `drivestack.common.nuscenes` (`open_nuscenes`, `split_sample_tokens`:
a custom split in `<version>/splits.json`, an official nuScenes split, or "all"); `load_frames` turns each
keyframe image of the chosen cameras (CAM_FRONT by default, any of the six) into a `CameraFrame`: the camera's
image file, its intrinsic, the camera-to-ego and ego-to-global transforms, and every annotation with a detection
name as a box in the ego frame. Every image is a sample of its own for training (the network is camera-agnostic);
for merging the cameras of a keyframe, `ego_frame="sample"` expresses all of them in one ego frame, the sample's
(its LIDAR_TOP ego pose, the devkit's reference, else its first channel's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.nuscenes import NuScenes

from drivestack.common.geometry import make_transform, matrix_to_yaw, quaternion_to_matrix
from drivestack.common.nuscenes import sample_ego_pose, scene_samples, split_sample_tokens, split_scenes
from drivestack.perception.boxes import encode_boxes
from drivestack.perception.config import CAMERA, resolve_cameras


@dataclass
class CameraFrame:
    """One keyframe image of one camera, its geometry and its ground truth (numpy, float64)."""

    sample_token: str
    scene_name: str
    image_path: Path
    image_size: tuple[int, int]  # (W, H) [px]
    intrinsic: np.ndarray  # (3, 3) [px]
    cam2ego: np.ndarray  # (4, 4) camera frame (x right, y down, z forward) -> ego frame
    ego2global: np.ndarray  # (4, 4) ego frame at the image's timestamp -> global frame
    boxes: np.ndarray  # (M, 7) ego frame: x, y, z [m], w, l, h [m], yaw [rad]
    names: list[str]  # M nuScenes detection names
    attributes: list[str]  # M attribute names ("" when none)
    num_pts: np.ndarray  # (M,) lidar + radar points in the box (the devkit drops boxes with 0)
    camera: str = CAMERA  # nuScenes channel of the image


def _pose(record: dict) -> np.ndarray:
    rot = quaternion_to_matrix(torch.tensor(record["rotation"], dtype=torch.float64))
    return make_transform(rot, torch.tensor(record["translation"], dtype=torch.float64)).numpy()


def global_to_ego_boxes(
    translation: Sequence[Sequence[float]],
    size: Sequence[Sequence[float]],
    rotation: Sequence[Sequence[float]],
    ego2global: np.ndarray,
) -> np.ndarray:
    """Global-frame boxes (M translations [m], sizes w l h [m], quaternions w x y z) as ego-frame boxes (M, 7)
    (x, y, z, w, l, h, yaw; float64) in the ego frame `ego2global` (4, 4) maps to the global frame."""
    if len(translation) == 0:
        return np.zeros((0, 7))
    trans = torch.tensor(translation, dtype=torch.float64)  # (M, 3) global
    rot = quaternion_to_matrix(torch.tensor(rotation, dtype=torch.float64))  # (M, 3, 3)
    inv = torch.linalg.inv(torch.from_numpy(ego2global))
    center = trans @ inv[:3, :3].T + inv[:3, 3]
    yaw = matrix_to_yaw(inv[:3, :3] @ rot)
    sizes = torch.tensor(size, dtype=torch.float64)
    return torch.cat([center, sizes, yaw[:, None]], dim=1).numpy()


def load_frame(
    nusc: NuScenes, sample_token: str, camera: str = CAMERA, ego2global: np.ndarray | None = None
) -> CameraFrame:
    """The `camera` keyframe of a sample with every annotation that has a detection name (ego frame).

    Args:
        ego2global: (4, 4) the ego pose the frame is expressed in (cam2ego then maps into it: the camera's own
            ego pose and calibration combined); None: the camera keyframe's own ego pose.
    """
    sample = nusc.get("sample", sample_token)
    if camera not in sample["data"]:
        raise ValueError(f"sample {sample_token} has no {camera} image (channels: {sorted(sample['data'])})")
    sd = nusc.get("sample_data", sample["data"][camera])
    calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    if len(calib["camera_intrinsic"]) != 3:
        raise ValueError(f"calibrated_sensor {calib['token']} of {camera} has no 3x3 camera_intrinsic")
    own_pose = _pose(nusc.get("ego_pose", sd["ego_pose_token"]))
    cam2ego = _pose(calib)
    if ego2global is None:
        ego2global = own_pose
    else:  # the camera in the given ego frame: camera -> its own ego frame -> global -> the given ego frame
        cam2ego = np.linalg.solve(ego2global, own_pose @ cam2ego)
    anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
    names = [category_to_detection_name(a["category_name"]) for a in anns]
    anns = [a for a, n in zip(anns, names) if n is not None]
    names = [n for n in names if n is not None]
    boxes = global_to_ego_boxes(
        [a["translation"] for a in anns], [a["size"] for a in anns], [a["rotation"] for a in anns], ego2global
    )
    attr_names = {a["token"]: a["name"] for a in nusc.attribute}
    width, height = int(sd.get("width") or 0), int(sd.get("height") or 0)
    return CameraFrame(
        sample_token=sample_token,
        scene_name=nusc.get("scene", sample["scene_token"])["name"],
        image_path=Path(nusc.dataroot) / sd["filename"],
        image_size=(width, height),
        intrinsic=np.asarray(calib["camera_intrinsic"], dtype=np.float64),
        cam2ego=cam2ego,
        ego2global=ego2global,
        boxes=boxes,
        names=names,
        attributes=[attr_names[a["attribute_tokens"][0]] if a["attribute_tokens"] else "" for a in anns],
        num_pts=np.array([a.get("num_lidar_pts", -1) + a.get("num_radar_pts", 0) for a in anns], dtype=np.int64),
        camera=camera,
    )


def dataset_cameras(nusc: NuScenes) -> tuple[str, ...]:
    """Camera channels the dataset's sensor table holds."""
    return tuple(s["channel"] for s in nusc.sensor if s.get("modality", "camera") == "camera")


HALVES = ("first-half", "second-half")  # split suffixes: each scene's keyframes cut in two at its middle in time


def split_tokens(nusc: NuScenes, split: str) -> list[str]:
    """Keyframe sample tokens of `split`, scene by scene in time order (`common.nuscenes.split_sample_tokens`).

    `<split>:first-half` / `<split>:second-half` keep each scene's first n // 2 keyframes in time or the rest: the
    real-data development protocol trains on one half of a scene and scores the other (the same streets, so an
    optimistic figure). ValueError (one line) for another suffix.
    """
    name, sep, half = split.rpartition(":")
    if not sep:
        return split_sample_tokens(nusc, split)
    if half not in HALVES:
        raise ValueError(f"split {split!r}: the part after ':' must be one of {', '.join(HALVES)}")
    tokens = []
    for scene in split_scenes(nusc, name):
        samples = [s["token"] for s in scene_samples(nusc, scene)]
        tokens += samples[: len(samples) // 2] if half == HALVES[0] else samples[len(samples) // 2 :]
    return tokens


def load_frames(
    nusc: NuScenes,
    split: str,
    camera: str | Sequence[str] = CAMERA,
    ego_frame: str = "camera",
    require_images: bool = True,
) -> list[CameraFrame]:
    """Frames of every keyframe of `split` and camera, sample by sample (a sample's cameras in the given order).

    Args:
        split: a split name (see `split_tokens`; `<split>:first-half` / `:second-half` for half of each scene).
        camera: a nuScenes camera channel, several, or "all" (the six); ValueError (one line) for an unknown
            name or a camera the dataset does not have.
        ego_frame: "camera": each frame in its own keyframe's ego pose; "sample": every camera of a sample in
            the sample's ego pose (LIDAR_TOP's, else the first channel's), so their boxes can be merged.
        require_images: refuse a missing image file (False: only the geometry is needed, e.g. to score a
            detection submission; image sizes then come from the sample_data table).
    Raises FileNotFoundError naming a missing image file.
    """
    cameras = resolve_cameras(camera)
    if ego_frame not in ("camera", "sample"):
        raise ValueError(f"ego_frame={ego_frame!r}; allowed: camera or sample")
    have = dataset_cameras(nusc)
    absent = [c for c in cameras if c not in have]
    if absent:
        raise ValueError(
            f"dataset {nusc.dataroot} has no camera {absent[0]} (its cameras: {', '.join(have) or 'none'})"
        )
    frames = []
    for token in split_tokens(nusc, split):
        pose = None
        if ego_frame == "sample":
            pose = _pose(sample_ego_pose(nusc, nusc.get("sample", token)))
        frames += [load_frame(nusc, token, c, pose) for c in cameras]
    missing = [f.image_path for f in frames if not f.image_path.is_file()]
    if missing and require_images:
        raise FileNotFoundError(
            f"image file {missing[0]} is missing ({len(missing)} of {len(frames)} {'/'.join(cameras)} "
            f"images of split {split!r} are)"
        )
    for frame in frames:
        if (frame.image_size[0] <= 0 or frame.image_size[1] <= 0) and frame.image_path.is_file():
            # a table without sizes: read the JPEG header
            from PIL import Image

            with Image.open(frame.image_path) as img:
                frame.image_size = img.size
    return frames


def visible_mask(frame: CameraFrame, boxes: np.ndarray | None = None) -> np.ndarray:
    """(M,) bool: boxes whose centre lies in front of the camera and projects inside its image.

    Args:
        boxes: (M, 7) ego-frame boxes in the frame's ego frame (None: the frame's ground truth).
    """
    boxes = frame.boxes if boxes is None else boxes
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    enc = encode_boxes(torch.from_numpy(boxes), torch.from_numpy(frame.intrinsic), torch.from_numpy(frame.cam2ego))
    u, v = enc.uv[:, 0].numpy(), enc.uv[:, 1].numpy()
    width, height = frame.image_size
    return (enc.depth.numpy() > 0.5) & (u >= 0) & (u < width) & (v >= 0) & (v < height)


def classes_present(frames: list[CameraFrame], visible_only: bool = True) -> set[str]:
    """Detection names with at least one (visible) box in `frames`."""
    out: set[str] = set()
    for frame in frames:
        mask = visible_mask(frame) if visible_only else np.ones(len(frame.names), dtype=bool)
        out |= {n for n, m in zip(frame.names, mask) if m}
    return out


def read_image(path: Path) -> torch.Tensor:
    """An image file as uint8 RGB [3, H, W] (OpenCV's libjpeg-turbo); FileNotFoundError naming a missing file."""
    import cv2

    if not Path(path).is_file():
        raise FileNotFoundError(f"image file {path} is missing")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"image file {path} could not be decoded; is it a JPEG or PNG?")
    return torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).contiguous()


# --------------------------------------------------------------------------------------------- training cache


@dataclass
class TargetBoxes:
    """Ground-truth boxes of a set of images in the image-space encoding, padded to M per image."""

    uv: torch.Tensor  # (N, M, 2) [px] projected 3D centres in the network-input image
    box2d: torch.Tensor  # (N, M, 4) [px] x1, y1, x2, y2 of the projected box, clipped to the image
    depth: torch.Tensor  # (N, M) [m] camera z of the centre
    size: torch.Tensor  # (N, M, 3) [m] w, l, h
    alpha: torch.Tensor  # (N, M) [rad] allocentric yaw
    labels: torch.Tensor  # (N, M) int64 class index; -1 for padding
    focal: torch.Tensor  # (N,) [px] focal length (geometric mean of fx, fy) of the network-input image

    def index(self, idx: torch.Tensor) -> TargetBoxes:
        return TargetBoxes(
            *(t[idx] for t in (self.uv, self.box2d, self.depth, self.size, self.alpha, self.labels, self.focal))
        )

    def to(self, device: torch.device | str) -> TargetBoxes:
        return TargetBoxes(
            *(t.to(device) for t in (self.uv, self.box2d, self.depth, self.size, self.alpha, self.labels, self.focal))
        )


@dataclass
class FrameCache:
    """Frames decoded once into memory at the network input size, with their encoded ground truth."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    intrinsic: torch.Tensor  # (N, 3, 3) [px] of the resized images
    cam2ego: torch.Tensor  # (N, 4, 4)
    targets: TargetBoxes  # (N, M)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 images [..., 3, H, W] resized (antialiased bilinear) to (width, height), still uint8."""
    width, height = size
    if image.shape[-1] == width and image.shape[-2] == height:
        return image
    batch = image.reshape(-1, *image.shape[-3:]).float()
    out = torch.nn.functional.interpolate(
        batch, size=(height, width), mode="bilinear", antialias=True, align_corners=False
    )
    return out.round_().clamp_(0, 255).to(torch.uint8).reshape(*image.shape[:-2], height, width)


def encode_targets(
    frames: list[CameraFrame], classes: tuple[str, ...], input_size: tuple[int, int], max_distance: float
) -> tuple[torch.Tensor, TargetBoxes]:
    """Resized intrinsics (N, 3, 3) and the encoded boxes of `classes` that are in view, within `max_distance`
    [m] (ego xy) and hit by some lidar / radar point (unknown counts, -1, pass), of each frame."""
    from drivestack.perception.boxes import boxes_to_image_boxes, focal, scale_intrinsic

    width, height = input_size
    per_frame, intrinsics = [], []
    for frame in frames:
        keep = visible_mask(frame) & (np.hypot(frame.boxes[:, 0], frame.boxes[:, 1]) <= max_distance)
        keep &= np.array([n in classes for n in frame.names], dtype=bool)
        keep &= frame.num_pts != 0  # no lidar / radar point: occluded (the eval ignores these boxes too)
        sx, sy = width / frame.image_size[0], height / frame.image_size[1]
        k_in = scale_intrinsic(torch.from_numpy(frame.intrinsic), sx, sy)
        boxes, cam2ego = torch.from_numpy(frame.boxes[keep]), torch.from_numpy(frame.cam2ego)
        enc = encode_boxes(boxes, k_in, cam2ego)
        box2d = boxes_to_image_boxes(boxes, k_in, cam2ego, input_size)
        labels = torch.tensor([classes.index(n) for n, k in zip(frame.names, keep) if k], dtype=torch.int64)
        per_frame.append((enc, box2d, labels))
        intrinsics.append(k_in)
    n, m = len(frames), max([1] + [len(p[2]) for p in per_frame])
    t = TargetBoxes(
        uv=torch.zeros(n, m, 2),
        box2d=torch.zeros(n, m, 4),
        depth=torch.ones(n, m),
        size=torch.ones(n, m, 3),
        alpha=torch.zeros(n, m),
        labels=torch.full((n, m), -1),
        focal=torch.zeros(n),
    )
    for i, (enc, box2d, labels) in enumerate(per_frame):
        k = len(labels)
        t.uv[i, :k], t.box2d[i, :k], t.depth[i, :k] = enc.uv.float(), box2d.float(), enc.depth.float()
        t.size[i, :k], t.alpha[i, :k], t.labels[i, :k] = enc.size.float(), enc.alpha.float(), labels
    k_all = torch.stack(intrinsics).float()
    t.focal = focal(k_all)
    return k_all, t


def cache_frames(
    frames: list[CameraFrame],
    classes: tuple[str, ...],
    input_size: tuple[int, int],
    max_distance: float = 60.0,
    progress: bool = True,
) -> FrameCache:
    """Decode and resize every frame's image once (uint8 in memory) and encode its ground truth."""
    from tqdm import tqdm

    images = torch.empty(len(frames), 3, input_size[1], input_size[0], dtype=torch.uint8)
    for i, frame in enumerate(
        tqdm(frames, desc="decoding images", unit="img", disable=not progress, dynamic_ncols=True)
    ):
        images[i] = resize_image(read_image(frame.image_path), input_size)
    intrinsic, targets = encode_targets(frames, classes, input_size, max_distance)
    cam2ego = torch.from_numpy(np.stack([f.cam2ego for f in frames])).float()
    return FrameCache(images=images, intrinsic=intrinsic, cam2ego=cam2ego, targets=targets)
