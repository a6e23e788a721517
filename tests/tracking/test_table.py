"""The compiled per-row stages of the track table against the numpy code they replace: the Kalman update (against
`kalman.update` / `update_velocity`, themselves checked against the dense filter), births, the output rule."""

from __future__ import annotations

import numpy as np
import pytest

from drivestack.common.geometry import wrap_angle
from drivestack.tracking import kalman
from drivestack.tracking.table import (
    COV,
    DET,
    ENV,
    HITS,
    ID,
    LABEL,
    MEAN,
    MISSES,
    SCORE,
    WIDTH,
    birth_rows,
    kalman_state,
    output_rows,
    update_tracks,
)


def _table(rng: np.random.Generator, num_tracks: int, num_envs: int = 1) -> np.ndarray:
    """Tracks with random (valid) per-axis states, yaws anywhere, and their bookkeeping columns."""
    table = np.zeros((num_tracks, WIDTH))
    kf = kalman.initiate(rng.normal(0.0, 5.0, (num_tracks, 7)), rng.uniform(0.1, 1.0, 7), rng.uniform(1, 9, 4))
    kf.mean[:, 0, 3] = rng.uniform(-12.0, 12.0, num_tracks)  # unwrapped yaws, as prediction leaves them
    kf.mean[:, 1, :4] = rng.normal(0.0, 3.0, (num_tracks, 4))
    kf.cov[:, 1, :4] = rng.uniform(0.0, 0.5, (num_tracks, 4))  # P_pv
    table[:, MEAN] = kf.mean.reshape(num_tracks, -1)
    table[:, COV] = kf.cov.reshape(num_tracks, -1)
    table[:, ID] = np.arange(num_tracks)
    table[:, LABEL] = rng.integers(0, 7, num_tracks)
    table[:, HITS] = rng.integers(1, 6, num_tracks)
    table[:, MISSES] = rng.integers(0, 4, num_tracks)
    table[:, SCORE] = rng.uniform(0.1, 1.0, num_tracks)
    table[:, DET] = -1
    table[:, ENV] = rng.integers(0, num_envs, num_tracks)
    return table


@pytest.mark.parametrize("flip_yaw", [True, False])
def test_update_tracks_is_kalman_update_bit_for_bit(flip_yaw: bool) -> None:
    rng = np.random.default_rng(int(flip_yaw))
    table = _table(rng, 30)
    num_det = 25
    box = rng.normal(0.0, 5.0, (num_det, 7))
    box[:, 3] = rng.uniform(-np.pi, np.pi, num_det)
    velocity = rng.normal(0.0, 3.0, (num_det, 2))
    velocity[rng.random(num_det) < 0.5] = np.nan  # unknown: never a measurement
    label, score = rng.integers(0, 7, num_det), rng.uniform(0, 1, num_det)
    r = rng.uniform(0.05, 1.0, (7, 7))  # [C, 7]
    rows, cols = rng.permutation(30)[:20], rng.permutation(num_det)[:20]
    for r_v in (0.64, -1.0):  # with the detector's velocities, and without (use_detection_velocity off)
        got = table.copy()
        update_tracks(got, rows, cols, box, velocity, label, score, np.arange(num_det) + 100, r, r_v, flip_yaw)
        expected = kalman.update(kalman_state(table[rows]), box[cols], r[label[cols]], flip_yaw)
        has_v = ~np.isnan(velocity[cols, 0]) & (r_v >= 0)
        with_v = kalman.update_velocity(expected.select(has_v), velocity[cols][has_v], r_v)
        expected.mean[has_v], expected.cov[has_v] = with_v.mean, with_v.cov
        np.testing.assert_array_equal(got[rows, MEAN], expected.mean.reshape(20, -1))
        np.testing.assert_array_equal(got[rows, COV], expected.cov.reshape(20, -1))
        np.testing.assert_array_equal(got[rows, SCORE], score[cols])
        np.testing.assert_array_equal(got[rows, DET], cols + 100)
        np.testing.assert_array_equal(got[rows, HITS], table[rows, HITS] + 1)
        assert (got[rows, MISSES] == 0).all()
        untouched = np.setdiff1d(np.arange(30), rows)
        np.testing.assert_array_equal(got[untouched], table[untouched])


def test_births_count_ids_per_environment_and_take_the_detector_velocity() -> None:
    rng = np.random.default_rng(2)
    newborn = rng.normal(0.0, 1.0, (7, WIDTH))
    num_det = 12
    box, label = rng.normal(0.0, 5.0, (num_det, 7)), rng.integers(0, 7, num_det)
    env = np.array([2, 0, 2, 1, 0, 2, 2, 1, 0, 0, 2, 1])
    velocity = rng.normal(0.0, 3.0, (num_det, 2))
    velocity[::3] = np.nan
    score = rng.uniform(0, 1, num_det)
    new = np.array([0, 2, 3, 4, 6, 9, 10])
    next_id = np.array([5, 0, 40])
    rows = birth_rows(newborn, new, box, velocity, label, score, env, np.arange(num_det) + 50, next_id, 0.64)
    assert rows[:, ID].tolist() == [40, 41, 0, 5, 42, 6, 43]  # per environment, in detection order
    assert next_id.tolist() == [7, 1, 44]
    np.testing.assert_array_equal(rows[:, :7], box[new])
    np.testing.assert_array_equal(rows[:, [SCORE, DET, ENV]], np.c_[score[new], new + 50, env[new]])
    has_v = ~np.isnan(velocity[new, 0])
    np.testing.assert_array_equal(rows[has_v, 7:9], velocity[new][has_v])
    np.testing.assert_array_equal(rows[has_v, 28:30], 0.64)  # P_vv of x and y
    untouched = np.r_[np.arange(7, 35), [LABEL, HITS, MISSES]]  # rest: the class's newborn row
    keep_prior = np.where(has_v[:, None], ~np.isin(untouched, [7, 8, 28, 29]), True)
    np.testing.assert_array_equal(
        np.where(keep_prior, rows[:, untouched], 0), np.where(keep_prior, newborn[label[new]][:, untouched], 0)
    )
    no_v = birth_rows(newborn, new, box, velocity, label, score, env, np.arange(num_det), np.zeros(3, np.int64), -1.0)
    np.testing.assert_array_equal(no_v[:, 7:35], newborn[label[new], 7:35])  # rates and covariance: the prior


@pytest.mark.parametrize("detection_box", [False, True])
def test_output_rows_is_the_output_rule_grouped_by_environment(detection_box: bool) -> None:
    rng = np.random.default_rng(3)
    num_envs, min_hits, stride = 3, 3.0, 8.0
    table = _table(rng, 40, num_envs)
    det_env = rng.integers(0, num_envs, 30)
    det_box = rng.normal(0.0, 5.0, (30, 7))
    took = rng.random(40) < 0.6
    table[took, DET] = rng.integers(0, 30, took.sum())
    table[took, MISSES] = 0
    score_factor, shown = rng.uniform(0.1, 1.0, 16), rng.random(16) < 0.6
    *fields, bounds = output_rows(
        table, min_hits, stride, score_factor, shown, det_box, det_env, num_envs, detection_box
    )
    track_id, translation, size, yaw, velocity, score, label, det = fields
    # the numpy it replaces: one lookup row per track, then the shown tracks, stably grouped by environment
    key = (table[:, MISSES] + np.where(table[:, HITS] >= min_hits, stride, 0.0)).astype(np.intp)
    order = np.flatnonzero(shown[key])
    order = order[np.argsort(table[order, ENV], kind="stable")]
    box = table[order, :7].copy()
    d = table[order, DET].astype(np.int64)
    if detection_box:
        box[d >= 0] = det_box[d[d >= 0]]
    local = np.array([np.sum(det_env[:j] == det_env[j]) for j in range(30)])  # row among its environment's boxes
    np.testing.assert_array_equal(track_id, table[order, ID])
    np.testing.assert_array_equal(translation, box[:, :3])
    np.testing.assert_array_equal(size, box[:, 4:7])
    np.testing.assert_array_equal(yaw, wrap_angle(box[:, 3]))  # bit for bit, unwrapped yaws included
    np.testing.assert_array_equal(velocity, table[order, 7:9])
    np.testing.assert_array_equal(score, table[order, SCORE] * score_factor[key[order]])
    np.testing.assert_array_equal(label, table[order, LABEL])
    np.testing.assert_array_equal(det, np.where(d >= 0, local[np.maximum(d, 0)], -1))
    np.testing.assert_array_equal(bounds, np.searchsorted(table[order, ENV], np.arange(num_envs + 1)))
    assert 0 < len(order) < 40 and (np.abs(table[:, 3]) > np.pi).any()
