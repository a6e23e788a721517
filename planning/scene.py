"""The scene model: what a driving policy knows about the world, ego-centric and batched.

A `Scene` holds the ego, the other agents around it and the lanes at the ego, for B environments at
once. It is the one interface between "where the world comes from" and "what the planner does with
it": `scene_from_world` builds it from the simulator's ground truth (the privileged path used for
training), and the tracker will build it from tracks (the perceived path). Everything in it is
something a tracker with a lane map can produce: poses and velocities of boxes with stable ids, the
ego's own state, and the lane centres around it. The ego's own state includes what the ego knows about
itself rather than sees: the lane it is heading for, its speed set-point, where the road lets it change
lanes and how far its lane goes on (an on-ramp ends) — so a policy drives from a ground-truth scene and
from a perceived one alike. Nothing in it is the simulator's bookkeeping about others (their desired
speeds, target lanes, lane-change paths).

Frame: the ego's road frame, as in `sim.collision.relative_positions` and the kinematics
observation: x along the road at the ego (forward), y across it (left), origin at the ego's centre.

`encode_kinematics_scene` turns a Scene into the kinematics observation through
`sim.observation.encode_kinematics`, the one encoder the simulator uses too, so a policy trained on
ground truth sees bit-identical inputs from a ground-truth Scene; `encode_scene` adds the lane features
(`sim.lane_features`: gaps and time-to-collision per lane) when the observation config asks for them, so the
privileged and the perceived scene both carry them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from drivestack.sim.collision import relative_positions
from drivestack.sim.config import ObservationConfig
from drivestack.sim.lane_features import ego_lane_context, encode_lane_features
from drivestack.sim.observation import encode_kinematics
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import WorldState

_EGO = (
    "ego_speed",
    "ego_heading",
    "ego_d",
    "ego_lane",
    "ego_length",
    "ego_width",
    "ego_target_lane",
    "ego_speed_setpoint",
    "ego_speed_index",
    "can_change_left",
    "can_change_right",
)
_AGENTS = ("x", "y", "vx", "vy", "heading", "length", "width", "id", "present")
_LANES = ("lane_offset", "lane_exists", "lane_end", "lane_width")
_DTYPES = {
    "ego_lane": torch.long,
    "ego_target_lane": torch.long,
    "ego_speed_index": torch.long,
    "can_change_left": torch.bool,
    "can_change_right": torch.bool,
    "id": torch.long,
    "present": torch.bool,
    "lane_exists": torch.bool,
}


@dataclass(frozen=True)
class Scene:
    """An ego-centric scene of B environments with M agent slots and NL lanes.

    Ego, shaped (B,):
        ego_speed [m/s] (>= 0); ego_heading [rad] relative to the road direction at the ego;
        ego_d [m] lateral position on the road (offset from the road's reference line, the centre of
        its rightmost through lane, positive to the left); ego_lane (long) index of the lane whose
        centre is nearest (lanes numbered from the right, as in `sim.road`); ego_length, ego_width [m].
    Ego, what it knows about itself, shaped (B,):
        ego_target_lane (long) the lane it is heading for (== ego_lane when keeping its lane, the next lane
        while a lane change is under way); ego_speed_setpoint [m/s] the speed its controller holds;
        ego_speed_index (long) index of that set-point in the meta-action target speeds
        (`ActionConfig.target_speeds`, which FASTER / SLOWER step through); can_change_left,
        can_change_right (bool) a lane exists left / right of ego_target_lane at the ego's position and the
        road allows changing into it there (no solid line, no ramp barrier).
    Agents, shaped (B, M), slot order carries no meaning:
        x, y [m] centre relative to the ego in its road frame (x forward along the road, y left);
        vx, vy [m/s] velocity in the road frame (absolute, not relative to the ego);
        heading [rad] relative to the road direction; length, width [m] body size;
        id (long) identity, stable over time while the agent exists (-1 for empty slots);
        present (bool) the slot holds an agent (values of empty slots are ignored).
    Lanes, shaped (B, NL):
        lane_offset [m] lateral offset of every lane centre at the ego's position, relative to the ego;
        lane_exists (bool) the lane exists at the ego's position;
        lane_end [m] distance along the road from the ego to where the lane ends ahead (inf: it goes on);
        a finite lane_end of the ego's lane is what makes a merge mandatory (`ego_lane_end`);
        lane_width [m] width of every lane.
    """

    ego_speed: torch.Tensor
    ego_heading: torch.Tensor
    ego_d: torch.Tensor
    ego_lane: torch.Tensor
    ego_length: torch.Tensor
    ego_width: torch.Tensor
    ego_target_lane: torch.Tensor
    ego_speed_setpoint: torch.Tensor
    ego_speed_index: torch.Tensor
    can_change_left: torch.Tensor
    can_change_right: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    vx: torch.Tensor
    vy: torch.Tensor
    heading: torch.Tensor
    length: torch.Tensor
    width: torch.Tensor
    id: torch.Tensor
    present: torch.Tensor
    lane_offset: torch.Tensor
    lane_exists: torch.Tensor
    lane_end: torch.Tensor
    lane_width: torch.Tensor

    @property
    def num_envs(self) -> int:
        return int(self.ego_speed.shape[0])

    @property
    def num_agents(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_lanes(self) -> int:
        return int(self.lane_offset.shape[1])

    @property
    def ego_velocity(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ego's road-frame velocity (vx, vy) [m/s], (B,) each."""
        return self.ego_speed * torch.cos(self.ego_heading), self.ego_speed * torch.sin(self.ego_heading)

    @property
    def ego_lane_end(self) -> torch.Tensor:
        """[m] (B,) distance from the ego to where the lane it is heading for ends (inf: it goes on)."""
        lane = self.ego_target_lane.clamp(0, self.num_lanes - 1)
        return self.lane_end.gather(1, lane[:, None]).squeeze(1)

    def validate(self) -> Scene:
        """Check shapes, dtypes, devices and finiteness; raise ValueError naming the first bad field."""
        if self.ego_speed.dim() != 1:
            raise ValueError(f"Scene.ego_speed: expected shape (B,), got {tuple(self.ego_speed.shape)}")
        B, M, NL = self.num_envs, self.x.shape[-1] if self.x.dim() == 2 else -1, self.lane_offset.shape[-1]
        expected = {**{n: (B,) for n in _EGO}, **{n: (B, M) for n in _AGENTS}, **{n: (B, NL) for n in _LANES}}
        device = self.ego_speed.device
        for f in fields(self):
            t = getattr(self, f.name)
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"Scene.{f.name}: expected a torch.Tensor, got {type(t).__name__}")
            if tuple(t.shape) != expected[f.name]:
                raise ValueError(
                    f"Scene.{f.name}: expected shape {expected[f.name]} (B={B}, M={M}, NL={NL}), got {tuple(t.shape)}"
                )
            dtype = _DTYPES.get(f.name)
            if (dtype is not None and t.dtype != dtype) or (dtype is None and not t.is_floating_point()):
                raise ValueError(f"Scene.{f.name}: expected dtype {dtype or 'floating point'}, got {t.dtype}")
            if t.device != device:
                raise ValueError(f"Scene.{f.name}: on {t.device}, the rest of the scene is on {device}")
        for name in _EGO + ("x", "y", "vx", "vy", "heading", "length", "width", "lane_offset", "lane_width"):
            t = getattr(self, name)
            if not t.is_floating_point():
                continue
            finite = torch.isfinite(t)
            if name in _AGENTS:
                finite |= ~self.present  # empty slots may hold anything
            if not bool(finite.all()):
                raise ValueError(f"Scene.{name} has NaN or infinite values")
        if bool((self.ego_speed < 0).any()):
            raise ValueError("Scene.ego_speed has negative values; speeds are >= 0 m/s")
        if bool(torch.isnan(self.lane_end).any()):
            raise ValueError("Scene.lane_end has NaN values (use inf for lanes that do not end)")
        return self

    def to(self, device: torch.device | str) -> Scene:
        return Scene(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def scene_from_world(state: WorldState, road: RoadNetwork) -> Scene:
    """The privileged scene of the simulator's ground truth: every other vehicle is an agent.

    Args:
        state: world state of B environments with N vehicles (index 0 the ego).
        road: the road the state lives on.
    Returns:
        Scene with M = N - 1 agent slots; agent slot m is vehicle m + 1 and its id is that vehicle
        index (stable for the whole episode); present = the vehicle's `active` flag. The ego's target
        lane, set-point and set-point index are the simulator's own (what the ego's controller holds);
        can_change_left / right are the road's change tables at the ego, from its target lane.
    """
    veh = state.vehicles
    dx, dy = relative_positions(veh, road)  # (B, N)
    # Road-frame velocities over all N vehicles at once, exactly as the observation computes them.
    vx, vy = veh.speed * torch.cos(veh.psi), veh.speed * torch.sin(veh.psi)
    N = veh.shape[1]
    ids = torch.where(veh.active[:, 1:], torch.arange(1, N, device=veh.s.device), -1)  # (B, N - 1)
    return Scene(
        **ego_lane_context(state, road),
        x=dx[:, 1:],
        y=dy[:, 1:],
        vx=vx[:, 1:],
        vy=vy[:, 1:],
        heading=veh.psi[:, 1:],
        length=veh.length[:, 1:],
        width=veh.width[:, 1:],
        id=ids,
        present=veh.active[:, 1:],
    )


def scene_from_agents(
    state: WorldState,
    road: RoadNetwork,
    boxes: torch.Tensor,
    velocity: torch.Tensor,
    ids: torch.Tensor,
    present: torch.Tensor,
    s_ego: torch.Tensor | None = None,
) -> Scene:
    """A scene whose agents are given boxes (tracks, detections) and whose ego and lanes are the simulator's.

    The perceived path's scene: the ego knows itself (speed, lane, target lane, set-point, lane availability,
    filled exactly as `scene_from_world` fills them) and the map (lanes); the other agents are whatever
    perception reports. Boxes are moved into the ego's road frame by projecting their centres onto the road
    (`RoadNetwork.project`, Newton steps from the ego's arc length), so a ground-truth box gives the same x, y
    as `scene_from_world` up to float rounding.

    Args:
        state: world state of B environments (the ego, row 0, is what is used).
        road: the road the state lives on.
        boxes: (B, M, 7) global frame x, y, z [m], w, l, h [m], yaw [rad] (the frame of
            `sim.raycast.vehicle_boxes` with the same `s_ego`).
        velocity: (B, M, 2) [m/s] global frame vx, vy.
        ids: (B, M) long track ids (any value where not present; -1 is written there).
        present: (B, M) bool: the slot holds an agent (a box without a finite centre is taken as absent).
        s_ego: (B,) [m] the ego's arc length the global frame was made with (unwrapped; default its ring s).
    Returns:
        Scene with M agent slots.
    """
    veh = state.vehicles
    s0 = (veh.s[:, 0] if s_ego is None else s_ego.to(veh.s)).unsqueeze(1)  # (B, 1)
    d0 = veh.d[:, :1]
    rx, ry, heading, kappa = road.reference(s0)
    # empty slots (and boxes without a finite centre, which are dropped) are projected from the ego's reference point
    present = present & torch.isfinite(boxes[..., :2]).all(dim=-1)
    gx, gy = torch.where(present, boxes[..., 0], rx), torch.where(present, boxes[..., 1], ry)  # (B, M)
    velocity = torch.where(present[..., None], velocity, 0.0)
    s_guess = s0 + (gx - rx) * torch.cos(heading) + (gy - ry) * torch.sin(heading)
    s, d = road.project(gx, gy, s_guess)  # (B, M) unwrapped arc length and lateral offset
    _, _, road_heading, _ = road.reference(s)
    c, sn = torch.cos(road_heading), torch.sin(road_heading)
    vx, vy = velocity[..., 0], velocity[..., 1]
    # as relative_positions: the along-road distance scaled to the pair's mean lateral position
    dx = (s - s0) * (1.0 - kappa * 0.5 * (d + d0))
    psi = torch.remainder(boxes[..., 6] - road_heading + torch.pi, 2 * torch.pi) - torch.pi
    return Scene(
        **ego_lane_context(state, road),
        x=dx,
        y=d - d0,
        vx=c * vx + sn * vy,
        vy=-sn * vx + c * vy,
        heading=psi,
        length=boxes[..., 4],
        width=boxes[..., 3],
        id=torch.where(present, ids.long(), -1),
        present=present,
    )


def encode_kinematics_scene(scene: Scene, config: ObservationConfig) -> torch.Tensor:
    """Kinematics observation (B, K, F) of a scene, through `sim.observation.encode_kinematics`.

    Uses only the ego's lateral position, speed and heading and the agents' relative positions,
    velocities, headings and presence, so a Scene built from tracks encodes the same way as one built
    from ground truth.
    """
    ego_vx, ego_vy = scene.ego_velocity

    def agents(values: torch.Tensor) -> torch.Tensor:
        # Empty slots may hold anything (a tracker's stale values, NaN): the encoder multiplies unseen rows by 0,
        # which would keep a NaN, so they are zeroed here. Seen rows are untouched: the encoding stays exact.
        return torch.where(scene.present, values, 0.0)

    return encode_kinematics(
        ego_y=scene.ego_d,
        ego_vx=ego_vx,
        ego_vy=ego_vy,
        ego_heading=scene.ego_heading,
        rel_x=agents(scene.x),
        rel_y=agents(scene.y),
        rel_vx=agents(scene.vx - ego_vx[:, None]),
        rel_vy=agents(scene.vy - ego_vy[:, None]),
        heading=agents(scene.heading),
        present=scene.present,
        config=config,
    )


def encode_scene(scene: Scene, config: ObservationConfig) -> torch.Tensor:
    """The observation a policy trained under `config` sees for `scene`: the kinematics rows (B, K, F), or with
    `config.lane_features` the rows flattened and followed by the lane-feature block (`sim.lane_features`),
    exactly as the simulator encodes its ground truth. (Observation noise is the simulator's training option;
    a scene is encoded as it is.)"""
    rows = encode_kinematics_scene(scene, config)
    if not config.lane_features:
        return rows
    ctx = {f: getattr(scene, f) for f in _EGO + _LANES}
    present = scene.present
    x, y = torch.where(present, scene.x, 0.0), torch.where(present, scene.y, 0.0)  # empty slots may hold NaN
    vx, length = torch.where(present, scene.vx, 0.0), torch.where(present, scene.length, 0.0)
    lanes = encode_lane_features(ctx, x, y, vx, length, present, config)
    return torch.cat([rows.flatten(1), lanes], dim=1)
