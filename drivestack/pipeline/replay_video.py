"""The replay video of one scene: what the cameras saw, what the tracker made of it, and what the planners planned.

One MP4 per scene, one video frame per keyframe, at the keyframe rate (real time). The layout is the closed
loop's (`drivestack.pipeline.video`): the six camera images (nuScenes' 3 x 2 mosaic) with the ground-truth boxes
(thin grey) and the tracks' boxes (the track's colour) projected, beside a bird's-eye view, forward up, over the
map's drivable area (grey; black without a map) with the ground-truth boxes (grey outlines), the tracks (outline
in the track's colour, its id, a velocity arrow), the logged ego path over the next 3 s (white), the IDM shadow
plan (green) and the constant-velocity plan (orange). The box projection and the track drawing are
`pipeline.video`'s own code, given the log's cameras instead of the simulator's rig.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from nuscenes import NuScenes

from drivestack.common.geometry import box_corners
from drivestack.perception.dataset import load_frame
from drivestack.pipeline.replay_log import SceneLog
from drivestack.pipeline.video import (
    BEV_RANGE,
    MOSAIC,
    DriveVideos,
    _bev_width,
    _pt,
    _text,
    _tile_size,
    _tracks_in_ego,
    frame_size,
)
from drivestack.planning.open_loop import EGO_BOX_OFFSET, EGO_LENGTH, EGO_WIDTH, NUM_WAYPOINTS, WAYPOINT_DT
from drivestack.sim.video import write_mp4
from drivestack.tracking.data_classes import FrameTracks

GT_COLOR = (170, 170, 170)  # RGB
LOGGED_COLOR = (255, 255, 255)
PLAN_COLORS = {"idm": (60, 220, 60), "cv": (255, 150, 40)}
DRIVABLE = 70  # grey level of the drivable area in the bird's-eye view
EGO_COLOR = (0, 200, 0)


class _Drawer:
    """The closed-loop video's projection and bird's-eye drawing (`DriveVideos` methods) for a log's cameras."""

    _box_segments = DriveVideos._box_segments
    _bev = DriveVideos._bev

    def __init__(self, cam2ego: np.ndarray, intrinsic: np.ndarray, image_size: tuple[int, int]) -> None:
        self.tile_w, self.tile_h = _tile_size(*image_size)
        self.panel_h, self.width = frame_size(*image_size)
        self.bev_w = _bev_width(self.panel_h)
        self.scale = self.panel_h / BEV_RANGE  # [px/m]
        self.cam_rot, self.cam_pos = cam2ego[:, :3, :3], cam2ego[:, :3, 3]  # (C, 3, 3), (C, 3)
        k = intrinsic.copy()  # (C, 3, 3) scaled to the tiles
        k[:, 0] *= self.tile_w / image_size[0]
        k[:, 1] *= self.tile_h / image_size[1]
        self.k = k

    def pixel(self, xy: np.ndarray) -> np.ndarray:
        """Ego-frame points (..., 2) [m] -> bird's-eye pixels (..., 2) (forward up, the ego at 70 % height)."""
        return np.stack([0.5 * self.bev_w - xy[..., 1] * self.scale, 0.7 * self.panel_h - xy[..., 0] * self.scale], -1)

    def background(self, log: SceneLog, i: int) -> np.ndarray:
        """(panel_h, bev_w, 3) the drivable area around keyframe i, forward up (black without a map)."""
        img = np.zeros((self.panel_h, self.bev_w, 3), dtype=np.uint8)
        mask = log.map_mask
        if mask is None:
            return img
        full = mask.mask()
        res = mask.resolution
        # the panel's corners in global coordinates -> a crop of the map around them
        u, v = np.meshgrid([0.0, self.bev_w], [0.0, self.panel_h])
        ego = np.stack([(0.7 * self.panel_h - v) / self.scale, (0.5 * self.bev_w - u) / self.scale], -1).reshape(-1, 2)
        c, s = np.cos(log.yaw[i]), np.sin(log.yaw[i])
        gx = c * ego[:, 0] - s * ego[:, 1] + log.translation[i, 0]
        gy = s * ego[:, 0] + c * ego[:, 1] + log.translation[i, 1]
        col, row = gx / res, full.shape[0] - gy / res
        c0, c1 = int(max(0, np.floor(col.min()) - 1)), int(min(full.shape[1], np.ceil(col.max()) + 2))
        r0, r1 = int(max(0, np.floor(row.min()) - 1)), int(min(full.shape[0], np.ceil(row.max()) + 2))
        if c1 <= c0 or r1 <= r0:
            return img
        crop = full[r0:r1, c0:c1]
        # panel pixel (u, v) -> crop pixel: ego (x, y) = ((0.7 H - v) / k, (0.5 W - u) / k), then global, then map
        a = 1.0 / (self.scale * res)
        m = np.array(
            [
                [s * a, -c * a, (c * 0.7 * self.panel_h - s * 0.5 * self.bev_w) * a],
                [c * a, s * a, -(s * 0.7 * self.panel_h + c * 0.5 * self.bev_w) * a],
            ]
        )
        m[0, 2] += log.translation[i, 0] / res - c0
        m[1, 2] += full.shape[0] - log.translation[i, 1] / res - r0
        warped = cv2.warpAffine(
            crop, m, (self.bev_w, self.panel_h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0
        )
        img[warped > 0] = DRIVABLE
        return img


def _footprint(drawer: _Drawer, img: np.ndarray, boxes: np.ndarray, color: tuple[int, int, int]) -> None:
    """Outlines of ego-frame boxes (M, 7) on the bird's-eye view."""
    if not len(boxes):
        return
    foot = box_corners(boxes)[:, [0, 1, 5, 4], :2]  # (M, 4, 2)
    px = np.ascontiguousarray(np.round(drawer.pixel(foot)).astype(np.int32))  # (M, 4, 2)
    cv2.polylines(img, list(px), True, color, 1, cv2.LINE_AA)


def _path(drawer: _Drawer, img: np.ndarray, xy: np.ndarray, color: tuple[int, int, int]) -> None:
    """A trajectory (T, 2) from the ego, with a dot at each waypoint."""
    px = drawer.pixel(np.concatenate([np.zeros((1, 2)), xy]))
    cv2.polylines(img, [np.ascontiguousarray(np.round(px).astype(np.int32))], False, color, 1, cv2.LINE_AA)
    for p in px[1:]:
        cv2.circle(img, _pt(*p), 2, color, -1, cv2.LINE_AA)


def write_scene_video(
    path: Path,
    nusc: NuScenes,
    log: SceneLog,
    tracks: list[FrameTracks],
    plans: dict[str, np.ndarray],
    min_score: float = 0.0,
) -> Path:
    """Write the scene's MP4 (module docstring) atomically; returns its path.

    Args:
        path: the MP4 file.
        nusc: the dataset (camera images, calibrations, ground truth).
        log: the scene's log (`pipeline.replay_log.read_scene_log`).
        tracks: the tracker's output per keyframe (global frame).
        plans: planner name -> waypoints (K, T, 2), ego frame.
        min_score: tracks scoring less are not drawn (the planner did not see them either).
    """
    channels = [ch for row in MOSAIC for ch in row]
    frames = []
    drawer: _Drawer | None = None
    for i, sample in enumerate(log.samples):  # a loop over keyframes
        pose = np.eye(4)
        from drivestack.common.geometry import quaternion_to_matrix

        pose[:3, :3] = quaternion_to_matrix(log.rotation[i])
        pose[:3, 3] = log.translation[i]
        present = [ch for ch in channels if ch in sample["data"]]
        cams = [load_frame(nusc, sample["token"], ch, pose) for ch in present]
        images = [cv2.cvtColor(cv2.imread(str(f.image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in cams]
        if drawer is None:
            size = (images[0].shape[1], images[0].shape[0]) if images else (1600, 900)
            drawer = _Drawer(
                np.stack([f.cam2ego for f in cams]) if cams else np.zeros((0, 4, 4)),
                np.stack([f.intrinsic for f in cams]) if cams else np.zeros((0, 3, 3)),
                size,
            )
        shown = tracks[i].score >= min_score
        sel = FrameTracks(
            tracks[i].token,
            tracks[i].timestamp,
            tracks[i].track_id[shown],
            tracks[i].translation[shown],
            tracks[i].size[shown],
            tracks[i].yaw[shown],
            np.nan_to_num(tracks[i].velocity[shown]),
            tracks[i].score[shown],
            tracks[i].label[shown],
        )
        ego_pose = np.array([log.translation[i, 0], log.translation[i, 1], 0.0, log.yaw[i]])
        track_boxes, track_vel = _tracks_in_ego(sel, ego_pose)
        track_boxes[:, 2] -= log.translation[i, 2]  # heights relative to the ego
        gt = cams[0].boxes if cams else np.zeros((0, 7))
        out = np.zeros((drawer.panel_h, drawer.width, 3), dtype=np.uint8)
        out[: 2 * drawer.tile_h, : 3 * drawer.tile_w] = _mosaic(drawer, present, images, gt, track_boxes, sel.track_id)
        bev = drawer.background(log, i)
        _footprint(drawer, bev, gt, GT_COLOR)
        rows = log.future[i]
        if (rows >= 0).any():  # the logged ego path over the waypoints it has
            c, s = np.cos(log.yaw[i]), np.sin(log.yaw[i])
            d = log.translation[rows[rows >= 0], :2] - log.translation[i, :2]
            _path(drawer, bev, np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], -1), LOGGED_COLOR)
        for name, p in plans.items():
            _path(drawer, bev, p[i], PLAN_COLORS.get(name, (255, 255, 255)))
        ego_box = np.array([[EGO_BOX_OFFSET, 0.0, 0.0, EGO_WIDTH, EGO_LENGTH, 1.5, 0.0]])
        _footprint(drawer, bev, ego_box, EGO_COLOR)
        # the closed loop's track drawing (outline, id, velocity arrow) over it; `_bev` turns its input by 90 deg
        bev = drawer._bev(np.ascontiguousarray(np.rot90(bev, k=-1)), track_boxes, track_vel, sel.track_id, 0.0)
        out[:, 3 * drawer.tile_w :] = bev
        x0 = 3 * drawer.tile_w + 4
        _text(out, f"{log.name}  keyframe {i}  t {log.times[i] - log.times[0]:4.1f} s", (x0, 14))
        _text(out, f"ego {log.ego.speed[i]:4.1f} m/s  {len(sel)} tracks", (x0, 30))
        _text(out, "logged", (x0, drawer.panel_h - 40), LOGGED_COLOR)
        _text(out, "IDM plan", (x0, drawer.panel_h - 24), PLAN_COLORS["idm"])
        _text(out, "const. velocity", (x0, drawer.panel_h - 8), PLAN_COLORS["cv"])
        frames.append(out)
    fps = 1.0 / WAYPOINT_DT if len(log) < 2 else (len(log) - 1) / max(log.times[-1] - log.times[0], 1e-6)
    assert NUM_WAYPOINTS > 0
    return write_mp4(frames, path, fps=fps)


def _mosaic(
    drawer: _Drawer,
    present: list[str],
    images: list[np.ndarray],
    gt: np.ndarray,
    track_boxes: np.ndarray,
    track_ids: np.ndarray,
) -> np.ndarray:
    """(2 th, 3 tw, 3) camera tiles with the ground-truth (grey) and the tracks' boxes (their colours)."""
    from drivestack.pipeline.video import _color

    tw, th = drawer.tile_w, drawer.tile_h
    out = np.zeros((2 * th, 3 * tw, 3), dtype=np.uint8)
    slots = {ch: (r, c) for r, row in enumerate(MOSAIC) for c, ch in enumerate(row)}
    gt_seg = drawer._box_segments(gt)  # (M, 12, C, 2, 2) or None
    tr_seg = drawer._box_segments(track_boxes)
    for c, (ch, image) in enumerate(zip(present, images)):
        tile = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
        for segments, colors in ((gt_seg, [GT_COLOR] * len(gt)), (tr_seg, [_color(int(t)) for t in track_ids])):
            if segments is None:
                continue
            for seg, color in zip(segments[:, :, c], colors):  # (12, 2, 2) per box; NaN rows behind the camera
                for (u0, v0), (u1, v1) in seg[np.isfinite(seg).all(axis=(1, 2))]:
                    cv2.line(tile, _pt(u0, v0), _pt(u1, v1), color, 1, cv2.LINE_AA)
        r, col = slots[ch]
        out[r * th : (r + 1) * th, col * tw : (col + 1) * tw] = tile
    return out
