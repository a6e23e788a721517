"""`drivestack data make`: simulate scenes and write them as a nuScenes v1.0 dataset.

The result loads with `NuScenes(version="v1.0-trainval", dataroot=DIR)` with no warning and is scored by
the devkit's `DetectionEval` / `TrackingEval` on `eval_set="val"` (the synthetic scenes carry names from
the official val list; see `sim.nuscenes_schema`). Layout:

    DIR/v1.0-trainval/*.json (13 tables) + splits.json     DIR/maps/<map token>.png (road mask, 0.1 m/px)
    DIR/samples/CAM_FRONT/<logfile>__CAM_FRONT__<us>.jpg   DIR/samples/LIDAR_TOP/<logfile>__LIDAR_TOP__<us>.pcd.bin

Annotations: every vehicle within 80 m of the ego at a keyframe. `num_lidar_pts` is the number of lidar
points on the box when at least one exported camera sees the vehicle (at least 1), and 0 otherwise, with
`num_radar_pts` = 0: the official eval drops boxes with no points, so it scores exactly the vehicles the
exported cameras see. Visibility tokens bin the cameras' visible fraction the nuScenes way.

Writes are atomic: everything goes to a temporary sibling of DIR, renamed onto DIR when complete, so an
interrupted export never leaves a dataset that looks complete; a non-empty DIR is replaced only with
`overwrite`, and only once the new dataset is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from drivestack.common.artifacts import atomic_dir, check_out_dir, write_json
from drivestack.common.checks import check_number
from drivestack.common.host import resolve_device, using_threads
from drivestack.sim.config import EnvConfig
from drivestack.sim.nuscenes_rollout import (
    SceneBatch,
    calibration,
    env_config,
    merge_batches,
    scene_batches,
    simulate_batch,
)
from drivestack.sim.nuscenes_schema import (
    KEYFRAME_INTERVAL,
    START_TIME,
    VEHICLE,
    DatasetInfo,
    build_tables,
    global_offset,
    make_token,
    scene_names,
    sensor_filename,
    write_map_mask,
)
from drivestack.sim.parked import MAX_PER_KM as MAX_PARKED_PER_KM
from drivestack.sim.road import build_road

CAMERA_CHANNELS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
FORMAT_VERSION = 1  # bump when the written dataset changes: cached default datasets are regenerated
# The embedded default dataset: 8 scenes x 20 s (320 keyframes; 6 train, 2 val) of CAM_FRONT at 512 x 288, the
# detector's input size, and a 32 x 512 lidar. Rendering dominates the export time (~0.4 CPU-s per 800 x 450
# image, ~0.2 at 512 x 288, ~0.05 per 32 x 1024 lidar scan) and the lidar files its size.
DEFAULT_DATASET: dict[str, object] = {"scenes": 8, "seconds": 20.0, "width": 512, "height": 288, "lidar_azimuths": 512}


@dataclass(frozen=True)
class DatasetConfig:
    """Simulate scenes and write them as a nuScenes-format dataset."""

    out: Path
    """Output directory (the dataroot); refused when it holds anything, unless --overwrite."""
    scenes: int = 10
    """Number of scenes (one log each)."""
    seconds: float = 20.0
    """[s] length of each scene; keyframes every 0.5 s."""
    seed: int = 0
    """Random seed: the same command writes the same dataset (tokens included)."""
    version: str = "v1.0-trainval"
    """Table folder name; must end in "trainval": the devkit's predefined train/val splits select the scenes."""
    val_fraction: float = 0.2
    """Fraction of the scenes in the val split (at least one val scene; the rest train)."""
    channels: tuple[str, ...] = ("CAM_FRONT",)
    """Exported cameras (any of the six nuScenes cameras); LIDAR_TOP is always written."""
    width: int = 800
    """[px] image width (nuScenes: 1600; intrinsics are scaled to it)."""
    height: int = 450
    """[px] image height (nuScenes: 900)."""
    jpeg_quality: int = 90
    """JPEG quality 1..100."""
    variety: bool = False
    """Render the cameras with the renderer's variety for sim-to-real training (sim.camera_variety.RenderVariety's
    defaults: roadside buildings, poles, barriers, walls and trees, urban or rural roadsides, repainted and shaped
    vehicles, cast shadows, fog, overcast skies, exposure, blur, vignetting, noise, gamma, JPEG artifacts), fixed per
    scene where it should be. Off: the default renders, bit for bit. Recorded in every scene's description."""
    parked_per_km: float = 0.0
    """[1/km] parked vehicles per km of each roadside (sim.parked: on the shoulder, along the road either way, across
    it or at an angle, so the cameras see vehicles from the side and the front as in city streets; annotated as
    vehicle.stopped). 0: none, the datasets of before bit for bit."""
    lidar_beams: int = 32
    """LIDAR_TOP beams, -30 to +10 degrees elevation (nuScenes' HDL-32E: 32)."""
    lidar_azimuths: int = 1024
    """LIDAR_TOP firings per turn."""
    lanes: int = 4
    """Number of highway lanes."""
    vehicles_per_km: float = 15.0
    """[vehicles/km] traffic density per lane."""
    road_length: float | None = None
    """[m] ring length; unset: the shortest (>= 1000 m) on which no ego reaches the ring seam within a scene."""
    curvature: float = 0.001
    """[1/m] peak curvature of the gently curved highway (0: straight)."""
    truck_fraction: float = 0.15
    """[-] fraction of the traffic that are trucks (category vehicle.truck)."""
    batch_scenes: int = 16
    """Scenes simulated and rendered together (bounds memory). The scenes of a batch share random streams, so the
    dataset depends on it; with --ray each batch is one task (more, smaller batches: more parallelism)."""
    overwrite: bool = False
    """Replace a non-empty output directory (only once the new dataset is complete)."""
    device: str = "cpu"
    """torch device of the simulation and rendering: cpu, cuda, cuda:<index> or auto."""
    threads: int = 1
    """torch CPU threads of the simulation and rendering (0: torch's default, one per core). A few pixels' float
    rounding depends on it, so the same dataset needs the same count (--ray tasks use it too). On a busy 2-core
    machine 1 thread rendered 7x faster than 2."""

    def validate(self) -> DatasetConfig:
        checks = [
            (self.scenes >= 1, "scenes", ">= 1", self.scenes),
            (self.seconds >= 1.0, "seconds", ">= 1 s (two keyframes or more)", self.seconds),
            (
                self.version.endswith("trainval"),
                "version",
                'a name ending in "trainval", e.g. v1.0-trainval',
                self.version,
            ),
            (0.0 <= self.val_fraction <= 1.0, "val_fraction", "0..1", self.val_fraction),
            (
                len(self.channels) >= 1
                and len(set(self.channels)) == len(self.channels)
                and set(self.channels) <= set(CAMERA_CHANNELS),
                "channels",
                f"distinct names from {', '.join(CAMERA_CHANNELS)}",
                self.channels,
            ),
            (
                16 <= self.width <= 4096 and 16 <= self.height <= 4096,
                "width/height",
                "16..4096 px",
                (self.width, self.height),
            ),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality", "1..100", self.jpeg_quality),
            (
                1 <= self.lidar_beams <= 128 and 8 <= self.lidar_azimuths <= 8192,
                "lidar_beams/lidar_azimuths",
                "1..128 beams, 8..8192 azimuths",
                (self.lidar_beams, self.lidar_azimuths),
            ),
            (self.vehicles_per_km > 0.0, "vehicles_per_km", "> 0", self.vehicles_per_km),
            (self.batch_scenes >= 1, "batch_scenes", ">= 1", self.batch_scenes),
            (self.threads >= 0, "threads", ">= 0 (0: torch's default)", self.threads),
        ]
        for ok, name, allowed, value in checks:
            if not ok:
                raise ValueError(f"invalid dataset config: {name}={value!r}; allowed: {allowed}")
        # NaN fails every comparison above; inf passes them and then never ends a scene or a ring
        what = "dataset config"
        check_number("seconds", self.seconds, low=1.0, what=what)
        check_number("vehicles_per_km", self.vehicles_per_km, low=0.0, low_open=True, what=what)
        check_number("parked_per_km", self.parked_per_km, low=0.0, high=MAX_PARKED_PER_KM, what=what)
        if self.road_length is not None:
            check_number("road_length", self.road_length, low=0.0, low_open=True, what=what)
        resolve_device(self.device)  # an unknown name, or CUDA where there is none
        return self

    @property
    def num_keyframes(self) -> int:
        return int(round(self.seconds / KEYFRAME_INTERVAL))

    @property
    def num_val(self) -> int:
        return min(self.scenes, max(1, int(round(self.val_fraction * self.scenes))))


@dataclass
class ExportSummary:
    path: str
    scenes: int
    keyframes: int
    images: int
    annotations: int
    bytes: int
    seconds: float
    keyframes_per_s: float
    ego_crashes: int


class _Writer:
    """Encodes and writes sensor files in worker threads (cv2 and file I/O release the GIL), at most one batch
    keyframe behind the renderer."""

    def __init__(self, root: Path, logfiles: list[str], timestamps: np.ndarray, quality: int):
        self.root, self.logfiles, self.timestamps, self.quality = root, logfiles, timestamps, quality
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.pending: list[Future] = []
        self.done: list[Future] = []

    def __call__(self, scene: int, keyframe: int, channel: str, data: np.ndarray) -> None:
        camera = channel != "LIDAR_TOP"
        path = self.root / sensor_filename(self.logfiles[scene], channel, int(self.timestamps[scene, keyframe]), camera)
        self.pending.append(self.pool.submit(self._write, path, data, camera))

    def _write(self, path: Path, data: np.ndarray, camera: bool) -> None:
        if camera:
            ok, buf = cv2.imencode(".jpg", data[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.quality])  # RGB -> BGR
            if not ok:
                raise OSError(f"JPEG encoding failed for {path}")
            path.write_bytes(buf.tobytes())
        else:
            np.ascontiguousarray(data, dtype=np.float32).tofile(path)

    def keyframe_done(self) -> None:
        """Wait for the previous keyframe's files (re-raising a worker's error); this one's keep encoding."""
        for fut in self.done:
            fut.result()
        self.done, self.pending = self.pending, []

    def finish(self) -> None:
        self.keyframe_done()
        self.keyframe_done()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _check_out(out: Path, overwrite: bool) -> None:
    check_out_dir(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out} is not empty; pass --overwrite to replace it, or choose another --out")


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@dataclass(frozen=True)
class Layout:
    """What every part of an export derives from the config alone (a shard in another process derives the same)."""

    env: EnvConfig
    train_names: list[str]
    val_names: list[str]
    logfiles: list[str]  # (B,) one log per scene
    dates: list[str]  # (B,) YYYY-MM-DD
    timestamps: np.ndarray  # (B, K) int64 [us] keyframe times


def export_layout(cfg: DatasetConfig) -> Layout:
    """Scene names, logs and keyframe times of `cfg` (validated)."""
    env = env_config(cfg)
    train_names, val_names = scene_names(cfg.scenes - cfg.num_val, cfg.num_val)
    B, K = cfg.scenes, cfg.num_keyframes
    # One log per scene: scenes start a whole minute apart (longer scenes: further apart), seed-dependent day.
    spacing = 60 * (1 + int(cfg.seconds) // 60)
    starts = [START_TIME + 86_400 * (cfg.seed % 3650) + spacing * b for b in range(B)]
    stamps = [datetime.fromtimestamp(t, tz=timezone.utc) for t in starts]
    timestamps = np.array(starts, dtype=np.int64)[:, None] * 1_000_000 + np.arange(K, dtype=np.int64)[None, :] * int(
        KEYFRAME_INTERVAL * 1e6
    )  # (B, K) [us]
    return Layout(
        env=env,
        train_names=train_names,
        val_names=val_names,
        logfiles=[f"{VEHICLE}-{d:%Y-%m-%d-%H-%M-%S}+0000" for d in stamps],
        dates=[f"{d:%Y-%m-%d}" for d in stamps],
        timestamps=timestamps,
    )


ShardRunner = Callable[[DatasetConfig, Path, list[tuple[int, int]]], list[SceneBatch]]
"""Runs `export_shard(cfg, root, first, nb)` for every (first, nb) of the list, anywhere that sees `root`, and
returns the SceneBatches (any order); `drivestack.distributed` has one on Ray."""


def export_shard(cfg: DatasetConfig, root: Path, first: int, nb: int) -> SceneBatch:
    """Simulate scenes first..first+nb-1 (one of `scene_batches`) and write their sensor files under `root` (the
    export's temporary directory, its folders already made); returns what they add to the tables.

    A function of (cfg, first) alone: run twice, it writes the same bytes (a retried shard overwrites its files).
    """
    lay = export_layout(cfg)
    writer = _Writer(Path(root), lay.logfiles, lay.timestamps, cfg.jpeg_quality)
    try:
        with using_threads(cfg.threads):
            road = build_road(lay.env.road, resolve_device(cfg.device))
            batch = simulate_batch(
                cfg, lay.env, road, global_offset(road), first, nb, writer, lambda n: writer.keyframe_done()
            )
        writer.finish()
    finally:
        writer.close()
    return batch


def export_dataset(cfg: DatasetConfig, progress: bool = True, run_shards: ShardRunner | None = None) -> ExportSummary:
    """Simulate `cfg.scenes` scenes and write them as a nuScenes dataset at `cfg.out` (atomically).

    `run_shards`: None simulates the batches of scenes here, one after another; otherwise it runs
    `export_shard` for each batch (e.g. on a Ray cluster) and this process merges. Both write the same bytes.
    Returns the summary also printed as the final line (scenes, keyframes, images, size, time, keyframes/s).
    """
    cfg.validate()
    with using_threads(cfg.threads):  # the previous count is restored after
        return _export(cfg, progress, run_shards)


def _export(cfg: DatasetConfig, progress: bool, run_shards: ShardRunner | None) -> ExportSummary:
    start = time.perf_counter()
    out = Path(cfg.out)
    _check_out(out, cfg.overwrite)
    lay = export_layout(cfg)
    road = build_road(lay.env.road, resolve_device(cfg.device))  # "auto": CUDA when present
    offset = global_offset(road)
    B, K = cfg.scenes, cfg.num_keyframes
    batches = scene_batches(cfg.scenes, cfg.batch_scenes)

    # Built in a hidden sibling directory and renamed onto `out` once complete (a replaced `out` is deleted last):
    # an interrupted export leaves nothing behind and an existing dataset intact.
    with atomic_dir(out) as tmp:
        writer = _Writer(tmp, lay.logfiles, lay.timestamps, cfg.jpeg_quality)
        try:
            for channel in (*cfg.channels, "LIDAR_TOP"):
                (tmp / "samples" / channel).mkdir(parents=True)
            (tmp / "maps").mkdir()
            (tmp / cfg.version).mkdir()
            map_token = make_token(cfg.seed, "map", "drivestack-highway")
            write_map_mask(tmp / "maps" / f"{map_token}.png", road, offset)

            if run_shards is None:

                def keyframes_done(n: int) -> None:
                    writer.keyframe_done()
                    bar.update(n)

                with tqdm(total=B * K, desc="nuScenes export", unit="keyframe", disable=not progress) as bar:
                    done = [
                        simulate_batch(cfg, lay.env, road, offset, first, nb, writer, keyframes_done)
                        for first, nb in batches
                    ]
                writer.finish()
            else:
                done = run_shards(cfg, tmp, batches)
            rec, descriptions, crashes = merge_batches(done, lay.timestamps)
            info = DatasetInfo(
                seed=cfg.seed,
                cameras=tuple(cfg.channels),
                width=cfg.width,
                height=cfg.height,
                calibration=calibration(cfg.channels, cfg.width, cfg.height),
                logfiles=lay.logfiles,
                dates=lay.dates,
                names=lay.train_names + lay.val_names,
                descriptions=descriptions,
                map_token=map_token,
            )
            tables = build_tables(rec, info)
            for name, records in tables.items():
                write_json(tmp / cfg.version / f"{name}.json", records, indent=0)
            write_json(tmp / cfg.version / "splits.json", {"train": lay.train_names, "val": lay.val_names}, indent=1)
            size = _size(tmp)
            _check_out(out, cfg.overwrite)  # again: `out` may have been filled meanwhile
        finally:
            writer.close()  # the encoder threads stop before the directory is renamed or deleted

    elapsed = time.perf_counter() - start
    images = B * K * len(cfg.channels)
    summary = ExportSummary(
        path=str(out),
        scenes=B,
        keyframes=B * K,
        images=images,
        annotations=len(tables["sample_annotation"]),
        bytes=size,
        seconds=elapsed,
        keyframes_per_s=B * K / elapsed,
        ego_crashes=crashes,
    )
    print(
        f"wrote {B} scenes, {B * K} keyframes, {images} images, {summary.annotations} annotations "
        f"({size / 1e6:.1f} MB) to {out} in {elapsed:.1f} s ({summary.keyframes_per_s:.1f} keyframes/s)"
    )
    return summary


def cache_root() -> Path:
    """`$DRIVESTACK_CACHE`, or ~/.cache/drivestack."""
    return Path(os.environ.get("DRIVESTACK_CACHE") or Path.home() / ".cache" / "drivestack")


def default_dataset(cache_dir: Path | None = None, progress: bool = True, **overrides: object) -> Path:
    """The embedded default dataset (DEFAULT_DATASET, fields overridable), generated into the cache on first use
    and reused after: `<cache>/datasets/nuscenes-synthetic-<hash of the config>`. Returns the dataroot."""
    params = {**DEFAULT_DATASET, **overrides}
    for key in ("out", "overwrite"):
        params.pop(key, None)
    probe = DatasetConfig(out=Path("."), **params).validate()  # type: ignore[arg-type]
    # device and threads change a few pixels' float rounding, never the scenes: one cached dataset for all
    key = {k: v for k, v in asdict(probe).items() if k not in ("out", "overwrite", "device", "threads")}
    for option in ("variety", "parked_per_km"):  # off: the key (and cached dataset) of before the option existed
        if not key[option]:
            key.pop(option)
    digest = hashlib.md5(json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True, default=str).encode())
    root = Path(cache_dir or cache_root()) / "datasets" / f"nuscenes-synthetic-{digest.hexdigest()[:12]}"
    marker = root / probe.version / "scene.json"
    if marker.is_file():
        return root
    try:
        export_dataset(DatasetConfig(out=root, **params), progress=progress)  # type: ignore[arg-type]
    except FileExistsError:
        if not marker.is_file():  # another process finished first, or something else sits there
            raise
    return root
