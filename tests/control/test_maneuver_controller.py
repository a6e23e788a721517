"""Maneuvers, lane-change path state and the maneuver controller: hand cases, batching, validation."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from drivestack.control import (
    Command,
    ControllerConfig,
    LaneChangePath,
    LateralController,
    LQRTable,
    Maneuver,
    ManeuverController,
    apply_maneuvers,
    finish_lane_change,
    lane_change_reference,
    pid_speed_control,
    reference_errors,
    start_lane_change,
    steer_command,
    throttle_brake,
)

DT = 0.1  # [s]
MAX_ACCEL, MAX_BRAKE = 4.0, 8.0  # [m/s^2]


def _apply(
    maneuver: Maneuver, lane: int, target: int, index: int, can_left: bool = True, can_right: bool = True
) -> tuple[int, int, bool]:
    """One vehicle, three speed set-points: (new target lane, new speed index, invalid)."""
    longs = (torch.tensor([v]) for v in (int(maneuver), lane, target, index))
    masks = (torch.tensor([v]) for v in (can_left, can_right))
    new_target, new_index, invalid = apply_maneuvers(*longs, *masks, 3)
    return int(new_target), int(new_index), bool(invalid)


def test_maneuver_order_is_highway_envs_and_meta_action_is_it() -> None:
    from drivestack.sim.action import MetaAction

    assert [m.name for m in Maneuver] == ["LANE_LEFT", "IDLE", "LANE_RIGHT", "FASTER", "SLOWER"]
    assert [int(m) for m in Maneuver] == [0, 1, 2, 3, 4]
    assert MetaAction is Maneuver


def test_lane_changes_by_hand() -> None:
    # Lanes count from the right: LANE_LEFT adds 1. The caller says whether a lane exists and is allowed.
    assert _apply(Maneuver.LANE_LEFT, 1, 1, 1) == (2, 1, False)
    assert _apply(Maneuver.LANE_RIGHT, 1, 1, 1) == (0, 1, False)
    assert _apply(Maneuver.LANE_LEFT, 2, 2, 1, can_left=False) == (2, 1, True)  # leftmost lane: no lane there
    assert _apply(Maneuver.LANE_RIGHT, 1, 1, 1, can_right=False) == (1, 1, True)  # change not allowed here
    # One change at a time: heading left already, a second LANE_LEFT is refused; turning back is fine.
    assert _apply(Maneuver.LANE_LEFT, 0, 1, 1) == (1, 1, True)
    assert _apply(Maneuver.LANE_RIGHT, 0, 1, 1) == (0, 1, False)
    assert _apply(Maneuver.LANE_RIGHT, 2, 1, 1) == (1, 1, True)


def test_speed_steps_by_hand() -> None:
    assert _apply(Maneuver.FASTER, 1, 1, 1) == (1, 2, False)
    assert _apply(Maneuver.FASTER, 1, 1, 2) == (1, 2, True)  # already at the top speed
    assert _apply(Maneuver.SLOWER, 1, 1, 1) == (1, 0, False)
    assert _apply(Maneuver.SLOWER, 1, 1, 0) == (1, 0, True)  # already at the bottom speed


@pytest.mark.parametrize("can", [True, False])
def test_idle_changes_nothing(can: bool) -> None:
    for lane, target, index in ((0, 0, 0), (1, 2, 1), (2, 1, 2)):
        assert _apply(Maneuver.IDLE, lane, target, index, can, can) == (target, index, False)


def test_apply_maneuvers_batches_over_any_shape() -> None:
    g = torch.Generator().manual_seed(0)
    shape = (4, 5)
    maneuver = torch.randint(0, 5, shape, generator=g)
    lane = torch.randint(0, 3, shape, generator=g)
    target = (lane + torch.randint(-1, 2, shape, generator=g)).clamp(0, 2)
    index = torch.randint(0, 3, shape, generator=g)
    can_left, can_right = torch.rand(shape, generator=g) > 0.3, torch.rand(shape, generator=g) > 0.3
    batched = apply_maneuvers(maneuver, lane, target, index, can_left, can_right, 3)
    for i in range(shape[0]):
        for j in range(shape[1]):
            args = (x[i, j : j + 1] for x in (maneuver, lane, target, index, can_left, can_right))
            single = apply_maneuvers(*args, 3)
            assert all(torch.equal(b[i, j : j + 1], s) for b, s in zip(batched, single))


def test_apply_maneuvers_rejects_unknown_maneuvers() -> None:
    one = torch.tensor([1])
    yes = torch.tensor([True])
    with pytest.raises(ValueError, match="maneuver out of range"):
        apply_maneuvers(torch.tensor([5]), one, one, one, yes, yes, 3)
    with pytest.raises(ValueError, match="num_speeds"):
        apply_maneuvers(one, one, one, one, yes, yes, 0)


def test_start_lane_change_by_hand() -> None:
    config = ControllerConfig(lane_change_duration=3.0, min_lane_change_length=20.0)
    path = LaneChangePath(
        start_s=torch.tensor([5.0, 5.0, 5.0]),
        start_offset=torch.tensor([0.0, 1.0, 0.0]),
        length=torch.tensor([30.0, 30.0, 30.0]),
    )
    changed = torch.tensor([True, False, True])
    s, offset, speed = torch.tensor([100.0, 100.0, 50.0]), torch.tensor([-4.0, -4.0, 4.0]), torch.tensor([30.0, 30, 2])
    new = start_lane_change(path, changed, s, offset, speed, config)
    assert new.start_s.tolist() == [100.0, 5.0, 50.0]
    assert new.start_offset.tolist() == [-4.0, 1.0, 4.0]
    assert new.length.tolist() == [90.0, 30.0, 20.0]  # 30 m/s * 3 s; the unchanged one; the 20 m floor


def test_reference_by_hand() -> None:
    path = LaneChangePath(torch.zeros(4), torch.full((4,), -4.0), torch.full((4,), 80.0))
    travelled = torch.tensor([-5.0, 0.0, 40.0, 80.0])
    centre = torch.full((4,), 3.5)
    offset, slope, second = lane_change_reference(path, travelled, centre)
    torch.testing.assert_close(offset, torch.tensor([3.5 - 4.0, 3.5 - 4.0, 3.5 - 2.0, 3.5]))
    torch.testing.assert_close(slope, torch.tensor([0.0, 0.0, 1.875 * 4.0 / 80.0, 0.0]))  # peak at mid-path
    torch.testing.assert_close(second, torch.tensor([0.0, 0.0, 0.0, 0.0]), atol=1e-9, rtol=0)  # inflection
    # Lateral error relative to the reference; the path's slope turns the reference heading.
    error, heading_error, curvature = reference_errors(
        torch.tensor(2.0), torch.tensor(0.1), offset[2], slope[2], second[2], torch.tensor(0.05), torch.tensor(0.01)
    )
    assert error.item() == pytest.approx(0.5)
    assert heading_error.item() == pytest.approx(0.1 - 0.05 - math.atan(0.09375))
    assert curvature.item() == pytest.approx(0.01)
    done = finish_lane_change(path, travelled)
    assert done.start_offset.tolist() == [-4.0, -4.0, -4.0, 0.0]


def _inputs(shape: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)

    return dict(
        speed=r(0.0, 35.0),
        target_speed=r(0.0, 35.0),
        integral=r(-0.5, 0.5),
        prev_accel=r(-3.0, 3.0),
        wheelbase=r(2.5, 3.5),
        lateral_error=r(-2.0, 2.0),
        heading_error=r(-0.2, 0.2),
        curvature=r(-0.01, 0.01),
        target_x=r(5.0, 30.0),
        target_y=r(-3.0, 3.0),
    )


def _call(controller: ManeuverController, x: dict[str, torch.Tensor], **kwargs) -> tuple[Command, torch.Tensor]:
    return controller(
        x["speed"],
        x["target_speed"],
        x["integral"],
        x["prev_accel"],
        x["wheelbase"],
        x["lateral_error"],
        x["heading_error"],
        x["curvature"],
        (x["target_x"], x["target_y"]),
        **kwargs,
    )


def _controller(law: LateralController) -> ManeuverController:
    config = ControllerConfig(lateral=law)
    lqr = LQRTable(config.lqr, DT, dtype=torch.float64) if law == LateralController.LQR else None
    return ManeuverController(config, DT, MAX_ACCEL, MAX_BRAKE, lqr=lqr)


@pytest.mark.parametrize("law", list(LateralController))
def test_controller_batched_equals_a_loop_over_single_elements(law: LateralController) -> None:
    controller = _controller(law)
    x = _inputs((3, 4))
    command, integral = _call(controller, x)
    assert command.steer.shape == command.accel.shape == integral.shape == (3, 4)
    assert bool(((command.throttle >= 0) & (command.throttle <= 1) & (command.brake >= 0) & (command.brake <= 1)).all())
    assert not bool(((command.throttle > 0) & (command.brake > 0)).any())
    for i in range(3):
        for j in range(4):
            single, single_integral = _call(controller, {k: v[i, j] for k, v in x.items()})
            for name in ("steer", "accel", "throttle", "brake"):
                torch.testing.assert_close(getattr(single, name), getattr(command, name)[i, j], rtol=1e-12, atol=0)
            torch.testing.assert_close(single_integral, integral[i, j], rtol=1e-12, atol=0)


def test_controller_speed_is_the_pid_and_pedals_split_it() -> None:
    controller = _controller(LateralController.CASCADE)
    x = _inputs((16,), seed=1)
    command, integral = _call(controller, x)
    gains = controller.config
    accel, expected_integral = pid_speed_control(
        x["speed"], x["target_speed"], 0.0, x["integral"], x["prev_accel"], DT, gains.speed, MAX_ACCEL, MAX_BRAKE,
        gains.max_jerk,
    )  # fmt: skip
    assert torch.equal(command.accel, accel) and torch.equal(integral, expected_integral)
    throttle, brake = throttle_brake(accel, MAX_ACCEL, MAX_BRAKE)
    assert torch.equal(command.throttle, throttle) and torch.equal(command.brake, brake)


def test_stanley_measures_the_front_axle_error_from_the_centre_of_gravity() -> None:
    x = _inputs((8,), seed=2)
    config = ControllerConfig(lateral=LateralController.STANLEY)
    default = steer_command(config, x["speed"], x["wheelbase"], x["lateral_error"], x["heading_error"], x["curvature"])
    explicit = steer_command(
        config, x["speed"], x["wheelbase"], x["lateral_error"], x["heading_error"], x["curvature"],
        rear_to_point=0.5 * x["wheelbase"],
    )  # fmt: skip
    torch.testing.assert_close(default, explicit, rtol=1e-15, atol=0)


def test_straight_on_the_reference_drives_straight() -> None:
    zero = torch.zeros(3, dtype=torch.float64)
    speed = torch.tensor([5.0, 15.0, 30.0], dtype=torch.float64)
    for law in LateralController:
        steer = _controller(law).steer(speed, 3.0, zero, zero, zero, (speed, zero))
        assert steer.abs().max().item() == 0.0, law


@pytest.mark.parametrize("law", list(LateralController))
@pytest.mark.parametrize("bad", ["speed", "target_speed", "integral", "prev_accel", "wheelbase", "law_input"])
def test_nan_inputs_raise_when_validating(law: LateralController, bad: str) -> None:
    controller = _controller(law)
    x = _inputs((4,), seed=3)
    if bad == "law_input":  # an input only the configured steering law reads
        bad = "target_y" if law == LateralController.PURE_PURSUIT else "heading_error"
    x[bad] = x[bad].clone()
    x[bad][2] = math.nan
    with pytest.raises(ValueError, match=rf"non-finite {bad}\b"):
        _call(controller, x)
    _call(controller, x, validate=False)  # the hot path skips the check (and the sync)


def test_missing_inputs_and_bad_limits_raise() -> None:
    x = _inputs((2,))
    with pytest.raises(ValueError, match="lookahead_point"):
        steer_command(ControllerConfig(lateral=LateralController.PURE_PURSUIT), x["speed"], 3.0)
    with pytest.raises(ValueError, match="lateral_error"):
        steer_command(ControllerConfig(lateral=LateralController.STANLEY), x["speed"], 3.0)
    with pytest.raises(ValueError, match="gain table"):
        steer_command(ControllerConfig(lateral=LateralController.LQR), x["speed"], 3.0, *(x["heading_error"],) * 3)
    with pytest.raises(ValueError, match="max_brake"):
        ManeuverController(ControllerConfig(), DT, MAX_ACCEL, -1.0)
    built = ManeuverController(replace(ControllerConfig(), lateral=LateralController.LQR), DT, MAX_ACCEL, MAX_BRAKE)
    assert built.lqr is not None and not built.uses_lookahead
    assert ManeuverController(ControllerConfig(lateral="pure_pursuit"), DT, MAX_ACCEL, MAX_BRAKE).uses_lookahead
