"""Per-class tracker parameters: one table, one column per tracked class, each value with where it comes from.

Classes in `TRACKING_NAMES` order: bicycle, bus, car, motorcycle, pedestrian, trailer, truck. A pedestrian
and a bus differ by an order of magnitude in speed, size and how well a lidar detector places them, so one
gate or one noise level for all of them is wrong for most of them (CenterPoint, Poly-MOT and SimpleTrack all
key their thresholds by class).

Sources (docs/tracking.md has the full table and the commands):
- measured: `measure_class_statistics` on the real scene `../shared/data/nuscenes-scene-0523` (ground truth
  and the CenterPoint lidar detections shipped with it); where a class has too few instances there (bicycle 2,
  bus 1, motorcycle 1 parked) the value is the nearest measured class's or the literature's, said per field;
- CenterPoint (Yin et al. 2021, `tools/nusc_tracking/pub_tracker.py`): per-class centre-distance gates
  after motion compensation (`NUSCENE_CLS_VELOCITY_ERROR`);
- Poly-MOT (Li et al. 2023, `config/nusc_config.yaml`): per-class detection score filter for CenterPoint
  (`SF_thre`) and BEV NMS at IoU 0.08;
- SimpleTrack (Pang et al. 2022): NMS on detections at BEV IoU 0.1, low-score detections only extend tracks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from drivestack.tracking.data_classes import TRACKING_NAMES

NUM_CLASSES = len(TRACKING_NAMES)  # 7


@dataclass(frozen=True)
class ClassParams:
    """Per-class tracker parameters: each field is one value per class, in TRACKING_NAMES order (bicycle, bus,
    car, motorcycle, pedestrian, trailer, truck)."""

    min_score: tuple[float, ...] = (0.1, 0.0, 0.1, 0.1, 0.1, 0.0, 0.0)
    """Detections scoring below this are dropped before anything else ([0, 1]). Below Poly-MOT's SF_thre
    (0.14, 0, 0.16, 0.16, 0.16, 0.1, 0) because the second association stage uses what lies between the two."""
    birth_score: tuple[float, ...] = (0.14, 0.0, 0.16, 0.16, 0.16, 0.1, 0.0)
    """Detections scoring at least this are associated first and may start tracks; those between min_score and
    this only extend existing tracks (second stage). Poly-MOT's per-class SF_thre for CenterPoint."""
    nms_iou: tuple[float, ...] = (0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)
    """Per-class BEV NMS of the detections: a box overlapping a better-scored one of its class by more than this
    IoU is dropped (SimpleTrack 0.1, Poly-MOT 0.08; 1: no NMS)."""
    max_distance: tuple[float, ...] = (3.0, 5.5, 4.0, 3.0, 1.0, 3.0, 4.0)
    """[m] centre-distance gate after prediction for a track whose velocity is known: CenterPoint's
    NUSCENE_CLS_VELOCITY_ERROR (bicycle 3, bus 5.5, car 4, pedestrian 1, trailer 3, truck 4), except motorcycle,
    13 there, 3 here as bicycle's: with no detector velocity a 13 m gate links the clutter of a class with 35
    detections per ground-truth box (scene-0523). The gate of a track grows by `gate_sigmas` predicted
    position std (TrackerConfig), so a newborn whose velocity is unknown still reaches a fast object."""
    pos_std: tuple[float, ...] = (0.4, 0.45, 0.4, 0.5, 0.4, 0.55, 0.45)
    """[m] measurement noise of a detected centre (x, y). Measured: rms centre error of CenterPoint boxes matched
    to ground truth on scene-0523: car 0.37, pedestrian 0.42, trailer 0.55, truck 0.44, bicycle 0.37 (13
    boxes), bus 0.20 (10 boxes; truck's used), motorcycle 0.60 (16 boxes; rounded to 0.5)."""
    accel_std: tuple[float, ...] = (1.0, 1.5, 1.0, 2.0, 0.5, 1.0, 1.0)
    """[m/s^2] process noise, white acceleration of the centre. Measured rms ground-truth acceleration (2 Hz
    finite differences) on scene-0523: car 0.88, truck 0.75, bus 1.5, pedestrian 0.28, trailer 0.27 (parked:
    a moving trailer accelerates with its truck, so truck's); pedestrian raised to 0.5 (walkers stop and turn);
    bicycle as car, motorcycle twice car (no moving instance in the scene)."""
    init_speed_std: tuple[float, ...] = (4.0, 12.0, 15.0, 12.0, 1.5, 12.0, 12.0)
    """[m/s] prior std of a new track's velocity per axis when the detector gives none: half the class's top
    speed, so that the 2-sigma gate of a track's second frame reaches it: car 30 m/s (a highway; the simulator's
    highway scenes need it), bus, truck, trailer and motorcycle 24 m/s, bicycle 8 m/s, pedestrian 3 m/s.
    Measured rms ground speed per axis on scene-0523, for scale: car 3.1, truck 2.9, bus 6.4, pedestrian 1.4,
    bicycle 1.8 (2 instances). With car 10 (urban 20 m/s) the synthetic highway val oracle AMOTA fell to 0.88."""

    def validate(self) -> ClassParams:
        """Raise ValueError naming the first bad field."""
        for f in fields(self):
            values = getattr(self, f.name)
            if len(values) != NUM_CLASSES:
                raise ValueError(
                    f"tracker.classes.{f.name} needs {NUM_CLASSES} values (one per class: "
                    f"{', '.join(TRACKING_NAMES)}), got {len(values)}"
                )
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"tracker.classes.{f.name} must be finite, got {values}")
        for name in ("min_score", "birth_score", "nms_iou"):
            if not all(0.0 <= v <= 1.0 for v in getattr(self, name)):
                raise ValueError(f"tracker.classes.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("max_distance", "pos_std", "init_speed_std"):
            if not all(v > 0 for v in getattr(self, name)):
                raise ValueError(f"tracker.classes.{name} must be > 0, got {getattr(self, name)}")
        if not all(v >= 0 for v in self.accel_std):
            raise ValueError(f"tracker.classes.accel_std must be >= 0, got {self.accel_std}")
        return self

    def array(self, name: str) -> np.ndarray:
        """The field `name` as a float array [NUM_CLASSES] (index it with labels)."""
        return np.asarray(getattr(self, name), dtype=np.float64)

    def uniform(self, **values: float | None) -> ClassParams:
        """This table with the given fields set to one value for every class (None: unchanged)."""
        new: dict[str, Any] = {k: (v,) * NUM_CLASSES for k, v in values.items() if v is not None}
        return ClassParams(**{f.name: new.get(f.name, getattr(self, f.name)) for f in fields(self)})


def measure_class_statistics(dataroot: str, split: str, detections: str | None = None) -> dict[str, dict[str, Any]]:
    """The figures behind the table, per class: ground-truth speed and acceleration rms per axis [m/s, m/s^2]
    (2 Hz finite differences of annotated centres) and, with a detection submission, the rms centre error [m]
    of detections within 2 m of a ground-truth box of their class.

    python -c "from drivestack.tracking.params import measure_class_statistics as m; import json; print(json.dumps(
        m('../shared/data/nuscenes-scene-0523', 'val',
          '../shared/data/nuscenes-scene-0523/detections/centerpoint-lidar.json'), indent=1))"
    """
    from pathlib import Path

    from drivestack.common.nuscenes import open_nuscenes, split_scenes
    from drivestack.tracking.nuscenes_io import read_detection_submission
    from drivestack.tracking.oracle import ground_truth_frames

    nusc = open_nuscenes(Path(dataroot))
    scenes = split_scenes(nusc, split)
    gts = [ground_truth_frames(nusc, s) for s in scenes]
    dets = read_detection_submission(Path(detections), nusc, scenes) if detections else None
    out: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(TRACKING_NAMES):
        vel, acc, err, num_instances = [], [], [], 0
        for k, gt in enumerate(gts):
            ids = np.concatenate([f.track_id[f.label == c] for f in gt]) if gt else np.zeros(0, np.int64)
            for i in np.unique(ids):  # not a hot path: a one-off measurement
                rows = [(f.timestamp, *f.translation[f.track_id == i, :2][0]) for f in gt if (f.track_id == i).any()]
                a = np.array(rows)
                num_instances += 1
                if len(a) >= 3:
                    v = np.diff(a[:, 1:], axis=0) / np.diff(a[:, 0])[:, None]
                    vel.append(v)
                    acc.append(np.diff(v, axis=0) / np.diff(a[1:, 0])[:, None])
            if dets is not None:
                for f, g in zip(dets[k].frames, gt):
                    d, t = f.translation[f.label == c, :2], g.translation[g.label == c, :2]
                    if len(d) and len(t):
                        dist = np.linalg.norm(d[:, None] - t[None], axis=2)  # [D, G]
                        j = dist.argmin(axis=1)
                        near = dist[np.arange(len(d)), j] < 2.0
                        err.append(d[near] - t[j[near]])
        v, a_ = (np.concatenate(x) if x else np.zeros((0, 2)) for x in (vel, acc))
        e = np.concatenate(err) if err else np.zeros((0, 2))
        out[name] = {
            "instances": num_instances,
            "speed_rms_per_axis": float(np.sqrt((v**2).mean())) if len(v) else None,
            "accel_rms_per_axis": float(np.sqrt((a_**2).mean())) if len(a_) else None,
            "detections_matched": len(e),
            "centre_error_rms_per_axis": float(np.sqrt((e**2).mean())) if len(e) else None,
        }
    return out
