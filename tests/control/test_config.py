"""Controller configuration: names, ranges and the messages that name the offending field."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError, replace

import pytest

from drivestack.control import (
    ControllerConfig,
    LaneKeepingGains,
    LateralController,
    LQRWeights,
    PIDGains,
    PurePursuitGains,
    StanleyGains,
)


def test_defaults_validate() -> None:
    config = ControllerConfig()
    config.validate()
    assert isinstance(config.lateral, LateralController)


def test_controller_names_are_accepted_as_strings() -> None:
    for controller in LateralController:
        assert ControllerConfig(lateral=controller.value).lateral is controller  # type: ignore[arg-type]


def test_unknown_controller_name_raises_listing_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"control\.lateral='mpc'.*cascade, pure_pursuit, stanley, lqr"):
        ControllerConfig(lateral="mpc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"control\.lateral"):
        replace(ControllerConfig(), lateral="LQR")  # names are the lower-case values


@pytest.mark.parametrize(
    ("group", "field", "value"),
    [
        ("stanley", "gain", -1.0),
        ("stanley", "softening", 0.0),
        ("stanley", "heading_gain", math.nan),
        ("pure_pursuit", "lookahead_time", 0.0),
        ("pure_pursuit", "min_lookahead", -2.0),
        ("pure_pursuit", "max_lookahead", 1.0),  # below min_lookahead
        ("lqr", "lateral", 0.0),
        ("lqr", "input", -0.1),
        ("lqr", "heading", -1.0),
        ("lqr", "speed_step", 0.0),
        ("lqr", "max_speed", 0.5),  # below min_speed
        ("speed", "kp", 0.0),
        ("speed", "ki", -0.1),
        ("speed", "kd", -0.1),
        ("speed", "integral_limit", 0.0),
        ("cascade", "lateral", -1.0),
        ("cascade", "max_heading", 2.0),
    ],
)
def test_invalid_gain_raises_naming_the_field(group: str, field: str, value: float) -> None:
    base = ControllerConfig()
    config = replace(base, **{group: replace(getattr(base, group), **{field: value})})
    with pytest.raises(ValueError, match=rf"invalid control config: control\.{group}\.{field}=.*allowed"):
        config.validate()


@pytest.mark.parametrize("field", ["max_jerk", "lane_change_duration", "min_lane_change_length"])
def test_invalid_top_level_field_raises_naming_it(field: str) -> None:
    with pytest.raises(ValueError, match=rf"control\.{field}=-1\.0; allowed: > 0"):
        replace(ControllerConfig(), **{field: -1.0}).validate()


def test_groups_validate_on_their_own_with_their_name() -> None:
    with pytest.raises(ValueError, match=r"invalid control config: stanley\.gain=-1\.0; allowed: > 0"):
        StanleyGains(gain=-1.0).validate()
    for group in (LaneKeepingGains(), PurePursuitGains(), StanleyGains(), LQRWeights(), PIDGains()):
        group.validate()


def test_configs_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        ControllerConfig().max_jerk = 1.0  # type: ignore[misc]
