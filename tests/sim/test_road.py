"""Road network: lane layout, frames, projections, ring arithmetic and config validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from drivestack.sim.config import RoadConfig, Scenario, merge_config
from drivestack.sim.road import MARGIN, RoadNetwork, build_road

MERGE = merge_config().road
CURVATURE = 1.0 / 500.0  # [1/m] peak curvature of the curved_road fixture
RAMP_END = MERGE.ramp_start + MERGE.ramp_approach + MERGE.merge_length  # [m] 370
MERGE_ZONE_START = MERGE.ramp_start + MERGE.ramp_approach  # [m] 250


def _lanes_like(s: torch.Tensor, lane: int) -> torch.Tensor:
    return torch.full_like(s, lane, dtype=torch.long)


def _ring_samples(road: RoadNetwork, step: float = 0.5) -> torch.Tensor:
    """Arc lengths over the ring, offset from the grid so no sample sits on a table node."""
    return torch.arange(0.25, road.length, step)


def _away_from(s: torch.Tensor, *edges: float, margin: float = 1.0) -> torch.Tensor:
    """Samples farther than `margin` (one grid step: tables resolve edges to a cell) from every edge."""
    keep = torch.ones_like(s, dtype=torch.bool)
    for edge in edges:
        keep &= (s - edge).abs() > margin
    return s[keep]


# ------------------------------------------------------------------------------------ lane layout
def test_highway_lane_layout(highway_road: RoadNetwork) -> None:
    road = highway_road
    assert road.num_lanes == 4 and road.num_through_lanes == 4
    assert road.scenario == Scenario.HIGHWAY
    for i in range(4):
        # lane 0 is the rightmost, at the reference line; lane i sits i lane widths to its left
        assert torch.all(road.lane_offset[i] == i * 4.0)
    assert road.lane_exists.all()
    assert torch.isinf(road.lane_end).all()
    assert road.lane_rank.tolist() == [0, 1, 2, 3]
    assert road.left_allowed[:3].all() and not road.left_allowed[3].any()
    assert road.right_allowed[1:].all() and not road.right_allowed[0].any()


@pytest.mark.parametrize(("num_lanes", "width"), [(1, 4.0), (3, 3.5), (6, 5.0)])
def test_highway_lane_count_and_width_follow_config(num_lanes: int, width: float) -> None:
    road = build_road(RoadConfig(num_lanes=num_lanes, lane_width=width))
    assert road.num_lanes == num_lanes
    s = _ring_samples(road, 7.0)
    for i in range(num_lanes):
        off, hdg, _, exists = road.lane_frame(_lanes_like(s, i), s)
        torch.testing.assert_close(off, torch.full_like(s, i * width))
        assert exists.all() and torch.all(hdg == 0.0)


def test_merge_ramp_exists_only_on_its_section(merge_road: RoadNetwork) -> None:
    road = merge_road
    assert road.num_lanes == 3 and road.num_through_lanes == 2
    assert road.lane_end[0].item() == pytest.approx(RAMP_END)
    assert torch.isinf(road.lane_end[1:]).all()
    s = _away_from(_ring_samples(road), MERGE.ramp_start, RAMP_END)
    _, _, _, exists = road.lane_frame(_lanes_like(s, 0), s)
    expected = (s >= MERGE.ramp_start) & (s <= RAMP_END)
    assert torch.equal(exists, expected)
    # through lanes: rightmost at the reference line, then one lane width apart, everywhere
    for lane in (1, 2):
        off, _, _, exists = road.lane_frame(_lanes_like(s, lane), s)
        assert exists.all()
        torch.testing.assert_close(off, torch.full_like(s, (lane - 1) * MERGE.lane_width))


def test_merge_ramp_converges_next_to_the_right_through_lane(merge_road: RoadNetwork) -> None:
    s = torch.tensor([MERGE.ramp_start, MERGE_ZONE_START, MERGE_ZONE_START + 60.0, RAMP_END])
    off, _, _, _ = merge_road.lane_frame(_lanes_like(s, 0), s)
    w = MERGE.lane_width
    torch.testing.assert_close(off, torch.tensor([-w - MERGE.ramp_offset, -w, -w, -w]))
    # on the approach the ramp moves monotonically towards the highway
    s = torch.arange(MERGE.ramp_start, MERGE_ZONE_START, 1.0)
    off, _, _, _ = merge_road.lane_frame(_lanes_like(s, 0), s)
    assert torch.all(off[1:] >= off[:-1])


def test_merge_left_change_only_in_merge_zone(merge_road: RoadNetwork) -> None:
    s = _away_from(_ring_samples(merge_road), MERGE_ZONE_START, RAMP_END)
    allowed = merge_road.change_allowed(_lanes_like(s, 0), s, +1)
    in_zone = (s >= MERGE_ZONE_START) & (s <= RAMP_END)
    assert torch.equal(allowed, in_zone)
    assert in_zone.any()


def test_merge_never_changes_right_into_the_ramp(merge_road: RoadNetwork) -> None:
    s = _ring_samples(merge_road)
    assert not merge_road.change_allowed(_lanes_like(s, 1), s, -1).any()
    assert not merge_road.change_allowed(_lanes_like(s, 0), s, -1).any()
    # between the through lanes both directions stay open
    assert merge_road.change_allowed(_lanes_like(s, 2), s, -1).all()
    assert merge_road.change_allowed(_lanes_like(s, 1), s, +1).all()
    assert not merge_road.change_allowed(_lanes_like(s, 2), s, +1).any()


# -------------------------------------------------------------------------------- frames and maps
def test_straight_road_to_global_is_identity(highway_road: RoadNetwork) -> None:
    gen = torch.Generator().manual_seed(0)
    s = torch.rand(500, generator=gen) * 1000.0
    d = torch.rand(500, generator=gen) * 20.0 - 4.0
    psi = torch.rand(500, generator=gen) * 2.0 - 1.0
    x, y, yaw = highway_road.to_global(s, d, psi)
    torch.testing.assert_close(x, s)
    torch.testing.assert_close(y, d)
    torch.testing.assert_close(yaw, psi)


def test_straight_road_to_global_continues_past_the_seam(highway_road: RoadNetwork) -> None:
    # unwrapped arc lengths inside the margin keep going straight: nothing jumps at the seam
    s = torch.tensor([-50.0, -0.5, 1000.5, 1200.0])
    x, y, _ = highway_road.to_global(s, torch.full_like(s, 2.0))
    torch.testing.assert_close(x, s)
    torch.testing.assert_close(y, torch.full_like(s, 2.0))


@settings(max_examples=150, deadline=None)
@given(s=st.floats(0.0, 999.99), d=st.floats(-4.0, 16.0), guess_error=st.floats(-10.0, 10.0))
def test_curved_project_inverts_to_global(curved_road: RoadNetwork, s: float, d: float, guess_error: float) -> None:
    s_t, d_t = torch.tensor([s]), torch.tensor([d])
    x, y, _ = curved_road.to_global(s_t, d_t)
    s_back, d_back = curved_road.project(x, y, s_t + guess_error)
    assert abs(s_back.item() - s) < 0.01
    assert abs(d_back.item() - d) < 0.01


def test_curved_road_actually_curves(curved_road: RoadNetwork) -> None:
    assert curved_road.ref_curvature.abs().max().item() == pytest.approx(CURVATURE, rel=1e-3)
    assert curved_road.ref_y.abs().max().item() > 10.0


def _menger_curvature(x: np.ndarray, y: np.ndarray, h: int) -> np.ndarray:
    """Signed curvature of the circle through points i - h, i, i + h (for i in [h, K - h))."""
    p0 = np.stack([x[: -2 * h], y[: -2 * h]], 1)
    p1 = np.stack([x[h:-h], y[h:-h]], 1)
    p2 = np.stack([x[2 * h :], y[2 * h :]], 1)
    a, b = p1 - p0, p2 - p1
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) * np.linalg.norm(p2 - p0, axis=1)
    return 2.0 * cross / norms


def test_reference_curvature_matches_global_polyline(curved_road: RoadNetwork) -> None:
    x = curved_road.ref_x.double().numpy()
    y = curved_road.ref_y.double().numpy()
    h = 10  # grid points: wide enough that float32 positions do not swamp the 2e-3 1/m curvature
    fd = _menger_curvature(x, y, h)
    table = curved_road.ref_curvature.double().numpy()[h:-h]
    np.testing.assert_allclose(fd, table, atol=2e-5)


def test_reference_heading_matches_global_polyline(curved_road: RoadNetwork) -> None:
    x = curved_road.ref_x.double().numpy()
    y = curved_road.ref_y.double().numpy()
    chord = np.arctan2(y[2:] - y[:-2], x[2:] - x[:-2])
    np.testing.assert_allclose(chord, curved_road.ref_heading.double().numpy()[1:-1], atol=1e-4)
    # consecutive table points are one grid step apart along the line (arc-length parametrisation)
    np.testing.assert_allclose(np.hypot(np.diff(x), np.diff(y)), curved_road.grid_step, rtol=1e-3)


def test_through_lane_headings_are_zero(curved_road: RoadNetwork, merge_road: RoadNetwork) -> None:
    assert torch.all(curved_road.lane_heading == 0.0)
    s = _ring_samples(merge_road)
    for lane in (1, 2):
        _, hdg, _, _ = merge_road.lane_frame(_lanes_like(s, lane), s)
        assert torch.all(hdg == 0.0)


def test_ramp_heading_converges_then_runs_parallel(merge_road: RoadNetwork) -> None:
    s = torch.arange(MERGE.ramp_start + 5.0, MERGE_ZONE_START - 5.0, 1.0)
    _, hdg, _, _ = merge_road.lane_frame(_lanes_like(s, 0), s)
    assert torch.all(hdg > 0.0)  # pointing left, towards the highway
    # peak slope of the quintic blend: 15/8 * offset / approach
    peak = math.atan(15 / 8 * MERGE.ramp_offset / MERGE.ramp_approach)
    assert hdg.max().item() == pytest.approx(peak, rel=0.02)
    s = torch.arange(MERGE_ZONE_START + 2.0, RAMP_END, 1.0)
    _, hdg, _, _ = merge_road.lane_frame(_lanes_like(s, 0), s)
    assert hdg.abs().max().item() < 1e-3


def test_lane_curvature_of_offset_lanes(curved_road: RoadNetwork) -> None:
    # a lane at constant offset d from a line of curvature k is a parallel curve: k / (1 - k d)
    s = torch.arange(10.5, 990.0, 7.0)
    _, _, _, kappa = curved_road.reference(s)
    for lane in range(4):
        off, _, lane_kappa, _ = curved_road.lane_frame(_lanes_like(s, lane), s)
        torch.testing.assert_close(lane_kappa, kappa / (1.0 - kappa * off), atol=2e-6, rtol=0.0)


def test_table_lookups_clamp_beyond_the_margin(highway_road: RoadNetwork) -> None:
    # queries past the tables' ends must clamp to the end values, not index past the table
    end = highway_road.length + MARGIN
    s = torch.tensor([end - 0.5, end, end + 50.0])
    x, _, _, _ = highway_road.reference(s)
    torch.testing.assert_close(x, torch.tensor([end - 0.5, end, end]))
    x, _, _, _ = highway_road.reference(torch.tensor([-MARGIN - 50.0]))
    torch.testing.assert_close(x, torch.tensor([-MARGIN]))


# ------------------------------------------------------------------------------------ ring maths
def test_delta_s_across_the_seam(highway_road: RoadNetwork) -> None:
    L = highway_road.length
    s_to = torch.tensor([1.0, L - 1.0, 10.0, 0.0, 600.0])
    s_from = torch.tensor([L - 1.0, 1.0, 10.0, 0.0, 50.0])
    expected = torch.tensor([2.0, -2.0, 0.0, 0.0, -450.0])
    torch.testing.assert_close(highway_road.delta_s(s_to, s_from), expected)


@settings(max_examples=100, deadline=None)
@given(s_to=st.floats(-1500.0, 2500.0), s_from=st.floats(-1500.0, 2500.0))
@example(s_to=2499.9999999999995, s_from=0.0)  # float64 just below a lap: once cut by a float32 clamp
def test_delta_s_is_the_shortest_ring_distance(highway_road: RoadNetwork, s_to: float, s_from: float) -> None:
    L = highway_road.length
    f64 = dict(dtype=torch.float64)
    delta = highway_road.delta_s(torch.tensor(s_to, **f64), torch.tensor(s_from, **f64))
    assert -0.5 * L <= delta.item() < 0.5 * L
    # delta is s_to - s_from up to a whole number of laps
    laps = (s_to - s_from - delta.item()) / L
    assert abs(laps - round(laps)) < 1e-9


def test_wrap_maps_onto_the_ring(highway_road: RoadNetwork) -> None:
    s = torch.tensor([-1.0, 0.0, 999.5, 1000.0, 2500.0])
    torch.testing.assert_close(highway_road.wrap(s), torch.tensor([999.0, 0.0, 999.5, 0.0, 500.0]))


# ---------------------------------------------------------------------------------- nearest lane
def test_nearest_lane_on_highway(highway_road: RoadNetwork) -> None:
    d = torch.tensor([0.0, 1.9, 2.1, 5.0, 12.0, 13.9, -1.9, -2.1, 14.1, 30.0])
    s = torch.full_like(d, 321.0)
    lane, on_road = highway_road.nearest_lane(s, d)
    assert lane.tolist() == [0, 0, 1, 1, 3, 3, 0, 0, 3, 3]
    assert on_road.tolist() == [True, True, True, True, True, True, True, False, False, False]


def test_nearest_lane_on_curved_highway(curved_road: RoadNetwork) -> None:
    s = torch.arange(0.5, 1000.0, 10.0)
    for lane in range(4):
        found, on_road = curved_road.nearest_lane(s, torch.full_like(s, 4.0 * lane + 0.7))
        assert torch.all(found == lane) and on_road.all()


def test_nearest_lane_skips_the_ramp_where_it_does_not_exist(merge_road: RoadNetwork) -> None:
    s = torch.tensor([300.0, 300.0, 500.0, 500.0, 150.0])
    d = torch.tensor([-4.0, -1.0, -4.0, -1.0, -4.0])
    lane, on_road = merge_road.nearest_lane(s, d)
    # at 150 m the ramp is still far right of the highway: the shoulder of lane 1 is off-road
    assert lane.tolist() == [0, 1, 1, 1, 1]
    assert on_road.tolist() == [True, True, False, True, False]


# ----------------------------------------------------------------------------------- centerlines
@pytest.mark.parametrize("step", [1.0, 2.0, 5.0])
@pytest.mark.parametrize("road_name", ["highway_road", "curved_road", "merge_road"])
def test_centerlines(request: pytest.FixtureRequest, road_name: str, step: float) -> None:
    road: RoadNetwork = request.getfixturevalue(road_name)
    lines = road.centerlines(step)
    assert len(lines) == road.num_lanes
    for lane, line in enumerate(lines):
        assert line.ndim == 2 and line.shape[1] == 2 and len(line) > 10
        spacing = np.hypot(*np.diff(line, axis=0).T)
        # through lanes at |d| <= 12 m on a 1/500 curve stretch or shrink the step by under 2.5 %
        np.testing.assert_allclose(spacing, step, rtol=0.05)
        # each polyline lies on its lane: its first point is the lane centre where the lane begins
        s0 = MERGE.ramp_start if (road.scenario == Scenario.MERGE and lane == 0) else 0.0
        off, _, _, _ = road.lane_frame(torch.tensor([lane]), torch.tensor([s0]))
        x, y, _ = road.to_global(torch.tensor([s0]), off)
        np.testing.assert_allclose(line[0], [x.item(), y.item()], atol=0.02)


def test_merge_ramp_centerline_covers_only_the_ramp(merge_road: RoadNetwork) -> None:
    ramp, through = merge_road.centerlines(1.0)[:2]
    assert len(ramp) == pytest.approx(RAMP_END - MERGE.ramp_start + 1, abs=1)
    assert len(through) == pytest.approx(merge_road.length + 1, abs=1)
    np.testing.assert_allclose(ramp[-1], [RAMP_END, -MERGE.lane_width], atol=1e-3)


# ------------------------------------------------------------------------------- config validation
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(num_lanes=0), "road.num_lanes"),
        (dict(length=-100.0), "road.length"),
        (dict(scenario="roundabout"), "road.scenario"),
        (dict(scenario=Scenario.MERGE, length=400.0, merge_length=300.0), "road.merge_length"),
        (dict(lane_width=0.0), "road.lane_width"),
        (dict(max_curvature=0.1), "road.max_curvature"),
    ],
)
def test_invalid_road_config_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        build_road(RoadConfig(**overrides))  # type: ignore[arg-type]


def test_scenario_given_as_a_known_string_builds_that_scenario() -> None:
    road = build_road(RoadConfig(scenario="merge", num_lanes=2, length=800.0))  # type: ignore[arg-type]
    assert road.num_lanes == 3 and road.scenario == Scenario.MERGE
