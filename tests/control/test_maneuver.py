"""Quintic lane-change reference: boundary values, derivatives, monotonicity, finite differences."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drivestack.control import lane_change_length, lane_change_offset, quintic


def test_quintic_boundary_values_and_peak_slope() -> None:
    q, dq, d2q = quintic(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert q.tolist() == [0.0, 1.0]
    assert dq.tolist() == [0.0, 0.0]
    assert d2q.tolist() == [0.0, 0.0]
    u = torch.linspace(0.0, 1.0, 10_001, dtype=torch.float64)
    q, dq, d2q = quintic(u)
    assert dq.max().item() == pytest.approx(1.875)
    assert u[dq.argmax()].item() == pytest.approx(0.5)
    assert d2q.max().item() == pytest.approx(10.0 / math.sqrt(3.0), rel=1e-6)  # at u = (3 - sqrt 3) / 6
    assert bool((q.diff() >= 0).all())
    torch.testing.assert_close(
        quintic(torch.tensor(0.5, dtype=torch.float64))[0], torch.tensor(0.5, dtype=torch.float64)
    )


def test_quintic_holds_its_end_values_outside_the_unit_interval() -> None:
    q, dq, d2q = quintic(torch.tensor([-2.0, -1e-3, 1.0 + 1e-3, 7.0]))
    assert q.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert dq.abs().max().item() == 0.0 and d2q.abs().max().item() == 0.0


def test_quintic_derivatives_match_finite_differences() -> None:
    u = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    h = 1e-6
    q, dq, d2q = quintic(u)
    torch.testing.assert_close(dq, (quintic(u + h)[0] - quintic(u - h)[0]) / (2 * h), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(d2q, (quintic(u + h)[1] - quintic(u - h)[1]) / (2 * h), rtol=1e-6, atol=1e-6)


def test_lane_change_offset_start_end_and_monotone() -> None:
    s = torch.linspace(-20.0, 120.0, 1401, dtype=torch.float64)
    offset, slope, second = lane_change_offset(s, 10.0, 90.0, -3.5)
    assert bool((offset[s <= 10.0] == -3.5).all())
    assert bool((offset[s >= 100.0] == 0.0).all())
    assert bool((offset.diff() >= 0).all())  # from -3.5 m up to the target lane centre, never beyond
    assert bool((slope >= 0).all())
    assert slope.max().item() == pytest.approx(1.875 * 3.5 / 90.0, rel=1e-4)
    assert bool((slope[(s <= 10.0) | (s >= 100.0)] == 0).all())
    assert bool((second[(s <= 10.0) | (s >= 100.0)] == 0).all())
    mid = lane_change_offset(torch.tensor(55.0, dtype=torch.float64), 10.0, 90.0, -3.5)[0]
    assert mid.item() == pytest.approx(-1.75)


@settings(max_examples=100, deadline=None)
@given(start_s=st.floats(-100.0, 100.0), length=st.floats(5.0, 200.0), start_offset=st.floats(-8.0, 8.0))
def test_lane_change_derivatives_match_finite_differences(start_s: float, length: float, start_offset: float) -> None:
    s = start_s + length * torch.linspace(0.02, 0.98, 25, dtype=torch.float64)
    h = 1e-4 * length

    def f(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return lane_change_offset(x, start_s, length, start_offset)

    _, slope, second = f(s)
    scale = abs(start_offset) / length + 1e-12
    torch.testing.assert_close(slope, (f(s + h)[0] - f(s - h)[0]) / (2 * h), rtol=0, atol=1e-6 * scale)
    torch.testing.assert_close(second, (f(s + h)[1] - f(s - h)[1]) / (2 * h), rtol=0, atol=1e-6 * scale)


def test_lane_change_offset_batches_and_broadcasts() -> None:
    s = torch.tensor([[0.0, 45.0, 90.0], [0.0, 10.0, 20.0]], dtype=torch.float64)
    length = torch.tensor([[90.0], [20.0]], dtype=torch.float64)
    start = torch.tensor([[4.0], [-4.0]], dtype=torch.float64)
    offset, _, _ = lane_change_offset(s, 0.0, length, start)
    torch.testing.assert_close(offset, torch.tensor([[4.0, 2.0, 0.0], [-4.0, -2.0, 0.0]], dtype=torch.float64))


def test_lane_change_length_has_a_floor() -> None:
    length = lane_change_length(torch.tensor([0.0, 5.0, 30.0]), 3.0, 20.0)
    assert length.tolist() == [20.0, 20.0, 90.0]


def test_zero_length_is_a_step_not_a_nan() -> None:
    offset, slope, second = lane_change_offset(torch.tensor([0.0, 1.0]), 0.0, 0.0, 2.0)
    assert bool(torch.isfinite(torch.stack([offset, slope, second])).all())
    assert offset[1].item() == 0.0


@pytest.mark.parametrize("bad", ["s", "start_s", "length", "start_offset"])
def test_nan_input_raises_naming_it(bad: str) -> None:
    args: dict[str, torch.Tensor | float] = dict(s=torch.tensor([1.0]), start_s=0.0, length=30.0, start_offset=4.0)
    args[bad] = torch.tensor([math.nan]) if bad == "s" else math.nan
    with pytest.raises(ValueError, match=rf"non-finite {bad}\b"):
        lane_change_offset(**args)
