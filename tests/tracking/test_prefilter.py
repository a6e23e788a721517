"""Detection pre-filter: rotated BEV IoU against hand-computed areas, greedy NMS within (environment, class)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivestack.tracking.prefilter import bev_iou, nms


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
    keep = nms(box, score, group, 3, np.full(6, 0.5))
    # 0 beats 1 (IoU 0.78); 2 overlaps 1 (0.6) but 1 is gone, and 0 only by 0.45: kept (greedy, not "any
    # better box"); 3, 4 have no rival in their groups; 5 is far away
    assert keep.tolist() == [True, False, True, True, True, True]
    assert nms(box, score, group, 3, np.full(6, 1.0)).all()  # threshold 1: nothing is suppressed
    assert nms(box[:0], score[:0], group[:0], 3, np.zeros(0)).shape == (0,)


@pytest.mark.parametrize("n,spread", [(60, 3.0), (60, 8.0), (300, 30.0)])  # 300 boxes: past the dense test
def test_nms_equals_the_textbook_loop(n: int, spread: float) -> None:
    # clusters of rotated boxes of two classes (chains of overlaps, pairs without, boxes alone), against greedy NMS
    # written as the loop it replaces (best score first; a box goes if a kept box of its class overlaps it)
    rng = np.random.default_rng(n + int(spread))
    box = np.zeros((n, 7))
    box[:, :2] = rng.uniform(-spread, spread, (n, 2))
    box[:, 3] = rng.uniform(-np.pi, np.pi, n)
    box[:, 4:7] = rng.uniform([1.5, 3.5, 1.4], [2.2, 5.5, 1.8], (n, 3))
    score, group = rng.uniform(0.1, 1.0, n), rng.integers(0, 2, n)
    iou = np.where(group == 0, 0.1, 0.3)
    keep = nms(box, score, group, 2, iou)
    expected = np.ones(n, dtype=bool)
    for a in np.argsort(-score, kind="stable"):
        if expected[a]:
            later = np.flatnonzero(expected & (group == group[a]) & (score < score[a]))
            if len(later):
                over = bev_iou(np.repeat(box[a : a + 1], len(later), 0), box[later]) > iou[later]
                expected[later[over]] = False
    assert np.array_equal(keep, expected)
    assert 0 < keep.sum() < n
