"""One-line checks of user-given numbers (drivestack.common.checks)."""

from __future__ import annotations

import math

import pytest

from drivestack.common.checks import check_number, option_name, require


@pytest.mark.parametrize(
    ("value", "kwargs", "ok"),
    [
        (1.0, dict(low=0.0, low_open=True), True),
        (0.0, dict(low=0.0, low_open=True), False),
        (0.0, dict(low=0.0), True),
        (math.nan, dict(), False),
        (math.nan, dict(low=0.0), False),
        (math.inf, dict(low=0.0), False),
        (math.inf, dict(low=0.0, allow_inf=True), True),
        (-math.inf, dict(low=0.0, allow_inf=True), False),
        (3, dict(low=1, integer=True), True),
        (2.5, dict(low=1, integer=True), False),
        (True, dict(integer=True), False),
        ("3", dict(), False),
        (5.0, dict(high=5.0, high_open=True), False),
        (5.0, dict(high=5.0), True),
    ],
)
def test_check_number(value: object, kwargs: dict, ok: bool) -> None:
    if ok:
        check_number("seconds", value, **kwargs)
    else:
        with pytest.raises(ValueError, match=r"^--seconds=.*; allowed: ") as err:
            check_number("seconds", value, **kwargs)
        assert "\n" not in str(err.value)


def test_messages_name_the_option_and_the_range() -> None:
    with pytest.raises(ValueError, match=r"--num-envs=0; allowed: an integer >= 1"):
        check_number("num_envs", 0, low=1, integer=True)
    with pytest.raises(ValueError, match=r"invalid config: traffic.num_vehicles=0; allowed: >= 1"):
        require(False, "traffic.num_vehicles", ">= 1", 0, "config")
    assert option_name("throughput_seconds") == "--throughput-seconds" and option_name("a.b") == "a.b"
