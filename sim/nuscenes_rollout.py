"""Simulate the scenes of a nuScenes-format export: B scenes as one batch, keyframes captured at 2 Hz.

The ego drives like traffic: IDM acceleration from the same lane index as everyone else and MOBIL lane
changes (decided for the ego with the traffic's parameters), so a scene does not end in a crash. Every
scene starts with its ego far enough from the ring seam that it cannot reach it within the scene (the
state is rotated along the ring), so global poses are continuous and the devkit's `box_velocity` works.

At each keyframe `capture` renders the exported cameras and the LIDAR_TOP scan; `simulate_batch` hands the
files of one batch of scenes to a writer and collects the per-vehicle arrays the tables are built from;
`merge_batches` joins the batches (simulated here one after another by `simulate`, or anywhere: each batch is a
function of the config and its first scene alone, which is what `drivestack data make --ray` shards on).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from drivestack.control import LQRTable
from drivestack.sim.camera import NUSCENES_CAMERAS, NUSCENES_IMAGE_SIZE, CameraConfig, CameraRig, camera_rig
from drivestack.sim.camera_render import VehicleAppearance, render_cameras, vehicle_appearance, vehicle_boxes
from drivestack.sim.camera_variety import RenderVariety, draw_scene_seeds
from drivestack.sim.config import EnvConfig, RoadConfig, TrafficConfig, VehicleConfig, is_truck
from drivestack.sim.driver import start_lane_changes
from drivestack.sim.lidar import lidar_scan
from drivestack.sim.nuscenes_schema import ANNOTATION_RANGE, KEYFRAME_INTERVAL, Recording
from drivestack.sim.parked import parked_vehicles, with_parked
from drivestack.sim.road import RoadNetwork
from drivestack.sim.scenario import initial_state
from drivestack.sim.state import VehicleState, WorldState
from drivestack.sim.traffic import idm_step, mobil_targets
from drivestack.sim.world import advance, lqr_table, mobil_direction

if TYPE_CHECKING:
    from drivestack.sim.nuscenes_export import DatasetConfig

SEAM_CLEARANCE = 20.0  # [m] the annotated range around the ego stays this far from the ring seam
MIN_ROAD_LENGTH = 1000.0  # [m] shortest automatic ring length
EGO_LANE_CHANGE_RATE = 0.15  # [1/s] rate of the ego's discretionary lane changes (when safe)
LIDAR_RANGE = 100.0  # [m]
PARKED_STREAM = 1 << 40  # offset of the parked vehicles' random stream from the traffic's and the renderer's
VARIETY_NOTE = "; cameras rendered with renderer variety (drivestack data make --variety: RenderVariety defaults)"


def required_road_length(seconds: float, max_speed: float) -> float:
    """[m] shortest ring on which an ego at up to max_speed [m/s] cannot reach the seam in `seconds` [s]
    with its annotated range around it."""
    return 2.0 * (ANNOTATION_RANGE + SEAM_CLEARANCE) + max_speed * seconds


def env_config(cfg: DatasetConfig) -> EnvConfig:
    """The simulator config of an export: ring length, lanes, curvature, traffic density and trucks."""
    vehicle = VehicleConfig()
    needed = required_road_length(cfg.seconds, vehicle.max_speed)
    if cfg.road_length is None:
        length = max(MIN_ROAD_LENGTH, 100.0 * math.ceil(needed / 100.0))
    elif cfg.road_length < needed:
        raise ValueError(
            f"road_length={cfg.road_length} m is too short for {cfg.seconds} s scenes: the ego could "
            f"reach the ring seam; allowed: >= {needed:.0f} m (or leave it unset)"
        )
    else:
        length = cfg.road_length
    num_vehicles = 1 + int(round(cfg.vehicles_per_km * cfg.lanes * length / 1000.0))
    config = EnvConfig(
        road=RoadConfig(num_lanes=cfg.lanes, length=length, max_curvature=cfg.curvature),
        vehicle=vehicle,
        traffic=TrafficConfig(num_vehicles=num_vehicles, truck_fraction=cfg.truck_fraction),
        duration=cfg.seconds,
    )
    try:
        return config.validate()
    except ValueError as err:
        raise ValueError(
            f"lanes={cfg.lanes}, vehicles_per_km={cfg.vehicles_per_km} on a {length:.0f} m ring "
            f"({cfg.seconds} s scenes need it), curvature={cfg.curvature}: {err}"
        ) from None


def _permute(veh: VehicleState, perm: torch.Tensor) -> VehicleState:
    return type(veh)(**{f.name: getattr(veh, f.name)[:, perm] for f in fields(veh)})


def start_state(
    config: EnvConfig, road: RoadNetwork, seconds: float, num_scenes: int, generator: torch.Generator
) -> WorldState:
    """Initial state of `num_scenes` scenes, rotated along the ring so each ego starts at least the annotated
    range plus SEAM_CLEARANCE past the seam with room to drive `seconds` [s] at max speed before the end."""
    state = initial_state(config, road, num_scenes, generator)
    veh = state.vehicles
    dev = road.device
    low = ANNOTATION_RANGE + SEAM_CLEARANCE
    room = road.length - required_road_length(seconds, config.vehicle.max_speed)
    ego_s = low + room * torch.rand(num_scenes, generator=generator, device=dev)
    shift = (ego_s - veh.s[:, 0])[:, None]
    # The ego drives like traffic: an IDM free-road speed drawn from the traffic's range.
    lo, hi = config.traffic.desired_speed_range
    desired = veh.desired_speed.clone()
    desired[:, 0] = lo + (hi - lo) * torch.rand(num_scenes, generator=generator, device=dev)
    veh = replace(veh, s=road.wrap(veh.s + shift), lc_start_s=road.wrap(veh.lc_start_s + shift), desired_speed=desired)
    return state.replace(vehicles=veh)


def sim_step(
    state: WorldState, road: RoadNetwork, config: EnvConfig, step: int, lqr: LQRTable | None, generator: torch.Generator
) -> WorldState:
    """One simulation step with the ego under IDM + MOBIL like the traffic (`step`: global step counter).

    On a decision tick the ego takes MOBIL's choice; besides, with probability EGO_LANE_CHANGE_RATE per
    second it changes lanes whenever MOBIL's safety criterion allows (a discretionary change: scenes
    then show the ego changing lanes now and then, which MOBIL alone rarely does in dense traffic).
    """
    veh = state.vehicles
    accel, index, acc_sorted = idm_step(veh, road, config.traffic)
    direction = mobil_direction(step, config)
    if direction != 0:
        target = mobil_targets(veh, road, index, acc_sorted, accel, direction, config.traffic)
        # mobil_targets never moves slot 0: decide for the ego with it swapped into slot 1 (the traffic's own
        # choices, slot 1's included, come from the call above).
        perm = torch.arange(veh.shape[1], device=road.device)
        perm[0], perm[1] = 1, 0
        swapped = _permute(veh, perm)
        acc_s, index_s, sorted_s = idm_step(swapped, road, config.traffic)
        ego_mobil = mobil_targets(swapped, road, index_s, sorted_s, acc_s, direction, config.traffic)[:, 1]
        eager = replace(config.traffic, mobil_threshold=-1.0e9, mobil_keep_right=0.0)  # safety criterion only
        ego_safe = mobil_targets(swapped, road, index_s, sorted_s, acc_s, direction, eager)[:, 1]
        # Decisions alternate left / right, so the per-tick probability is doubled to keep the rate.
        p = 2.0 * EGO_LANE_CHANGE_RATE * config.traffic.lane_change_interval
        wish = torch.rand(veh.shape[0], generator=generator, device=road.device) < p
        ego_target = torch.where(wish, ego_safe, ego_mobil)
        target = torch.cat([ego_target[:, None], target[:, 1:]], dim=1)
        state = state.replace(vehicles=start_lane_changes(veh, target, road, config))
    return advance(state, accel, road, config, ego_accel=accel[:, 0], lqr=lqr)


Write = Callable[[int, int, str, np.ndarray], None]
"""File hand-off: write(scene, keyframe, channel, data) with an (H, W, 3) uint8 RGB image for a camera, or the
(P, 5) float32 x, y, z, intensity, ring points of LIDAR_TOP in its sensor frame."""


@dataclass
class Keyframe:
    """Per-keyframe arrays of B scenes and N vehicle slots (numpy, dataset global frame); `SceneBatch` stacks
    them over keyframes, (B, K, ...)."""

    ego_pose: np.ndarray  # (B, 4) x, y, z [m], yaw [rad]
    boxes: np.ndarray  # (B, N, 7) x, y, z, w, l, h [m], yaw [rad]
    speed: np.ndarray  # (B, N) [m/s]
    annotated: np.ndarray  # (B, N) bool
    visibility: np.ndarray  # (B, N) [0, 1]
    num_lidar_pts: np.ndarray  # (B, N) int


def capture(
    road: RoadNetwork,
    state: WorldState,
    rig: CameraRig,
    appearance: VehicleAppearance,
    generator: torch.Generator,
    offset: np.ndarray,
    lidar: tuple[int, int],
    variety: RenderVariety | None = None,
    scene_seed: torch.Tensor | None = None,
) -> tuple[Keyframe, np.ndarray, list[np.ndarray]]:
    """Render the rig's cameras and the LIDAR_TOP scan (lidar = (beams, azimuths)) of B scenes at one keyframe.

    `variety` and `scene_seed` (B,) go to render_cameras (None: the default renders). Returns the keyframe's arrays
    (`offset` [m] (2,) shifts the sim global frame to the dataset's), the images (B, C, H, W, 3) uint8 RGB and, per
    scene, the lidar returns (P_b, 5) float32 x, y, z, intensity, ring.
    """
    veh = state.vehicles
    B, N = veh.shape
    ego_pose, boxes, _ = vehicle_boxes(road, state, appearance)  # (B, 4), (B, N, 7)
    frame = render_cameras(road, state, rig, appearance, generator, variety, scene_seed=scene_seed)
    points, hit, instance = lidar_scan(
        road, state, appearance, num_beams=lidar[0], num_azimuths=lidar[1], max_range=LIDAR_RANGE
    )  # (B, P, 4), (B, P), (B, P); P beam-major
    # Lidar points on each vehicle. The eval drops a box with no lidar and no radar point, so a vehicle the
    # exported cameras do not see gets 0 and one they see gets at least 1: the eval keeps what they see.
    counts = torch.zeros((B, N), dtype=torch.long, device=road.device)
    counts.scatter_add_(1, instance.clamp_min(0), (hit & (instance >= 0)).long())
    num_pts = torch.where(frame.visibility > 0.0, counts.clamp_min(1), 0)
    near = torch.linalg.vector_norm(boxes[..., :2] - ego_pose[:, None, :2], dim=-1) <= ANNOTATION_RANGE  # NaN: far
    annotated = near & veh.active & (torch.arange(N, device=road.device) > 0)  # never the ego itself

    ring = (torch.arange(points.shape[1], device=road.device) // lidar[1]).float()  # beam of each ray
    cloud = torch.cat([points, ring.expand(B, -1)[..., None]], dim=-1).cpu().numpy()
    hit_np = hit.cpu().numpy()
    clouds = [cloud[b][hit_np[b]] for b in range(B)]
    offset3 = np.array([*offset, 0.0])
    ego_pose, boxes = ego_pose.double().cpu().numpy(), boxes.double().cpu().numpy()
    ego_pose[:, :3] += offset3
    boxes[..., :3] += offset3
    frame_arrays = Keyframe(
        ego_pose=ego_pose,
        boxes=boxes,
        speed=veh.speed.cpu().numpy(),
        annotated=annotated.cpu().numpy(),
        visibility=frame.visibility.cpu().numpy(),
        num_lidar_pts=num_pts.cpu().numpy(),
    )
    return frame_arrays, frame.images.permute(0, 1, 3, 4, 2).cpu().numpy(), clouds


def calibration(
    channels: tuple[str, ...],
    width: int,
    height: int,
) -> dict[str, tuple[list[float], list[float], list[list[float]]]]:
    """channel -> (translation, rotation (w, x, y, z), camera_intrinsic or []) of the cameras and LIDAR_TOP:
    nuScenes' calibration, intrinsics scaled to width x height as `camera_rig` scales them (in float64)."""
    scale = np.array([[width / NUSCENES_IMAGE_SIZE[0]], [height / NUSCENES_IMAGE_SIZE[1]], [1.0]])
    out = {}
    for channel in (*channels, "LIDAR_TOP"):
        record = NUSCENES_CAMERAS[channel]
        intrinsic = (np.array(record["camera_intrinsic"]) * scale).tolist() if record["camera_intrinsic"] else []
        out[channel] = (list(record["translation"]), list(record["rotation"]), intrinsic)
    return out


@dataclass
class SceneBatch:
    """What one batch of consecutive scenes leaves for the tables: scenes first..first+nb-1 (numpy)."""

    first: int  # index of the batch's first scene in the dataset
    frames: Keyframe  # the Keyframe arrays stacked over keyframes: (nb, K, ...)
    is_truck: np.ndarray  # (nb, N) bool
    descriptions: list[str]  # (nb,)
    crashes: int  # scenes whose ego crashed (0 expected)

    @property
    def num_scenes(self) -> int:
        return len(self.descriptions)


def scene_batches(num_scenes: int, batch_scenes: int) -> list[tuple[int, int]]:
    """(first scene, number of scenes) of each batch: the unit of simulation, of random streams and of sharding.

    The scenes of a batch share their random streams (seeded by the batch's first scene), so a batch is
    simulated whole, in one process; batches are independent of each other and may run anywhere, in any order.
    """
    return [(first, min(batch_scenes, num_scenes - first)) for first in range(0, num_scenes, batch_scenes)]


def simulate_batch(
    cfg: DatasetConfig,
    env: EnvConfig,
    road: RoadNetwork,
    offset: np.ndarray,
    first: int,
    nb: int,
    write: Write,
    on_keyframes: Callable[[int], None] = lambda n: None,
) -> SceneBatch:
    """Simulate and capture scenes first..first+nb-1 together (one of `scene_batches`); sensor files go to
    `write` (with the scenes' dataset indices). `on_keyframes(nb)` is called after every batch keyframe."""
    device = road.device
    rig = camera_rig(CameraConfig(channels=tuple(cfg.channels), width=cfg.width, height=cfg.height), device)
    lqr = lqr_table(env, device)
    substeps = int(round(KEYFRAME_INTERVAL * env.sim_frequency))
    # Separate random streams: the traffic does not change with the sensors exported.
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + 2 * first)
    render_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + 2 * first + 1)
    state = start_state(env, road, cfg.seconds, nb, gen)
    s_start = state.vehicles.s[:, 0].clone()
    parked = None  # the sensors capture the traffic and the parked vehicles; the simulation steps the traffic alone
    if cfg.parked_per_km > 0.0:
        park_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + 2 * first + PARKED_STREAM)
        parked = parked_vehicles(env, road, nb, cfg.parked_per_km, park_gen)
    appearance = vehicle_appearance(with_parked(state, parked), render_gen)
    # with variety, one more draw: what stays fixed over each scene (clutter, roadside, paint)
    variety = RenderVariety() if cfg.variety else None
    scene_seed = draw_scene_seeds(nb, render_gen, device) if cfg.variety else None
    frames = []
    lidar = (cfg.lidar_beams, cfg.lidar_azimuths)
    for k in range(cfg.num_keyframes):
        for i in range(substeps if k > 0 else 0):
            state = sim_step(state, road, env, (k - 1) * substeps + i, lqr, gen)
        scene = with_parked(state, parked)
        arrays, images, clouds = capture(road, scene, rig, appearance, render_gen, offset, lidar, variety, scene_seed)
        for b in range(nb):  # file hand-off only: the writer encodes in its threads
            for c, channel in enumerate(rig.channels):
                write(first + b, k, channel, images[b, c])
            write(first + b, k, "LIDAR_TOP", clouds[b])
        frames.append(arrays)
        on_keyframes(nb)
    assert bool((state.vehicles.s[:, 0] >= s_start).all()), "an ego crossed the ring seam"  # by construction
    veh = state.vehicles
    descriptions = [
        f"Synthetic highway (drivestack simulator, seed {cfg.seed}): {cfg.lanes} lanes, "
        f"{env.traffic.num_vehicles - 1} vehicles on a {env.road.length:.0f} m ring, ego desired speed "
        f"{float(veh.desired_speed[b, 0]):.1f} m/s, {int(state.lane_changes[b])} ego lane changes"
        + (VARIETY_NOTE if cfg.variety else "")
        + ("" if parked is None else f"; {int(parked.active[b].sum())} parked vehicles on the roadsides")
        for b in range(nb)
    ]
    stacked = Keyframe(**{f.name: np.stack([getattr(a, f.name) for a in frames], axis=1) for f in fields(Keyframe)})
    return SceneBatch(
        first=first,
        frames=stacked,
        is_truck=is_truck(with_parked(state, parked).vehicles.length).cpu().numpy(),
        descriptions=descriptions,
        crashes=int(state.crashed.sum()),
    )


def merge_batches(batches: list[SceneBatch], timestamps: np.ndarray) -> tuple[Recording, list[str], int]:
    """The recording of the whole dataset from its batches (any order; every scene exactly once), a description
    per scene and the number of scenes whose ego crashed."""
    batches = sorted(batches, key=lambda batch: batch.first)
    covered = [(batch.first, batch.num_scenes) for batch in batches]
    expected, first = [], 0
    for _, nb in covered:
        expected.append((first, nb))
        first += nb
    assert covered == expected and first == timestamps.shape[0], f"batches {covered} do not cover the scenes"

    def stack(name: str) -> np.ndarray:  # (B, K, ...)
        return np.concatenate([getattr(batch.frames, name) for batch in batches])

    recording = Recording(
        timestamps=timestamps,
        ego_pose=stack("ego_pose"),
        boxes=stack("boxes"),
        speed=stack("speed"),
        annotated=stack("annotated"),
        visibility=stack("visibility"),
        num_lidar_pts=stack("num_lidar_pts"),
        is_truck=np.concatenate([batch.is_truck for batch in batches]),
    )
    descriptions = [text for batch in batches for text in batch.descriptions]
    return recording, descriptions, sum(batch.crashes for batch in batches)


def simulate(
    cfg: DatasetConfig,
    env: EnvConfig,
    road: RoadNetwork,
    offset: np.ndarray,
    timestamps: np.ndarray,
    write: Write,
    on_keyframes: Callable[[int], None],
) -> tuple[Recording, list[str], int]:
    """Simulate and capture all scenes, `cfg.batch_scenes` at a time, in this process; sensor files go to `write`.

    Returns the recording, a description per scene and the number of scenes whose ego crashed (0 expected).
    `on_keyframes(n)` is called after every batch keyframe with the number of scenes captured (progress).
    """
    batches = [
        simulate_batch(cfg, env, road, offset, first, nb, write, on_keyframes)
        for first, nb in scene_batches(cfg.scenes, cfg.batch_scenes)
    ]
    return merge_batches(batches, timestamps)
