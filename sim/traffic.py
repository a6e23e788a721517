"""Traffic behaviour: IDM car following and MOBIL lane changes, vectorised over environments and vehicles.

Neighbours come from one sort per step, not from an (N x N) comparison: every vehicle gets an entry
keyed by (lane, s) in its current lane and, while it changes lanes, a second entry in its target lane
(so followers there react as soon as it starts moving over, and it keeps a safe gap in both lanes).
Within a lane block of the sorted entries the leader is the next entry, wrapping around the ring; MOBIL
queries the target lane with `searchsorted` on the same sorted keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drivestack.sim.config import TrafficConfig
from drivestack.sim.road import RoadNetwork
from drivestack.sim.state import VehicleState

KEY_LANE = 1 << 24  # key = lane * KEY_LANE + s in centimetres: s up to 167 km, lanes up to 127
NO_LANE = 100  # lane id of entries that are not in any lane (padding, non-changing second entries)
FAR = 1.0e4  # [m] gap used when there is no leader


def idm_acceleration(
    speed: torch.Tensor, desired_speed: torch.Tensor, gap: torch.Tensor, closing_speed: torch.Tensor, p: TrafficConfig
) -> torch.Tensor:
    """Intelligent Driver Model acceleration [m/s^2].

    Args:
        speed: [m/s] own speed.
        desired_speed: [m/s] free-road speed v0.
        gap: [m] bumper-to-bumper distance to the leader (FAR or more: no leader).
        closing_speed: [m/s] own speed minus the leader's.
    """
    ratio = speed / desired_speed.clamp_min(0.1)
    if p.idm_delta == 4.0:  # the default: two multiplies instead of pow (5x faster on CPU)
        ratio2 = ratio * ratio
        free = 1.0 - ratio2 * ratio2
    else:
        free = 1.0 - ratio.pow(p.idm_delta)
    desired_gap = (
        p.idm_min_gap + speed * p.idm_time_headway + speed * closing_speed / (2.0 * (p.idm_accel * p.idm_decel) ** 0.5)
    ).clamp_min(p.idm_min_gap)
    interaction = desired_gap / gap.clamp_min(0.1)
    interaction = interaction * interaction
    return p.idm_accel * (free - interaction)


@dataclass
class LaneIndex:
    """Vehicles of each environment sorted by (lane, s); shapes (B, E) with E = 2N entries."""

    keys: torch.Tensor  # int32 sorted keys
    vehicle: torch.Tensor  # long: vehicle index of each sorted entry
    lane: torch.Tensor  # long: lane of each entry (NO_LANE for unused entries)
    order: torch.Tensor  # long: entry index (into the unsorted 2N entries) of each sorted position
    lead: torch.Tensor  # long: sorted position of the leader in the same lane (== own position: none)
    follow: torch.Tensor  # long: sorted position of the follower in the same lane (== own: none)


def _lane_bounds(keys: torch.Tensor, num_lanes: int) -> torch.Tensor:
    """Sorted position where each lane's block starts, (B, NL + 1): lane l spans [bounds[l], bounds[l+1])."""
    B = keys.shape[0]
    starts = torch.arange(num_lanes + 1, device=keys.device, dtype=torch.int32) * KEY_LANE
    return torch.searchsorted(keys, starts.expand(B, -1).contiguous())


def build_lane_index(veh: VehicleState, road: RoadNetwork) -> LaneIndex:
    """Sort every environment's vehicles by (lane, s) and link leaders and followers (ring-aware)."""
    B, N = veh.shape
    changing = veh.target_lane != veh.lane
    lane2 = torch.cat([veh.lane, torch.where(changing, veh.target_lane, NO_LANE)], dim=1)  # (B, 2N)
    lane2 = torch.where(veh.active.repeat(1, 2), lane2, NO_LANE)
    s_cm = (veh.s * 100.0).to(torch.int32).repeat(1, 2)
    keys, order = torch.sort(lane2.to(torch.int32) * KEY_LANE + s_cm, dim=1)
    lane = lane2.gather(1, order)
    vehicle = order % N
    none = lane == NO_LANE
    lane_c = lane.clamp_max(road.num_lanes - 1)
    bounds = _lane_bounds(keys, road.num_lanes)
    start = bounds.gather(1, lane_c)  # first and one-past-last sorted position of each entry's lane block
    stop = bounds.gather(1, lane_c + 1)
    E = 2 * N
    pos = torch.arange(E, device=veh.s.device).expand(B, E)
    ring = torch.take(torch.isinf(road.lane_end), lane_c)
    # Leader: next entry in the block; past the block's end, wrap to its start on ring lanes.
    lead = torch.where(pos + 1 < stop, pos + 1, torch.where(ring, start, pos))
    follow = torch.where(pos > start, pos - 1, torch.where(ring, stop - 1, pos))
    lead = torch.where(none, pos, lead)
    follow = torch.where(none, pos, follow)
    return LaneIndex(keys=keys, vehicle=vehicle, lane=lane, order=order, lead=lead, follow=follow)


def _gather(values: torch.Tensor, vehicle_at: torch.Tensor) -> torch.Tensor:
    return values.gather(1, vehicle_at)


def _gap(veh: VehicleState, road: RoadNetwork, behind: torch.Tensor, ahead: torch.Tensor) -> torch.Tensor:
    """Bumper-to-bumper ring distance from vehicles `behind` to vehicles `ahead` (indices (B, M))."""
    s_b, s_a = _gather(veh.s, behind), _gather(veh.s, ahead)
    half = 0.5 * (_gather(veh.length, behind) + _gather(veh.length, ahead))
    return torch.remainder(s_a - s_b, road.length) - half


def _entry_accel(veh: VehicleState, road: RoadNetwork, index: LaneIndex, p: TrafficConfig) -> torch.Tensor:
    """IDM acceleration of every sorted entry, following its leader and its lane's end."""
    me = index.vehicle
    lead_veh = index.vehicle.gather(1, index.lead)
    has_lead = index.lead != torch.arange(index.lead.shape[1], device=me.device)
    gap = torch.where(has_lead, _gap(veh, road, me, lead_veh), FAR)
    v = _gather(veh.speed, me)
    v0 = _gather(veh.desired_speed, me)
    acc = idm_acceleration(v, v0, gap, v - _gather(veh.speed, lead_veh), p)
    # The end of a lane (the on-ramp) is a standing obstacle.
    lane_end = torch.take(road.lane_end, index.lane.clamp_max(road.num_lanes - 1))
    end_gap = lane_end - _gather(veh.s, me) - 0.5 * _gather(veh.length, me)
    acc_end = idm_acceleration(v, v0, end_gap.clamp_max(FAR), v, p)
    return torch.where(torch.isfinite(lane_end), torch.minimum(acc, acc_end), acc)


def idm_step(veh: VehicleState, road: RoadNetwork, p: TrafficConfig) -> tuple[torch.Tensor, LaneIndex, torch.Tensor]:
    """IDM acceleration [m/s^2] of every vehicle (B, N): the most cautious over its lane entries.

    Also returns the lane index and the per-entry accelerations (sorted order) for MOBIL.
    """
    B, N = veh.shape
    index = build_lane_index(veh, road)
    acc_sorted = _entry_accel(veh, road, index, p)
    acc_sorted = torch.where(index.lane == NO_LANE, torch.inf, acc_sorted)
    acc_entries = torch.empty_like(acc_sorted).scatter_(1, index.order, acc_sorted)  # unsorted (B, 2N)
    acc = torch.minimum(acc_entries[:, :N], acc_entries[:, N:])
    acc = torch.where(veh.active, acc, 0.0)  # padding has no entry in any lane
    return acc, index, acc_sorted


def mobil_targets(
    veh: VehicleState,
    road: RoadNetwork,
    index: LaneIndex,
    acc_sorted: torch.Tensor,
    acc: torch.Tensor,
    direction: int | torch.Tensor,
    p: TrafficConfig,
) -> torch.Tensor:
    """Target lanes after one MOBIL decision towards `direction` (+1 left, -1 right) for traffic.

    `direction` is one int for every environment or a (B,) long tensor, one per environment (0: no decision
    there), so each environment keeps the decision schedule of its own episode.

    A vehicle changes when the target lane exists and may be entered here, both new gaps are open,
    the new follower would brake no harder than `mobil_max_braking`, and its own acceleration gain
    plus politeness times the followers' changes exceeds `mobil_threshold` (with a keep-right bias).
    The ego (index 0) and vehicles already changing lanes keep their targets.
    """
    B, N = veh.shape
    dev = veh.s.device
    E = index.keys.shape[1]
    if isinstance(direction, torch.Tensor):  # (B,) per environment -> (B, 1)
        direction = direction.to(device=dev, dtype=torch.long)[:, None]
        allowed = torch.where(
            direction > 0, road.change_allowed(veh.lane, veh.s, 1), road.change_allowed(veh.lane, veh.s, -1)
        )
        allowed &= direction != 0
    else:
        allowed = road.change_allowed(veh.lane, veh.s, direction)
    target = (veh.lane + direction).clamp(0, road.num_lanes - 1)
    ok = veh.active & (veh.target_lane == veh.lane) & allowed
    ok[:, 0] = False
    _, _, _, exists = road.lane_frame(target, veh.s)
    ok &= exists & (target != veh.lane)

    # Where the target lane's block lies among the sorted entries: [start, stop).
    bounds = _lane_bounds(index.keys, road.num_lanes)  # (B, NL + 1)
    start = bounds.gather(1, target)
    stop = bounds.gather(1, target + 1)
    empty = start == stop
    s_cm = (veh.s * 100.0).to(torch.int32)
    pos = torch.searchsorted(index.keys, target.to(torch.int32) * KEY_LANE + s_cm)  # first key >= own
    lead_pos = torch.where(pos < stop, pos, start).clamp_max(E - 1)  # wrap to the block start
    foll_pos = torch.where(pos > start, pos - 1, stop - 1).clamp_min(0)  # wrap to the block end
    ring = torch.isinf(road.lane_end[target])
    has_lead = ~empty & (ring | (pos < stop))
    has_foll = ~empty & (ring | (pos > start))
    me = torch.arange(N, device=dev).expand(B, N)
    lead = index.vehicle.gather(1, lead_pos)
    foll = index.vehicle.gather(1, foll_pos)

    gap_lead = torch.where(has_lead, _gap(veh, road, me, lead), FAR)
    gap_foll = torch.where(has_foll, _gap(veh, road, foll, me), FAR)
    ok &= (gap_lead > 0.0) & (gap_foll > 0.0)
    # Keys round s to 1 cm, so a car alongside (a few mm behind) can come out as the "leader" with a gap of
    # almost a ring length: check with the signed ring distance that neither neighbour overlaps us.
    for other, present in ((lead, has_lead), (foll, has_foll)):
        reach = 0.5 * (veh.length + _gather(veh.length, other))
        ok &= ~present | (road.delta_s(_gather(veh.s, other), veh.s).abs() >= reach)

    v, v0 = veh.speed, veh.desired_speed
    a_new = idm_acceleration(v, v0, gap_lead, v - _gather(veh.speed, lead), p)
    v_f = _gather(veh.speed, foll)
    a_foll_new = idm_acceleration(v_f, _gather(veh.desired_speed, foll), gap_foll, v_f - v, p)
    a_foll_old = acc_sorted.gather(1, foll_pos)
    safe = ~has_foll | (a_foll_new >= -p.mobil_max_braking)
    follower_change = torch.where(has_foll, a_foll_new - a_foll_old, 0.0)

    # Old follower: gains the gap to our old leader when we leave.
    own_pos = torch.empty_like(index.order).scatter_(1, index.order, torch.arange(E, device=dev).expand(B, E))[:, :N]
    of_pos = index.follow.gather(1, own_pos)
    old_lead_pos = index.lead.gather(1, own_pos)
    has_of = of_pos != own_pos
    of = index.vehicle.gather(1, of_pos)
    old_lead = index.vehicle.gather(1, old_lead_pos)
    has_old_lead = (old_lead_pos != own_pos) & (old_lead != of)
    v_of = _gather(veh.speed, of)
    gap_of = torch.where(has_old_lead, _gap(veh, road, of, old_lead), FAR)
    a_of_new = idm_acceleration(v_of, _gather(veh.desired_speed, of), gap_of, v_of - _gather(veh.speed, old_lead), p)
    old_follower_change = torch.where(has_of, a_of_new - acc_sorted.gather(1, of_pos), 0.0)

    if isinstance(direction, torch.Tensor):
        bias = torch.where(direction < 0, p.mobil_keep_right, -p.mobil_keep_right)
    else:
        bias = p.mobil_keep_right if direction < 0 else -p.mobil_keep_right
    incentive = a_new - acc + p.mobil_politeness * (follower_change + old_follower_change) + bias
    change = ok & safe & (incentive > p.mobil_threshold)
    return torch.where(change, target, veh.target_lane)
