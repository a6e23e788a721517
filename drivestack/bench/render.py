"""`drivestack bench render`: camera rendering and lidar throughput of the simulator, with example images.

Traffic comes from the highway scenario (trucks included); every call renders all requested cameras of
a batch of environments with fresh lighting. Figures are images per second (one camera view counts as
one image) and milliseconds per image at each resolution and batch size, plus lidar scans per second.
Example images (one per resolution), a contact sheet of a batch, and a six-camera mosaic are written
next to the JSON.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from tqdm import tqdm

from drivestack.common.artifacts import atomic_path, check_out_dir
from drivestack.common.checks import check_number, require
from drivestack.common.host import host_info, resolve_device, set_threads, synchronize
from drivestack.report import write_json
from drivestack.sim.camera import CAMERA_CHANNELS, CameraConfig, camera_rig
from drivestack.sim.camera_render import render_cameras, vehicle_appearance
from drivestack.sim.config import EnvConfig, RoadConfig, TrafficConfig
from drivestack.sim.lidar import lidar_scan
from drivestack.sim.road import build_road
from drivestack.sim.scenario import initial_state

MOSAIC = (("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"), ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"))


@dataclass(frozen=True)
class BenchRenderConfig:
    """Camera rendering and lidar throughput on one device, with example images."""

    device: str = "cpu"
    """torch device: cpu, cuda, cuda:<index> or auto."""
    batch_sizes: tuple[int, ...] = (1, 8)
    """Environments rendered per call (1 = one at a time)."""
    resolutions: tuple[tuple[int, int], ...] = ((800, 450), (1600, 900))
    """(width, height) [px] image sizes to measure."""
    channels: tuple[str, ...] = ("CAM_FRONT",)
    """Cameras rendered per environment and call."""
    seconds: float = 5.0
    """[s] measuring time of each (resolution, batch size) after one warm-up call."""
    lidar: bool = True
    """Also measure lidar scans per second (32 beams x 1024 azimuths)."""
    vehicles: int = 50
    """Vehicles per environment, the ego included."""
    truck_fraction: float = 0.15
    """Share of trucks among the traffic."""
    threads: int = 0
    """CPU threads torch may use (0: torch's default); 1 is fastest on a machine shared with other jobs."""
    seed: int = 0
    """Random seed (traffic, looks, lighting)."""
    out: Path = Path("runs/bench/render")
    """Directory for render.json and the example images."""

    def validate(self) -> BenchRenderConfig:
        """ValueError (one line, naming the option) for a value out of range; NaN and inf never pass."""
        check_number("seconds", self.seconds, low=0.0, low_open=True)
        require(
            len(self.batch_sizes) > 0 and min(self.batch_sizes) >= 1,
            "batch_sizes",
            "one or more sizes >= 1",
            self.batch_sizes,
        )
        require(
            len(self.resolutions) > 0 and min(min(r) for r in self.resolutions) >= 1,
            "resolutions",
            "one or more (width, height) >= 1 px",
            self.resolutions,
        )
        check_number("threads", self.threads, low=0, integer=True)
        resolve_device(self.device)  # an unknown name, or CUDA where there is none
        return self


def _save_image(path: Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 array (H, W, 3) as PNG, atomically."""
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=".png")
    return path


def _hwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(*range(images.dim() - 3), -2, -1, -3).cpu().numpy()  # (..., 3, H, W) -> (..., H, W, 3)


def _contact_sheet(images: np.ndarray, columns: int = 4, width: int = 400) -> np.ndarray:
    """Tile images (K, H, W, 3) into a grid, each scaled to `width` px wide."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    height = max(1, round(width * images.shape[1] / images.shape[2]))
    x = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", antialias=True)
    tiles = list(x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def run_bench(cfg: BenchRenderConfig) -> dict:
    """Measure, print a table, write render.json and the example images; returns the figures."""
    cfg.validate()
    check_out_dir(cfg.out)  # before minutes of measuring
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    env = EnvConfig(
        traffic=TrafficConfig(num_vehicles=cfg.vehicles, truck_fraction=cfg.truck_fraction), road=RoadConfig()
    ).validate()
    road = build_road(env.road, device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    state = initial_state(env, road, max(cfg.batch_sizes), gen)
    looks = vehicle_appearance(state, gen)
    results: dict = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "machine": host_info(device),
        "camera": [],
        "lidar": [],
    }
    print(f"drivestack bench render: {', '.join(cfg.channels)}, {cfg.vehicles} vehicles, on {cfg.device}")

    jobs = [(res, b) for res in cfg.resolutions for b in cfg.batch_sizes]
    examples: dict[tuple[int, int], np.ndarray] = {}
    for (width, height), B in tqdm(jobs, desc="render", unit="setting"):
        rig = camera_rig(CameraConfig(channels=tuple(cfg.channels), width=width, height=height), device)
        sub = state.index(slice(0, B))
        sub_looks = type(looks)(looks.height[:B], looks.color[:B])
        t0 = time.perf_counter()
        frame = render_cameras(road, sub, rig, sub_looks, gen)  # warm-up
        synchronize(device)
        warmup = time.perf_counter() - t0
        calls, start, cpu = 0, time.perf_counter(), time.process_time()
        while calls < 2 or time.perf_counter() - start < cfg.seconds:
            frame = render_cameras(road, sub, rig, sub_looks, gen)
            calls += 1
        synchronize(device)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        images = calls * B * rig.num_cameras
        # cpu_ms_per_image: this process's CPU time; far below ms_per_image x threads means other jobs shared the CPU
        results["camera"].append(
            {
                "width": width,
                "height": height,
                "batch": B,
                "cameras": rig.num_cameras,
                "images_per_s": images / elapsed,
                "ms_per_image": 1000.0 * elapsed / images,
                "cpu_ms_per_image": 1000.0 * cpu / images,
                "calls": calls,
                "warmup_s": warmup,
            }
        )
        if B == max(cfg.batch_sizes):
            examples[(width, height)] = _hwc(frame.images[:, 0])
    if cfg.lidar:
        for B in cfg.batch_sizes:
            sub = state.index(slice(0, B))
            sub_looks = type(looks)(looks.height[:B], looks.color[:B])
            lidar_scan(road, sub, sub_looks)
            synchronize(device)
            calls, start = 0, time.perf_counter()
            while calls < 2 or time.perf_counter() - start < cfg.seconds:
                lidar_scan(road, sub, sub_looks)
                calls += 1
            synchronize(device)
            elapsed = time.perf_counter() - start
            results["lidar"].append(
                {
                    "batch": B,
                    "beams": 32,
                    "azimuths": 1024,
                    "scans_per_s": calls * B / elapsed,
                    "ms_per_scan": 1000.0 * elapsed / (calls * B),
                }
            )

    # Example images: one per resolution, a contact sheet of the batch, all six cameras of one environment.
    files = []
    for (width, height), batch in examples.items():
        files.append(_save_image(cfg.out / f"example_{width}x{height}.png", batch[0]))
    first = next(iter(examples.values()))
    files.append(_save_image(cfg.out / "contact_sheet.png", _contact_sheet(first[:8])))
    width, height = cfg.resolutions[0]
    rig6 = camera_rig(CameraConfig(channels=CAMERA_CHANNELS, width=width, height=height), device)
    six = _hwc(
        render_cameras(
            road, state.index(slice(0, 1)), rig6, type(looks)(looks.height[:1], looks.color[:1]), gen
        ).images[0]
    )
    by_name = dict(zip(CAMERA_CHANNELS, six))
    mosaic = np.concatenate([np.concatenate([by_name[c] for c in row], axis=1) for row in MOSAIC], axis=0)
    files.append(_save_image(cfg.out / "six_cameras.png", mosaic))
    results["files"] = [str(f) for f in files]

    print(f"\n{'resolution':<12}{'batch':>6}{'images/s':>11}{'ms/image':>10}{'cpu ms/image':>14}")
    for r in results["camera"]:
        print(
            f"{str(r['width']) + 'x' + str(r['height']):<12}{r['batch']:>6}{r['images_per_s']:>11.2f}"
            f"{r['ms_per_image']:>10.1f}{r['cpu_ms_per_image']:>14.1f}"
        )
    for r in results["lidar"]:
        print(f"lidar 32x1024, batch {r['batch']}: {r['scans_per_s']:.1f} scans/s ({r['ms_per_scan']:.1f} ms/scan)")
    path = write_json(cfg.out / "render.json", results)
    print(f"\nwrote {path} and {len(files)} images in {cfg.out}")
    return results
