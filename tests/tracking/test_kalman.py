"""The per-axis Kalman filter against hand computation and against the dense 11x11 filter."""

from __future__ import annotations

import numpy as np
import pytest

from drivestack.tracking import kalman

R = np.array([0.25, 0.25, 0.25, 0.09, 0.09, 0.09, 0.09])  # measurement variances x y z yaw w l h
RATE_VAR = np.array([4.0, 4.0, 4.0, 1.0])
ACCEL_PSD = np.array([1.0, 1.0, 1.0, 0.25, 0.0, 0.0, 0.0])
WALK_PSD = np.array([0.0, 0.0, 0.0, 0.0, 0.01, 0.01, 0.01])


def _one_track() -> kalman.KalmanState:
    return kalman.initiate(np.array([[1.0, 2.0, 0.5, 0.1, 2.0, 4.0, 1.5]]), R, RATE_VAR)


def test_predict_and_update_match_hand_computation() -> None:
    dt = 0.5
    kf = kalman.predict(_one_track(), dt, kalman.process_noise(dt, ACCEL_PSD, WALK_PSD))
    # x axis: P = [[0.25, 0], [0, 4]] -> F P F^T + Q with F = [[1, dt], [0, 1]], Q from q = 1
    p_pp = 0.25 + dt * dt * 4.0 + dt**3 / 3.0
    p_pv = dt * 4.0 + dt**2 / 2.0
    p_vv = 4.0 + dt
    assert kf.mean[0, 0, 0] == pytest.approx(1.0)  # the rate starts at 0: the centre stays put
    assert kf.cov[0, :, 0] == pytest.approx([p_pp, p_pv, p_vv])
    # size w: a random walk, no rate
    assert kf.cov[0, :, 4] == pytest.approx([0.09 + 0.01 * dt, 0.0, 0.0])

    z = np.array([[2.0, 2.0, 0.5, 0.1, 2.0, 4.0, 1.5]])  # x measured 1 m further
    up = kalman.update(kf, z, R)
    s = p_pp + 0.25
    k_p, k_v = p_pp / s, p_pv / s
    assert up.mean[0, 0, 0] == pytest.approx(1.0 + k_p * 1.0)
    assert up.mean[0, 1, 0] == pytest.approx(k_v * 1.0)  # the filter infers a velocity of k_v m/s
    assert up.cov[0, :, 0] == pytest.approx([p_pp * 0.25 / s, p_pv * 0.25 / s, p_vv - k_v * p_pv])
    assert up.mean[0, 0, 1] == pytest.approx(2.0) and up.mean[0, 1, 1] == pytest.approx(0.0)  # y: zero innovation


def test_constant_velocity_is_tracked() -> None:
    kf = kalman.initiate(np.zeros((1, 7)), R, RATE_VAR)
    for k in range(1, 30):
        dt = 0.5 if k % 3 else 0.1  # any time step
        kf = kalman.predict(kf, dt, kalman.process_noise(dt, ACCEL_PSD, WALK_PSD))
        t = sum(0.5 if j % 3 else 0.1 for j in range(1, k + 1))
        kf = kalman.update(kf, np.array([[3.0 * t, -1.0 * t, 0.0, 0.0, 0.0, 0.0, 0.0]]), R)
    assert kf.mean[0, 1, :2] == pytest.approx([3.0, -1.0], abs=1e-2)


def _dense(dt: float) -> tuple[np.ndarray, np.ndarray]:
    f = np.eye(11)
    for i in range(4):
        f[i, 7 + i] = dt
    q_blocks = kalman.process_noise(dt, ACCEL_PSD, WALK_PSD)
    q = np.zeros((11, 11))
    q[range(7), range(7)] = q_blocks[0]
    for i in range(4):
        q[i, 7 + i] = q[7 + i, i] = q_blocks[1, i]
        q[7 + i, 7 + i] = q_blocks[2, i]
    return f, q


def _random_state(rng: np.random.Generator, t: int) -> kalman.KalmanState:
    kf = kalman.initiate(rng.normal(0.0, 5.0, (t, 7)), R, RATE_VAR)
    kf.mean[:, 0, 3] = rng.uniform(-0.5, 0.5, t)  # small yaws: no wrap, so the dense filter is comparable
    kf.mean[:, 1, :4] = rng.normal(0.0, 2.0, (t, 4))
    dt = 0.5
    return kalman.update(
        kalman.predict(kf, dt, kalman.process_noise(dt, ACCEL_PSD, WALK_PSD)),
        kf.mean[:, 0] + rng.normal(0.0, 0.3, (t, 7)),
        R,
    )


def test_factored_filter_equals_dense_filter() -> None:
    rng = np.random.default_rng(0)
    kf = _random_state(rng, 6)
    dt = 0.37
    f, q = _dense(dt)
    x, p = kf.dense()
    pred = kalman.predict(kf, dt, kalman.process_noise(dt, ACCEL_PSD, WALK_PSD))
    x_pred, p_pred = pred.dense()
    assert x_pred == pytest.approx(x @ f.T)
    assert p_pred == pytest.approx(f @ p @ f.T + q)

    h = np.eye(7, 11)
    z = x_pred[:, :7] + rng.normal(0.0, 0.2, (6, 7))
    post = kalman.update(pred, z, R)
    x_post, p_post = post.dense()
    for i in range(6):  # the textbook update, one track at a time
        s = h @ p_pred[i] @ h.T + np.diag(R)
        k = p_pred[i] @ h.T @ np.linalg.inv(s)
        assert x_post[i] == pytest.approx(x_pred[i] + k @ (z[i] - h @ x_pred[i]))
        assert p_post[i] == pytest.approx((np.eye(11) - k @ h) @ p_pred[i])

    hv = np.zeros((2, 11))
    hv[0, 7] = hv[1, 8] = 1.0
    v = x_post[:, 7:9] + rng.normal(0.0, 0.5, (6, 2))
    x_vel, p_vel = kalman.update_velocity(post, v, 0.64).dense()
    for i in range(6):
        s = hv @ p_post[i] @ hv.T + 0.64 * np.eye(2)
        k = p_post[i] @ hv.T @ np.linalg.inv(s)
        assert x_vel[i] == pytest.approx(x_post[i] + k @ (v[i] - hv @ x_post[i]))
        assert p_vel[i] == pytest.approx((np.eye(11) - k @ hv) @ p_post[i])


def test_transition_map_equals_predict() -> None:
    kf = _random_state(np.random.default_rng(1), 5)
    q = kalman.process_noise(0.5, ACCEL_PSD, WALK_PSD)
    a, b = kalman.transition(0.5, q)
    flat = np.concatenate([kf.mean.reshape(5, -1), kf.cov.reshape(5, -1)], axis=1)
    pred = kalman.predict(kf, 0.5, q)
    assert flat @ a.T + b == pytest.approx(np.concatenate([pred.mean.reshape(5, -1), pred.cov.reshape(5, -1)], axis=1))


def test_yaw_innovation_wraps_and_flips() -> None:
    kf = kalman.initiate(np.array([[0.0, 0.0, 0.0, np.pi - 0.05, 2.0, 4.0, 1.5]]), R, RATE_VAR)
    z = np.array([[0.0, 0.0, 0.0, -np.pi + 0.05, 2.0, 4.0, 1.5]])
    assert kalman.innovation(kf, z)[0, 3] == pytest.approx(0.1)  # across the +-pi seam, not -2 pi + 0.1
    z[0, 3] = 0.1  # the same box seen backwards (about pi - 0.15 away)
    assert kalman.innovation(kf, z, flip_yaw=True)[0, 3] == pytest.approx(0.15)
    assert abs(kalman.innovation(kf, z, flip_yaw=False)[0, 3]) == pytest.approx(np.pi - 0.15)
