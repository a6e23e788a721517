"""Frames and geometry: numpy and torch agree, and both match pyquaternion and the nuscenes-devkit Box."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nuscenes.eval.common.utils import quaternion_yaw
from nuscenes.utils.data_classes import Box
from pyquaternion import Quaternion

from drivestack.common.geometry import (
    BOTTOM_CORNERS,
    BOX_EDGES,
    CORNER_SIGNS,
    apply_transform,
    bottom_corners,
    box_corners,
    make_transform,
    matrix_to_yaw,
    quaternion_to_matrix,
    quaternion_to_yaw,
    wrap_angle,
    yaw_to_quaternion,
)

FINITE = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
YAW = st.floats(-math.pi, math.pi, allow_nan=False, exclude_max=True)


def _random_boxes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-50.0, 50.0, (n, 3))
    size = rng.uniform(0.3, 12.0, (n, 3))
    yaw = rng.uniform(-math.pi, math.pi, (n, 1))
    return np.concatenate([centre, size, yaw], axis=1)


def _random_quaternions(n: int, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------------ angles


def test_wrap_angle_range_at_the_seam_and_far_out() -> None:
    a = np.array([math.pi, -math.pi, 0.0, 3 * math.pi, -3 * math.pi, 2 * math.pi, 1e6, -1e6, 0.5, -0.5])
    for wrapped in (wrap_angle(a), wrap_angle(torch.from_numpy(a)).numpy()):
        assert ((wrapped >= -math.pi) & (wrapped < math.pi)).all()
        assert wrapped[0] == -math.pi and wrapped[1] == -math.pi  # pi maps to -pi, -pi stays
        assert wrapped[2] == 0.0 and wrapped[8] == 0.5 and wrapped[9] == -0.5
        np.testing.assert_allclose(np.cos(wrapped), np.cos(a), atol=1e-9)
        np.testing.assert_allclose(np.sin(wrapped), np.sin(a), atol=1e-9)


def test_wrap_angle_just_below_minus_pi_stays_in_range() -> None:
    # (a + pi) is a tiny negative number whose remainder rounds up to 2 pi: must still land in [-pi, pi)
    a = np.nextafter(-math.pi, -4.0, dtype=np.float64)
    assert -math.pi <= float(wrap_angle(a)) < math.pi
    t = torch.tensor([-math.pi], dtype=torch.float32).nextafter(torch.tensor([-4.0]))
    w = wrap_angle(t)
    assert w.dtype == torch.float32 and bool((w >= -math.pi) & (w < math.pi))


@given(st.lists(FINITE, min_size=1, max_size=20))
def test_wrap_angle_numpy_and_torch_agree(values: list[float]) -> None:
    a = np.array(values)
    wrapped = wrap_angle(a)
    assert isinstance(wrapped, np.ndarray) and ((wrapped >= -math.pi) & (wrapped < math.pi)).all()
    np.testing.assert_array_equal(wrap_angle(torch.from_numpy(a)).numpy(), wrapped)
    np.testing.assert_allclose(np.exp(1j * wrapped), np.exp(1j * a), atol=1e-9)


def test_kinds_dtypes_and_shapes_follow_the_input() -> None:
    assert isinstance(wrap_angle(4.0), np.ndarray) and wrap_angle([1, 2]).dtype == np.float64
    assert wrap_angle(np.float32([4.0])).dtype == np.float32
    yaw = torch.zeros(2, 3, dtype=torch.float32)
    assert yaw_to_quaternion(yaw).shape == (2, 3, 4) and yaw_to_quaternion(yaw).dtype == torch.float32
    assert quaternion_to_matrix(yaw_to_quaternion(yaw)).shape == (2, 3, 3, 3)
    assert box_corners(torch.zeros(5, 2, 7)).shape == (5, 2, 8, 3)
    assert bottom_corners(np.zeros((5, 7))).shape == (5, 4, 3)
    assert yaw_to_quaternion(np.zeros(0)).shape == (0, 4) and quaternion_to_yaw(np.zeros((0, 4))).shape == (0,)


# ------------------------------------------------------------------------------------------------ quaternions


@settings(max_examples=200)
@given(YAW)
def test_yaw_quaternion_round_trip_and_pyquaternion(yaw: float) -> None:
    q = yaw_to_quaternion(np.array(yaw))
    ref = Quaternion(axis=[0.0, 0.0, 1.0], angle=yaw)
    np.testing.assert_allclose(q, ref.elements, atol=1e-12)
    assert float(quaternion_to_yaw(q)) == pytest.approx(yaw, abs=1e-12)
    assert float(quaternion_to_yaw(q)) == pytest.approx(ref.yaw_pitch_roll[0], abs=1e-12)
    assert float(matrix_to_yaw(quaternion_to_matrix(q))) == pytest.approx(yaw, abs=1e-12)
    qt = yaw_to_quaternion(torch.tensor(yaw, dtype=torch.float64))
    np.testing.assert_allclose(qt.numpy(), q, rtol=0, atol=1e-12)  # torch and numpy may round differently
    # torch's and numpy's atan2 may differ in the last bit
    assert float(quaternion_to_yaw(qt)) == pytest.approx(float(quaternion_to_yaw(q)), abs=1e-15)


def test_quaternion_to_matrix_matches_pyquaternion_for_random_quaternions() -> None:
    q = _random_quaternions(500)
    want = np.stack([Quaternion(qi).rotation_matrix for qi in q])
    np.testing.assert_allclose(quaternion_to_matrix(q), want, atol=1e-12)
    np.testing.assert_allclose(
        quaternion_to_matrix(torch.from_numpy(q)).numpy(), quaternion_to_matrix(q), rtol=0, atol=1e-12
    )
    # not normalised: the same rotation
    np.testing.assert_allclose(quaternion_to_matrix(3.0 * q), want, atol=1e-12)
    # the yaw of any rotation is the heading of the rotated x axis, as the devkit's quaternion_yaw has it
    # (pyquaternion's yaw_pitch_roll follows another convention: it agrees only for rotations about z)
    ref = np.array([quaternion_yaw(Quaternion(qi)) for qi in q])
    np.testing.assert_allclose(quaternion_to_yaw(q), ref, atol=1e-9)
    np.testing.assert_allclose(matrix_to_yaw(want), ref, atol=1e-9)
    np.testing.assert_allclose(quaternion_to_yaw(torch.from_numpy(q)).numpy(), quaternion_to_yaw(q), atol=1e-15)


@given(st.tuples(FINITE, FINITE, FINITE, FINITE).filter(lambda q: sum(x * x for x in q) > 1e-6))
def test_quaternion_to_matrix_is_a_rotation(q: tuple[float, float, float, float]) -> None:
    r = quaternion_to_matrix(np.array(q))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(r, Quaternion(np.array(q) / np.linalg.norm(q)).rotation_matrix, atol=1e-9)


def test_transforms_apply_rotation_then_translation() -> None:
    q, t = _random_quaternions(4, seed=1), np.random.default_rng(2).normal(size=(4, 3))
    pts = np.random.default_rng(3).normal(size=(4, 10, 3))
    tf = make_transform(quaternion_to_matrix(q), t)
    assert tf.shape == (4, 4, 4) and (tf[:, 3] == [0, 0, 0, 1]).all()
    want = np.stack([[Quaternion(qi).rotate(p) + ti for p in pi] for qi, ti, pi in zip(q, t, pts)])
    np.testing.assert_allclose(apply_transform(tf, pts), want, atol=1e-12)
    tf_t = make_transform(quaternion_to_matrix(torch.from_numpy(q)), torch.from_numpy(t))
    np.testing.assert_array_equal(tf_t.numpy(), tf)
    got_t = apply_transform(tf_t, torch.from_numpy(pts))
    np.testing.assert_allclose(got_t.numpy(), want, atol=1e-12)
    back = apply_transform(np.linalg.inv(tf), apply_transform(tf, pts))
    np.testing.assert_allclose(back, pts, atol=1e-12)


# ------------------------------------------------------------------------------------------------ boxes


def test_box_corners_match_the_devkit_box() -> None:
    boxes = _random_boxes(300)
    got = box_corners(boxes)
    for box, corners in zip(boxes, got):
        ref = Box(box[:3], box[3:6], Quaternion(axis=[0.0, 0.0, 1.0], angle=box[6]))
        np.testing.assert_allclose(corners, ref.corners().T, atol=1e-9)
        np.testing.assert_allclose(bottom_corners(box), ref.bottom_corners().T, atol=1e-9)
        np.testing.assert_allclose(ref.rotation_matrix, quaternion_to_matrix(yaw_to_quaternion(box[6])), atol=1e-12)
        assert ref.orientation.yaw_pitch_roll[0] == pytest.approx(box[6], abs=1e-12)
    torch_corners = box_corners(torch.from_numpy(boxes))
    np.testing.assert_array_equal(torch_corners.numpy(), got)
    f32 = box_corners(torch.from_numpy(boxes).float())
    assert f32.dtype == torch.float32
    np.testing.assert_allclose(f32.numpy(), got, atol=1e-4)


def test_box_edges_join_neighbouring_corners_from_low_to_high() -> None:
    assert len(BOX_EDGES) == 12 and len({frozenset(e) for e in BOX_EDGES}) == 12
    signs = np.array(CORNER_SIGNS)
    for i, j in BOX_EDGES:
        diff = signs[j] - signs[i]
        assert sorted(np.abs(diff).tolist()) == [0, 0, 2] and diff.sum() == 2  # one axis, low end -> high end
    assert (signs[list(BOTTOM_CORNERS), 2] == -1).all()
    corners = box_corners(np.array([1.0, 2.0, 3.0, 2.0, 4.0, 1.5, 0.0]))
    lengths = sorted(np.linalg.norm(corners[j] - corners[i]) for i, j in BOX_EDGES)
    np.testing.assert_allclose(lengths, [1.5] * 4 + [2.0] * 4 + [4.0] * 4)


def test_box_corners_of_an_axis_aligned_box_by_hand() -> None:
    # w = 2 across (y), l = 4 along (x), h = 1; yaw 90 deg turns the length onto y
    box = torch.tensor([10.0, 0.0, 0.5, 2.0, 4.0, 1.0, math.pi / 2], dtype=torch.float64)
    corners = box_corners(box)
    torch.testing.assert_close(corners[0], torch.tensor([9.0, 2.0, 1.0], dtype=torch.float64))  # front-left-top
    torch.testing.assert_close(corners[6], torch.tensor([11.0, -2.0, 0.0], dtype=torch.float64))  # rear-right-bottom
