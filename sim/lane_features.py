"""Lane features: what matters for safety in the ego's lane and its neighbours, from an ego-centric scene.

`ego_lane_context` gives what the ego knows about itself and the lane map at its position (the ego and lane
fields of `planning.Scene`); `encode_lane_features` turns those plus the other vehicles' road-frame positions
and velocities into a fixed block the policy sees. The simulator's observation feeds it ground truth and the
planning scene (ground truth or tracks) feeds it the same tensors, so a policy gets the same features from
either path.

The block, shaped (B, EGO + 3 * G), all values in [-1, 1]:
  ego: setpoint (speed set-point / v_range), changing (1 while a lane change is under way);
  then for the lanes right of (-1), at (0) and left of (+1) the lane the ego is heading for, G = 8 values:
    available   1 if the ego may be in that lane (the target lane: 1; a neighbour: the change is allowed here)
    lead_gap    bumper-to-bumper gap to the nearest vehicle ahead in the lane / x_range (1: none within range;
                negative: a vehicle alongside)
    lead_dv     its velocity along the road minus the ego's / v_range (0: none)
    lead_ttc    min(TTC, ttc_horizon) / ttc_horizon with TTC = gap / closing speed (1: not closing, or none)
    follow_gap, follow_dv, follow_ttc   the same for the nearest vehicle behind (closing: it is faster)
    end         distance from the ego's front to where the lane ends / x_range (1: beyond range or never)
A vehicle is in a lane when its centre is within half a lane width of the lane's centre; "ahead" means its
centre is ahead of the ego's. Vehicles beyond x_range are not seen, as in the kinematics observation.
"""

from __future__ import annotations

import torch

from drivestack.sim.config import ObservationConfig
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import WorldState

EGO_FEATURES = ("setpoint", "changing")
LANE_FEATURES = ("available", "lead_gap", "lead_dv", "lead_ttc", "follow_gap", "follow_dv", "follow_ttc", "end")
SIDES = (-1, 0, 1)  # right of, at and left of the target lane
LANE_BLOCK = len(EGO_FEATURES) + len(SIDES) * len(LANE_FEATURES)


def ego_lane_context(state: WorldState, road: RoadNetwork) -> dict[str, torch.Tensor]:
    """The ego's own state and the lane map at its position: the ego and lane fields of `planning.Scene`.

    The ego's target lane, set-point and set-point index are the simulator's own (what the ego's controller
    holds); can_change_left / right are the road's change tables at the ego, from its target lane.
    Returns (B,) ego tensors and (B, NL) lane tensors, named as the Scene's fields.
    """
    veh = state.vehicles
    B = veh.shape[0]
    s0 = veh.s[:, 0]
    offsets, exists = road.all_lane_offsets(s0)  # (B, NL)
    ends = road.lane_end.expand(B, -1)  # (B, NL) arc length of each lane's end, inf for ring lanes
    finite = torch.isfinite(ends)
    ahead = road.delta_s(torch.where(finite, ends, 0.0), s0[:, None])
    target = veh.target_lane[:, 0]
    NL = road.num_lanes
    # A neighbour of the target lane: inside the road's lanes, present here, and the change allowed here.
    left, right = (target + 1).clamp_max(NL - 1), (target - 1).clamp_min(0)
    can_left = (target < NL - 1) & exists.gather(1, left[:, None]).squeeze(1) & road.change_allowed(target, s0, +1)
    can_right = (target > 0) & exists.gather(1, right[:, None]).squeeze(1) & road.change_allowed(target, s0, -1)
    return {
        "ego_speed": veh.speed[:, 0],
        "ego_heading": veh.psi[:, 0],
        "ego_d": veh.d[:, 0],
        "ego_lane": veh.lane[:, 0],
        "ego_length": veh.length[:, 0],
        "ego_width": veh.width[:, 0],
        "ego_target_lane": target,
        "ego_speed_setpoint": veh.desired_speed[:, 0],
        "ego_speed_index": state.ego_speed_index,
        "can_change_left": can_left,
        "can_change_right": can_right,
        "lane_offset": offsets - veh.d[:, :1],
        "lane_exists": exists,
        "lane_end": torch.where(finite, ahead, torch.inf),
        "lane_width": torch.full_like(offsets, road.lane_width),
    }


def _ttc(gap: torch.Tensor, closing: torch.Tensor, horizon: float) -> torch.Tensor:
    """min(gap / closing, horizon) / horizon where closing > 0, else 1; a gap already closed (<= 0) is 0."""
    ttc = gap.clamp_min(0.0) / closing.clamp_min(1e-6)
    return torch.where(closing > 0.0, (ttc / horizon).clamp_max(1.0), 1.0)


def encode_lane_features(
    ctx: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    vx: torch.Tensor,
    length: torch.Tensor,
    present: torch.Tensor,
    config: ObservationConfig,
) -> torch.Tensor:
    """The lane-feature block (B, LANE_BLOCK) of an ego and M other vehicles.

    Args:
        ctx: the ego and lane fields (`ego_lane_context`, or a `planning.Scene`'s same-named fields): ego_speed,
            ego_heading, ego_lane, ego_target_lane, ego_length, ego_speed_setpoint (B,), can_change_left /
            right (B,) bool, lane_offset [m], lane_width [m], lane_exists (bool), lane_end [m] (B, NL).
        x, y: [m] (B, M) centres relative to the ego in its road frame; vx: [m/s] (B, M) velocity along the road.
        length: [m] (B, M) body lengths; present: (B, M) bool.
        config: x_range, v_range and ttc_horizon normalise the values.
    """
    B, NL = ctx["lane_offset"].shape
    ego_vx = ctx["ego_speed"] * torch.cos(ctx["ego_heading"])  # (B,)
    target = ctx["ego_target_lane"]
    sides = torch.tensor(SIDES, device=x.device)
    lanes = target[:, None] + sides  # (B, 3)
    inside = (lanes >= 0) & (lanes < NL)
    lanes_c = lanes.clamp(0, NL - 1)
    exists = inside & ctx["lane_exists"].gather(1, lanes_c)
    available = torch.stack([ctx["can_change_right"], torch.ones_like(exists[:, 0]), ctx["can_change_left"]], 1)
    available = available & exists
    centre = ctx["lane_offset"].gather(1, lanes_c)  # (B, 3) [m] relative to the ego
    half_width = 0.5 * ctx["lane_width"].gather(1, lanes_c)

    seen = present & (x.abs() <= config.x_range)  # (B, M)
    in_lane = seen[:, None, :] & ((y[:, None, :] - centre[:, :, None]).abs() <= half_width[:, :, None])  # (B, 3, M)
    in_lane &= exists[:, :, None]
    gap = x - 0.5 * (length + ctx["ego_length"][:, None])  # (B, M) bumper to bumper along the road
    ahead = in_lane & (x >= 0.0)[:, None, :]
    behind = in_lane & (x < 0.0)[:, None, :]
    x3 = x[:, None, :].expand(B, 3, -1)
    i_lead = torch.where(ahead, x3, torch.inf).argmin(dim=2, keepdim=True)  # (B, 3, 1) nearest ahead
    i_foll = torch.where(behind, x3, -torch.inf).argmax(dim=2, keepdim=True)  # nearest behind
    has_lead, has_foll = ahead.gather(2, i_lead).squeeze(2), behind.gather(2, i_foll).squeeze(2)  # (B, 3)

    def pick(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return values[:, None, :].expand(B, 3, -1).gather(2, index).squeeze(2)

    lead_gap = torch.where(has_lead, pick(gap, i_lead), config.x_range)
    lead_dv = torch.where(has_lead, pick(vx, i_lead) - ego_vx[:, None], 0.0)
    # behind: the gap from the follower's front to the ego's rear is -x minus both half lengths
    follow_gap = -pick(x, i_foll) - 0.5 * (pick(length, i_foll) + ctx["ego_length"][:, None])
    follow_gap = torch.where(has_foll, follow_gap, config.x_range)
    follow_dv = torch.where(has_foll, pick(vx, i_foll) - ego_vx[:, None], 0.0)
    lead_ttc = torch.where(has_lead, _ttc(lead_gap, -lead_dv, config.ttc_horizon), 1.0)
    follow_ttc = torch.where(has_foll, _ttc(follow_gap, follow_dv, config.ttc_horizon), 1.0)
    end = ctx["lane_end"].gather(1, lanes_c) - 0.5 * ctx["ego_length"][:, None]
    end = torch.where(exists, end, 0.0)

    per_lane = torch.stack(
        [
            available.float(),
            lead_gap / config.x_range,
            lead_dv / config.v_range,
            lead_ttc,
            follow_gap / config.x_range,
            follow_dv / config.v_range,
            follow_ttc,
            end.clamp_max(config.x_range) / config.x_range,
        ],
        dim=2,
    )  # (B, 3, G)
    ego = torch.stack(
        [ctx["ego_speed_setpoint"] / config.v_range, (ctx["ego_target_lane"] != ctx["ego_lane"]).float()], dim=1
    )
    return torch.cat([ego, per_lane.reshape(B, -1)], dim=1).clamp(-1.0, 1.0)
