"""Several cameras: the loader reads every camera's keyframes with its own geometry, names unknown and missing
cameras in one line, and the per-sample merge of the cameras' detections is the cross-camera NMS, padded."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from drivestack.common.nuscenes import open_nuscenes
from drivestack.perception import infer
from drivestack.perception.config import CAMERAS, ModelConfig, resolve_cameras
from drivestack.perception.dataset import load_frames, read_image
from drivestack.perception.infer import Detections, Detector, detect_cameras, detect_frames, merge_detections
from drivestack.perception.merge import merge_cameras
from drivestack.perception.model import CenterNet3D


def _calibration(nusc, frame) -> tuple[np.ndarray, np.ndarray]:
    sd = nusc.get("sample_data", nusc.get("sample", frame.sample_token)["data"][frame.camera])
    calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    return np.asarray(calib["camera_intrinsic"]), np.asarray(calib["translation"])


def test_every_camera_is_a_frame_with_its_own_geometry(six_root: Path) -> None:
    nusc = open_nuscenes(six_root)
    frames = load_frames(nusc, "train", "all")
    assert len(frames) == 2 * 3 * 6  # 2 scenes x 3 keyframes x 6 cameras, sample by sample
    assert [f.camera for f in frames[:6]] == list(CAMERAS) and frames[6].sample_token != frames[5].sample_token
    for frame in frames[:6]:
        intrinsic, translation = _calibration(nusc, frame)
        assert np.array_equal(frame.intrinsic, intrinsic) and np.allclose(frame.cam2ego[:3, 3], translation)
        assert frame.image_path.parent.name == frame.camera and frame.image_path.is_file()
        # the optical axis (camera z) points where the fixture turned that camera
        axis = frame.cam2ego[:3, 2]
        assert np.allclose(axis[2], 0.0, atol=1e-9)
    headings = {f.camera: np.degrees(np.arctan2(f.cam2ego[1, 2], f.cam2ego[0, 2])) for f in frames[:6]}
    assert headings["CAM_FRONT"] == pytest.approx(0.0) and headings["CAM_FRONT_LEFT"] == pytest.approx(55.0)
    assert abs(headings["CAM_BACK"]) == pytest.approx(180.0) and headings["CAM_BACK_RIGHT"] == pytest.approx(-110.0)
    # one sample's cameras share its annotations (ego frame)
    assert all(np.array_equal(f.boxes, frames[0].boxes) for f in frames[:6])
    # a chosen subset, in the order given; the default is CAM_FRONT alone
    pair = load_frames(nusc, "train", ("CAM_BACK", "CAM_FRONT"))
    assert len(pair) == 12 and [f.camera for f in pair[:2]] == ["CAM_BACK", "CAM_FRONT"]
    front = load_frames(nusc, "train")
    assert len(front) == 6 and {f.camera for f in front} == {"CAM_FRONT"}
    assert np.array_equal(front[0].cam2ego, frames[0].cam2ego)


def test_sample_ego_frame_keeps_each_camera_where_it_is(real_root: Path) -> None:
    nusc = open_nuscenes(real_root)
    own = load_frames(nusc, "val", ("CAM_FRONT", "CAM_BACK"))
    shared = load_frames(nusc, "val", ("CAM_FRONT", "CAM_BACK"), ego_frame="sample")
    assert len(own) == len(shared) == 80
    for a, b in zip(own[:4], shared[:4]):
        assert np.allclose(a.ego2global @ a.cam2ego, b.ego2global @ b.cam2ego, atol=1e-6)  # the camera in the world
        glob_a = a.boxes[:, :3] @ a.ego2global[:3, :3].T + a.ego2global[:3, 3]
        glob_b = b.boxes[:, :3] @ b.ego2global[:3, :3].T + b.ego2global[:3, 3]
        assert np.allclose(glob_a, glob_b, atol=1e-6)
    # nuScenes' cameras fire at different times: their own ego poses differ, the sample's is one (LIDAR_TOP's)
    assert not np.allclose(own[0].ego2global, own[1].ego2global)
    assert np.array_equal(shared[0].ego2global, shared[1].ego2global)


def test_unknown_and_missing_cameras_are_one_line(tiny_root: Path, six_root: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown camera 'CAM_SIDE'; valid: all, CAM_FRONT, CAM_FRONT_RIGHT"):
        resolve_cameras(("CAM_FRONT", "CAM_SIDE"))
    with pytest.raises(ValueError, match="give 'all' alone"):
        resolve_cameras(("all", "CAM_BACK"))
    assert resolve_cameras("all") == CAMERAS and resolve_cameras(["CAM_BACK", "CAM_BACK"]) == ("CAM_BACK",)
    with pytest.raises(ValueError, match=r"has no camera CAM_BACK \(its cameras: CAM_FRONT\)"):
        load_frames(open_nuscenes(tiny_root), "train", ("CAM_FRONT", "CAM_BACK"))
    with pytest.raises(ValueError, match=r"has no camera CAM_FRONT_RIGHT \(its cameras: CAM_FRONT\)"):
        load_frames(open_nuscenes(tiny_root), "train", "all")
    with pytest.raises(ValueError, match="ego_frame='lidar'"):
        load_frames(open_nuscenes(six_root), "train", "all", ego_frame="lidar")


def _dets(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> Detections:
    return Detections(boxes, scores, labels, ("car", "truck"), velocity=boxes[..., :2] * 0.1)


def test_merge_detections_is_the_cross_camera_nms_per_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 samples x 2 cameras, K = 3: a car at the seam seen by both cameras of sample 0, a car and a truck at one
    # spot in sample 1 (other classes), and a below-threshold box.
    boxes = torch.zeros(4, 3, 7)
    boxes[0, :, 0], boxes[1, :, 0] = torch.tensor([10.0, 30.0, 50.0]), torch.tensor([10.8, -20.0, 0.0])
    boxes[2, :, 0], boxes[3, :, 0] = torch.tensor([5.0, 0.0, 0.0]), torch.tensor([5.5, 0.0, 0.0])
    scores = torch.tensor([[0.6, 0.5, 0.01], [0.9, 0.3, 0.02], [0.7, 0.0, 0.0], [0.8, 0.0, 0.0]])
    labels = torch.tensor([[0, 0, 0], [0, 0, 1], [0, 0, 0], [1, 0, 0]])
    sample = torch.tensor([0, 0, 1, 1])
    merged = merge_detections(_dets(boxes, scores, labels), sample, 2, score_threshold=0.05)
    assert merged.scores.shape == (2, 3)
    assert merged.scores[0].tolist() == pytest.approx([0.9, 0.5, 0.3])  # the 0.6 duplicate of the 0.9 car dropped
    assert merged.boxes[0, :, 0].tolist() == pytest.approx([10.8, 30.0, -20.0])
    assert merged.scores[1].tolist() == pytest.approx([0.8, 0.7, 0.0])  # car and truck both kept; one padding
    assert merged.labels[1].tolist() == [1, 0, 0] and torch.equal(merged.boxes[1, 2], torch.zeros(7))
    assert torch.allclose(merged.velocity, merged.boxes[..., :2] * 0.1)
    # against merge_cameras on the thresholded candidates, on random input, and chunked as on a long split
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(24, 20, 7, generator=g) * 8.0
    scores, labels = torch.rand(24, 20, generator=g), torch.randint(0, 2, (24, 20), generator=g)
    sample = torch.arange(4).repeat_interleave(6)
    dets = _dets(boxes, scores, labels)
    full = merge_detections(dets, sample, 4, score_threshold=0.3)
    cand = scores >= 0.3
    keep = merge_cameras(
        boxes[cand], scores[cand], labels[cand], sample[:, None].expand(24, 20)[cand], torch.nonzero(cand)[:, 0]
    )
    for s in range(4):
        want = scores[cand][keep & (sample[:, None].expand(24, 20)[cand] == s)].sort(descending=True).values
        got = full.scores[s][full.scores[s] > 0]
        assert torch.equal(got, want)
    monkeypatch.setattr(infer, "MERGE_CHUNK", 7)  # several chunks of whole samples
    chunked = merge_detections(dets, sample, 4, score_threshold=0.3)
    assert torch.equal(chunked.scores, full.scores) and torch.equal(chunked.boxes, full.boxes)


def test_detect_cameras_is_one_batch_merged_per_sample(six_root: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(input_width=160, input_height=96, widths=(8, 16, 32, 32), neck_channels=16)
    detector = Detector(CenterNet3D(cfg))
    frames = load_frames(open_nuscenes(six_root), "val", "all", ego_frame="sample")[:12]  # 2 samples x 6 cameras
    images = torch.stack([read_image(f.image_path) for f in frames]).view(2, 6, 3, 180, 320)
    intrinsic = torch.from_numpy(np.stack([f.intrinsic for f in frames])).float().view(2, 6, 3, 3)
    cam2ego = torch.from_numpy(np.stack([f.cam2ego for f in frames])).float().view(2, 6, 4, 4)
    merged = detect_cameras(detector, images, intrinsic, cam2ego, score_threshold=0.0)
    assert merged.boxes.shape[0] == 2 and merged.boxes.shape[2] == 7
    # the same as the twelve images detected as one batch of frames and merged per sample token
    per_image = detector(images.flatten(0, 1), intrinsic.flatten(0, 1), cam2ego.flatten(0, 1))
    samples, again = infer.merge_frames(frames, per_image, score_threshold=0.0)
    assert [s.sample_token for s in samples] == [frames[0].sample_token, frames[6].sample_token]
    assert torch.equal(merged.scores, again.scores) and torch.equal(merged.labels, again.labels)
    assert torch.equal(merged.boxes, again.boxes)
    # the frames' path (JPEGs decoded and resized in the DataLoader) finds the same strongest boxes
    loaded = detect_frames(detector, frames, batch_size=12, progress=False)
    assert torch.allclose(loaded.scores[:, 0], per_image.scores[:, 0], atol=1e-3)
    assert int((merged.scores > 0).sum()) < 2 * 6 * cfg.max_detections  # some peaks of neighbouring cameras merged
    frames[1].ego2global = frames[1].ego2global.copy()
    frames[1].ego2global[0, 3] += 0.5  # a camera in another ego frame than its sample's
    with pytest.raises(ValueError, match="different ego frames; load them with load_frames"):
        infer.merge_frames(frames, per_image)


def test_full_scene_ground_truth_is_the_devkits(real_root: Path, tmp_path: Path) -> None:
    from nuscenes.eval.common.loaders import add_center_dist, filter_eval_boxes, load_gt_of_sample_tokens
    from nuscenes.eval.detection.constants import DETECTION_NAMES
    from nuscenes.eval.detection.data_classes import DetectionBox

    from drivestack.common.submission import write_submission
    from drivestack.perception.evaluate import CameraDetectionEval, detection_config, load_protocol, submission

    nusc = open_nuscenes(real_root)
    frames = load_frames(nusc, "val", "all", ego_frame="sample")
    samples = frames[:: len(CAMERAS)][:12]
    protocol = load_protocol("full_scene_v1")
    config = detection_config(tuple(DETECTION_NAMES), protocol)
    empty = Detections(
        torch.zeros(len(samples), 1, 7),
        torch.zeros(len(samples), 1),
        torch.zeros(len(samples), 1, dtype=torch.long),
        ("car",),
    )
    tokens = [f.sample_token for f in samples]
    path = write_submission(tmp_path / "sub.json", submission(samples, empty, {}, 0.05, 500), "detection", tokens)
    ours = CameraDetectionEval(nusc, config, path, samples, tmp_path, in_image=False).gt_boxes
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        devkit = load_gt_of_sample_tokens(nusc, tokens, DetectionBox)
        devkit = filter_eval_boxes(nusc, add_center_dist(nusc, devkit), config.class_range)
    total = 0
    for token in tokens:
        a = sorted(
            (b.detection_name, *np.round(b.translation, 6), *np.round(b.ego_translation, 6)) for b in ours[token]
        )
        b = sorted(
            (b.detection_name, *np.round(b.translation, 6), *np.round(b.ego_translation, 6)) for b in devkit[token]
        )
        assert a == b
        total += len(a)
    assert total > 12  # boxes all around the ego, not only in front
