"""Detection pre-filter: rotated BEV IoU against hand-computed areas and shapely, greedy NMS within (environment,
class) against the textbook loop, the score threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import Polygon

from drivestack.tracking.prefilter import bev_iou, nms, prefilter


def _box(x: float, y: float, yaw: float = 0.0, w: float = 2.0, l: float = 4.0) -> list[float]:  # noqa: E741
    return [x, y, 0.0, yaw, w, l, 1.5]


def test_bev_iou_matches_hand_computed_areas() -> None:
    a = np.array([_box(0, 0), _box(0, 0), _box(0, 0), _box(0, 0, w=2, l=2), _box(1e10, 5.0), _box(0, 0)])
    b = np.array(
        [
            _box(0, 0),  # identical: 1
            _box(2.0, 0),  # half the length along the heading: 4 / (8 + 8 - 4)
            _box(0, 0, yaw=math.pi / 2),  # a 2x4 box and itself turned 90 deg: 2x2 overlap
            _box(0, 0, yaw=math.pi / 4, w=2, l=2),  # a square and itself turned 45 deg: a regular octagon
            _box(1e10 + 1.0, 5.0),  # far from the origin: still exact
            _box(10.0, 0),  # apart: 0
        ]
    )
    octagon = 8.0 * (math.sqrt(2.0) - 1.0)
    expected = [1.0, 4.0 / 12.0, 4.0 / 12.0, octagon / (8.0 - octagon), 6.0 / 10.0, 0.0]
    assert bev_iou(a, b) == pytest.approx(expected, abs=1e-9)
    assert bev_iou(b, a) == pytest.approx(expected, abs=1e-9)  # symmetric


def test_bev_iou_equals_a_sampled_estimate_on_random_boxes() -> None:
    rng = np.random.default_rng(0)
    p = 8
    a = np.column_stack(
        [rng.uniform(-1, 1, (p, 2)), np.zeros(p), rng.uniform(-np.pi, np.pi, p), rng.uniform(1, 3, (p, 2)), np.ones(p)]
    )
    b = np.column_stack(
        [rng.uniform(-1, 1, (p, 2)), np.zeros(p), rng.uniform(-np.pi, np.pi, p), rng.uniform(1, 3, (p, 2)), np.ones(p)]
    )
    pts = rng.uniform(-4, 4, (60_000, 2))

    def inside(box: np.ndarray) -> np.ndarray:
        d = pts - box[:2]
        c, s = math.cos(box[3]), math.sin(box[3])
        u, v = c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]
        return (np.abs(u) <= box[5] / 2) & (np.abs(v) <= box[4] / 2)

    sampled = [(inside(x) & inside(y)).sum() / (inside(x) | inside(y)).sum() for x, y in zip(a, b)]
    assert bev_iou(a, b) == pytest.approx(sampled, abs=0.015)


def test_nms_is_greedy_within_groups() -> None:
    box = np.array([_box(0, 0), _box(0.5, 0), _box(1.5, 0), _box(0.2, 0), _box(0.1, 0), _box(30, 0)])
    score = np.array([0.9, 0.8, 0.7, 0.95, 0.6, 0.1])
    group = np.array([0, 0, 0, 1, 2, 0])  # box 3 is another class (or environment), box 4 another again
    keep = nms(box, score, group, np.full(3, 0.5))
    # 0 beats 1 (IoU 0.78); 2 overlaps 1 (0.6) but 1 is gone, and 0 only by 0.45: kept (greedy, not "any
    # better box"); 3, 4 have no rival in their groups; 5 is far away
    assert keep.tolist() == [True, False, True, True, True, True]
    assert nms(box, score, group, np.full(3, 1.0)).all()  # threshold 1: nothing is suppressed
    assert nms(box[:0], score[:0], group[:0], np.zeros(3)).shape == (0,)


def _random_boxes(rng: np.random.Generator, n: int, spread: float) -> np.ndarray:
    box = np.zeros((n, 7))
    box[:, :2] = rng.uniform(-spread, spread, (n, 2))
    box[:, 3] = rng.uniform(-np.pi, np.pi, n)
    box[:, 4:7] = rng.uniform([1.5, 3.5, 1.4], [2.2, 5.5, 1.8], (n, 3))
    return box


@pytest.mark.parametrize("n,spread,ties", [(60, 3.0, False), (60, 8.0, True), (300, 30.0, False), (300, 10.0, True)])
def test_nms_equals_the_textbook_loop(n: int, spread: float, ties: bool) -> None:
    # clusters of rotated boxes of three groups (chains of overlaps, pairs without, boxes alone), some with equal
    # scores, against greedy NMS written as the loop the compiled one replaces (best score first, ties by index;
    # a box goes if a kept box of its group overlaps it)
    rng = np.random.default_rng(n + int(spread))
    box = _random_boxes(rng, n, spread)
    score = rng.choice([0.3, 0.5, 0.9], n) if ties else rng.uniform(0.1, 1.0, n)
    group = rng.integers(0, 3, n)
    iou = np.array([0.1, 0.3, 0.0])  # 0: any overlap suppresses
    keep = nms(box, score, group, iou)
    expected = np.ones(n, dtype=bool)
    order = np.argsort(-score, kind="stable")
    for rank, a in enumerate(order):
        later = order[rank + 1 :]
        later = later[expected[later] & (group[later] == group[a])]
        if expected[a] and len(later):
            over = bev_iou(np.repeat(box[a : a + 1], len(later), 0), box[later]) > iou[group[a]]
            expected[later[over]] = False
    assert np.array_equal(keep, expected)
    assert 0 < keep.sum() < n


def test_prefilter_is_the_score_threshold_then_nms() -> None:
    rng = np.random.default_rng(3)
    n = 80
    box, score, group = _random_boxes(rng, n, 6.0), rng.uniform(0.0, 1.0, n), rng.integers(0, 4, n)
    min_score, iou = np.array([0.2, 0.5, 0.0, 0.9]), np.array([0.1, 0.1, 0.2, 0.1])
    passed = np.flatnonzero(score >= min_score[group])
    kept = passed[nms(box[passed], score[passed], group[passed], iou)]
    np.testing.assert_array_equal(prefilter(box, score, group, min_score, iou), kept)
    np.testing.assert_array_equal(prefilter(box, score, group, min_score, None), passed)  # no NMS
    assert 0 < len(kept) < len(passed) < n


def _polygon(box: np.ndarray) -> Polygon:
    c, s = math.cos(box[3]), math.sin(box[3])
    corners = [(u * box[5] / 2, v * box[4] / 2) for u, v in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
    return Polygon([(box[0] + c * u - s * v, box[1] + s * u + c * v) for u, v in corners])


def test_bev_iou_equals_shapely_including_shared_edges_and_containment() -> None:
    rng = np.random.default_rng(5)
    a = _random_boxes(rng, 400, 2.0)
    b = _random_boxes(rng, 400, 2.0)
    b[:40] = a[:40]  # identical
    b[40:80, 3] = a[40:80, 3] + np.pi / 2 * rng.integers(1, 4, 40)  # the same box turned by 90, 180, 270 deg
    b[40:80, :3] = a[40:80, :3]
    b[80:120] = a[80:120]  # a shared edge: shifted by exactly its length along its heading
    b[80:120, 3] = 0.0
    a[80:120, 3] = 0.0
    b[80:120, 0] += a[80:120, 5]
    b[120:160] = a[120:160]  # contained: the same centre and heading, smaller
    b[120:160, 4:6] *= 0.5
    expected = [p.intersection(q).area / p.union(q).area for p, q in zip(map(_polygon, a), map(_polygon, b))]
    np.testing.assert_allclose(bev_iou(a, b), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(bev_iou(b, a), expected, rtol=0, atol=1e-9)
    assert 0.0 < np.mean(expected) < 1.0 and np.count_nonzero(expected) > 200
