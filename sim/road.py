"""Road network: a reference line with lanes as lateral-offset profiles, sampled into lookup tables.

Every lane's centre line is a polyline in the global frame (`centerlines()`), and all lane-frame
queries are batched table lookups on a uniform arc-length grid along one reference line:
arc length s [m], lateral offset d [m] (positive to the left), heading and curvature at s.

Traffic circulates on a ring: s lives in [0, length) and wraps. The tables cover
[-margin, length + margin] with the geometry continued smoothly, so poses computed from an
*unwrapped* s near the ego (rendering, relative geometry) never jump at the seam.

Lanes are numbered from the right: lane 0 is the rightmost. In the merge scenario lane 0 is the
on-ramp, which exists only over part of the section and may be left only inside the merge zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from drivestack.sim.config import CurveProfile, RoadConfig, Scenario

MARGIN = 300.0  # [m] tables extend this far past both ends of the section


@dataclass
class RoadNetwork:
    """Lookup tables of one road section. Tables shaped [K] (reference line) or [NL, K] (lanes)."""

    length: float  # [m] ring length
    lane_width: float  # [m]
    grid_step: float  # [m]
    ref_x: torch.Tensor  # [K] [m] reference-line position, global frame
    ref_y: torch.Tensor  # [K] [m]
    ref_heading: torch.Tensor  # [K] [rad]
    ref_curvature: torch.Tensor  # [K] [1/m]
    lane_offset: torch.Tensor  # [NL, K] [m] lateral offset of each lane centre from the reference line
    lane_heading: torch.Tensor  # [NL, K] [rad] lane heading relative to the reference heading
    lane_curvature: torch.Tensor  # [NL, K] [1/m] curvature of the lane centre line
    lane_exists: torch.Tensor  # [NL, K] bool
    left_allowed: torch.Tensor  # [NL, K] bool: a change from this lane to lane+1 is allowed here
    right_allowed: torch.Tensor  # [NL, K] bool: a change to lane-1 is allowed here
    lane_end: torch.Tensor  # [NL] [m] arc length where the lane ends (inf for ring lanes)
    lane_rank: torch.Tensor  # [NL] through lanes to the right of this lane (the ramp counts as 0)
    num_through_lanes: int
    scenario: Scenario

    @property
    def num_lanes(self) -> int:
        return int(self.lane_offset.shape[0])

    @property
    def device(self) -> torch.device:
        return self.ref_x.device

    # ----------------------------------------------------------------------------------- indexing
    def _grid(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid index i0 and interpolation weight for arc length s (any shape, unwrapped ok)."""
        K = self.ref_x.shape[0]
        u = (s + MARGIN) / self.grid_step
        # note: clamp the integer index, not u: in float32, K - 1 - eps rounds to K - 1
        i0 = u.floor().clamp(0, K - 2).long()
        return i0, (u - i0).clamp(0.0, 1.0)

    def _interp(self, table: torch.Tensor, i0: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.lerp(torch.take(table, i0), torch.take(table, i0 + 1), w)  # take: faster than table[i0]

    def wrap(self, s: torch.Tensor) -> torch.Tensor:
        """Arc length wrapped onto the ring [0, length)."""
        # note: same as torch.remainder, written out because it is ~40% faster on CPU; the clamp guards
        # the rounding of s - floor(s / L) * L up to L, at the input's own precision (a float32 bound would
        # cut float64 arc lengths just below L by 1e-4 m)
        rel = 1e-7 if s.dtype == torch.float32 else torch.finfo(s.dtype).eps
        return (s - torch.floor(s / self.length) * self.length).clamp(0.0, self.length * (1.0 - rel))

    def delta_s(self, s_to: torch.Tensor, s_from: torch.Tensor) -> torch.Tensor:
        """Signed ring distance s_to - s_from in [-length/2, length/2)."""
        half = 0.5 * self.length
        return self.wrap(s_to - s_from + half) - half

    # ------------------------------------------------------------------------------------ queries
    def reference(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reference line at arc length s: (x [m], y [m], heading [rad], curvature [1/m])."""
        i0, w = self._grid(s)
        return (
            self._interp(self.ref_x, i0, w),
            self._interp(self.ref_y, i0, w),
            self._interp(self.ref_heading, i0, w),
            self._interp(self.ref_curvature, i0, w),
        )

    def lane_frame(self, lane: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Lane-frame query for lane indices `lane` at arc lengths `s` (same shape, any).

        Returns (offset [m] of the lane centre from the reference line, lane heading relative to the
        reference [rad], lane curvature [1/m], exists bool).
        """
        i0, w = self._grid(s)
        K = self.ref_x.shape[0]
        flat = lane.long() * K + i0
        off = self._interp(self.lane_offset, flat, w)
        hdg = self._interp(self.lane_heading, flat, w)
        kap = self._interp(self.lane_curvature, flat, w)
        return off, hdg, kap, torch.take(self.lane_exists, flat)

    def all_lane_offsets(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets [..., NL] of every lane centre at s, and whether each lane exists there."""
        i0, w = self._grid(s)
        NL = self.num_lanes
        flat = i0.unsqueeze(-1) * NL + torch.arange(NL, device=s.device)  # [..., NL] into the [K, NL] tables
        off_t, exists_t = self.lane_offset.T.contiguous(), self.lane_exists.T.contiguous()
        off = torch.lerp(torch.take(off_t, flat), torch.take(off_t, flat + NL), w.unsqueeze(-1))
        return off, torch.take(exists_t, flat)

    def edges(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lateral offsets [...] [m] of the left and right outer edge lines at s (of the lanes that exist there)."""
        off, exists = self.all_lane_offsets(s)
        left = torch.where(exists, off, -math.inf).amax(dim=-1) + 0.5 * self.lane_width
        right = torch.where(exists, off, math.inf).amin(dim=-1) - 0.5 * self.lane_width
        return left, right

    def nearest_lane(self, s: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lane whose centre is nearest to (s, d) among lanes that exist at s, and whether the point
        lies within that lane (on the drivable area)."""
        off, exists = self.all_lane_offsets(s)
        dist = torch.where(exists, (off - d.unsqueeze(-1)).abs(), torch.full_like(off, math.inf))
        best, lane = dist.min(dim=-1)
        return lane, best <= 0.5 * self.lane_width

    def change_allowed(self, lane: torch.Tensor, s: torch.Tensor, direction: int) -> torch.Tensor:
        """Whether a change from `lane` to `lane + direction` (+1 left, -1 right) is allowed at s."""
        i0, _ = self._grid(s)
        table = self.left_allowed if direction > 0 else self.right_allowed
        return torch.take(table, lane.long() * self.ref_x.shape[0] + i0)

    def to_global(
        self,
        s: torch.Tensor,
        d: torch.Tensor,
        psi: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Global pose (x [m], y [m], yaw [rad]) of points at road coordinates (s, d) with heading
        psi relative to the reference line. s may be unwrapped (within the tables' margin)."""
        x, y, heading, _ = self.reference(s)
        x = x - d * torch.sin(heading)  # normal points left: (-sin, cos)
        y = y + d * torch.cos(heading)
        yaw = heading if psi is None else heading + psi
        return x, y, yaw

    def project(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        s_guess: torch.Tensor,
        iterations: int = 4,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Road coordinates (s, d) of global points, by Newton steps from a nearby guess of s.

        Converges when the guess is within a few tens of metres (gentle curvature). s is not wrapped.
        """
        s = s_guess.clone()
        for _ in range(iterations):
            rx, ry, heading, kappa = self.reference(s)
            dx, dy = x - rx, y - ry
            along = dx * torch.cos(heading) + dy * torch.sin(heading)
            d = -dx * torch.sin(heading) + dy * torch.cos(heading)
            s = s + along / (1.0 - kappa * d).clamp_min(0.1)
        rx, ry, heading, _ = self.reference(s)
        d = -(x - rx) * torch.sin(heading) + (y - ry) * torch.cos(heading)
        return s, d

    def centerlines(self, step: float = 2.0) -> list[np.ndarray]:
        """Lane centre lines over the section as global polylines, one [P, 2] array per lane."""
        lines = []
        for lane in range(self.num_lanes):
            s = torch.arange(0.0, self.length + 1e-6, step, device=self.device)
            off, _, _, exists = self.lane_frame(torch.full_like(s, lane, dtype=torch.long), s)
            x, y, _ = self.to_global(s, off)
            pts = torch.stack([x, y], dim=-1)[exists]
            lines.append(pts.cpu().numpy())
        return lines

    def to(self, device: torch.device | str) -> RoadNetwork:
        fields = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return RoadNetwork(**fields)


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))  # quintic: zero slope and curvature at both ends


def build_road(config: RoadConfig, device: torch.device | str = "cpu") -> RoadNetwork:
    """Build the lookup tables of a highway or merge section (float64 geometry, float32 tables)."""
    config.validate()
    ds = config.grid_step
    s = np.arange(-MARGIN, config.length + MARGIN + 0.5 * ds, ds)
    if config.curve_profile == CurveProfile.ARC:
        kappa = np.full_like(s, config.max_curvature)
    else:
        kappa = config.max_curvature * np.sin(2.0 * math.pi * s / config.curve_wavelength)
    # Integrate heading and position from s = 0 (the origin of the global frame), both directions.
    i_zero = int(round(MARGIN / ds))
    heading = np.concatenate([[0.0], np.cumsum(0.5 * (kappa[1:] + kappa[:-1]) * ds)])
    heading -= heading[i_zero]
    cx, cy = np.cos(heading), np.sin(heading)
    x = np.concatenate([[0.0], np.cumsum(0.5 * (cx[1:] + cx[:-1]) * ds)])
    y = np.concatenate([[0.0], np.cumsum(0.5 * (cy[1:] + cy[:-1]) * ds)])
    x -= x[i_zero]
    y -= y[i_zero]

    w = config.lane_width
    n = config.num_lanes
    offsets, exists, left, right = [], [], [], []
    lane_end, lane_rank = [], []
    s_ring = np.remainder(s, config.length)  # lane layout repeats around the ring
    if config.scenario == Scenario.MERGE:
        a0 = config.ramp_start
        a1 = a0 + config.ramp_approach
        a2 = a1 + config.merge_length
        ramp = -w - config.ramp_offset * (1.0 - _smoothstep((s_ring - a0) / config.ramp_approach))
        ramp = np.where(s_ring > a2, -w - config.ramp_offset, ramp)  # no jump at the seam (lane absent there)
        offsets.append(ramp)
        exists.append((s_ring >= a0) & (s_ring <= a2))
        left.append((s_ring >= a1) & (s_ring <= a2))
        right.append(np.zeros_like(s, dtype=bool))
        lane_end.append(a2)
        lane_rank.append(0)
    for i in range(n):
        offsets.append(np.full_like(s, i * w))
        exists.append(np.ones_like(s, dtype=bool))
        left.append(np.full_like(s, i < n - 1, dtype=bool))
        # Never change into a lane that ends (the ramp): it is a lane to leave, not to enter.
        right.append(np.full_like(s, i > 0, dtype=bool))
        lane_end.append(math.inf)
        lane_rank.append(i)
    off = np.stack(offsets)  # [NL, K]
    # Lane heading relative to the reference: atan(d'(s) / (1 - kappa d)); lane curvature from the
    # derivative of the lane's global heading with respect to its own arc length.
    d_prime = np.gradient(off, ds, axis=1)
    scale = 1.0 - kappa[None, :] * off
    rel_heading = np.arctan2(d_prime, scale)
    lane_global_heading = heading[None, :] + rel_heading
    sigma_prime = np.sqrt(scale**2 + d_prime**2)
    lane_kappa = np.gradient(lane_global_heading, ds, axis=1) / sigma_prime

    f32 = dict(dtype=torch.float32, device=device)
    return RoadNetwork(
        length=float(config.length),
        lane_width=float(w),
        grid_step=float(ds),
        ref_x=torch.tensor(x, **f32),
        ref_y=torch.tensor(y, **f32),
        ref_heading=torch.tensor(heading, **f32),
        ref_curvature=torch.tensor(kappa, **f32),
        lane_offset=torch.tensor(off, **f32),
        lane_heading=torch.tensor(rel_heading, **f32),
        lane_curvature=torch.tensor(lane_kappa, **f32),
        lane_exists=torch.tensor(np.stack(exists), dtype=torch.bool, device=device),
        left_allowed=torch.tensor(np.stack(left), dtype=torch.bool, device=device),
        right_allowed=torch.tensor(np.stack(right), dtype=torch.bool, device=device),
        lane_end=torch.tensor(lane_end, **f32),
        lane_rank=torch.tensor(lane_rank, dtype=torch.long, device=device),
        num_through_lanes=n,
        scenario=config.scenario,
    )
