"""MultiTracker: B environments stepped in one call equal B separate Trackers (ids, boxes, scores, resets,
per-environment clocks, rigid moves), and its one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from drivestack.tracking.data_classes import FrameDetections, FrameTracks
from drivestack.tracking.tracker import MultiTracker, OutputBox, Tracker, TrackerConfig

LABELS = np.array([2, 2, 2, 4, 6, 0])  # mostly cars, a pedestrian, a truck, a bicycle


def _stream(rng: np.random.Generator, num_frames: int, num_objects: int, t0: float, dt: float) -> list[FrameDetections]:
    """Objects at constant velocity with noise, drops, low-score clutter and near-duplicates (NMS), some close
    enough to compete for detections; timestamps t0 + k dt."""
    label = rng.choice(LABELS, num_objects)
    speed = np.where(label == 4, 1.4, 8.0)[:, None]
    xy = rng.uniform(-15, 15, (num_objects, 2))
    v = rng.normal(0, 1, (num_objects, 2)) * speed
    size = np.where((label == 4)[:, None], [0.7, 0.7, 1.8], [1.9, 4.6, 1.6])
    frames = []
    for k in range(num_frames):
        seen = rng.random(num_objects) > 0.15
        n_fp = rng.poisson(2)
        dup = np.flatnonzero(seen)[:1]  # a duplicate of the first seen box, slightly off and lower-scored
        centre = np.concatenate(
            [
                xy[seen] + v[seen] * dt * k + rng.normal(0, 0.2, (seen.sum(), 2)),
                xy[dup] + v[dup] * dt * k + 0.2,
                rng.uniform(-20, 20, (n_fp, 2)),
            ]
        )
        n = len(centre)
        lab = np.concatenate([label[seen], label[dup], rng.choice(LABELS, n_fp)])
        score = np.concatenate([rng.uniform(0.3, 1.0, seen.sum()), [0.2] * len(dup), rng.uniform(0.1, 0.3, n_fp)])
        siz = np.concatenate([size[seen], size[dup], np.tile([1.9, 4.6, 1.6], (n_fp, 1))])
        vel = np.full((n, 2), np.nan)
        given = np.zeros(n, dtype=bool)  # half the true boxes come with a velocity, the rest NaN (unknown)
        given[: seen.sum()] = rng.random(seen.sum()) < 0.5
        vel[given] = (v[seen] + rng.normal(0, 0.3, (seen.sum(), 2)))[given[: seen.sum()]]
        frames.append(
            FrameDetections.from_boxes(
                f"f{k}",
                t0 + dt * k,
                np.column_stack([centre, np.ones(n)]),
                siz,
                rng.uniform(-np.pi, np.pi, n),
                score,
                lab,
                vel,
            )
        )
    return frames


def _assert_same(a: FrameTracks, b: FrameTracks) -> None:
    assert a.token == b.token and a.timestamp == b.timestamp
    np.testing.assert_array_equal(a.track_id, b.track_id)
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_array_equal(a.detection_index, b.detection_index)
    for name in ("translation", "size", "yaw", "velocity", "score"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("config", [TrackerConfig(), TrackerConfig(matcher="hungarian", metric="center", min_hits=1)])
def test_multi_tracker_equals_separate_trackers(config: TrackerConfig) -> None:
    rng = np.random.default_rng(0)
    num_envs, num_frames = 5, 14
    rates = [0.5, 0.5, 0.25, 0.5, 0.1]  # per-environment frame rates and start times: each its own clock
    streams = [_stream(rng, num_frames, 4 + 2 * b, t0=3.0 * b, dt=rates[b]) for b in range(num_envs)]
    streams[1][5] = FrameDetections.empty("f5", streams[1][5].timestamp)  # an empty frame in one environment
    multi = MultiTracker(config, num_envs)
    single = [Tracker(config) for _ in range(num_envs)]
    moved = False
    for k in range(num_frames):
        if k == 6:  # new episodes in environments 0 and 3 (clocks restart, ids keep counting)
            multi.reset(np.array([True, False, False, True, False]))
            single[0].reset()
            single[3].reset()
            for b in (0, 3):
                for j in range(k, num_frames):
                    f = streams[b][j]
                    streams[b][j] = FrameDetections(f.token, f.timestamp - 100.0, f.box, f.velocity, f.score, f.label)
        if k == 9:  # environments 1 and 4 re-base their global frame: turn by 0.3 rad and shift
            rot, shift = np.array([0.3, -1.0]), np.array([[5.0, -2.0], [0.0, 100.0]])
            multi.transform(np.array([1, 4]), rot, shift)
            for b, r, t in zip((1, 4), rot, shift):
                table = single[b].table.copy()
                c, s = np.cos(r), np.sin(r)
                x, y = table[:, 0].copy(), table[:, 1].copy()
                table[:, 0], table[:, 1] = c * x - s * y + t[0], s * x + c * y + t[1]
                table[:, 3] += r
                vx, vy = table[:, 7].copy(), table[:, 8].copy()
                table[:, 7], table[:, 8] = c * vx - s * vy, s * vx + c * vy
                single[b].table = table
            moved = True
        out = multi.step([s[k] for s in streams])
        for b in range(num_envs):
            _assert_same(out[b], single[b].step(streams[b][k]))
    assert moved and sum(len(o) for o in out) > 10  # the test tracked something


def test_packed_step_and_predict() -> None:
    rng = np.random.default_rng(1)
    streams = [_stream(rng, 6, 5, t0=0.0, dt=0.5) for _ in range(3)]
    config = TrackerConfig(output_box=OutputBox.DETECTION)  # so that output boxes name their detections
    a, b = MultiTracker(config, num_envs=3), MultiTracker(config, num_envs=3)
    for k in range(6):
        frames = [s[k] for s in streams]
        # packed: the environments' boxes interleaved in any order, one env index per box
        det = FrameDetections(
            "x", 0.0, *(np.concatenate([getattr(f, n) for f in frames]) for n in ("box", "velocity", "score", "label"))
        )
        env = np.repeat(np.arange(3), [len(f) for f in frames])
        perm = rng.permutation(len(env))
        out_a = a.step(frames)
        out_b = b.step_packed(
            det.select(perm), env[perm], np.array([f.timestamp for f in frames]), [f.token for f in frames]
        )
        for e, (x, y, f) in enumerate(zip(out_a, out_b, frames)):
            assert len(x) == len(y) and y.token == f.token
            # the same boxes and scores (ids follow detection order, which the permutation changed)
            key = lambda t: np.lexsort((t.score, t.translation[:, 1], t.translation[:, 0]))  # noqa: E731
            np.testing.assert_allclose(x.translation[key(x)], y.translation[key(y)], atol=1e-9)
            np.testing.assert_allclose(x.score[key(x)], y.score[key(y)], atol=1e-12)
            # detection_index: the row among this environment's boxes in the packed order
            mine = det.select(perm).select(env[perm] == e)
            took = y.detection_index >= 0
            np.testing.assert_array_equal(y.translation[took], mine.translation[y.detection_index[took]])
    # predicting between frames: same boxes later as without the intermediate prediction
    c = MultiTracker(num_envs=3)
    d = MultiTracker(num_envs=3)
    for k in range(3):
        c.step([s[k] for s in streams])
        d.step([s[k] for s in streams])
    mid = c.predict(np.array([s[2].timestamp + 0.2 for s in streams]))
    assert all(np.all(m.detection_index == -1) for m in mid)
    late = [s[3] for s in streams]
    for x, y in zip(c.step(late), d.step(late)):
        np.testing.assert_array_equal(x.track_id, y.track_id)
        np.testing.assert_allclose(x.velocity, y.velocity, atol=1e-9)
    with pytest.raises(ValueError, match="env 0: predict time"):
        c.predict(np.zeros(3))


def test_multi_tracker_errors_are_one_line() -> None:
    m = MultiTracker(num_envs=2)
    f = FrameDetections.empty("a", 1.0)
    with pytest.raises(ValueError, match="one frame per environment"):
        m.step([f])
    m.step([f, FrameDetections.empty("b", 1.0)])
    with pytest.raises(ValueError, match=r"env 1, sample c: timestamp 0.500000 s is not after .*\(b, 1.000000 s\)"):
        m.step([FrameDetections.empty("a2", 2.0), FrameDetections.empty("c", 0.5)])
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        MultiTracker(num_envs=0)
    with pytest.raises(ValueError, match="tracker.classes.pos_std needs 7 values"):
        TrackerConfig(classes=TrackerConfig().classes.__class__(pos_std=(0.4,))).validate()
