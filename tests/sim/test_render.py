"""Top-down rendering and MP4 writing: framing, colours, ramp, seam, determinism, video round trip."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from drivestack.sim.config import EnvConfig, RoadConfig, merge_config
from drivestack.sim.render import (
    ASPHALT,
    CRASHED_COLOR,
    EGO_COLOR,
    GRASS,
    pixel_of,
    render_topdown,
    render_topdown_batch,
)
from drivestack.sim.road import RoadNetwork, build_road
from drivestack.sim.scenario import initial_state
from drivestack.sim.state import WorldState
from drivestack.sim.video import VideoRecorder, write_mp4

H, W = 150, 600
EGO_ROW, EGO_COL = H // 2, int(0.3 * W)  # the ego's centre lies on the corner of these pixels


def _world(config: EnvConfig, num_envs: int = 2, seed: int = 0) -> tuple[RoadNetwork, WorldState]:
    road = build_road(config.road)
    return road, initial_state(config, road, num_envs, torch.Generator().manual_seed(seed))


def _set_vehicle(state: WorldState, env: int, j: int, **values: float) -> WorldState:
    veh = state.vehicles
    changes = {}
    for name, value in values.items():
        t = getattr(veh, name).clone()
        t[env, j] = value
        changes[name] = t
    return state.replace(vehicles=replace(veh, **changes))


def _alone(state: WorldState, keep: int) -> WorldState:
    """Deactivate every vehicle from index `keep` on, so placed vehicles have the road to themselves."""
    active = state.vehicles.active.clone()
    active[:, keep:] = False
    return state.replace(vehicles=replace(state.vehicles, active=active))


def _color(img: np.ndarray, row: int, col: int) -> tuple[int, ...]:
    return tuple(int(c) for c in img[row, col])


def _is_traffic_blue(rgb: tuple[int, ...]) -> bool:
    r, g, b = rgb
    return b >= 120 and b > r + 50


@pytest.fixture(scope="module")
def highway() -> tuple[RoadNetwork, WorldState]:
    return _world(EnvConfig())


def test_image_shape_dtype_and_ego_green_at_its_anchor(highway):
    road, state = highway
    img = render_topdown(road, state)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    # The ego's centre sits 30 % from the left, halfway down: the 2x2 pixels around it are ego green.
    for dr in (-1, 0):
        for dc in (-1, 0):
            assert _color(img, EGO_ROW + dr, EGO_COL + dc) == EGO_COLOR
    assert pixel_of(road, state, float(state.vehicles.s[0, 0]), float(state.vehicles.d[0, 0])) == (EGO_ROW, EGO_COL)
    # The ego is drawn along the road: it extends ~2 m ahead of its centre, not 2 m sideways.
    assert _color(img, EGO_ROW, EGO_COL + 10) == EGO_COLOR
    assert _color(img, EGO_ROW - 10, EGO_COL) != EGO_COLOR
    # Nothing else in the frame is ego green.
    green = (img == np.array(EGO_COLOR, dtype=np.uint8)).all(axis=-1)
    rows, cols = np.nonzero(green)
    assert abs(rows.mean() - EGO_ROW) < 2 and abs(cols.mean() - EGO_COL) < 2


def test_other_sizes_and_centering(highway):
    road, state = highway
    img = render_topdown(road, state, width=200, height=100, scale=8.0, centering=(0.5, 0.25))
    assert img.shape == (100, 200, 3)
    assert _color(img, 25, 100) == EGO_COLOR


def test_vehicle_right_ahead_appears_in_blue(highway):
    road, state = highway
    s0, d0 = float(state.vehicles.s[0, 0]), float(state.vehicles.d[0, 0])
    ahead = road.wrap(torch.tensor(s0 + 12.0)).item()
    # Vehicle 1 right ahead of the ego in its lane; then moved half the ring away.
    far = road.wrap(state.vehicles.s[0, 0] + 0.5 * road.length).item()
    state = _set_vehicle(_alone(state, 2), 0, 1, s=ahead, d=d0, psi=0.0)
    before = render_topdown(road, state)
    row, col = pixel_of(road, state, ahead, d0)
    assert (row, col) == (EGO_ROW, EGO_COL + 66)  # 12 m at 5.5 px/m
    assert _is_traffic_blue(_color(before, row, col))
    moved = _set_vehicle(state, 0, 1, s=far)
    after = render_topdown(road, moved)
    assert _color(after, row, col) == ASPHALT


def test_crashed_ego_is_red(highway):
    road, state = highway
    crashed = state.replace(crashed=torch.ones_like(state.crashed))
    img = render_topdown(road, crashed)
    assert _color(img, EGO_ROW, EGO_COL) == CRASHED_COLOR


def test_grass_outside_the_road_and_asphalt_on_it(highway):
    road, state = highway
    img = render_topdown(road, state)
    s0 = float(state.vehicles.s[0, 0])
    top_lane = (road.num_lanes - 1) * road.lane_width
    for d, expected in ((-road.lane_width, GRASS), (top_lane + road.lane_width, GRASS)):
        row, col = pixel_of(road, state, s0 - 20.0, d)
        assert 0 <= row < H and _color(img, row, col) == expected


def test_vehicles_do_not_jump_at_the_ring_seam(highway):
    road, state = highway
    L = road.length
    d0 = float(state.vehicles.d[0, 0])
    # Ego just before the seam, vehicle 1 just after it (ring distance 10 m ahead).
    state = _set_vehicle(_alone(state, 2), 0, 0, s=L - 3.0)
    state = _set_vehicle(state, 0, 1, s=7.0, d=d0, psi=0.0)
    img = render_topdown(road, state)
    assert _color(img, EGO_ROW, EGO_COL) == EGO_COLOR
    assert _is_traffic_blue(_color(img, EGO_ROW, EGO_COL + 55))


def test_merge_ramp_is_drawn_only_where_it_exists():
    config = merge_config()
    road, state = _world(config)
    rc = config.road
    img = render_topdown(road, state)
    s0, d0 = float(state.vehicles.s[0, 0]), float(state.vehicles.d[0, 0])
    assert d0 < -road.lane_width  # the ego starts on the ramp, right of the highway
    row, col = pixel_of(road, state, s0 - 10.0, d0)
    assert _color(img, row, col) == ASPHALT  # the ramp behind the ego
    # Put the ego on the highway in the merge zone: the ramp is asphalt beside it, and only there.
    s_merge = rc.ramp_start + rc.ramp_approach + 0.5 * rc.merge_length
    on_highway = _set_vehicle(state, 0, 0, s=s_merge, d=road.lane_width, psi=0.0)
    img = render_topdown(road, on_highway)
    ramp_d = -road.lane_width  # ramp centre (lane 0) once converged
    row, col = pixel_of(road, on_highway, s_merge + 20.0, ramp_d)
    assert _color(img, row, col) == ASPHALT
    end = rc.ramp_start + rc.ramp_approach + rc.merge_length
    row, col = pixel_of(road, on_highway, end + 15.0, ramp_d)
    assert col < W and _color(img, row, col) == GRASS
    # A plain highway has grass where the ramp would be.
    hw_road, hw_state = _world(EnvConfig(road=RoadConfig(num_lanes=2, length=800.0)))
    hw_state = _set_vehicle(hw_state, 0, 0, s=s_merge, d=0.0, psi=0.0)
    row, col = pixel_of(hw_road, hw_state, s_merge + 20.0, ramp_d)
    assert _color(render_topdown(hw_road, hw_state), row, col) == GRASS


def test_curved_road_frame_follows_the_tangent():
    road, state = _world(EnvConfig(road=RoadConfig(max_curvature=1 / 500)))
    img = render_topdown(road, state)
    assert _color(img, EGO_ROW, EGO_COL) == EGO_COLOR
    s0, d0 = float(state.vehicles.s[0, 0]), float(state.vehicles.d[0, 0])
    # Lane centres behind and ahead are on asphalt, wherever the curve puts them.
    for ds in (-25.0, 40.0, 75.0):
        row, col = pixel_of(road, state, s0 + ds, d0)
        assert 0 <= row < H and 0 <= col < W
        assert _color(img, row, col) in (ASPHALT, (255, 255, 255)) or _is_traffic_blue(_color(img, row, col))


def test_rendering_is_deterministic_and_batch_matches_single(highway):
    road, state = highway
    a, b = render_topdown(road, state, env_index=1), render_topdown(road, state, env_index=1)
    assert np.array_equal(a, b)
    batch = render_topdown_batch(road, state, [1, 0])
    assert batch.shape == (2, H, W, 3)
    assert np.array_equal(batch[0], a) and np.array_equal(batch[1], render_topdown(road, state, env_index=0))
    assert not np.array_equal(batch[0], batch[1])


def test_bad_env_index_raises(highway):
    road, state = highway
    with pytest.raises(ValueError, match="out of range"):
        render_topdown(road, state, env_index=5)


def _read_frames(path: Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        return [np.asarray(f) for f in reader]


def test_write_mp4_round_trip_and_no_temp_file(tmp_path: Path, highway):
    road, state = highway
    frame = render_topdown(road, state)
    frames = [frame, np.roll(frame, 10, axis=1), np.roll(frame, 20, axis=1), frame, frame]
    out = write_mp4(iter(frames), tmp_path / "sub" / "clip.mp4", fps=15)
    assert out == tmp_path / "sub" / "clip.mp4" and out.stat().st_size > 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.mp4"]
    back = _read_frames(out)
    assert len(back) == len(frames)
    assert back[0].shape == (H, W, 3)
    assert np.abs(back[0].astype(int) - frame.astype(int)).mean() < 8  # lossy, but the same picture


def test_write_mp4_pads_odd_sizes(tmp_path: Path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 31, 45, 3), dtype=np.uint8)
    back = _read_frames(write_mp4(frames, tmp_path / "odd.mp4", fps=10))
    assert len(back) == 3 and back[0].shape == (32, 46, 3)


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [np.zeros((10, 10, 3), dtype=np.float32)],
        [np.zeros((10, 10), dtype=np.uint8)],
        [np.zeros((10, 10, 4), dtype=np.uint8)],
        np.zeros((10, 10, 3), dtype=np.uint8),  # one frame, not a (T, H, W, 3) stack
    ],
)
def test_write_mp4_rejects_bad_frames(tmp_path: Path, frames):
    with pytest.raises(ValueError):
        write_mp4(frames, tmp_path / "bad.mp4")
    assert list(tmp_path.iterdir()) == []


def test_write_mp4_mismatched_sizes_leave_nothing_behind(tmp_path: Path):
    frames = [np.zeros((16, 16, 3), dtype=np.uint8), np.zeros((16, 18, 3), dtype=np.uint8)]
    with pytest.raises(ValueError, match="differs"):
        write_mp4(frames, tmp_path / "mixed.mp4")
    assert list(tmp_path.iterdir()) == []


def test_video_recorder(tmp_path: Path):
    rec = VideoRecorder(fps=5)
    for k in range(4):
        rec.add(np.full((20, 30, 3), 60 * k, dtype=np.uint8))
    assert len(rec) == 4
    with pytest.raises(ValueError):
        rec.add(np.zeros((20, 31, 3), dtype=np.uint8))
    path = rec.save(tmp_path / "rec.mp4")
    assert len(_read_frames(path)) == 4
    rec.clear()
    assert len(rec) == 0
