"""3D multi-object tracking (Kalman filter, association, track lifecycle) and nuScenes tracking eval.

    from drivestack.tracking import Tracker, TrackerConfig, FrameDetections
    tracker = Tracker(TrackerConfig())
    tracks = tracker.step(FrameDetections.from_boxes(token, t, centres, sizes, yaws, scores, labels))

    multi = MultiTracker(TrackerConfig(), num_envs=B)  # B environments in one call, one FrameTracks each
    outs = multi.step(frames)

Modules: `kalman` (batched constant-velocity filter, stored per axis), `association` (gated cost matrices and
pair lists, Hungarian / greedy), `prefilter` (score threshold, rotated BEV IoU, per-class NMS), `params` (the
per-class parameter table and where each value comes from), `tracker` (stages, lifecycle, output scores;
`Tracker` and the batched `MultiTracker`), `table` (the track table's layout and its per-row stages: update,
births, output), `baseline` (naive nearest-neighbour tracker), `data_classes` (frames as arrays), `nuscenes_io`
(frames <-> submission dicts), `oracle` (corrupted ground-truth detections), `evaluate` (nuscenes-devkit
TrackingEval); datasets and submission files: `drivestack.common`. Imports numpy, scipy and numba (the per-box
and per-pair stages are compiled loops); nuscenes-devkit only in the data and eval modules.
"""

from drivestack.tracking.data_classes import TRACKING_NAMES, FrameDetections, FrameTracks
from drivestack.tracking.params import ClassParams
from drivestack.tracking.tracker import MultiTracker, Tracker, TrackerConfig, track_scene

__all__ = [
    "TRACKING_NAMES",
    "ClassParams",
    "FrameDetections",
    "FrameTracks",
    "MultiTracker",
    "Tracker",
    "TrackerConfig",
    "track_scene",
]
