"""Baseline driving policies: uniformly random, always-IDLE and the IDM/MOBIL rule policy.

Every policy maps a planning `Scene` of B environments to one maneuver per environment, (B,) long in
highway-env's meta-action order (`sim.action.MetaAction`: LANE_LEFT, IDLE, LANE_RIGHT, FASTER, SLOWER);
see `planning.policy.Policy`. None of them reads the simulator: the same policy drives from a scene built
from ground truth (`scene_from_world`) or from tracks.

The rule policy is the classic highway driver expressed as meta-actions, batched over environments:
IDM decides whether the ego's speed set-point should go up or down, MOBIL decides lane changes. Leaders
and followers per lane are found from the agents' lateral positions, exactly as they would be from
tracks; what the ego knows about itself (its target lane, speed set-point, where the road lets it
change lanes, how far its lane goes on) comes from the scene's ego fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from drivestack.planning.scene import Scene
from drivestack.sim.action import MetaAction
from drivestack.sim.config import ActionConfig, TrafficConfig
from drivestack.sim.traffic import FAR, idm_acceleration


class RandomPolicy:
    """Uniformly random maneuvers from a seeded torch generator (deterministic under a seed).

    Args:
        seed: seed of the policy's own generator, made on the scene's device at the first `act` (and
            again, freshly seeded, if the scenes move to another device).
        generator: use this generator instead (its device must be the scenes'); `seed` is then ignored.
        name: the policy's name in tables.
    """

    def __init__(self, seed: int = 0, generator: torch.Generator | None = None, name: str = "random") -> None:
        self.name = name
        self.seed = seed
        self._generator = generator
        self._own = generator is None

    def act(self, scene: Scene) -> torch.Tensor:
        """Maneuvers (B,) long, uniform over the 5 meta-actions, on the scene's device."""
        device = scene.ego_speed.device
        if self._own and (self._generator is None or self._generator.device != device):
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
        return torch.randint(0, len(MetaAction), (scene.num_envs,), generator=self._generator, device=device)


class IdlePolicy:
    """Always IDLE: keep the lane and the speed set-point (the do-nothing reference)."""

    def __init__(self, name: str = "idle") -> None:
        self.name = name

    def act(self, scene: Scene) -> torch.Tensor:
        """IDLE (B,) long on the scene's device."""
        return torch.full((scene.num_envs,), int(MetaAction.IDLE), dtype=torch.long, device=scene.ego_speed.device)


@dataclass(frozen=True)
class RuleConfig:
    """IDM speed keeping and MOBIL lane changes of the rule policy (the ego's own parameters, not traffic's)."""

    idm_accel: float = 3.0
    """[m/s^2] IDM maximum acceleration a."""
    idm_decel: float = 5.0
    """[m/s^2] IDM comfortable deceleration b."""
    idm_min_gap: float = 5.0
    """[m] IDM jam distance s0 (bumper to bumper)."""
    idm_time_headway: float = 0.8
    """[s] IDM desired time headway T."""
    idm_delta: float = 4.0
    """[-] IDM acceleration exponent."""
    faster_threshold: float = 0.5
    """[m/s^2] FASTER when the IDM acceleration in the current lane exceeds this."""
    slower_threshold: float = 0.5
    """[m/s^2] SLOWER when the IDM acceleration in the current lane is below minus this."""
    keep_threshold: float = 0.5
    """[m/s^2] FASTER only when IDM at the next set-point's speed would be above minus this (no raise-then-drop)."""
    politeness: float = 0.0
    """[-] MOBIL politeness p (weight of the followers' acceleration changes)."""
    change_threshold: float = 0.2
    """[m/s^2] MOBIL minimum acceleration gain for a lane change."""
    max_braking_imposed: float = 3.0
    """[m/s^2] MOBIL safety b_safe: largest braking a change may impose on the new follower."""
    keep_right: float = 0.3
    """[m/s^2] MOBIL bias towards the right lane (added to the incentive of moving right, taken from left)."""
    lane_margin: float = 0.0
    """[m] an agent is in a lane when its centre is within half a lane width plus this of the lane centre."""
    lateral_horizon: float = 1.0
    """[s] also count an agent in the lane its lateral velocity takes it to within this time (cut-ins)."""
    mandatory_distance: float = 250.0
    """[m] where the current lane ends within this distance, a change is mandatory: b_safe is relaxed."""
    mandatory_braking: float = 6.0
    """[m/s^2] b_safe of mandatory changes (leaving a lane that ends)."""
    mandatory_time_headway: float = 0.4
    """[s] IDM time headway of the safety check of mandatory changes (a merge accepts a tighter gap)."""
    merge_gap: float = 60.0
    """[m] merging into a gap unsafe on both sides: move towards the larger of the gaps ahead and behind, up to this."""
    merge_gain: float = 0.3
    """[1/s] merging with a safe gap alongside: speed [m/s] added per metre the gap's middle is ahead of the ego."""
    merge_back_margin: float = 2.0
    """[m/s] merging: to drop back in the gap, a set-point at least this much slower than the leader (else pass it)."""

    def validate(self) -> RuleConfig:
        for name in (
            "idm_accel",
            "idm_decel",
            "idm_min_gap",
            "idm_time_headway",
            "idm_delta",
            "max_braking_imposed",
            "mandatory_braking",
            "mandatory_time_headway",
        ):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"invalid rule config: {name}={getattr(self, name)!r}; allowed: > 0")
        for name in (
            "faster_threshold",
            "slower_threshold",
            "keep_threshold",
            "change_threshold",
            "keep_right",
            "lane_margin",
            "lateral_horizon",
            "mandatory_distance",
            "merge_gap",
            "merge_gain",
            "merge_back_margin",
        ):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"invalid rule config: {name}={getattr(self, name)!r}; allowed: >= 0")
        if not 0.0 <= self.politeness <= 1.0:
            raise ValueError(f"invalid rule config: politeness={self.politeness!r}; allowed: 0..1")
        return self

    def idm(self) -> TrafficConfig:
        """These IDM parameters as the TrafficConfig `sim.traffic.idm_acceleration` takes."""
        return TrafficConfig(
            idm_accel=self.idm_accel,
            idm_decel=self.idm_decel,
            idm_min_gap=self.idm_min_gap,
            idm_time_headway=self.idm_time_headway,
            idm_delta=self.idm_delta,
        )


def _neighbours(
    scene: Scene,
    centre: torch.Tensor,
    lane_width: torch.Tensor,
    config: RuleConfig,
) -> tuple[torch.Tensor, ...]:
    """Leader and follower of the ego in lanes with centres `centre` (B, C) [m, relative to the ego] and
    widths `lane_width` (B, C) [m].

    Returns (gap_lead, v_lead, gap_foll, v_foll, has_foll, gap_foll_lead), each (B, C): bumper-to-bumper
    gaps [m] (FAR where there is no leader/follower), road-frame speeds along the road [m/s], and the gap
    from the follower to the leader (what the follower has when the ego is not between them).
    """
    half = (0.5 * lane_width + config.lane_margin)[:, :, None]  # (B, C, 1)
    y = scene.y[:, None, :]  # (B, 1, M)
    y_later = (scene.y + scene.vy * config.lateral_horizon)[:, None, :]
    c = centre[:, :, None]  # (B, C, 1)
    in_lane = scene.present[:, None, :] & (((y - c).abs() < half) | ((y_later - c).abs() < half))  # (B, C, M)
    x = scene.x[:, None, :].expand_as(in_lane)
    ahead = x > 0.0
    x_lead, i_lead = torch.where(in_lane & ahead, x, torch.inf).min(dim=-1)  # (B, C)
    x_foll, i_foll = torch.where(in_lane & ~ahead, x, -torch.inf).max(dim=-1)
    has_lead, has_foll = torch.isfinite(x_lead), torch.isfinite(x_foll)
    len_lead, len_foll = scene.length.gather(1, i_lead), scene.length.gather(1, i_foll)
    ego_half = 0.5 * scene.ego_length[:, None]
    gap_lead = torch.where(has_lead, x_lead - 0.5 * len_lead - ego_half, FAR)
    gap_foll = torch.where(has_foll, -x_foll - 0.5 * len_foll - ego_half, FAR)
    v_lead = torch.where(has_lead, scene.vx.gather(1, i_lead), scene.ego_speed[:, None])
    v_foll = torch.where(has_foll, scene.vx.gather(1, i_foll), 0.0)
    gap_foll_lead = torch.where(has_lead & has_foll, x_lead - x_foll - 0.5 * (len_lead + len_foll), FAR)
    return gap_lead, v_lead, gap_foll, v_foll, has_foll, gap_foll_lead


def rule_actions(scene: Scene, target_speeds: torch.Tensor, config: RuleConfig) -> torch.Tensor:
    """IDM + MOBIL meta-actions (B,) long from a scene.

    Args:
        scene: the ego-centric scene (B environments); besides the agents and lanes it uses the ego's
            target lane (`ego_target_lane`, == ego_lane when keeping its lane), where it may change lanes
            (`can_change_left` / `can_change_right`, from the target lane), its set-point index
            (`ego_speed_index`) and the lanes' ends and widths.
        target_speeds: [m/s] (S,) the set-points FASTER / SLOWER step through, increasing, on the scene's device.
        config: rule parameters.
    Returns:
        LANE_LEFT / LANE_RIGHT where MOBIL says so (only into lanes that exist and may be entered, and never
        while a lane change is under way), else SLOWER / FASTER where the IDM acceleration in the current
        lane is clearly negative / positive and the set-point can move, else IDLE. Where the current lane
        ends within `mandatory_distance` (an on-ramp), the change off it is mandatory: no incentive needed,
        a tighter gap accepted, and the set-point lines the ego up with a gap (`_merge_set_point`).
    """
    p = config.idm()
    target_lane, speed_index = scene.ego_target_lane, scene.ego_speed_index
    can_left, can_right = scene.can_change_left, scene.can_change_right
    B, NL = scene.num_envs, scene.num_lanes
    dev = scene.ego_speed.device
    v = scene.ego_speed
    v0 = target_speeds[-1].expand(B)  # the ego's desired speed: its highest set-point
    # Candidate lanes: 0 target (current), 1 left, 2 right, 3 the lane the ego is in (differs mid-change).
    lanes = torch.stack([target_lane, target_lane + 1, target_lane - 1, scene.ego_lane], dim=1)  # (B, 4)
    inside = (lanes >= 0) & (lanes < NL)
    lanes_c = lanes.clamp(0, NL - 1)
    exists = inside & scene.lane_exists.gather(1, lanes_c)
    centre, width = scene.lane_offset.gather(1, lanes_c), scene.lane_width.gather(1, lanes_c)
    gap_lead, v_lead, gap_foll, v_foll, has_foll, gap_foll_lead = _neighbours(scene, centre, width, config)

    # Leaving a lane that ends soon is mandatory: IDM with a shorter headway (a merge accepts a tighter gap)
    # everywhere below, and harder braking accepted by the safety check.
    ends_soon = scene.lane_end.gather(1, lanes_c[:, :1]).squeeze(1) < config.mandatory_distance  # (B,)
    mandatory = ends_soon[:, None]
    p_merge = replace(p, idm_time_headway=config.mandatory_time_headway)

    def idm(speed: torch.Tensor, desired: torch.Tensor, gap: torch.Tensor, closing: torch.Tensor) -> torch.Tensor:
        return torch.where(
            mandatory,
            idm_acceleration(speed, desired, gap, closing, p_merge),
            idm_acceleration(speed, desired, gap, closing, p),
        )

    # Own IDM acceleration in every candidate lane; a lane that ends ahead is a standing obstacle there.
    vv, vv0 = v[:, None].expand(B, 4), v0[:, None].expand(B, 4)
    follow = idm(vv, vv0, gap_lead, vv - v_lead)
    end_gap = (scene.lane_end.gather(1, lanes_c) - 0.5 * scene.ego_length[:, None]).clamp_max(FAR)
    acc = torch.minimum(follow, idm(vv, vv0, end_gap, vv))
    acc_now = torch.minimum(acc[:, 0], acc[:, 3])  # mid-change the ego still has a foot in its old lane
    # The set-point follows traffic only: the end of the lane drives MOBIL instead, and the ego's controller stops
    # short of the end by itself (`sim.driver`'s lane-end guard) should no gap open in time.
    follow_now = torch.minimum(follow[:, 0], follow[:, 3])

    # MOBIL for left (1) and right (2). Others' desired speeds are unknown: assume they cruise (v0 = v).
    follower_new = idm(v_foll, v_foll, gap_foll, v_foll - v[:, None])  # the ego cuts in
    follower_old = idm(v_foll, v_foll, gap_foll_lead, v_foll - v_lead)  # the ego is not there
    follower_change = torch.where(has_foll, follower_new - follower_old, 0.0)
    # The follower in the current lane closes up to the ego's leader when the ego leaves.
    of_gain = torch.where(has_foll[:, 0], follower_old[:, 0] - follower_new[:, 0], 0.0)
    # Safety: the new follower brakes no harder than b_safe, and neither does the ego (it brakes only by
    # set-point steps).
    b_safe = torch.where(mandatory, config.mandatory_braking, config.max_braking_imposed)
    foll_ok = ~has_foll | ((follower_new >= -b_safe) & (gap_foll > 0.0))
    lead_ok = (follow >= -b_safe) & (gap_lead > 0.0)
    safe = foll_ok & lead_ok
    bias = torch.tensor([0.0, -config.keep_right, config.keep_right, 0.0], device=dev)
    incentive = acc - acc_now[:, None] + config.politeness * (follower_change + of_gain[:, None]) + bias
    keeping = target_lane == scene.ego_lane
    allowed = torch.stack([can_left, can_right], dim=1) & keeping[:, None] & exists[:, 1:3]
    # A mandatory change needs no incentive (MOBIL's treatment of a lane that ends), only safety.
    leaving = mandatory & (scene.lane_end.gather(1, lanes_c[:, 1:3]) > scene.lane_end.gather(1, lanes_c[:, :1]))
    go = allowed & safe[:, 1:3] & ((incentive[:, 1:3] > config.change_threshold) | leaving)  # (B, 2)
    gain = torch.where(go, incentive[:, 1:3], -torch.inf)
    change = go.any(dim=1)
    lateral = torch.where(gain[:, 0] >= gain[:, 1], int(MetaAction.LANE_LEFT), int(MetaAction.LANE_RIGHT))

    top = target_speeds.shape[0] - 1
    # Raise the set-point only when IDM at the next set-point's speed would not ask to lower it again at once
    # (set-points are 5 m/s apart: without this the ego oscillates between two of them behind a leader).
    up_speed = target_speeds[(speed_index + 1).clamp_max(top)][:, None].expand(B, 2)
    at_up = idm(up_speed, v0[:, None].expand(B, 2), gap_lead[:, [0, 3]], up_speed - v_lead[:, [0, 3]]).amin(dim=1)
    slower = (follow_now < -config.slower_threshold) & (speed_index > 0)
    faster = (follow_now > config.faster_threshold) & (at_up > -config.keep_threshold) & (speed_index < top)
    # Merging (the current lane ends soon, no change yet): the set-point lines the ego up with a gap instead.
    merging = ends_soon & keeping & exists[:, 1] & ~change
    wanted = _merge_set_point(
        v,
        gap_lead[:, 1],
        v_lead[:, 1],
        gap_foll[:, 1],
        v_foll[:, 1],
        has_foll[:, 1],
        lead_ok[:, 1],
        foll_ok[:, 1],
        target_speeds,
        config,
    )
    faster = torch.where(merging, speed_index < wanted, faster)
    slower = torch.where(merging, speed_index > wanted, slower)
    longitudinal = torch.where(
        slower, int(MetaAction.SLOWER), torch.where(faster, int(MetaAction.FASTER), int(MetaAction.IDLE))
    )
    return torch.where(change, lateral, longitudinal).long()


def _merge_set_point(
    v: torch.Tensor,
    gap_lead: torch.Tensor,
    v_lead: torch.Tensor,
    gap_foll: torch.Tensor,
    v_foll: torch.Tensor,
    has_foll: torch.Tensor,
    lead_ok: torch.Tensor,
    foll_ok: torch.Tensor,
    target_speeds: torch.Tensor,
    config: RuleConfig,
) -> torch.Tensor:
    """Set-point index (B,) that lines the ego up with a gap in the lane it must merge into (all (B,) inputs
    describe that lane's leader and follower beside the ego, as in `rule_actions`).

    Both sides safe: ride with the gap, nudged towards its middle (a P-controller on the position). Only the
    follower unsafe (or both, with more room ahead): outrun it at the highest set-point. Only the leader
    unsafe (or both, with more room behind): match its speed when the gap is enough at equal speeds, else
    fall behind it or pass it, whichever changes the gap faster (the lowest set-point is a cruising speed,
    often no slower than the traffic to merge into).
    """
    top = target_speeds.shape[0] - 1
    speeds = target_speeds[None, :]  # (1, S)
    room = gap_lead.clamp_max(config.merge_gap) - gap_foll.clamp_max(config.merge_gap)  # [m] > 0: more room ahead
    forward = (lead_ok & ~foll_ok) | (~lead_ok & ~foll_ok & (room > 0))
    back = (~lead_ok & foll_ok) | (~lead_ok & ~foll_ok & (room <= 0))

    has_lead = gap_lead < FAR
    v_gap = torch.where(
        has_lead & has_foll, 0.5 * (v_lead + v_foll), torch.where(has_lead, v_lead, torch.where(has_foll, v_foll, v))
    )
    centre = (speeds - (v_gap + config.merge_gain * 0.5 * room)[:, None]).abs().argmin(dim=1)

    nearest = (speeds - v_lead[:, None]).abs().argmin(dim=1)
    down = (speeds < v_lead[:, None] - config.merge_back_margin).sum(dim=1) - 1  # -1: none slow enough
    back_rate = torch.where(down >= 0, v_lead - target_speeds[down.clamp_min(0)], -torch.inf)
    pass_rate = target_speeds[top] - v_lead
    enough = gap_lead > config.idm_min_gap + v_lead * config.mandatory_time_headway
    behind = torch.where(enough, nearest, torch.where(back_rate >= pass_rate, down, top))
    return torch.where(forward, top, torch.where(back, behind, centre))


class RulePolicy:
    """IDM speed keeping + MOBIL lane changes as meta-actions, from a scene (ground truth or perceived).

    Args:
        config: rule parameters (default `RuleConfig()`).
        target_speeds: [m/s] the set-points the ego's FASTER / SLOWER step through: the environment's
            `ActionConfig.target_speeds` (default highway-env's 20, 25, 30).
        name: the policy's name in tables.
    """

    def __init__(
        self,
        config: RuleConfig | None = None,
        target_speeds: Sequence[float] = ActionConfig().target_speeds,
        name: str = "rule",
    ) -> None:
        self.config = (config or RuleConfig()).validate()
        if not target_speeds or list(target_speeds) != sorted(target_speeds):
            raise ValueError(f"target_speeds={tuple(target_speeds)!r}; allowed: non-empty, increasing [m/s]")
        self.target_speeds = tuple(float(v) for v in target_speeds)
        self.name = name
        self._speeds: torch.Tensor | None = None

    def act(self, scene: Scene) -> torch.Tensor:
        """Maneuvers (B,) long of `rule_actions` on the scene's device."""
        device = scene.ego_speed.device
        if self._speeds is None or self._speeds.device != device:
            self._speeds = torch.tensor(self.target_speeds, device=device)
        return rule_actions(scene, self._speeds, self.config)
