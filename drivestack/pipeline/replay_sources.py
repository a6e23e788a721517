"""Where replay's detections come from: a detection submission, or the camera detector on the six logged cameras
(merged in the ego frame); `pipeline.replay` runs them, or corrupted ground truth, through the tracker."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see drivestack.bench.perception

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from nuscenes import NuScenes  # noqa: E402

from drivestack.common.geometry import quaternion_to_matrix  # noqa: E402
from drivestack.common.submission import drop_far_boxes, read_submission  # noqa: E402
from drivestack.pipeline.replay_log import (  # noqa: E402
    SceneLog,
)
from drivestack.tracking.data_classes import NAME_TO_LABEL, FrameDetections, FrameTracks  # noqa: E402
from drivestack.tracking.nuscenes_io import parse_sample  # noqa: E402


def read_submission_frames(path: Path, nusc: NuScenes, logs: list[SceneLog]) -> list[list[FrameDetections]]:
    """The submission's detections of each replayed keyframe (global frame, tracked classes only).

    The file may hold results for other samples of the dataset (a whole split's submission) and, with one
    warning, for samples the dataset does not have (the whole val set replayed on an extract of a few scenes);
    ValueError when none of the replayed keyframes has results."""
    tokens = [s["token"] for s in nusc.sample]
    submission = read_submission(path, "detection", sample_tokens=tokens, dataset_tokens=tokens)
    ours = {s["token"] for log in logs for s in log.samples}
    if not ours & set(submission["results"]):
        raise ValueError(
            f"{path}: none of the {len(ours)} replayed keyframes has results (the file holds "
            f"{len(submission['results'])} other samples of {nusc.dataroot}); give the submission made for these scenes"
        )
    ego_xy = {s["token"]: log.translation[i, :2].tolist() for log in logs for i, s in enumerate(log.samples)}
    results = drop_far_boxes(submission, ego_xy, path)["results"]
    return [[parse_sample(path, s, results.get(s["token"], [])) for s in log.samples] for log in logs]


class CameraSource:
    """`detector:<checkpoint>`: the camera detector on every camera image of a keyframe as one batch, merged."""

    def __init__(self, spec: str, nusc: NuScenes, logs: list[SceneLog], device: str) -> None:
        from drivestack.common.host import resolve_device
        from drivestack.perception.config import CAMERAS
        from drivestack.perception.dataset import dataset_cameras, load_frame
        from drivestack.perception.infer import Detector
        from drivestack.release import resolve_checkpoint_path

        self.nusc = nusc
        # the cameras the replayed keyframes hold (a dataset may list six in its sensor table and record one)
        recorded = {channel for log in logs for sample in log.samples for channel in sample["data"]}
        self.cameras = tuple(c for c in CAMERAS if c in dataset_cameras(nusc) and c in recorded)
        if not self.cameras:
            raise ValueError(f"the replayed keyframes of {nusc.dataroot} hold no camera image to detect")
        # every keyframe's camera frames, expressed in the keyframe's ego frame (LIDAR_TOP's pose), checked up front
        self.frames: dict[str, list[Any]] = {}
        for log in logs:
            for i, sample in enumerate(log.samples):
                pose = np.eye(4)
                pose[:3, :3] = quaternion_to_matrix(log.rotation[i])
                pose[:3, 3] = log.translation[i]
                present = [c for c in self.cameras if c in sample["data"]]
                self.frames[sample["token"]] = [load_frame(nusc, sample["token"], c, pose) for c in present]
        missing = [f.image_path for fs in self.frames.values() for f in fs if not f.image_path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"image file {missing[0]} is missing ({len(missing)} of the replayed keyframes' camera images are); "
                "the detector needs every camera image (or replay a submission or oracle instead)"
            )
        self.detector = Detector.from_checkpoint(resolve_checkpoint_path(spec), device=str(resolve_device(device)))
        self.checkpoint = spec
        self.track_label = np.array([NAME_TO_LABEL.get(n, -1) for n in self.detector.cfg.classes], dtype=np.int64)
        self.eval_frames: list[Any] = []  # one CameraFrame per keyframe (the first camera's, ego frame of the sample)
        self.eval_dets: list[Any] = []  # its merged Detections (1, K')
        self.eval_rows: list[np.ndarray] = []  # merged rows given to the tracker

    def detect(self, log: SceneLog, i: int) -> FrameDetections:
        import torch

        from drivestack.perception.boxes import scale_intrinsic
        from drivestack.perception.dataset import read_image, resize_image
        from drivestack.perception.infer import detect_cameras

        sample = log.samples[i]
        frames = self.frames[sample["token"]]
        size = self.detector.cfg.input_size
        images, k_in = [], []
        for f in frames:  # decode and resize each camera image (6 per keyframe)
            image = read_image(f.image_path)
            h, w = image.shape[-2:]
            images.append(resize_image(image, size))
            k_in.append(scale_intrinsic(torch.from_numpy(f.intrinsic).float(), size[0] / w, size[1] / h))
        cam2ego = torch.stack([torch.from_numpy(f.cam2ego).float() for f in frames])
        dets = detect_cameras(self.detector, torch.stack(images)[None], torch.stack(k_in)[None], cam2ego[None])
        dets = dets.to("cpu")
        boxes, scores = dets.boxes[0].double().numpy(), dets.scores[0].double().numpy()
        labels = self.track_label[dets.labels[0].numpy()]
        rows = np.flatnonzero((scores > 0) & (labels >= 0))  # merged boxes (the padding scores 0) of tracked classes
        self.eval_frames.append(frames[0])
        self.eval_dets.append(dets)
        self.eval_rows.append(rows)
        frame = FrameDetections.from_boxes(
            sample["token"], log.times[i], boxes[rows, :3], boxes[rows, 3:6], boxes[rows, 6], scores[rows], labels[rows]
        )
        return frame.to_global(log.translation[i], log.rotation[i])

    def evaluate(self, tracks: list[FrameTracks], out_dir: Path) -> dict[str, Any]:
        """DetectionEval of the merged detections (full_scene_v1; camera_front_v1 for a CAM_FRONT-only dataset),
        velocities from the tracker's tracks."""
        import torch

        from drivestack.perception.evaluate import default_protocol, evaluate_detections, load_protocol
        from drivestack.perception.infer import Detections

        width = max(d.scores.shape[1] for d in self.eval_dets)

        def pad(t: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, 0) * (t.dim() - 2) + (0, width - t.shape[1]))

        velocity = torch.zeros(len(self.eval_dets), width, 2)
        for k, (rows, f) in enumerate(zip(self.eval_rows, tracks)):  # each detection takes its track's velocity
            took = f.detection_index >= 0
            velocity[k, rows[f.detection_index[took]]] = torch.from_numpy(f.velocity[took]).float()
        dets = Detections(
            torch.cat([pad(d.boxes) for d in self.eval_dets]),
            torch.cat([pad(d.scores) for d in self.eval_dets]),
            torch.cat([pad(d.labels) for d in self.eval_dets]),
            self.eval_dets[0].classes,
            velocity,
        )
        protocol = load_protocol(default_protocol(self.cameras))  # full_scene_v1; camera_front_v1 for it alone
        metrics = evaluate_detections(
            self.nusc, self.eval_frames, dets, self.detector.attributes, out_dir, protocol, plots=False
        )
        return {k: metrics[k] for k in ("mAP", "NDS", "AP", "tp_errors", "classes", "gt_counts", "num_samples")} | {
            "protocol": protocol["name"],
            "cameras": list(self.cameras),
        }
