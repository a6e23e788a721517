"""Videos of the perceived path: what the cameras saw, what the trackers made of it, and what the policy chose.

One MP4 per recorded episode (the first `num_videos` episode ids of a `drive` run), one video frame per camera
frame, at the camera rate (real time). Each video frame is

    +-----------------------------------------+---------+
    | FRONT_LEFT  |   FRONT    | FRONT_RIGHT  |  bird's |
    |-------------+------------+--------------|   eye   |
    | BACK_LEFT   |   BACK     | BACK_RIGHT   |  view   |
    +-----------------------------------------+---------+

the six camera images (downscaled to at most TILE_WIDTH px wide) with the tracks' 3D boxes projected into them,
beside a bird's-eye view with the road running up: the simulator's own top-down rendering (`sim.render`: lanes,
lane markings, ground-truth vehicles, the ego green) under the tracks (outline in the track's colour, its id, an
arrow of its velocity over ARROW_SECONDS) and the maneuver in force as text ("<-" marks the frame the decision
was taken on).

Only the recorded environments are copied to the host, only at camera frames; with no videos the closed loop
never creates a `DriveVideos`, so an unrecorded run pays nothing. Environment slots run episode ids i, i + B,
i + 2B, ... (`sim.batched_env`), so which slots are recorded is known on the host without a device sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from drivestack.common.geometry import BOX_EDGES, box_corners
from drivestack.control.maneuver import Maneuver
from drivestack.sim.camera import CameraRig
from drivestack.sim.camera_render import CameraFrame
from drivestack.sim.render import render_topdown_batch
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import WorldState
from drivestack.sim.video import write_mp4
from drivestack.tracking.data_classes import FrameTracks

MOSAIC = (
    ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"),
    ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"),
)  # nuScenes' own 3 x 2 layout; a camera the rig lacks leaves its tile black
TILE_WIDTH = 256  # [px] widest camera tile (larger images are downscaled)
MIN_PANEL_HEIGHT = 288  # [px] the frame is at least this tall (small camera tiles are padded below)
BEV_RANGE = 100.0  # [m] road length the bird's-eye view spans (30 % behind the ego, 70 % ahead)
BEV_ASPECT = 0.6  # [-] width / height of the bird's-eye panel
ARROW_SECONDS = 0.5  # [s] a velocity arrow is the distance covered in this time
NEAR = 0.1  # [m] box edges are clipped at this depth in front of a camera
TEXT = (255, 255, 255)
PALETTE = np.array(
    [
        (255, 180, 0),
        (255, 60, 200),
        (0, 230, 230),
        (255, 255, 60),
        (160, 90, 255),
        (255, 120, 80),
        (120, 255, 120),
        (255, 255, 255),
    ],
    dtype=np.int64,
)  # RGB track colours, by id


def frame_size(width: int, height: int) -> tuple[int, int]:
    """(height, width) [px] of a video frame for camera images of width x height px (both even)."""
    tw, th = _tile_size(width, height)
    panel = max(2 * th, MIN_PANEL_HEIGHT)
    panel += panel % 2
    return panel, 3 * tw + _bev_width(panel)


def _tile_size(width: int, height: int) -> tuple[int, int]:
    tw = min(width, TILE_WIDTH)
    tw -= tw % 2
    return tw, max(2, round(height * tw / width))


def _bev_width(panel: int) -> int:
    w = round(BEV_ASPECT * panel)
    return w + w % 2


def _color(track_id: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in PALETTE[track_id % len(PALETTE)])


@dataclass
class _Episode:
    """Frames of one recorded episode so far, and the maneuver label of each."""

    episode_id: int
    frames: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    decided: list[bool] = field(default_factory=list)


class DriveVideos:
    """Records the perceived path's first `num_videos` episodes as MP4s under `out_dir`.

    The closed loop calls `camera_frame` after every camera frame's track stage, `decided` after every policy
    decision, `new_episodes` when environments start new episodes (finished recordings are written then), and
    `close` at the end (recordings cut short by an interrupt are written as they are).

    Args:
        out_dir: folder of the videos (`<name>_episode<k>.mp4`, k the episode id).
        name: file name prefix (the perception source).
        num_videos: record episode ids 0..num_videos-1.
        num_envs: B, environments stepped together (slot i runs episode ids first + i, first + i + B, ...).
        road: the road (for the bird's-eye view).
        rig: the cameras (their images and the box projections).
        fps: [Hz] video frame rate (the camera rate: real time).
        first_episode: slot i starts with episode id first_episode + i (a part of a run spread over workers).
    """

    def __init__(
        self,
        out_dir: Path,
        name: str,
        num_videos: int,
        num_envs: int,
        road: RoadNetwork,
        rig: CameraRig,
        fps: float,
        first_episode: int = 0,
    ) -> None:
        self.out_dir, self.name, self.fps = Path(out_dir), name, fps
        self.num_videos, self.road, self.rig = num_videos, road, rig
        self.num_envs = num_envs
        self.episode_ids = first_episode + np.arange(num_envs)  # (B,) host copy of the env's episode ids
        self.recording: dict[int, _Episode] = {}  # environment slot -> its recording
        self.maneuver = np.full(num_envs, int(Maneuver.IDLE))
        self.written: list[Path] = []
        self.tile_w, self.tile_h = _tile_size(rig.width, rig.height)
        self.panel_h, self.width = frame_size(rig.width, rig.height)
        self.bev_w = _bev_width(self.panel_h)
        self.scale = self.panel_h / BEV_RANGE  # [px/m]
        # camera -> ego rotation and translation, and the intrinsics scaled to the tiles: host copies, once
        self.cam_rot = rig.cam_to_ego[:, :3, :3].double().cpu().numpy()  # (C, 3, 3)
        self.cam_pos = rig.translation.double().cpu().numpy()  # (C, 3)
        k = rig.intrinsic.double().cpu().numpy().copy()  # (C, 3, 3)
        k[:, 0] *= self.tile_w / rig.width
        k[:, 1] *= self.tile_h / rig.height
        self.k = k
        self.slots = {
            ch: (r, c) for r, row in enumerate(MOSAIC) for c, ch in enumerate(row) if ch in rig.channels
        }  # channel -> (row, column) of its tile

    def recorded(self) -> np.ndarray:
        """Environment slots whose current episode is recorded, (E,) int."""
        return np.nonzero(self.episode_ids < self.num_videos)[0]

    # ------------------------------------------------------------------------------------------ hooks

    def camera_frame(
        self, state: WorldState, frame: CameraFrame, ego_pose: torch.Tensor, tracks: list[FrameTracks]
    ) -> None:
        """Compose one video frame for each recorded environment (cameras + boxes | bird's-eye view + tracks).

        Args:
            state: the world at the frame's time (B environments).
            frame: the rendered cameras (B, C, 3, H, W).
            ego_pose: (B, 4) the egos' global poses in the trackers' frame (x, y [m], 0, yaw [rad]).
            tracks: the B trackers' outputs of this frame (global frame).
        """
        env = self.recorded()
        if not len(env):
            return
        idx = torch.as_tensor(env, device=frame.images.device)
        images = (
            frame.images[idx].permute(0, 1, 3, 4, 2).contiguous().cpu().numpy()
        )  # (E, C, H, W, 3): the only image copy
        pose = ego_pose[idx].double().cpu().numpy()  # (E, 4)
        psi = state.vehicles.psi[idx, 0].double().cpu().numpy()  # (E,) ego heading relative to the road
        bev = render_topdown_batch(
            self.road, state, idx, width=self.panel_h, height=self.bev_w, scale=self.scale, centering=(0.3, 0.5)
        )  # (E, bev_w, panel_h, 3): the road runs right
        for e, b in enumerate(env.tolist()):
            rec = self.recording.get(b)
            if rec is None or rec.episode_id != self.episode_ids[b]:
                rec = self.recording[b] = _Episode(int(self.episode_ids[b]))
            boxes_ego, velocity_ego = _tracks_in_ego(tracks[b], pose[e])
            out = np.zeros((self.panel_h, self.width, 3), dtype=np.uint8)
            out[: 2 * self.tile_h, : 3 * self.tile_w] = self._mosaic(images[e], boxes_ego, tracks[b].track_id)
            out[:, 3 * self.tile_w :] = self._bev(bev[e], boxes_ego, velocity_ego, tracks[b].track_id, psi[e])
            rec.frames.append(out)
            rec.labels.append(Maneuver(int(self.maneuver[b])).name)
            rec.decided.append(False)

    def decided(self, action: torch.Tensor) -> None:
        """The policy chose `action` (B,) maneuvers on the latest frame: label that frame and the ones until the
        next decision."""
        env = self.recorded()
        if not len(env):
            return
        chosen = action[torch.as_tensor(env, device=action.device)].cpu().numpy()
        self.maneuver[env] = chosen
        for b, m in zip(env.tolist(), chosen.tolist(), strict=True):
            rec = self.recording.get(b)
            if rec is not None and rec.frames and rec.episode_id == self.episode_ids[b] and not rec.decided[-1]:
                rec.labels[-1], rec.decided[-1] = Maneuver(int(m)).name, True

    def new_episodes(self, mask: np.ndarray) -> None:
        """Slots in `mask` (B,) bool started new episodes: write their finished recordings."""
        for b in np.nonzero(mask)[0].tolist():
            rec = self.recording.pop(b, None)
            if rec is not None:
                self._write(rec)
        self.episode_ids = np.where(mask, self.episode_ids + self.num_envs, self.episode_ids)
        self.maneuver[mask] = int(Maneuver.IDLE)

    def close(self) -> list[Path]:
        """Write recordings not written yet (episodes cut short); returns every video written, by episode id."""
        for b in sorted(self.recording):
            self._write(self.recording.pop(b))
        return sorted(self.written)

    # ------------------------------------------------------------------------------------------ drawing

    def _write(self, rec: _Episode) -> None:
        if not rec.frames:
            return
        seconds = 1.0 / self.fps
        for i, (img, label, decided) in enumerate(zip(rec.frames, rec.labels, rec.decided, strict=True)):
            x0 = 3 * self.tile_w + 4
            mark = " <-" if decided else ""
            _text(img, f"ep {rec.episode_id}  t {i * seconds:4.1f} s", (x0, 14))
            _text(img, f"{label}{mark}", (x0, 30))
        path = self.out_dir / f"{self.name}_episode{rec.episode_id:03d}.mp4"
        self.written.append(write_mp4(rec.frames, path, fps=self.fps))

    def _mosaic(self, images: np.ndarray, boxes_ego: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """(2 th, 3 tw, 3) the camera tiles with the tracks' boxes; images (C, H, W, 3), boxes_ego (T, 7)."""
        tw, th = self.tile_w, self.tile_h
        out = np.zeros((2 * th, 3 * tw, 3), dtype=np.uint8)
        segments = self._box_segments(boxes_ego)  # (T, 12, C, 2, 2) or None
        for c, ch in enumerate(self.rig.channels):
            if ch not in self.slots:
                continue
            tile = cv2.resize(images[c], (tw, th), interpolation=cv2.INTER_AREA)
            if segments is not None:
                for t, seg in enumerate(segments[:, :, c]):  # (12, 2, 2); NaN rows are behind the camera
                    color = _color(int(ids[t]))
                    for (u0, v0), (u1, v1) in seg[np.isfinite(seg).all(axis=(1, 2))]:
                        cv2.line(tile, _pt(u0, v0), _pt(u1, v1), color, 1, cv2.LINE_AA)
            r, col = self.slots[ch]
            out[r * th : (r + 1) * th, col * tw : (col + 1) * tw] = tile
        return out

    def _box_segments(self, boxes_ego: np.ndarray) -> np.ndarray | None:
        """Pixel end points (T, 12, C, 2, 2) [px, tile scale] of the boxes' edges in every camera, clipped at the
        near plane; NaN for an edge wholly behind it."""
        if not len(boxes_ego):
            return None
        corners = box_corners(boxes_ego)  # (T, 8, 3) ego frame
        cam = np.einsum("cji,tkcj->tkci", self.cam_rot, corners[:, :, None, :] - self.cam_pos)  # (T, 8, C, 3)
        a = cam[:, [i for i, _ in BOX_EDGES]]  # (T, 12, C, 3)
        b = cam[:, [j for _, j in BOX_EDGES]]
        za, zb = a[..., 2:3], b[..., 2:3]
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.clip((NEAR - za) / (zb - za), 0.0, 1.0)
        cut = a + w * (b - a)  # on the near plane where the edge crosses it
        a = np.where(za < NEAR, cut, a)
        b = np.where(zb < NEAR, cut, b)
        ends = np.stack([a, b], axis=-2)  # (T, 12, C, 2, 3)
        z = ends[..., 2]
        u = self.k[:, 0, 0, None] * ends[..., 0] / z + self.k[:, 0, 2, None]
        v = self.k[:, 1, 1, None] * ends[..., 1] / z + self.k[:, 1, 2, None]
        uv = np.stack([u, v], axis=-1)
        behind = (za < NEAR) & (zb < NEAR)  # (T, 12, C, 1)
        return np.where(behind[..., None], np.nan, uv)

    def _bev(
        self, view: np.ndarray, boxes_ego: np.ndarray, velocity_ego: np.ndarray, ids: np.ndarray, psi: float
    ) -> np.ndarray:
        """(panel_h, bev_w, 3): the top-down view turned so the road runs up, the tracks drawn over it."""
        img = np.ascontiguousarray(np.rot90(view, k=1))  # forward up, left to the left
        c, s = np.cos(psi), np.sin(psi)  # the view's x runs along the road; the ego is turned by psi from it

        def pixel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            vx, vy = c * x - s * y, s * x + c * y  # ego frame -> view frame [m]
            return np.stack([0.5 * self.bev_w - vy * self.scale, 0.7 * self.panel_h - vx * self.scale], axis=-1)

        for t in range(len(boxes_ego)):
            color = _color(int(ids[t]))
            foot = box_corners(boxes_ego[t])[[0, 1, 5, 4], :2]  # (4, 2) top corners: front-left, front-right, ...
            px = pixel(foot[:, 0], foot[:, 1])
            cv2.polylines(img, [np.round(px).astype(np.int32)], True, color, 1, cv2.LINE_AA)
            centre = pixel(boxes_ego[t, :1], boxes_ego[t, 1:2])[0]
            tip = pixel(
                boxes_ego[t, :1] + ARROW_SECONDS * velocity_ego[t, :1],
                boxes_ego[t, 1:2] + ARROW_SECONDS * velocity_ego[t, 1:2],
            )[0]
            cv2.arrowedLine(img, _pt(*centre), _pt(*tip), color, 1, cv2.LINE_AA, tipLength=0.25)
            _text(img, str(int(ids[t])), _pt(centre[0] + 5, centre[1] + 3), color, 0.3)
        return img


def _tracks_in_ego(tracks: FrameTracks, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tracks' boxes (T, 7) and velocities (T, 2) moved from the global frame into the ego frame of `pose`
    (x, y [m], 0, yaw [rad])."""
    c, s = np.cos(pose[3]), np.sin(pose[3])
    dx, dy = tracks.translation[:, 0] - pose[0], tracks.translation[:, 1] - pose[1]
    boxes = np.column_stack(
        [c * dx + s * dy, -s * dx + c * dy, tracks.translation[:, 2], tracks.size, tracks.yaw - pose[3]]
    )
    vx, vy = tracks.velocity[:, 0], tracks.velocity[:, 1]
    return boxes.reshape(-1, 7), np.column_stack([c * vx + s * vy, -s * vx + c * vy]).reshape(-1, 2)


def _pt(u: float, v: float) -> tuple[int, int]:
    lim = 1e5  # [px] far-off end points (an edge just past the near plane) stay inside OpenCV's int range
    return int(round(float(np.clip(u, -lim, lim)))), int(round(float(np.clip(v, -lim, lim))))


def _text(
    img: np.ndarray, text: str, at: tuple[int, int], color: tuple[int, int, int] = TEXT, size: float = 0.4
) -> None:
    cv2.putText(img, text, at, cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), 2, cv2.LINE_AA)  # dark halo
    cv2.putText(img, text, at, cv2.FONT_HERSHEY_SIMPLEX, size, color, 1, cv2.LINE_AA)
