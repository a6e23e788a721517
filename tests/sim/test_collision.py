"""Oriented-box overlap (against shapely polygons) and the ego's collision check in the road chart."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from drivestack.sim.collision import boxes_overlap, ego_collisions
from drivestack.sim.road import RoadNetwork

TIE_DISTANCE = 1e-4  # [m] closer than this (and not overlapping by area) counts as a float tie
TIE_AREA = 1e-6  # [m^2]


def _polygon(x: float, y: float, yaw: float, length: float, width: float) -> Polygon:
    c, s = math.cos(yaw), math.sin(yaw)
    corners = [(0.5 * length * i, 0.5 * width * j) for i, j in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
    return Polygon([(x + c * u - s * v, y + s * u + c * v) for u, v in corners])


def _overlap(a: tuple[float, ...], b: tuple[float, ...], dtype: torch.dtype = torch.float32) -> bool:
    args = [torch.tensor(v, dtype=dtype) for v in (*a, *b)]
    return bool(boxes_overlap(*args))


def _is_tie(pa: Polygon, pb: Polygon) -> bool:
    return pa.distance(pb) <= TIE_DISTANCE and pa.intersection(pb).area <= TIE_AREA


_dims = dict(length=st.floats(0.5, 8.0), width=st.floats(0.3, 3.0), yaw=st.floats(-math.pi, math.pi))


@st.composite
def _box_pairs(draw: st.DrawFn) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Two boxes (x, y, yaw, length, width): anywhere nearby, or pushed to within 1 cm of touching."""
    a = (
        draw(st.floats(-3.0, 3.0)),
        draw(st.floats(-3.0, 3.0)),
        draw(_dims["yaw"]),
        draw(_dims["length"]),
        draw(_dims["width"]),
    )
    yaw_b, lb, wb = draw(_dims["yaw"]), draw(_dims["length"]), draw(_dims["width"])
    bearing = draw(st.floats(-math.pi, math.pi))
    pa = _polygon(*a)

    def at(t: float) -> tuple[float, ...]:
        return (a[0] + t * math.cos(bearing), a[1] + t * math.sin(bearing), yaw_b, lb, wb)

    if draw(st.booleans()):
        return a, at(draw(st.floats(0.0, 10.0)))
    # bisect the centre distance at which the boxes just touch along the bearing
    lo, hi = 0.0, 20.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if pa.intersects(_polygon(*at(mid))) else (lo, mid)
    return a, at(hi + draw(st.floats(-0.01, 0.01)))


@settings(max_examples=400, deadline=None)
@given(pair=_box_pairs())
def test_boxes_overlap_matches_shapely(pair: tuple[tuple[float, ...], tuple[float, ...]]) -> None:
    a, b = pair
    pa, pb = _polygon(*a), _polygon(*b)
    assume(not _is_tie(pa, pb))
    expected = pa.intersects(pb)
    assert _overlap(a, b) == expected
    assert _overlap(b, a) == expected  # symmetric


def test_batched_random_pairs_match_shapely() -> None:
    rng = np.random.default_rng(0)
    M = 3000

    def boxes(spread: float) -> np.ndarray:  # (M, 5): x, y, yaw, length, width
        cols = [
            rng.uniform(-spread, spread, M),
            rng.uniform(-spread, spread, M),
            rng.uniform(-math.pi, math.pi, M),
            rng.uniform(0.5, 8, M),
            rng.uniform(0.3, 3, M),
        ]
        return np.stack(cols, 1)

    a, b = boxes(0.0), boxes(4.0)
    hit = boxes_overlap(*torch.tensor(a.T, dtype=torch.float32), *torch.tensor(b.T, dtype=torch.float32))
    assert hit.shape == (M,)
    polys = [(_polygon(*ra), _polygon(*rb)) for ra, rb in zip(a, b, strict=True)]
    checked = [(i, pa.intersects(pb)) for i, (pa, pb) in enumerate(polys) if not _is_tie(pa, pb)]
    assert len(checked) > 0.99 * M
    idx, expected = zip(*checked, strict=True)
    assert hit[list(idx)].tolist() == list(expected)
    assert 0.2 * M < sum(expected) < 0.8 * M  # a meaningful mix of both outcomes


def test_touching_counts_as_overlap() -> None:
    # axis-aligned 4 x 2 boxes: exactly representable, so these are exact ties, not float noise
    assert _overlap((0.0, 0.0, 0.0, 4.0, 2.0), (4.0, 0.0, 0.0, 4.0, 2.0))
    assert _overlap((0.0, 0.0, 0.0, 4.0, 2.0), (0.0, 2.0, 0.0, 4.0, 2.0))
    assert not _overlap((0.0, 0.0, 0.0, 4.0, 2.0), (4.0 + 1e-3, 0.0, 0.0, 4.0, 2.0))


def test_separating_axis_beyond_the_bounding_boxes() -> None:
    # two long thin parallel boxes at 45 degrees: their axis-aligned bounds overlap heavily, but the
    # perpendicular offset sqrt(2) m exceeds their width 1 m, so only the boxes' own normal separates them
    q = math.pi / 4
    assert not _overlap((0.0, 0.0, q, 10.0, 1.0), (1.0, -1.0, q, 10.0, 1.0))
    assert _overlap((0.0, 0.0, q, 10.0, 1.0), (0.6, -0.6, q, 10.0, 1.0))
    # a 2 m square and a diamond of the same size: the diamond's corner reaches sqrt(2) m
    gap = 1.0 + math.sqrt(2.0)
    assert _overlap((0.0, 0.0, 0.0, 2.0, 2.0), (gap - 0.01, 0.0, q, 2.0, 2.0), torch.float64)
    assert not _overlap((0.0, 0.0, 0.0, 2.0, 2.0), (gap + 0.01, 0.0, q, 2.0, 2.0), torch.float64)


def test_boxes_overlap_broadcasts_over_batch_shapes() -> None:
    gen = torch.Generator().manual_seed(1)
    B, N = 4, 6

    def rand(*shape: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=gen)

    xa, ya, yaw_a = rand(B, 1, lo=-3, hi=3), rand(B, 1, lo=-3, hi=3), rand(B, 1, lo=-3, hi=3)
    la, wa = rand(B, 1, lo=3, hi=6), rand(B, 1, lo=1, hi=2)
    xb, yb, yaw_b = rand(B, N, lo=-6, hi=6), rand(B, N, lo=-6, hi=6), rand(B, N, lo=-3, hi=3)
    lb, wb = torch.tensor(4.5), torch.tensor(1.8)  # scalars broadcast too
    hit = boxes_overlap(xa, ya, yaw_a, la, wa, xb, yb, yaw_b, lb, wb)
    assert hit.shape == (B, N) and hit.dtype == torch.bool
    for b in range(B):
        for n in range(N):
            one = boxes_overlap(
                xa[b, 0], ya[b, 0], yaw_a[b, 0], la[b, 0], wa[b, 0], xb[b, n], yb[b, n], yaw_b[b, n], lb, wb
            )
            assert one.shape == () and bool(one) == bool(hit[b, n])
    assert hit.any() and not hit.all()
    # (B, 1, N) against (B, N, 1): all pairs within each environment
    pair = boxes_overlap(
        xb[:, None, :],
        yb[:, None, :],
        yaw_b[:, None, :],
        lb,
        wb,
        xb[:, :, None],
        yb[:, :, None],
        yaw_b[:, :, None],
        lb,
        wb,
    )
    assert pair.shape == (B, N, N)
    assert torch.equal(pair, pair.transpose(1, 2))
    assert pair.diagonal(dim1=1, dim2=2).all()


# ------------------------------------------------------------------------------------ ego collisions
def test_ego_collides_with_an_overlapping_vehicle(highway_road: RoadNetwork, make_vehicles) -> None:
    veh = make_vehicles(s=[500.0, 503.0], d=[4.0, 4.0], length=4.5, width=1.8)
    assert ego_collisions(veh, highway_road).tolist() == [True]


@pytest.mark.parametrize(
    ("s1", "d1"),
    [
        (500.0 + 4.5 + 0.5, 4.0),  # 0.5 m ahead, bumper to bumper
        (500.0 - 4.5 - 0.5, 4.0),  # 0.5 m behind
        (501.0, 4.0 + 1.8 + 0.5),  # 0.5 m to the left
        (499.0, 4.0 - 1.8 - 0.5),  # 0.5 m to the right
    ],
)
def test_ego_clear_by_half_a_metre_does_not_collide(
    highway_road: RoadNetwork, make_vehicles, s1: float, d1: float
) -> None:
    veh = make_vehicles(s=[500.0, s1], d=[4.0, d1], length=4.5, width=1.8)
    assert ego_collisions(veh, highway_road).tolist() == [False]


def test_ego_collision_across_the_ring_seam(highway_road: RoadNetwork, make_vehicles) -> None:
    L = highway_road.length
    # ring distance 2 m < 4.5 m body length: overlapping although |s1 - s0| = 998 m
    veh = make_vehicles(s=[[L - 1.0, 1.0], [1.0, L - 1.0], [L - 1.0, 5.0]], length=4.5, width=1.8)
    assert ego_collisions(veh, highway_road).tolist() == [True, True, False]


def test_ego_collision_respects_headings(highway_road: RoadNetwork, make_vehicles) -> None:
    # a vehicle across the road, 3 m ahead: its 4.5 m body reaches into the ego's lane sideways
    veh = make_vehicles(
        s=[[500.0, 503.0], [500.0, 503.0]],
        d=[[4.0, 4.0 + 2.5], [4.0, 4.0 + 2.5]],
        psi=[[0.0, 0.0], [0.0, math.pi / 2]],
        length=4.5,
        width=1.8,
    )
    assert ego_collisions(veh, highway_road).tolist() == [False, True]


def test_inactive_vehicles_never_collide(highway_road: RoadNetwork, make_vehicles) -> None:
    veh = make_vehicles(
        s=[[500.0, 501.0, 499.0], [500.0, 501.0, 499.0]], active=[[True, False, False], [True, False, True]]
    )
    assert ego_collisions(veh, highway_road).tolist() == [False, True]


def test_ego_alone_never_collides(highway_road: RoadNetwork, make_vehicles) -> None:
    veh = make_vehicles(B=3, N=1, s=100.0)
    assert ego_collisions(veh, highway_road).tolist() == [False, False, False]


def test_ego_collisions_batched_equals_single_envs(curved_road: RoadNetwork, make_vehicles) -> None:
    gen = torch.Generator().manual_seed(2)
    B, N = 16, 8
    s = 200.0 + 12.0 * torch.rand(B, N, generator=gen)
    d = 4.0 * torch.randint(0, 3, (B, N), generator=gen) + 0.4 * torch.randn(B, N, generator=gen)
    psi = 0.1 * torch.randn(B, N, generator=gen)
    veh = make_vehicles(s=s, d=d, psi=psi, active=torch.rand(B, N, generator=gen) > 0.2)
    hit = ego_collisions(veh, curved_road)
    assert hit.shape == (B,)
    singles = [
        ego_collisions(make_vehicles(s=s[b], d=d[b], psi=psi[b], active=veh.active[b]), curved_road) for b in range(B)
    ]
    assert hit.tolist() == [bool(x) for x in torch.cat(singles)]
    assert hit.any() and not hit.all()


@pytest.mark.parametrize(("gap", "expected"), [(-0.3, True), (0.3, False)])
def test_ego_collision_on_a_curve(curved_road: RoadNetwork, make_vehicles, gap: float, expected: bool) -> None:
    # outer lane at the curvature peak (s = 200 m): the chart stretches the road by about 2 %
    veh = make_vehicles(s=[200.0, 200.0 + 4.5 + gap], d=[12.0, 12.0], length=4.5, width=1.8)
    x, y, _ = curved_road.to_global(veh.s, veh.d)
    true_gap = math.hypot(x[0, 1] - x[0, 0], y[0, 1] - y[0, 0]) - 4.5
    assert (true_gap < 0) == expected  # the chart agrees with the global geometry here
    assert ego_collisions(veh, curved_road).tolist() == [expected]
