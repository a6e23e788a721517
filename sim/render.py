"""Top-down (bird's-eye) RGB rendering of the road and vehicles around the ego, batched in torch.

The view follows highway-env's default: 600 x 150 pixels at 5.5 px/m, the ego 30 % from the left
edge and halfway down, the road direction pointing right. The view frame is centred on the ego's
global position and rotated to the road tangent at the ego, so the image does not spin when the ego
turns and the road ahead always runs to the right; lanes to the ego's left are drawn above it.

Every pixel is projected onto the road's reference line (Newton steps from the ego's arc length), so
asphalt, lane markings and road edges come straight from the lane tables; vehicles are oriented boxes
filled by a per-pixel inside test against the few vehicles near the view. Poses use the ego's
unwrapped arc length plus ring distances, so nothing jumps at the ring seam. No Python loop runs
over pixels, vehicles or environments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from drivestack.sim.road import MARGIN, RoadNetwork
from drivestack.sim.state import WorldState

# Colours (RGB, uint8), highway-env's palette where it has one.
GRASS = (96, 122, 82)
ASPHALT = (100, 100, 100)
MARKING = (255, 255, 255)
EGO_COLOR = (50, 200, 0)  # highway-env GREEN
CRASHED_COLOR = (255, 100, 100)  # highway-env RED
TRAFFIC_COLOR = (100, 200, 255)  # highway-env BLUE; each vehicle gets its own shade of it
OUTLINE_COLOR = (20, 20, 20)

STRIPE_LENGTH = 3.0  # [m] painted part of a dashed lane marking
STRIPE_PERIOD = 8.0  # [m] dash + gap, counted from s = 0 on the ring
MARKING_WIDTH = 0.3  # [m] lane-marking width (drawn at least 1.5 px wide)
ADJACENT_TOL = 0.1  # [m] two lanes share an edge when their centres are a lane width apart within this
TRAFFIC_SHADE = (0.6, 1.0)  # [-] range of the per-vehicle brightness factor of traffic


def _view_axes(
    width: int, height: int, scale: float, centering: tuple[float, float], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """View-frame coordinates [m] of pixel centres: x forward along columns [W], y left up rows [H]."""
    cols = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    rows = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    return (cols - centering[0] * width) / scale, -(rows - centering[1] * height) / scale


def _view_reach(vx: torch.Tensor, vy: torch.Tensor) -> float:
    """[m] arc length beyond which nothing drawn in the view can be (generous: curves, long vehicles)."""
    return 1.5 * (max(abs(float(vx[0])), abs(float(vx[-1]))) + abs(float(vy[0]))) + 25.0


class RoadSurface(NamedTuple):
    """What lies at global ground points, shaped like the points (shared by the top-down and camera views)."""

    on_road: torch.Tensor  # bool: on a lane that exists there
    marking: torch.Tensor  # bool: on a painted lane marking (dashed between lanes, solid edges)
    s: torch.Tensor  # [m] unwrapped arc length of the point's projection on the reference line
    d: torch.Tensor  # [m] lateral offset from the reference line, positive to the left
    outside: torch.Tensor  # [m] distance beyond the nearest existing lane edge (0 on the road)


def road_layer(
    road: RoadNetwork,
    gx: torch.Tensor,
    gy: torch.Tensor,
    s_guess: torch.Tensor,
    px_size: float | torch.Tensor,
    marking_width: float = MARKING_WIDTH,
    iterations: int = 2,
) -> RoadSurface:
    """Asphalt, markings and road coordinates of global points (gx, gy) [m] (any shape, e.g. [E, P]).

    s_guess: a nearby arc length per point (Newton start); px_size [m]: the size of one pixel there
    (a float or a tensor shaped like the points), so markings are drawn at least 1.5 px wide.
    """
    # Two Newton steps from the tangent-line guess are within 0.1 mm of converged at gentle curvature.
    s, d = road.project(gx, gy, s_guess, iterations=iterations)  # (E, P) unwrapped s, lateral offset d
    off, exists = road.all_lane_offsets(s)  # (E, P, NL)
    hw = 0.5 * road.lane_width
    rel = d.unsqueeze(-1) - off  # (E, P, NL) lateral position within each lane
    on_road = (exists & (rel.abs() <= hw)).any(dim=-1)
    outside = torch.where(exists, (rel.abs() - hw).clamp_min(0.0), torch.full_like(rel, math.inf)).amin(dim=-1)

    if isinstance(px_size, torch.Tensor):
        half_line = (0.75 * px_size).clamp_min(0.5 * marking_width).unsqueeze(-1)
    else:
        half_line = max(0.5 * marking_width, 0.75 * px_size)
    near_left = exists & ((rel - hw).abs() <= half_line)  # on the left edge of lane i
    near_right = exists & ((rel + hw).abs() <= half_line)
    NL = road.num_lanes
    # Lane i and i+1 share an edge where both exist a lane width apart; that edge is dashed where a
    # change across it is allowed (e.g. the merge zone), solid elsewhere.
    adjacent = (
        exists[..., 1:] & exists[..., :-1] & ((off[..., 1:] - off[..., :-1] - road.lane_width).abs() <= ADJACENT_TOL)
    )  # (E, P, NL-1)
    lanes = torch.arange(NL, device=s.device)
    s_col = s.unsqueeze(-1)
    allowed = road.change_allowed(lanes[:-1], s_col, +1) | road.change_allowed(lanes[1:], s_col, -1)
    no = torch.zeros_like(exists[..., :1])
    adj_left = torch.cat([adjacent, no], dim=-1)  # (E, P, NL): lane i has a neighbour on its left
    adj_right = torch.cat([no, adjacent], dim=-1)
    allowed_left = torch.cat([adjacent & allowed, no], dim=-1)
    dash_on = torch.remainder(road.wrap(s), STRIPE_PERIOD) < STRIPE_LENGTH  # (E, P)
    solid = ((near_left & ~allowed_left) | (near_right & ~adj_right)).any(dim=-1)
    dashed = (near_left & adj_left & allowed_left).any(dim=-1) & dash_on
    return RoadSurface(on_road, solid | dashed, s, d, outside)


def _vehicle_layer(
    road: RoadNetwork,
    state: WorldState,
    env: torch.Tensor,
    s_ego: torch.Tensor,
    x0: torch.Tensor,
    y0: torch.Tensor,
    h0: torch.Tensor,
    vx: torch.Tensor,
    vy: torch.Tensor,
    px_size: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Vehicle fill colours [E, P, 3] and masks (covered, outline) [E, P] at view points (vx, vy) [P]."""
    veh = state.vehicles
    s, d, psi = veh.s[env], veh.d[env], veh.psi[env]  # (E, N)
    length, width, active = veh.length[env], veh.width[env], veh.active[env]
    E, N = s.shape
    # Unwrapped arc length of every vehicle relative to the ego: continuous across the ring seam.
    # Vehicles farther along the road than the view reaches are dropped; clamping keeps their (unused)
    # poses inside the lookup tables, which end MARGIN metres past the ring.
    reach = _view_reach(vx, vy)
    ds = road.delta_s(s, s_ego.unsqueeze(1))
    in_reach = ds.abs() <= reach
    s_unwrapped = s_ego.unsqueeze(1) + ds.clamp(-reach, reach)
    x, y, yaw = road.to_global(s_unwrapped, d, psi)
    c, sn = torch.cos(h0).unsqueeze(1), torch.sin(h0).unsqueeze(1)
    dx, dy = x - x0.unsqueeze(1), y - y0.unsqueeze(1)
    cx, cy = c * dx + sn * dy, -sn * dx + c * dy  # (E, N) centres in the view frame [m]
    rel_yaw = yaw - h0.unsqueeze(1)

    # Keep only vehicles whose box can reach the view, gathered to the front: (E, M), M = most in any env.
    radius = 0.5 * torch.hypot(length, width)
    near = (
        active
        & in_reach
        & (cx >= vx[0] - radius)
        & (cx <= vx[-1] + radius)
        & (cy <= vy[0] + radius)
        & (cy >= vy[-1] - radius)
    )
    M = max(int(near.sum(dim=1).max()), 1)  # note: a CPU-GPU sync point (sizes the per-pixel test)
    order = torch.argsort((~near).to(torch.int8), dim=1, stable=True)[:, :M]  # near vehicles first, by index
    valid = near.gather(1, order)
    cx, cy, rel_yaw, length, width = (t.gather(1, order) for t in (cx, cy, rel_yaw, length, width))

    # Per-pixel inside test in each box's own frame: (E, M, H, W), kept separable along rows and columns.
    ca, sa = torch.cos(rel_yaw)[..., None, None], torch.sin(rel_yaw)[..., None, None]
    px = vx.view(1, 1, 1, -1) - cx[..., None, None]  # (E, M, 1, W)
    py = vy.view(1, 1, -1, 1) - cy[..., None, None]  # (E, M, H, 1)
    along = (ca * px + sa * py).abs()  # (E, M, H, W)
    across = (-sa * px + ca * py).abs()
    hl, hw = 0.5 * length[..., None, None], 0.5 * width[..., None, None]
    inside = (along <= hl) & (across <= hw) & valid[..., None, None]
    t = 1.0 * px_size  # [m] outline thickness
    interior = (along <= hl - t) & (across <= hw - t)

    # Paint order: higher index on top, the ego above everything (as highway-env draws it last).
    idx = order.float()
    priority = torch.where(order == 0, torch.full_like(idx, N), idx)[..., None, None]
    best, top = torch.where(inside, priority, torch.full_like(priority, -1.0)).max(dim=1)  # (E, H, W)
    covered = best >= 0
    outline = covered & ~interior.gather(1, top.unsqueeze(1)).squeeze(1)

    # Colours: the ego green (red once crashed); traffic a per-vehicle shade of blue.
    golden = torch.remainder(order.float() * 0.618034, 1.0)  # (E, M) well-spread per-index fraction
    lo, hi = TRAFFIC_SHADE
    shade = lo + (hi - lo) * golden
    traffic = torch.tensor(TRAFFIC_COLOR, dtype=torch.float32, device=s.device) * shade.unsqueeze(-1)
    ego_rgb = torch.where(
        state.crashed[env].view(E, 1),
        torch.tensor(CRASHED_COLOR, dtype=torch.float32, device=s.device),
        torch.tensor(EGO_COLOR, dtype=torch.float32, device=s.device),
    )  # (E, 3)
    colors = torch.where((order == 0).unsqueeze(-1), ego_rgb.unsqueeze(1), traffic)  # (E, M, 3)
    fill = colors.gather(1, top.view(E, -1, 1).expand(-1, -1, 3))  # (E, H*W, 3)
    return fill, covered.view(E, -1), outline.view(E, -1)


@torch.no_grad()
def render_topdown_batch(
    road: RoadNetwork,
    state: WorldState,
    env_indices: Sequence[int] | torch.Tensor,
    width: int = 600,
    height: int = 150,
    scale: float = 5.5,
    centering: tuple[float, float] = (0.3, 0.5),
) -> np.ndarray:
    """Top-down RGB views of several environments, each centred on its ego.

    Args:
        road: the road network the state lives on.
        state: world state of B environments.
        env_indices: E environment indices to render.
        width, height: image size [px].
        scale: [px/m] zoom.
        centering: ego position as fractions of (width, height) from the top-left corner.

    Returns:
        uint8 array [E, height, width, 3].
    """
    if width < 1 or height < 1 or scale <= 0.0:
        raise ValueError(
            f"render_topdown: need width, height >= 1 px and scale > 0 px/m, "
            f"got width={width}, height={height}, scale={scale}"
        )
    dev = road.device
    env = torch.as_tensor(env_indices, dtype=torch.long, device=dev).view(-1)
    if env.numel() == 0 or int(env.min()) < -state.num_envs or int(env.max()) >= state.num_envs:
        raise ValueError(f"render_topdown: env indices {env.tolist()} out of range for {state.num_envs} environments")
    veh = state.vehicles
    E = env.numel()
    px_size = 1.0 / scale  # [m] one pixel
    vx, vy = _view_axes(width, height, scale, centering, dev)  # (W,), (H,)
    if _view_reach(vx, vy) > MARGIN:
        raise ValueError(
            f"render_topdown: a {width}x{height} px view at {scale} px/m spans more road "
            f"than the lookup tables cover ({MARGIN} m past the ring); raise scale or shrink "
            "the image"
        )

    # View frame: origin at the ego, x along the road tangent at the ego's arc length.
    s_ego = veh.s[env, 0]  # (E,) wrapped ring arc length doubles as the unwrapped base
    x0, y0, _ = road.to_global(s_ego, veh.d[env, 0], veh.psi[env, 0])
    _, _, h0, _ = road.reference(s_ego)
    c, sn = torch.cos(h0).view(E, 1, 1), torch.sin(h0).view(E, 1, 1)
    vxx, vyy = vx.view(1, 1, -1), vy.view(1, -1, 1)
    gx = (x0.view(E, 1, 1) + c * vxx - sn * vyy).reshape(E, -1)  # (E, H*W) global pixel centres [m]
    gy = (y0.view(E, 1, 1) + sn * vxx + c * vyy).reshape(E, -1)
    s_guess = (s_ego.view(E, 1, 1) + vxx).expand(E, height, width).reshape(E, -1)

    surface = road_layer(road, gx, gy, s_guess, px_size)
    on_road, marking = surface.on_road, surface.marking
    fill, covered, outline = _vehicle_layer(road, state, env, s_ego, x0, y0, h0, vx, vy, px_size)

    def rgb(color: tuple[int, int, int]) -> torch.Tensor:
        return torch.tensor(color, dtype=torch.float32, device=dev)

    img = torch.where(on_road.unsqueeze(-1), rgb(ASPHALT), rgb(GRASS))  # (E, P, 3)
    img = torch.where(marking.unsqueeze(-1), rgb(MARKING), img)
    img = torch.where(covered.unsqueeze(-1), fill, img)
    img = torch.where(outline.unsqueeze(-1), rgb(OUTLINE_COLOR), img)
    return img.round().clamp(0, 255).to(torch.uint8).view(E, height, width, 3).cpu().numpy()


def render_topdown(
    road: RoadNetwork,
    state: WorldState,
    env_index: int = 0,
    width: int = 600,
    height: int = 150,
    scale: float = 5.5,
    centering: tuple[float, float] = (0.3, 0.5),
) -> np.ndarray:
    """Top-down RGB view of one environment centred on its ego (highway-env's default framing).

    Args:
        road: the road network the state lives on.
        state: world state of B environments.
        env_index: which environment to draw.
        width, height: image size [px].
        scale: [px/m] zoom.
        centering: ego position as fractions of (width, height) from the top-left corner.

    Returns:
        uint8 array [height, width, 3]: grass, asphalt, lane markings (dashed where lane changes are
        allowed, solid road edges), vehicles as outlined oriented boxes (ego green, red once crashed;
        traffic in shades of blue).
    """
    return render_topdown_batch(road, state, [env_index], width, height, scale, centering)[0]


def pixel_of(
    road: RoadNetwork,
    state: WorldState,
    s: float,
    d: float,
    env_index: int = 0,
    width: int = 600,
    height: int = 150,
    scale: float = 5.5,
    centering: tuple[float, float] = (0.3, 0.5),
) -> tuple[int, int]:
    """(row, column) [px] of the road point (s [m], d [m]) in `render_topdown`'s image (may lie outside)."""
    veh = state.vehicles
    s_ego = veh.s[env_index, 0]
    x0, y0, _ = road.to_global(s_ego, veh.d[env_index, 0], veh.psi[env_index, 0])
    _, _, h0, _ = road.reference(s_ego)
    s_t = s_ego + road.delta_s(torch.as_tensor(s, dtype=s_ego.dtype, device=s_ego.device), s_ego)
    x, y, _ = road.to_global(s_t, torch.as_tensor(d, dtype=s_ego.dtype, device=s_ego.device))
    dx, dy = float(x - x0), float(y - y0)
    c, sn = math.cos(float(h0)), math.sin(float(h0))
    fwd, left = c * dx + sn * dy, -sn * dx + c * dy
    return (math.floor(centering[1] * height - left * scale), math.floor(centering[0] * width + fwd * scale))
