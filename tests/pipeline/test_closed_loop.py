"""The closed loop: oracle perception drives like ground truth, a seam car is one track, a detector runs in it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from drivestack.perception.checkpoint import save_checkpoint
from drivestack.perception.config import ModelConfig
from drivestack.perception.model import CenterNet3D
from drivestack.pipeline import perceived
from drivestack.pipeline.closed_loop import STAGES, LoopConfig, StageTimer, drive
from drivestack.planning.policy import make_policy
from drivestack.sim.batched_env import BatchedDrivingEnv
from drivestack.sim.camera import CameraConfig, camera_rig
from drivestack.sim.camera_render import vehicle_appearance
from drivestack.sim.config import env_config
from drivestack.tracking.data_classes import FrameDetections
from drivestack.tracking.tracker import MultiTracker, TrackerConfig

HIGHWAY = replace(env_config("drivestack/Highway-v0"), duration=4.0)
SMALL = dict(width=192, height=108, min_visible_pixels=1)  # cheap images; a far car still shows a pixel or two
# A tracker that trusts its measurements: its estimate is the measured box and velocity (to float rounding).
TRUSTING = TrackerConfig(pos_std=1e-4, z_std=1e-4, yaw_std=1e-4, size_std=1e-4, velocity_std=1e-4)


def test_noise_free_oracle_drives_like_ground_truth() -> None:
    """Same policy, seed and traffic: the oracle path takes the privileged path's decisions, step for step.

    With the default tracker the decisions can differ: its constant-velocity Kalman filter blends each measured
    velocity with its prediction, so a braking car's track lags by a few tenths of a m/s, and the rule policy's
    MOBIL gains are that close to their thresholds now and then. A tracker that trusts its measurements removes the
    lag; what is left is what the cameras see, and on these episodes every vehicle that matters to the rule (the
    leaders and followers in the ego's and the neighbouring lanes) is in view.
    """
    policy = make_policy("rule", HIGHWAY)
    runs = {}
    for path in ("privileged", "oracle"):
        decisions: list[torch.Tensor] = []
        cfg = LoopConfig(perception=path, **SMALL)
        result = drive(
            policy, HIGHWAY, cfg, episodes=2, num_envs=2, seed=0, progress=False, decisions=decisions, tracker=TRUSTING
        )
        runs[path] = (torch.stack(decisions), result)
    assert torch.equal(runs["oracle"][0], runs["privileged"][0])
    oracle = runs["oracle"][1]
    assert oracle.decision_agreement == 1.0
    assert oracle.episodes.count == 2 and oracle.perception["recall"] == 1.0 and oracle.perception["precision"] == 1.0
    assert oracle.perception["id_switches"] == 0
    ms = oracle.timing["ms_per_tick"]
    assert ms["render"] > 0 and ms["track"] > 0 and ms["sim"] > 0
    assert abs(sum(oracle.timing["share"][s] for s in STAGES) - 1.0) < 1e-9


def test_a_car_seen_by_two_cameras_is_one_track() -> None:
    env = BatchedDrivingEnv(HIGHWAY, num_envs=1, seed=0)
    env.reset()
    veh = env.state.vehicles
    # The ego on the rightmost lane's centre, one car 15 m ahead two lanes left: 28 deg off the axis, inside the
    # overlap of CAM_FRONT (up to about 33 deg) and CAM_FRONT_LEFT (from about 22 deg); every other car is gone.
    active = torch.zeros_like(veh.active)
    active[:, :2] = True
    s = veh.s.clone()
    s[:, 1] = env.road.wrap(veh.s[:, 0] + 15.0)
    d = veh.d.clone()
    d[:, 0], d[:, 1] = 0.0, 2 * env.road.lane_width
    psi = torch.zeros_like(veh.psi)
    state = env.state.replace(vehicles=replace(veh, s=s, d=d, psi=psi, active=active))
    rig = camera_rig(CameraConfig(channels=("CAM_FRONT", "CAM_FRONT_LEFT"), width=400, height=225))
    appearance = vehicle_appearance(state, torch.Generator().manual_seed(0))
    frame, ego_pose, boxes_global, boxes_ego = perceived.render(
        env.road, state, rig, appearance, perceived.episode_lighting(0, env.episode), state.vehicles.s[:, 0]
    )
    velocity = perceived.gt_velocity(state, boxes_global)
    dets = perceived.oracle_detect(
        frame, state, boxes_ego, velocity, min_pixels=20, position_std=0.3, generator=torch.Generator().manual_seed(0)
    )
    assert sorted(dets.camera.tolist()) == [0, 1], "both cameras see the car"
    merged = perceived.merge(dets, radius=2.0)
    assert len(merged.scores) == 1
    tracks = perceived.track(MultiTracker(num_envs=1), merged, ego_pose, [0.0])
    assert len(tracks[0]) == 1
    assert abs(tracks[0].translation[0, 0] - float(boxes_global[0, 1, 0])) < 1.5


def test_loop_runs_a_tiny_untrained_detector(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        classes=("car", "truck"), input_width=160, input_height=96, widths=(8, 16, 32, 64), neck_channels=16
    )
    path = save_checkpoint(tmp_path / "tiny.pt", CenterNet3D(cfg), {"car": "vehicle.moving"}, epoch=0, step=0)
    loop = LoopConfig(
        perception="detector",
        detector=path,
        cameras=("CAM_FRONT", "CAM_BACK"),
        width=160,
        height=96,
        score_threshold=0.05,
    )
    config = replace(HIGHWAY, duration=2.0)
    result = drive(make_policy("rule", config), config, loop, episodes=2, num_envs=2, seed=1, progress=False)
    assert result.episodes.count == 2 and not result.interrupted
    assert result.timing["calls"]["detect"] == 5  # 2 s at 2 Hz: frames at 0, 0.5, 1, 1.5 and 2 s
    assert result.timing["ms_per_tick"]["detect"] > 0
    assert result.perception["camera_frames"] == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(camera_hz=3.0), "divides the simulation rate"),
        (dict(camera_hz=0.5), "multiple of the policy rate"),
        (dict(cameras=("CAM_UP",)), "CAM_UP"),
        (dict(perception="detector"), "needs --detector"),
        (dict(perception="detector", detector=Path("/no/such.pt")), "no such checkpoint"),
    ],
)
def test_bad_loop_settings_are_one_line(change: dict, message: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        LoopConfig(**change).validate(HIGHWAY)
    assert "\n" not in str(err.value)


def test_stage_timer_counts_calls() -> None:
    timer = StageTimer(torch.device("cpu"))
    with timer("render"):
        pass
    summary = timer.summary(ticks=10, wall=1.0)
    assert summary["calls"]["render"] == 1 and summary["ticks_per_s"] == 10.0


def test_global_frame_rebase_moves_tracks_with_it() -> None:
    """Past the section's end the frame moves back one ring length; a track at a road point stays at that point."""
    env = BatchedDrivingEnv(HIGHWAY, num_envs=1, seed=0)
    road = env.road
    length = road.length
    frame = perceived.GlobalFrame(road, torch.tensor([length - 10.0]))
    tracker = MultiTracker(num_envs=1)
    s_point = torch.tensor([length + 150.0])  # a car 150 m past the seam, unwrapped
    x, y, yaw = road.to_global(s_point, torch.tensor([4.0]), torch.tensor([0.0]))
    box = torch.tensor([[x.item(), y.item(), 0.8, 1.8, 4.5, 1.6, yaw.item()]])
    dets = perceived.CameraDetections(
        box,
        torch.ones(1),
        torch.tensor([perceived.CAR]),
        torch.zeros(1, dtype=torch.long),
        torch.zeros(1, dtype=torch.long),
        torch.full((1, 2), float("nan")),
    )
    perceived.track(tracker, dets, torch.zeros(1, 4), [0.0])  # the ego pose is the origin: the box is global
    frame.advance(road.wrap(torch.tensor([length + 120.0])), tracker)  # 130 m on: past the re-base point
    assert abs(frame.s_unwrapped.item() - 120.0) < 1e-3
    x2, y2, _ = road.to_global(s_point - length, torch.tensor([4.0]), torch.tensor([0.0]))
    assert abs(tracker.table[0, 0] - x2.item()) < 0.05 and abs(tracker.table[0, 1] - y2.item()) < 0.05


def test_on_substep_sees_every_simulation_step() -> None:
    env = BatchedDrivingEnv(HIGHWAY, num_envs=2, seed=0)
    env.reset()
    seen: list[tuple[int, float]] = []
    env.step(torch.ones(2, dtype=torch.long), on_substep=lambda j, state: seen.append((j, float(state.time[0]))))
    assert [j for j, _ in seen] == list(range(HIGHWAY.substeps))
    assert all(abs(t - 0.1 * (j + 1)) < 1e-5 for j, t in seen)


def test_new_tracks_without_measured_velocity_move_with_the_ego() -> None:
    """A track born from a camera box (no velocity) reads as moving with the ego, not stopped, until a second frame."""
    tracker = MultiTracker(num_envs=2)
    ego_velocity = np.array([[25.0, 0.0], [0.0, 20.0]])

    def frame(t: float, x: float) -> list:
        box = np.array([[x, 4.0, 0.8, 0.0, 1.8, 4.5, 1.6]])  # x y z yaw w l h
        dets = FrameDetections("f", t, box, np.full((1, 2), np.nan), np.ones(1), np.array([perceived.CAR]))
        return [dets, dets.select(np.zeros(1, dtype=bool))]  # environment 1 sees nothing

    first = perceived.velocity_prior(tracker.step(frame(0.0, 10.0)), tracker.table, ego_velocity)
    assert np.allclose(first[0].velocity, [[25.0, 0.0]]) and len(first[1]) == 0
    second = perceived.velocity_prior(tracker.step(frame(0.5, 20.0)), tracker.table, ego_velocity)
    assert not np.allclose(second[0].velocity, [[25.0, 0.0]])  # measured now: the tracker's own estimate
    assert second[0].velocity[0, 0] > 5.0  # it moved 10 m in 0.5 s


def test_parts_of_a_run_merge_into_the_whole() -> None:
    """Episodes 0-1 and 2-4 driven apart (as Ray workers do) and merged equal episodes 0-4 driven at once."""
    from drivestack.pipeline.closed_loop import merge_results

    env = replace(HIGHWAY, duration=2.0)
    policy = make_policy("rule", env)
    cfg = LoopConfig(perception="oracle", **SMALL)
    run = lambda n, first: drive(policy, env, cfg, n, num_envs=2, seed=3, progress=False, first_episode=first)  # noqa: E731
    whole = run(5, 0)
    merged = merge_results([run(2, 0), run(3, 2)], wall=1.0)
    for name in ("returns", "distances", "crashed", "lane_changes"):
        assert np.array_equal(getattr(merged.episodes, name), getattr(whole.episodes, name)), name
    frames = merged.perception.pop("camera_frames"), whole.perception.pop("camera_frames")  # batched frames: per part
    assert merged.perception == whole.perception and min(frames) > 0  # every figure over the same episodes' frames
    assert merged.agreement == whole.agreement and merged.timing["ticks"] > 0


def test_an_episode_looks_the_same_in_any_batch() -> None:
    """Each episode's lighting is a function of (seed, episode id): episode 3 alone equals episode 3 among others,
    and the lighting differs between episodes."""
    alone = perceived.episode_lighting(5, torch.tensor([3]))
    batch = perceived.episode_lighting(5, torch.tensor([0, 1, 2, 3]))
    assert torch.equal(alone[0], batch[3]) and not torch.equal(batch[0], batch[1])
    assert alone.shape == (1, 16) and float(alone.min()) >= 0.0 and float(alone.max()) < 1.0


def test_a_car_the_cameras_lose_beside_the_ego_stays_in_the_scene_while_coasting() -> None:
    """A confirmed track no camera confirms (a car beside the ego overflows every image) is in the policy's tracks
    at its predicted box for `coast_seconds`, then dropped; the benchmark's output policy hides it after 1 miss."""
    camera_hz = 2.0
    loop_cfg = perceived.default_tracker_config("detector", round(LoopConfig().coast_seconds * camera_hz))
    bench_cfg = TrackerConfig(pos_std=1.0)
    shown = {}
    for name, cfg in (("loop", loop_cfg), ("bench", bench_cfg)):
        tracker, counts = MultiTracker(cfg, num_envs=1), []
        for k in range(16):  # 8 s at 2 Hz: seen for 2 s while 20 m -> 8 m ahead, closing at 6 m/s, then unseen
            t = k / camera_hz
            seen = k < 4
            box = np.array([[20.0 - 6.0 * t, 4.0, 0.8, 0.0, 1.8, 4.5, 1.6]])
            dets = FrameDetections("f", t, box, np.full((1, 2), np.nan), np.ones(1), np.array([perceived.CAR]))
            out = tracker.step([dets if seen else dets.select(np.zeros(1, dtype=bool))])
            counts.append(len(out[0]))
            if name == "loop" and k == 7:  # 2 s unseen: predicted where the car is (beside the ego, x = -1 m)
                assert abs(out[0].translation[0, 0] - (20.0 - 6.0 * t)) < 1.0
        shown[name] = counts
    assert shown["loop"][:4] == [1, 1, 1, 1] and shown["bench"][:4] == [1, 1, 1, 1]
    unseen_frames = round(LoopConfig().coast_seconds * camera_hz)
    assert shown["loop"][4 : 4 + unseen_frames] == [1] * unseen_frames  # held for coast_seconds
    assert shown["loop"][4 + unseen_frames :] == [0] * (16 - 4 - unseen_frames)  # then dropped
    assert shown["bench"][4:6] == [1, 0]  # one coasted frame, then hidden


def test_low_score_camera_boxes_extend_tracks_but_start_none() -> None:
    """With the camera detector's tracker, a box below birth_score keeps a track alive (matched: not coasting)
    but a lone low-score box (a phantom) starts no track."""
    cfg = perceived.default_tracker_config("detector", coast_frames=0, birth_score=0.3)  # no coasting: misses show
    tracker = MultiTracker(cfg, num_envs=1)

    def frame(t: float, scores: list[float], xs: list[float]) -> list:
        box = np.array([[x, 4.0, 0.8, 0.0, 1.8, 4.5, 1.6] for x in xs])
        n = len(xs)
        return [FrameDetections("f", t, box, np.full((n, 2), np.nan), np.array(scores), np.full(n, perceived.CAR))]

    for k in range(3):  # confirmed from confident boxes
        out = tracker.step(frame(0.5 * k, [0.8], [20.0 - 3.0 * k]))
    (first_id,) = out[0].track_id
    for k in range(3, 6):  # the car comes alongside: its score drops to 0.15
        out = tracker.step(frame(0.5 * k, [0.15], [20.0 - 3.0 * k]))
        assert list(out[0].track_id) == [first_id]  # extended by the low-score box, shown (coast_frames=0)
    lone = perceived.default_tracker_config("detector", coast_frames=0, birth_score=0.3)
    phantom = MultiTracker(lone, num_envs=1)
    assert all(len(phantom.step(frame(0.5 * k, [0.15], [30.0]))[0]) == 0 for k in range(3))
    assert len(phantom.step(frame(1.5, [0.35], [30.0]))[0]) == 1  # at birth_score it starts one
