"""The official nuScenes tracking metrics (nuscenes-devkit `TrackingEval`) on a tracking submission.

The protocol is a devkit config (default `tracking_nips_2019`: 2 m centre-distance matching, 40 recall
thresholds, class ranges 40-50 m). The devkit runs with every class of that config: it asserts that each
ground-truth annotation's class is in its config (`TrackingBox`) and looks each box's class up in
`class_range` (`filter_eval_boxes`), so a split whose trucks are all out of range or without points must
still name `truck`. The classes scored and reported are those with ground truth after the devkit's own
filtering (range, boxes without lidar or radar points, bike racks): the devkit gives a class without ground
truth NaN in every metric and leaves it out of its means (nanmean / nansum); `evaluate_submission` drops those
classes from the per-class metrics and recomputes the means over the scored classes, so the headline never
depends on a class with nothing to score. The restricted config (scored classes only) is written into the
result so that every number says which protocol made it. The devkit scores exactly the scenes of the split as
`drivestack.common.nuscenes` resolves it (a splits.json `val` wins over the devkit's own list; `devkit_split`).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from nuscenes import NuScenes
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.tracking.data_classes import TrackingConfig
from nuscenes.eval.tracking.evaluate import TrackingEval
from nuscenes.eval.tracking.utils import category_to_tracking_name

from drivestack.common.artifacts import write_json
from drivestack.common.nuscenes import devkit_split, sample_ego_pose, scene_samples
from drivestack.common.submission import write_submission

# the devkit's rule for the all-class figure of a metric: these are summed over classes, the others averaged
SUMMED_METRICS = ("mt", "ml", "tp", "fp", "fn", "ids", "frag")

# the headline metrics, in the order the devkit prints them
SUMMARY_METRICS = (
    "amota",
    "amotp",
    "recall",
    "motar",
    "gt",
    "mota",
    "motp",
    "mt",
    "ml",
    "faf",
    "tp",
    "fp",
    "fn",
    "ids",
    "frag",
    "tid",
    "lgd",
)


def classes_with_ground_truth(nusc: NuScenes, scenes: list[dict[str, Any]], base: TrackingConfig) -> list[str]:
    """Tracking classes with at least one ground-truth box that survives the devkit's filters in `scenes`."""
    present = set()
    for scene in scenes:
        for sample in scene_samples(nusc, scene):
            ego = sample_ego_pose(nusc, sample)
            for token in sample["anns"]:
                ann = nusc.get("sample_annotation", token)
                name = category_to_tracking_name(ann["category_name"])
                if name is None or name not in base.class_range or name in present:
                    continue
                dist = np.hypot(
                    ann["translation"][0] - ego["translation"][0], ann["translation"][1] - ego["translation"][1]
                )
                if dist < base.class_range[name] and ann["num_lidar_pts"] + ann["num_radar_pts"] > 0:
                    present.add(name)
    return sorted(present)


def tracking_config(name: str) -> TrackingConfig:
    """The devkit's tracking config `name` (e.g. tracking_nips_2019); ValueError listing the known ones."""
    import nuscenes.eval.tracking

    folder = Path(nuscenes.eval.tracking.__file__).parent / "configs"  # where config_factory looks
    known = sorted(p.stem for p in folder.glob("tracking_*.json"))
    if name not in known:
        raise ValueError(f"unknown tracking eval config {name!r}; nuscenes-devkit has {', '.join(known)}")
    return config_factory(name)


def restricted_config(classes: list[str], base_name: str = "tracking_nips_2019") -> TrackingConfig:
    """The devkit config `base_name` restricted to `classes` (its other settings unchanged).

    Note: building a `TrackingConfig` sets the devkit's global class list (`TRACKING_NAMES`) to `classes`;
    `evaluate_submission` does not run the devkit on a restricted config (see the module docstring).
    """
    return TrackingConfig.deserialize(_restricted(tracking_config(base_name).serialize(), classes, base_name))


def _restricted(base: dict[str, Any], classes: list[str], base_name: str) -> dict[str, Any]:
    unknown = sorted(set(classes) - set(base["tracking_names"]))
    if unknown or not classes:
        raise ValueError(f"classes {unknown or classes} are not tracking classes of {base_name}")
    base = dict(base)
    for key in ("pretty_tracking_names", "tracking_colors", "class_range"):
        base[key] = {k: v for k, v in base[key].items() if k in classes}
    base["tracking_names"] = [n for n in base["tracking_names"] if n in classes]
    return base


def scored_metrics(summary: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """A devkit summary restricted to `classes`: per-class metrics of those classes only, and every all-class
    metric recomputed over them by the devkit's rule (`SUMMED_METRICS` summed, the others averaged; NaN
    ignored, as `TrackingMetrics.compute_metric` does)."""
    out = dict(summary)
    out["label_metrics"] = {m: {c: per[c] for c in classes} for m, per in summary["label_metrics"].items()}
    for metric, per in out["label_metrics"].items():
        values = np.array([np.nan if v is None else v for v in per.values()], dtype=float)
        if not len(values) or np.all(np.isnan(values)):
            out[metric] = float("nan")
        else:
            out[metric] = float(np.nansum(values) if metric in SUMMED_METRICS else np.nanmean(values))
    return out


def evaluate_submission(
    submission: dict[str, Any],
    nusc: NuScenes,
    split: str,
    scenes: list[dict[str, Any]],
    out_dir: Path,
    base_config: str = "tracking_nips_2019",
) -> dict[str, Any]:
    """Score a tracking submission with the devkit on `split`; writes the devkit's metrics_summary.json and
    metrics_details.json under `out_dir` and returns the summary plus the config used ("eval_config")."""
    out_dir = Path(out_dir)
    base = tracking_config(base_config)  # every class: the devkit must know each annotated class (docstring)
    # the devkit rejects boxes of classes outside its config
    results = {
        token: [b for b in boxes if b["tracking_name"] in base.tracking_names]
        for token, boxes in submission["results"].items()
    }
    path = write_submission(
        out_dir / "submission_scored.json", {"meta": submission["meta"], "results": results}, "tracking"
    )
    log = io.StringIO()
    try:
        # the devkit prints tables and bars; devkit_split: it scores exactly our scenes of `split` (splits.json wins)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), devkit_split(nusc, split):
            evaluator = TrackingEval(base, str(path), split, str(out_dir), nusc.version, nusc.dataroot, verbose=False)
            # the classes with ground truth after the devkit's filters: exactly those its metrics are not NaN for
            present = {
                box.tracking_name for frames in evaluator.tracks_gt.values() for f in frames.values() for box in f
            }
            classes = [n for n in base.tracking_names if n in present]
            if not classes:
                raise ValueError(
                    f"split {split!r}: no ground-truth box of a tracking class within range; nothing to score"
                )
            summary = evaluator.main(render_curves=False)
    except AssertionError as err:  # the devkit reports bad input (e.g. a split of another version) by assert
        raise ValueError(f"nuscenes-devkit TrackingEval refused split {split!r} of {nusc.dataroot}: {err}") from err
    finally:
        path.unlink(missing_ok=True)  # the submission itself is written next to the metrics by the caller
    summary = scored_metrics(summary, classes)
    summary["eval_config"] = _restricted(base.serialize(), classes, base_config)
    summary["eval_config_base"] = base_config
    summary["eval_split"] = split
    write_json(out_dir / "metrics_summary.json", summary)
    details = out_dir / "metrics_details.json"  # the devkit writes NaN (unreached recalls): rewritten as strict JSON
    write_json(details, {c: v for c, v in json.loads(details.read_text()).items() if c in classes})
    return summary


def load_details(out_dir: Path) -> dict[str, Any]:
    """The devkit's per-class metric curves (metrics_details.json) written by `evaluate_submission` (None where
    the devkit has NaN)."""
    return json.loads((Path(out_dir) / "metrics_details.json").read_text())


def summary_row(summary: dict[str, Any]) -> dict[str, float]:
    """The headline metrics of a devkit summary as plain floats (NaN where missing)."""
    return {k: float(summary.get(k, float("nan"))) for k in SUMMARY_METRICS}
