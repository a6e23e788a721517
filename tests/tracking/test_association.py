"""Cost matrices, gating and matching against brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from drivestack.tracking.association import (
    Matcher,
    center_distance,
    gate,
    gated_pairs,
    greedy_match,
    greedy_pairs,
    mahalanobis_distance,
    match,
    negative_log_likelihood,
)


def test_costs_equal_pairwise_loops() -> None:
    rng = np.random.default_rng(0)
    trk = rng.normal(1800.0, 30.0, (7, 2))  # global coordinates: the expansion must not lose precision
    det = rng.normal(1800.0, 30.0, (5, 2))
    var = rng.uniform(0.2, 9.0, (7, 2))
    noise = np.array([0.25, 0.36])
    for t in range(7):
        for d in range(5):
            diff = det[d] - trk[t]
            d2 = float(np.sum(diff**2 / var[t]))
            assert center_distance(trk, det)[t, d] == pytest.approx(np.hypot(*diff))
            assert mahalanobis_distance(trk, var, det)[t, d] == pytest.approx(d2, abs=1e-8)
            nll = d2 + np.log(var[t, 0] * var[t, 1] / (noise[0] * noise[1]))
            assert negative_log_likelihood(trk, var, det, noise)[t, d] == pytest.approx(nll, abs=1e-8)


def _best_by_brute_force(cost: np.ndarray, valid: np.ndarray, threshold: float) -> float:
    """Largest total margin (threshold - cost) over all partial one-to-one matchings of valid pairs."""
    t, d = cost.shape
    best = 0.0
    for k in range(1, min(t, d) + 1):
        for rows in itertools.combinations(range(t), k):
            for cols in itertools.permutations(range(d), k):
                if all(valid[r, c] for r, c in zip(rows, cols)):
                    best = max(best, sum(threshold - cost[r, c] for r, c in zip(rows, cols)))
    return best


def _sequential_greedy(cost: np.ndarray, valid: np.ndarray) -> set[tuple[int, int]]:
    taken_r, taken_c, out = set(), set(), set()
    for flat in np.argsort(np.where(valid, cost, np.inf), axis=None, kind="stable"):
        r, c = np.unravel_index(flat, cost.shape)
        if valid[r, c] and r not in taken_r and c not in taken_c:
            out.add((int(r), int(c)))
            taken_r.add(r)
            taken_c.add(c)
    return out


@pytest.mark.parametrize("seed", range(12))
def test_hungarian_is_optimal_and_greedy_is_greedy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t, d = rng.integers(1, 5, 2)
    cost = rng.uniform(0.0, 3.0, (t, d))
    labels_t, labels_d = rng.integers(0, 2, t), rng.integers(0, 2, d)
    valid = gate(cost, labels_t, labels_d, 2.0)
    rows, cols = match(cost, valid, 2.0, Matcher.HUNGARIAN)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    assert valid[rows, cols].all()  # never a pair of two classes or beyond the gate
    assert np.sum(2.0 - cost[rows, cols]) == pytest.approx(_best_by_brute_force(cost, valid, 2.0))
    g_rows, g_cols = greedy_match(cost, valid)
    assert set(zip(g_rows.tolist(), g_cols.tolist())) == _sequential_greedy(cost, valid)


def test_hungarian_leaves_a_detection_rather_than_force_a_poor_pair() -> None:
    # track 0 fits detection 0 well; pairing track 0-det 1 and track 1-det 0 would match more, but worse
    cost = np.array([[0.1, 1.9], [1.9, 5.0]])
    valid = gate(cost, np.zeros(2, int), np.zeros(2, int), 2.0)
    rows, cols = match(cost, valid, 2.0)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 0)]


def test_empty_and_one_to_one_cases() -> None:
    rows, cols = match(np.zeros((0, 3)), np.zeros((0, 3), bool), 1.0)
    assert len(rows) == len(cols) == 0
    cost = np.array([[0.5, 9.0, 9.0], [9.0, 9.0, 0.2]])
    rows, cols = match(cost, cost < 1.0, 1.0)  # every track has one candidate: the fast path
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 2)]


@pytest.mark.parametrize("far", [1e10, 1e20, 1e150, 1e200])
@pytest.mark.parametrize("where", ["track", "detection"])
def test_a_far_box_changes_no_other_pair(far: float, where: str) -> None:
    # a stray box far away (first row or column: the old expansion was taken relative to the first track) must
    # leave the costs of every other pair, and so their assignment, exactly as without it
    rng = np.random.default_rng(1)
    trk = rng.normal(1800.0, 30.0, (6, 2))
    det = trk[[2, 0, 5, 1]] + rng.normal(0.0, 0.3, (4, 2))
    var = rng.uniform(0.3, 4.0, (6, 2))
    noise = np.array([0.25, 0.25])
    far_xy, far_var = np.array([[far, far]]), np.array([[0.5, 0.5]])
    if where == "track":
        trk_f, var_f, det_f = np.vstack([far_xy, trk]), np.vstack([far_var, var]), det
        keep = (slice(1, None), slice(None))
    else:
        trk_f, var_f, det_f, keep = trk, var, np.vstack([far_xy, det]), (slice(None), slice(1, None))
    labels_t, labels_d = np.zeros(len(trk_f), int), np.zeros(len(det_f), int)
    for cost_fn in (
        lambda t, v, d: mahalanobis_distance(t, v, d),
        lambda t, v, d: negative_log_likelihood(t, v, d, noise, 5.0),
        lambda t, v, d: center_distance(t, d),
    ):
        clean = cost_fn(trk, var, det)
        with np.errstate(all="raise"):  # no overflow or invalid warning either
            cost = cost_fn(trk_f, var_f, det_f)
        np.testing.assert_array_equal(cost[keep], clean)
        far_cost = cost[0] if where == "track" else cost[:, 0]
        assert (far_cost > 1e6).all()  # the far box is never a candidate (inf where float64 overflows)
        for matcher in Matcher:
            valid = gate(cost, labels_t, labels_d, 13.8)
            rows, cols = match(cost, valid, 13.8, matcher)
            ref_rows, ref_cols = match(clean, gate(clean, labels_t[:6], labels_d[:4], 13.8), 13.8, matcher)
            shift_r, shift_c = (1, 0) if where == "track" else (0, 1)
            assert sorted(zip(rows.tolist(), cols.tolist())) == sorted(
                zip((ref_rows + shift_r).tolist(), (ref_cols + shift_c).tolist())
            )


@pytest.mark.parametrize("seed", range(8))
def test_greedy_pairs_is_the_sequential_greedy_with_ties_and_two_stages(seed: int) -> None:
    # a pair list with many equal costs (the tracker clamps every pair inside the class gate to one value) and a
    # second stage, against the textbook loop: sort by (stage, cost, row, column), take a pair unless its row or
    # column is taken
    rng = np.random.default_rng(seed)
    num_rows, num_cols = rng.integers(2, 30, 2)
    all_pairs = np.array(list(itertools.product(range(num_rows), range(num_cols))))
    pairs = all_pairs[rng.random(len(all_pairs)) < 0.3]
    if not len(pairs):
        pairs = all_pairs[:1]
    rows, cols = pairs[:, 0], pairs[:, 1]
    cost = rng.choice([0.5, 1.0, 1.0, 2.0], len(rows)) if seed % 2 else rng.uniform(0.0, 5.0, len(rows))
    stage = (rng.random(num_cols) < 0.4)[cols]  # a detection's pairs are all of its stage
    shuffle = rng.permutation(len(rows))
    for st, order in itertools.product((None, stage), (np.arange(len(rows)), shuffle[::-1], shuffle)):
        r, c = greedy_pairs(rows[order], cols[order], cost[order], None if st is None else st[order])  # order-free
        key = np.zeros(len(rows)) if st is None else st
        expected, used_r, used_c = set(), set(), set()
        for k in sorted(range(len(rows)), key=lambda k: (key[k], cost[k], rows[k], cols[k])):
            if rows[k] not in used_r and cols[k] not in used_c:
                expected.add((int(rows[k]), int(cols[k])))
                used_r.add(rows[k])
                used_c.add(cols[k])
        assert set(zip(r.tolist(), c.tolist())) == expected
        assert len(r) == len(expected)


def _gated_pairs_by_loop(key_t, xy_t, reach, key_d, xy_d, shape, sure, threshold) -> dict:
    """gated_pairs written as the textbook loop over every (track, detection), in Python floats."""
    out = {}
    for t, d in itertools.product(range(len(key_t)), range(len(key_d))):
        ex, ey = float(xy_d[d, 0] - xy_t[t, 0]), float(xy_d[d, 1] - xy_t[t, 1])
        dx, dy = min(abs(ex), 1e150), min(abs(ey), 1e150)
        if key_t[t] != key_d[d] or not dx * dx + dy * dy < reach[t] ** 2:
            continue
        dist = math.sqrt(dx * dx + dy * dy)
        if shape is None:
            out[t, d] = dist
            continue
        c, s, var_along, var_across, offset = shape[t]
        along, across = ex * c + ey * s, ey * c - ex * s
        cost = along * along / var_along + across * across / var_across + offset
        if dist < sure[t]:
            out[t, d] = min(cost, threshold * (1.0 - 1e-9))
        elif cost < threshold:
            out[t, d] = cost
    return out


@pytest.mark.parametrize("num_keys", [1, 3, 40])  # one group; one environment's classes; many environments
def test_gated_pairs_equals_the_loop_over_all_pairs(num_keys: int) -> None:
    # the compiled candidate search visits only each track's own group: the same pairs and, bit for bit, the same
    # costs as the loop over every pair, for centre distance and for rotated Gaussians (heading prior) alike
    rng = np.random.default_rng(num_keys)
    num_t, num_d = 60, 70
    key_t = rng.integers(0, num_keys, num_t)
    xy_t = rng.uniform(-20.0, 20.0, (num_t, 2)) + 1800.0
    near = rng.integers(0, num_t, num_d)  # most detections near a track of their own group
    key_d = np.where(rng.random(num_d) < 0.8, key_t[near], rng.integers(0, num_keys, num_d))
    xy_d = xy_t[near] + rng.normal(0.0, 2.0, (num_d, 2))
    xy_d[0] = [1e200, -1e200]  # a stray box: never near, no overflow
    xy_d[1] = xy_t[0]  # a detection exactly on a track
    reach = rng.uniform(1.0, 6.0, num_t)
    sure = rng.uniform(0.5, 3.0, num_t)
    yaw = rng.uniform(-np.pi, np.pi, num_t)
    var = rng.uniform(0.2, 9.0, (num_t, 2))
    isotropic = rng.random(num_t) < 0.5
    shape = np.column_stack([np.cos(yaw), np.sin(yaw), var, rng.uniform(0.0, 3.0, num_t)])
    shape[isotropic, :4] = np.column_stack([np.ones(num_t), np.zeros(num_t), var[:, 0], var[:, 0]])[isotropic]
    for pair_shape in (None, shape):
        rows, cols, cost = gated_pairs(key_t, xy_t, reach, key_d, xy_d, num_keys, pair_shape, sure, 4.0)
        expected = _gated_pairs_by_loop(key_t, xy_t, reach, key_d, xy_d, pair_shape, sure, 4.0)
        assert dict(zip(zip(rows.tolist(), cols.tolist()), cost.tolist())) == expected  # exact floats
        assert list(zip(rows, cols)) == sorted(zip(rows, cols))  # listed row by row, then by column
        assert len(rows) > 20
    empty = gated_pairs(key_t[:0], xy_t[:0], reach[:0], key_d, xy_d, num_keys, shape[:0], sure[:0], 4.0)
    assert all(len(x) == 0 for x in empty)
