"""IDM car following, the sorted lane index (leaders, followers, ring wrap, lane ends) and MOBIL changes."""

from __future__ import annotations

import math

import pytest
import torch

from drivestack.sim.config import TrafficConfig
from drivestack.sim.road import RoadNetwork
from drivestack.sim.traffic import FAR, LaneIndex, build_lane_index, idm_acceleration, idm_step, mobil_targets

P = TrafficConfig()
RAMP_END = 370.0  # [m] merge_config(): ramp_start 100 + approach 150 + merge 120


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _neighbours(index: LaneIndex, lane: int | None = None) -> tuple[dict[int, int], dict[int, int]]:
    """Leader and follower vehicle (or -1) of each vehicle's entry in `lane` (default: its own lane) of env 0.

    With `lane` None, every vehicle's first entry (its current lane) is used.
    """
    N = index.keys.shape[1] // 2
    leaders, followers = {}, {}
    for pos in range(index.keys.shape[1]):
        entry = index.order[0, pos].item()
        in_lane = entry < N if lane is None else index.lane[0, pos].item() == lane
        if not in_lane or index.lane[0, pos].item() >= 100:
            continue
        me = index.vehicle[0, pos].item()
        lead, foll = index.lead[0, pos].item(), index.follow[0, pos].item()
        leaders[me] = -1 if lead == pos else index.vehicle[0, lead].item()
        followers[me] = -1 if foll == pos else index.vehicle[0, foll].item()
    return leaders, followers


# ------------------------------------------------------------------------------------------ IDM
@pytest.mark.parametrize(("v", "v0"), [(0.0, 30.0), (20.0, 30.0), (30.0, 30.0), (35.0, 30.0), (10.0, 12.0)])
def test_idm_free_road(v: float, v0: float) -> None:
    free = P.idm_accel * (1.0 - (v / v0) ** P.idm_delta)
    acc = idm_acceleration(_t(v), _t(v0), _t(math.inf), _t(0.0), P)
    assert acc.item() == pytest.approx(free, abs=1e-5)
    # FAR stands for "no leader": the interaction term is negligible there
    acc = idm_acceleration(_t(v), _t(v0), _t(FAR), _t(-5.0), P)
    assert acc.item() == pytest.approx(free, abs=1e-3)


@pytest.mark.parametrize("v", [5.0, 15.0, 25.0])
def test_idm_equilibrium_gap(v: float) -> None:
    v0 = 30.0
    s_star = P.idm_min_gap + v * P.idm_time_headway
    gap = s_star / math.sqrt(1.0 - (v / v0) ** P.idm_delta)  # steady-state gap of the IDM
    assert idm_acceleration(_t(v), _t(v0), _t(gap), _t(0.0), P).item() == pytest.approx(0.0, abs=1e-5)
    assert idm_acceleration(_t(v), _t(v0), _t(0.9 * gap), _t(0.0), P).item() < 0.0
    assert idm_acceleration(_t(v), _t(v0), _t(1.1 * gap), _t(0.0), P).item() > 0.0


def test_idm_closing_speed_and_jam_gap() -> None:
    v, v0, gap = 20.0, 30.0, 40.0
    a_same = idm_acceleration(_t(v), _t(v0), _t(gap), _t(0.0), P).item()
    a_closing = idm_acceleration(_t(v), _t(v0), _t(gap), _t(10.0), P).item()
    a_opening = idm_acceleration(_t(v), _t(v0), _t(gap), _t(-10.0), P).item()
    assert a_closing < a_same < a_opening
    s_star = P.idm_min_gap + v * P.idm_time_headway + v * 10.0 / (2.0 * math.sqrt(P.idm_accel * P.idm_decel))
    assert a_closing == pytest.approx(P.idm_accel * (1 - (v / v0) ** 4 - (s_star / gap) ** 2), rel=1e-5)
    # standing at the jam distance behind a standing car: no creeping forward
    a = idm_acceleration(_t(0.0), _t(v0), _t(P.idm_min_gap), _t(0.0), P).item()
    assert a == pytest.approx(0.0, abs=1e-6)
    # a fast opening leader never shrinks the desired gap below the jam distance
    a = idm_acceleration(_t(10.0), _t(v0), _t(P.idm_min_gap), _t(-30.0), P).item()
    assert a == pytest.approx(P.idm_accel * (1 - (10.0 / v0) ** 4 - 1.0), rel=1e-5)


# --------------------------------------------------------------------------------- lane index
def test_leaders_and_followers_within_lanes(highway_road: RoadNetwork, make_vehicles) -> None:
    # ego alone in lane 3; vehicles 1, 2, 3 in lane 1 (unsorted); vehicle 4 alone in lane 2
    veh = make_vehicles(s=[500.0, 300.0, 100.0, 200.0, 150.0], d=[12.0, 4.0, 4.0, 4.0, 8.0], lane=[3, 1, 1, 1, 2])
    index = build_lane_index(veh, highway_road)
    leaders, followers = _neighbours(index)
    # lane 1 is a ring: the front vehicle (1, at 300 m) follows the back one (2, at 100 m) round the ring
    assert leaders == {0: -1, 1: 2, 2: 3, 3: 1, 4: -1}
    assert followers == {0: -1, 1: 3, 2: 1, 3: 2, 4: -1}
    # sorted keys: by lane, then by s
    assert torch.all(index.keys[0, 1:] >= index.keys[0, :-1])


def test_leader_wraps_across_the_seam(highway_road: RoadNetwork, make_vehicles) -> None:
    veh = make_vehicles(s=[500.0, 990.0, 5.0], speed=[20.0, 20.0, 10.0], lane=[3, 0, 0])
    index = build_lane_index(veh, highway_road)
    leaders, _ = _neighbours(index)
    assert leaders[1] == 2 and leaders[2] == 1
    acc, _, _ = idm_step(veh, highway_road, P)
    gap = 15.0 - 4.5  # ring distance 990 -> 1005, minus two half bodies
    expected = idm_acceleration(_t(20.0), _t(30.0), _t(gap), _t(10.0), P)
    assert acc[0, 1].item() == pytest.approx(expected.item(), rel=1e-5)


def test_no_wrap_on_the_merge_ramp(merge_road: RoadNetwork, make_vehicles) -> None:
    # vehicles 1, 2, 3 on the ramp (lane 0); 4 and 5 on the right through lane (lane 1)
    veh = make_vehicles(s=[600.0, 300.0, 150.0, 200.0, 100.0, 700.0], lane=[2, 0, 0, 0, 1, 1])
    leaders, followers = _neighbours(build_lane_index(veh, merge_road))
    assert leaders[1] == -1 and followers[2] == -1  # the ramp ends: no ring
    assert leaders[2] == 3 and leaders[3] == 1 and followers[1] == 3
    assert leaders[4] == 5 and leaders[5] == 4  # through lanes are rings


def test_lane_changer_is_in_both_lanes(highway_road: RoadNetwork, make_vehicles) -> None:
    # vehicle 1 moves from lane 1 to lane 2 at 100 m; 2 follows in lane 2, 3 follows in lane 1
    veh = make_vehicles(
        s=[600.0, 100.0, 80.0, 60.0, 140.0],
        speed=[20.0, 20.0, 25.0, 25.0, 15.0],
        lane=[0, 1, 2, 1, 2],
        target_lane=[0, 2, 2, 1, 2],
    )
    index = build_lane_index(veh, highway_road)
    leaders2, followers2 = _neighbours(index, lane=2)
    leaders1, _ = _neighbours(index, lane=1)
    assert leaders2[2] == 1 and followers2[1] == 2  # the follower in the target lane sees it
    assert leaders2[1] == 4  # and it sees the leader in its target lane
    assert leaders1[3] == 1
    assert (index.vehicle[0][index.lane[0] < 100] == 1).sum().item() == 2  # two entries, one vehicle

    acc, _, _ = idm_step(veh, highway_road, P)
    a2 = idm_acceleration(_t(25.0), _t(30.0), _t(20.0 - 4.5), _t(5.0), P).item()
    assert acc[0, 2].item() == pytest.approx(a2, rel=1e-5)
    # the changer takes the more cautious of its two lanes: its target-lane leader at 40 m, 5 m/s slower
    own_lane = idm_acceleration(_t(20.0), _t(30.0), _t(FAR), _t(0.0), P).item()
    target_lane = idm_acceleration(_t(20.0), _t(30.0), _t(40.0 - 4.5), _t(5.0), P).item()
    assert acc[0, 1].item() == pytest.approx(min(own_lane, target_lane), rel=1e-5)
    assert target_lane < own_lane


def test_inactive_vehicles_are_not_in_the_index(highway_road: RoadNetwork, make_vehicles) -> None:
    veh = make_vehicles(s=[500.0, 100.0, 110.0, 200.0], speed=20.0, lane=[3, 1, 1, 1], active=[True, True, False, True])
    leaders, _ = _neighbours(build_lane_index(veh, highway_road))
    assert leaders[1] == 3 and 2 not in leaders
    acc, _, _ = idm_step(veh, highway_road, P)
    gap = 100.0 - 4.5
    expected = idm_acceleration(_t(20.0), _t(30.0), _t(gap), _t(0.0), P).item()
    assert acc[0, 1].item() == pytest.approx(expected, rel=1e-5)


def test_inactive_vehicles_get_a_finite_acceleration(highway_road: RoadNetwork, make_vehicles) -> None:
    # padding must not leak inf into the (B, N) accelerations: masking by `acc * active` would give NaN
    veh = make_vehicles(s=[500.0, 100.0, 110.0], speed=20.0, lane=[3, 1, 1], active=[True, True, False])
    acc, _, _ = idm_step(veh, highway_road, P)
    assert torch.isfinite(acc).all(), acc
    assert torch.isfinite(acc * veh.active).all()


def test_lane_index_batched_equals_single_envs(highway_road: RoadNetwork, make_vehicles) -> None:
    gen = torch.Generator().manual_seed(4)
    B, N = 6, 12
    s = 1000.0 * torch.rand(B, N, generator=gen)
    lane = torch.randint(0, 4, (B, N), generator=gen)
    target = (lane + torch.randint(-1, 2, (B, N), generator=gen)).clamp(0, 3)
    speed = 15.0 + 15.0 * torch.rand(B, N, generator=gen)
    veh = make_vehicles(s=s, lane=lane, target_lane=target, speed=speed)
    acc, _, _ = idm_step(veh, highway_road, P)
    for b in range(B):
        one = make_vehicles(s=s[b], lane=lane[b], target_lane=target[b], speed=speed[b])
        acc_b, _, _ = idm_step(one, highway_road, P)
        torch.testing.assert_close(acc_b[0], acc[b])


# --------------------------------------------------------------------------------- ramp end
def test_ramp_end_is_a_standing_obstacle(merge_road: RoadNetwork, make_vehicles) -> None:
    # vehicle 1 on the ramp 30 m before its end; vehicle 2 beside it on the through lane
    veh = make_vehicles(
        s=[600.0, RAMP_END - 30.0, RAMP_END - 30.0], d=[4.0, -4.0, 0.0], speed=20.0, desired_speed=25.0, lane=[2, 0, 1]
    )
    acc, _, _ = idm_step(veh, merge_road, P)
    end_gap = 30.0 - 0.5 * 4.5
    expected = idm_acceleration(_t(20.0), _t(25.0), _t(end_gap), _t(20.0), P).item()
    assert acc[0, 1].item() == pytest.approx(expected, rel=1e-5)
    assert acc[0, 1].item() < -P.idm_decel  # a hard stop ahead
    free = idm_acceleration(_t(20.0), _t(25.0), _t(math.inf), _t(0.0), P).item()
    assert acc[0, 2].item() == pytest.approx(free, abs=1e-3)


def test_ramp_leader_closer_than_the_end_dominates(merge_road: RoadNetwork, make_vehicles) -> None:
    veh = make_vehicles(s=[600.0, 200.0, 215.0], speed=[20.0, 20.0, 20.0], lane=[2, 0, 0])
    acc, _, _ = idm_step(veh, merge_road, P)
    leader = idm_acceleration(_t(20.0), _t(30.0), _t(15.0 - 4.5), _t(0.0), P).item()
    end = idm_acceleration(_t(20.0), _t(30.0), _t(RAMP_END - 200.0 - 2.25), _t(20.0), P).item()
    assert acc[0, 1].item() == pytest.approx(min(leader, end), rel=1e-5)


# ---------------------------------------------------------------------------------------- MOBIL
def _mobil(veh, road: RoadNetwork, direction: int, p: TrafficConfig = P) -> list[int]:
    acc, index, acc_sorted = idm_step(veh, road, p)
    return mobil_targets(veh, road, index, acc_sorted, acc, direction, p)[0].tolist()


def test_mobil_changes_left_around_a_slow_leader(highway_road: RoadNetwork, make_vehicles) -> None:
    # vehicle 1 at 25 m/s closes on vehicle 2 at 10 m/s, 20 m ahead; lane 1 is empty
    veh = make_vehicles(
        s=[800.0, 100.0, 120.0], speed=[20.0, 25.0, 10.0], desired_speed=[20.0, 30.0, 10.0], lane=[3, 0, 0]
    )
    assert _mobil(veh, highway_road, +1) == [3, 1, 0]
    assert _mobil(veh, highway_road, -1) == [3, 0, 0]  # no lane to the right of lane 0


@pytest.mark.parametrize(
    ("s3", "v3"),
    [
        (98.0, 25.0),  # a car right beside it: no room at all
        (85.0, 32.0),  # room, but the new follower would have to brake harder than mobil_max_braking
        (112.0, 10.0),  # a slow car just ahead in the target lane: nothing to gain there
    ],
)
def test_mobil_refuses_unsafe_gaps(highway_road: RoadNetwork, make_vehicles, s3: float, v3: float) -> None:
    veh = make_vehicles(
        s=[800.0, 100.0, 120.0, s3],
        speed=[20.0, 25.0, 10.0, v3],
        desired_speed=[20.0, 30.0, 10.0, 33.0],
        lane=[3, 0, 0, 1],
    )
    assert _mobil(veh, highway_road, +1)[1] == 0


def test_mobil_safe_gap_allows_the_change(highway_road: RoadNetwork, make_vehicles) -> None:
    # the same situation with the lane-1 car far behind and slow: the change goes ahead
    veh = make_vehicles(
        s=[800.0, 100.0, 120.0, 40.0],
        speed=[20.0, 25.0, 10.0, 20.0],
        desired_speed=[20.0, 30.0, 10.0, 20.0],
        lane=[3, 0, 0, 1],
    )
    assert _mobil(veh, highway_road, +1)[1] == 1


@pytest.mark.parametrize(("politeness", "changes"), [(0.0, True), (0.4, True), (0.6, False), (1.0, False)])
def test_mobil_politeness_weighs_both_followers(
    highway_road: RoadNetwork, make_vehicles, politeness: float, changes: bool
) -> None:
    # lane 0: old follower 4 (30 m), vehicle 1 (100 m), slow leader 2 (190 m, 20 m/s)
    # lane 1: new follower 3 (50 m, 24 m/s), new leader 5 (200 m)
    veh = make_vehicles(
        s=[800.0, 100.0, 190.0, 50.0, 30.0, 200.0],
        speed=[20.0, 25.0, 20.0, 24.0, 25.0, 25.0],
        desired_speed=[20.0, 30.0, 20.0, 30.0, 30.0, 30.0],
        lane=[3, 0, 0, 1, 0, 1],
    )

    def idm(v: float, gap: float, closing: float) -> float:
        return idm_acceleration(_t(v), _t(30.0), _t(gap), _t(closing), P).item()

    gain = idm(25.0, 100.0 - 4.5, 0.0) - idm(25.0, 90.0 - 4.5, 5.0)
    new_follower = idm(24.0, 50.0 - 4.5, -1.0) - idm(24.0, 150.0 - 4.5, -1.0)  # gets 1 as a closer leader
    old_follower = idm(25.0, 160.0 - 4.5, 5.0) - idm(25.0, 70.0 - 4.5, 0.0)  # gets 2 as its leader
    incentive = gain + politeness * (new_follower + old_follower) - P.mobil_keep_right
    assert (incentive > P.mobil_threshold) == changes  # the hand computation agrees with the table
    p = TrafficConfig(mobil_politeness=politeness)
    assert _mobil(veh, highway_road, +1, p)[1] == (1 if changes else 0)


def test_mobil_never_moves_the_ego(highway_road: RoadNetwork, make_vehicles) -> None:
    # the ego sits in the situation where vehicle 1 above changes lanes
    veh = make_vehicles(s=[100.0, 120.0], speed=[25.0, 10.0], desired_speed=[30.0, 10.0], lane=[0, 0])
    assert _mobil(veh, highway_road, +1) == [0, 0]


def test_mobil_no_change_beyond_the_leftmost_lane(highway_road: RoadNetwork, make_vehicles) -> None:
    veh = make_vehicles(
        s=[800.0, 100.0, 120.0], speed=[20.0, 25.0, 10.0], desired_speed=[20.0, 30.0, 10.0], lane=[0, 3, 3]
    )
    assert _mobil(veh, highway_road, +1) == [0, 3, 3]
    assert _mobil(veh, highway_road, -1)[1] == 2  # the right lane is free: it goes there instead


def test_mobil_keeps_right_when_free(highway_road: RoadNetwork, make_vehicles) -> None:
    # alone in lane 2 with an empty lane 1: the keep-right bias alone is below the threshold
    veh = make_vehicles(s=[800.0, 100.0], speed=[20.0, 25.0], desired_speed=[20.0, 30.0], lane=[0, 2])
    assert _mobil(veh, highway_road, -1) == [0, 2]
    eager = TrafficConfig(mobil_keep_right=0.5)
    assert _mobil(veh, highway_road, -1, eager) == [0, 1]


def test_mobil_leaves_vehicles_already_changing(highway_road: RoadNetwork, make_vehicles) -> None:
    veh = make_vehicles(
        s=[800.0, 100.0, 120.0],
        speed=[20.0, 25.0, 10.0],
        desired_speed=[20.0, 30.0, 10.0],
        lane=[3, 1, 1],
        target_lane=[3, 0, 1],
    )
    assert _mobil(veh, highway_road, +1)[1] == 0


def test_mobil_merges_from_the_ramp_only_in_the_merge_zone(merge_road: RoadNetwork, make_vehicles) -> None:
    # ramp vehicles behind a slow leader, before (150 m) and inside (300 m) the merge zone
    veh = make_vehicles(
        s=[600.0, 150.0, 165.0, 300.0, 315.0],
        speed=[20.0, 25.0, 8.0, 25.0, 8.0],
        desired_speed=[20.0, 30.0, 8.0, 30.0, 8.0],
        lane=[2, 0, 0, 0, 0],
    )
    targets = _mobil(veh, merge_road, +1)
    assert targets[1] == 0  # not allowed to leave the ramp before the merge zone
    assert targets[3] == 1


def test_mobil_never_enters_the_ramp(merge_road: RoadNetwork, make_vehicles) -> None:
    # a through-lane vehicle stuck behind a slow car next to the ramp's merge zone
    veh = make_vehicles(
        s=[600.0, 300.0, 315.0, 700.0],
        speed=[20.0, 25.0, 8.0, 30.0],
        desired_speed=[20.0, 30.0, 8.0, 30.0],
        lane=[2, 1, 1, 2],
    )
    eager = TrafficConfig(mobil_keep_right=1.0)
    assert _mobil(veh, merge_road, -1, eager)[1] == 1


def test_mobil_never_changes_onto_a_car_alongside_at_the_same_centimetre(
    highway_road: RoadNetwork, make_vehicles
) -> None:
    # The lane keys round s to 1 cm: a car in the target lane 3 mm behind shares vehicle 1's key and used to be
    # taken for its leader, with a gap of almost a ring length.
    # A genuine follower further back in the target lane (s=50) makes the rest of the check pass.
    veh = make_vehicles(
        s=[800.0, 100.005, 120.0, 100.002, 50.0],
        speed=[20.0, 25.0, 10.0, 25.0, 25.0],
        desired_speed=[20.0, 30.0, 10.0, 30.0, 30.0],
        lane=[3, 0, 0, 1, 1],
    )
    assert _mobil(veh, highway_road, +1)[1] == 0
