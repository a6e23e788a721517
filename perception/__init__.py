"""Camera 3D detector, nuScenes-format datasets, training, inference and the detection benchmark.

Data flow: any nuScenes-format dataset (the real nuScenes or the simulator's) is read through nuscenes-devkit
(`dataset`), one camera keyframe at a time (CAM_FRONT by default; any of the six, each image a sample of its
own): the JPEG, its intrinsic, the camera-to-ego and ego-to-global transforms and the annotations as ego-frame
boxes. The detector (`model`, `infer`) maps a batch of uint8 images
plus their intrinsics and camera-to-ego transforms to 3D boxes in the ego frame (x, y, z, w, l, h, yaw), a
class and a score; `evaluate` writes them as a nuScenes submission and scores them with the devkit's
DetectionEval (mAP, NDS, TP errors) and a 2D COCO AP; `speed` times it. With several cameras, each sample's
images are detected as one batch and merged in its ego frame (`infer.detect_cameras` / `merge_frames`, a
class-aware BEV centre-distance NMS across cameras, `merge`) and scored over the full scene
(configs/full_scene_v1.json; CAM_FRONT alone keeps configs/camera_front_v1.json).

Design (why a CenterNet-style monocular head): one heat-map peak per object at the projection of its 3D
centre, with sub-cell offset, depth, size and allocentric yaw regressed at the peak (CenterNet / SMOKE). No
anchors, no 2D NMS, no second stage: one forward pass, a 3x3 max-pool and a top-k, cheap on a 2-core CPU and
batched on a GPU. Depth is regressed as log(depth * 500 px / focal), so a network trained on one camera runs on
another (the simulator's 800 x 450 and nuScenes' 1600 x 900 images both resize to the same 512 x 288 input),
and image scaling augmentation stays geometrically exact. The heads are also given each cell's viewing ray
(from the intrinsic), so they can read how far below the horizon an object stands. The network also predicts
the Laplace scale of its log-depth error (trained by likelihood); the score of a box is its heat-map peak times
the probability that its centre is within nuScenes' match distances under that scale. Velocities are not
estimated here (one frame shows no motion): `drivestack.pipeline.detection_velocity` takes them from the tracker.
Everything is built with weights=None.

Public API:
    Detector.from_checkpoint(path, device)(images, intrinsic, cam2ego) -> Detections  (perception.infer)
    detect_cameras(detector, images[B, C], intrinsic, cam2ego) -> Detections per sample (perception.infer)
    merge_detections, merge_frames (several cameras' detections -> one set per sample) (perception.infer)
    merge_cameras (the cross-camera NMS)                                               (perception.merge)
    load_frames(nusc, split, cameras, ego_frame), CameraFrame                          (perception.dataset)
    CAMERAS, resolve_cameras (the six channels; "all")                                 (perception.config)
    open_nuscenes (the one nuScenes reader, re-exported)                               (common.nuscenes)
    evaluate_detections, submission                                                     (perception.evaluate)
    run_train, TrainDetectorConfig                                                      (perception.train)

Modules import torch lazily from here: `import drivestack.perception` alone stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Detector": "drivestack.perception.infer",
    "Detections": "drivestack.perception.infer",
    "detect_frames": "drivestack.perception.infer",
    "detect_cameras": "drivestack.perception.infer",
    "merge_detections": "drivestack.perception.infer",
    "merge_frames": "drivestack.perception.infer",
    "merge_cameras": "drivestack.perception.merge",
    "CAMERAS": "drivestack.perception.config",
    "resolve_cameras": "drivestack.perception.config",
    "ModelConfig": "drivestack.perception.config",
    "CameraFrame": "drivestack.perception.dataset",
    "open_nuscenes": "drivestack.common.nuscenes",
    "load_frames": "drivestack.perception.dataset",
    "evaluate_detections": "drivestack.perception.evaluate",
    "TrainDetectorConfig": "drivestack.perception.train",
    "run_train": "drivestack.perception.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'perception' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
