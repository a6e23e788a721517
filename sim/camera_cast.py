"""Which bodies the camera rays hit: the rig's rays in square tiles, and sparse ray casting of boxes against them.

Rays are grouped in TILE x TILE pixel tiles. A body (a vehicle, or a piece of roadside clutter) is tested only
against the tiles its projected box reaches, as (env, camera, tile, body) pairs, so the work follows what is on
screen rather than pixels x bodies; each camera considers only its k nearest bodies that can be in view. The
nearest hit per ray is then found with scatter reductions (sim.raycast). No Python loop runs over rays, bodies
or environments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from drivestack.common.geometry import BOX_EDGES, box_corners
from drivestack.sim.camera import CameraRig, ego_to_camera, frustum_normals, pixel_rays, points_bbox
from drivestack.sim.raycast import PairHits, cast_pairs, nearest_pair

TILE = 16  # [px] side of the square tiles that bodies are culled against
NEAR = 0.05  # [m] near plane of the box projections


@dataclass(frozen=True)
class Rays:
    """Pixel rays of the rig in tile order: T = TH x TW tiles of R = TILE^2 pixels (padded image)."""

    dirs: torch.Tensor  # (C, T, R, 3) unit directions, ego frame
    valid: torch.Tensor  # (T, R) bool: inside the image (not padding)
    t_ground: torch.Tensor  # (C, T, R) [m] distance to the ground z = 0 (inf above the horizon)
    ground: torch.Tensor  # (Q,) long: flat (C, T, R) indices of rays that meet the ground within max_depth
    sky: torch.Tensor  # (S,) long: the other rays
    tiles: tuple[int, int]  # (TH, TW)


_RAYS_CACHE: dict[int, tuple[CameraRig, Rays]] = {}


def tile_rays(rig: CameraRig) -> Rays:
    """The rig's rays, computed once per rig object (the last few rigs are kept)."""
    hit = _RAYS_CACHE.get(id(rig))
    if hit is not None and hit[0] is rig:
        return hit[1]
    rays = _make_rays(rig)
    if len(_RAYS_CACHE) >= 4:
        _RAYS_CACHE.pop(next(iter(_RAYS_CACHE)))
    _RAYS_CACHE[id(rig)] = (rig, rays)
    return rays


def _make_rays(rig: CameraRig) -> Rays:
    H, W, C = rig.height, rig.width, rig.num_cameras
    TH, TW = -(-H // TILE), -(-W // TILE)
    d = pixel_rays(rig, TH * TILE, TW * TILE).view(C, TH, TILE, TW, TILE, 3)
    dirs = d.permute(0, 1, 3, 2, 4, 5).reshape(C, TH * TW, TILE * TILE, 3)
    rows = torch.arange(TH * TILE, device=rig.device).view(TH, TILE, 1, 1) < H
    cols = torch.arange(TW * TILE, device=rig.device).view(1, 1, TW, TILE) < W
    valid = (rows & cols).permute(0, 2, 1, 3).reshape(TH * TW, TILE * TILE)
    dz = dirs[..., 2]
    oz = rig.translation[:, 2].view(C, 1, 1)
    t_ground = torch.where(dz < -1e-6, -oz / dz.clamp_max(-1e-6), torch.full_like(dz, math.inf))
    ground = (t_ground <= rig.config.max_depth).view(-1)
    return Rays(dirs, valid, t_ground, ground.nonzero().squeeze(1), (~ground).nonzero().squeeze(1), (TH, TW))


def untile(x: torch.Tensor, rays: Rays, height: int, width: int) -> torch.Tensor:
    """(..., T, R) in tile order -> (..., H, W) image layout."""
    TH, TW = rays.tiles
    lead = x.shape[:-2]
    x = x.reshape(*lead, TH, TW, TILE, TILE).transpose(-3, -2).reshape(*lead, TH * TILE, TW * TILE)
    return x[..., :height, :width]


def box_2d(boxes: torch.Tensor, rig: CameraRig, grow: float = 0.0) -> torch.Tensor:
    """Unclipped pixel boxes (B, C, M, 4) of boxes (B, C, M, 7) (ego frame) in their camera, NaN behind."""
    grown = torch.cat([boxes[..., :3], boxes[..., 3:5] + 2 * grow, boxes[..., 5:]], dim=-1)  # footprint grown
    corners = box_corners(grown)  # (B, C, M, 8, 3)
    rot = rig.cam_to_ego[:, :3, :3]
    rel = corners - rig.translation.view(1, -1, 1, 1, 3)
    cam = torch.einsum("cji,bcmkj->bcmki", rot, rel)  # R^T (p - t), camera c for row c
    return points_bbox(cam, rig.intrinsic.view(1, -1, 1, 3, 3), BOX_EDGES, NEAR)


def _select(
    boxes_ego: torch.Tensor, ok: torch.Tensor, rig: CameraRig, k: int, margin: float, skip_first: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest bodies per camera whose bounding sphere (grown by margin [m]) meets the view: (B, C, k)
    index, valid."""
    w, l, h = boxes_ego[..., 3], boxes_ego[..., 4], boxes_ego[..., 5]
    radius = 0.5 * torch.sqrt(w * w + l * l + h * h) + margin  # (B, N)
    p = ego_to_camera(boxes_ego[..., :3], rig).transpose(1, 2)  # (B, C, N, 3)
    r = radius.unsqueeze(1)  # (B, 1, N)
    side = torch.einsum("bcnj,cpj->bcnp", p, frustum_normals(rig))  # (B, C, N, 4) signed distance to each side
    in_view = (
        (side >= -r.unsqueeze(-1)).all(dim=-1)
        & (p[..., 2] >= -r)
        & (p[..., 2] <= rig.config.max_depth + r)
        & (ok & torch.isfinite(boxes_ego).all(dim=-1)).unsqueeze(1)
    )
    if skip_first:
        in_view[:, :, 0] = False  # the ego is not drawn
    dist = torch.where(in_view, p.norm(dim=-1), torch.full_like(p[..., 0], math.inf))
    near, idx = dist.topk(k, dim=-1, largest=False)  # (B, C, k) sorted, nearest first
    return idx, torch.isfinite(near)


@dataclass(frozen=True)
class Pairs:
    """(env, camera, tile, body) pairs: each body with every tile its projection reaches; P pairs."""

    env: torch.Tensor  # (P,) long
    cam: torch.Tensor  # (P,) long
    tile: torch.Tensor  # (P,) long
    body: torch.Tensor  # (P,) long


def tile_pairs(
    boxes_ego: torch.Tensor,
    ok: torch.Tensor,
    rig: CameraRig,
    rays: Rays,
    k: int,
    grow: float,
    skip_first: bool,
    reach: torch.Tensor | None = None,
) -> Pairs:
    """The pairs of bodies boxes_ego (B, N, 7) (ego frame; `ok` (B, N) bool) and tiles: each camera's k nearest
    bodies in view, with the tiles their box (footprint grown by `grow` [m]) projects to; `reach` (B, N, 7) adds
    the tiles a second box per body projects to (e.g. its shadow on the ground). skip_first: body 0 is the ego."""
    B, N, _ = boxes_ego.shape
    TH, TW = rays.tiles
    dev = boxes_ego.device
    k = min(k, N)
    idx, sel_ok = _select(boxes_ego, ok, rig, k, grow, skip_first)  # (B, C, k)
    C = idx.shape[1]

    def gather(boxes: torch.Tensor) -> torch.Tensor:
        return boxes.gather(1, idx.view(B, -1, 1).expand(-1, -1, 7)).view(B, C, k, 7)

    bb = box_2d(gather(boxes_ego), rig, grow=grow)  # (B, C, k, 4) reaches every pixel the body can
    if reach is not None:
        extra = box_2d(gather(reach), rig)  # NaN where behind: fmin / fmax keep the body's own box
        bb = torch.cat([torch.fmin(bb[..., :2], extra[..., :2]), torch.fmax(bb[..., 2:], extra[..., 2:])], dim=-1)
    tx0, ty0 = (bb[..., 0] / TILE).floor().clamp(0, TW - 1), (bb[..., 1] / TILE).floor().clamp(0, TH - 1)
    tx1, ty1 = (bb[..., 2] / TILE).floor().clamp(0, TW - 1), (bb[..., 3] / TILE).floor().clamp(0, TH - 1)
    ty = torch.arange(TH, device=dev).view(TH, 1)
    tx = torch.arange(TW, device=dev).view(1, TW)
    keep = (
        sel_ok
        & torch.isfinite(bb).all(dim=-1)
        & (bb[..., 2] >= 0)
        & (bb[..., 3] >= 0)
        & (bb[..., 0] <= rig.width)
        & (bb[..., 1] <= rig.height)
    )[..., None, None]
    overlap = (
        keep
        & (ty >= ty0[..., None, None])
        & (ty <= ty1[..., None, None])
        & (tx >= tx0[..., None, None])
        & (tx <= tx1[..., None, None])
    )  # (B, C, k, TH, TW)
    pb, pc, pk, pty, ptx = overlap.nonzero(as_tuple=True)  # P pairs (env, camera, slot, tile)
    return Pairs(pb, pc, pty * TW + ptx, idx[pb, pc, pk])


@dataclass(frozen=True)
class BodyHits:
    """The nearest hit of every ray among the bodies of its pairs."""

    pairs: Pairs
    hits: PairHits  # (P, R) per-pair hits
    ray_index: torch.Tensor  # (P, R) long: flat (B, C, T, R) index of each pair element's ray
    win: torch.Tensor  # (B*C*T*R,) long: flat (pair, ray) element of each ray's nearest hit, -1 none

    def distance(self) -> torch.Tensor:
        """(B*C*T*R,) [m] distance of each ray's nearest hit (inf: none)."""
        t = torch.full(self.win.shape, math.inf, device=self.win.device)
        hit = self.win >= 0
        t[hit] = self.hits.t.view(-1)[self.win[hit]]
        return t


def cast_bodies(
    pairs: Pairs,
    centre: torch.Tensor,
    half: torch.Tensor,
    yaw: torch.Tensor,
    num_envs: int,
    rig: CameraRig,
    rays: Rays,
    profile: torch.Tensor | None = None,
) -> BodyHits:
    """Cast every pair's tile of rays against its body of two parts, centres and half extents (B, N, 2, 3) [m]
    (ego frame; sim.raycast.body_parts), yaw (B, N) [rad], profile (B, N, 2, NUM_PROFILE) (sim.raycast.ray_box;
    None: boxes)."""
    C, T, R = rays.dirs.shape[:3]
    pb, pn = pairs.env, pairs.body
    hits = cast_pairs(
        rig.translation,
        rays.dirs,
        pairs.cam,
        pairs.tile,
        centre[pb, pn],
        half[pb, pn],
        torch.cos(yaw)[pb, pn],
        torch.sin(yaw)[pb, pn],
        rig.config.max_depth,
        None if profile is None else profile[pb, pn],
    )
    r = torch.arange(R, device=centre.device)
    ray_index = ((pb * C + pairs.cam) * T + pairs.tile).unsqueeze(1) * R + r  # (P, R) flat index into (B, C, T, R)
    win = nearest_pair(ray_index, hits.t, num_envs * C * T * R)  # (B*C*T*R,)
    return BodyHits(pairs, hits, ray_index, win)
