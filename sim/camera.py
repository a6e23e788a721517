"""Cameras on the ego: nuScenes calibration, image size, and pinhole projection, batched in torch.

Frames follow nuScenes: the ego frame has x forward, y left, z up; a camera frame has x right, y down,
z forward (the optical axis); quaternions are (w, x, y, z) and rotate sensor coordinates into the ego
frame. A pixel (u, v) is continuous, pixel column i covering u in [i, i + 1), so the centre of pixel
(row, col) is (col + 0.5, row + 0.5) and intrinsics scale with the image size by plain ratios.

In the simulator the ego frame's origin is the centre of the ego's box on the ground (nuScenes puts
it at the rear axle); the mounting positions below are used as they are relative to that origin.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drivestack.common.geometry import make_transform, quaternion_to_matrix

# Calibration of the six cameras and the top lidar of nuScenes scene-0523 (v1.0-trainval,
# calibrated_sensor.json; the nuScenes dataset is (c) Motional, CC BY-NC-SA 4.0): translation [m] in
# the ego frame, rotation quaternion (w, x, y, z) sensor -> ego, camera intrinsic 3x3 at 1600 x 900 px.
NUSCENES_CAMERAS: dict[str, dict] = {
    "CAM_FRONT": {
        "translation": [1.72200568478, 0.00475453292289, 1.49491291905],
        "rotation": [0.5077241387638071, -0.4973392230703816, 0.49837167536166627, -0.4964832014373754],
        "camera_intrinsic": [
            [1252.8131021185304, 0.0, 826.588114781398],
            [0.0, 1252.8131021185304, 469.9846626224581],
            [0.0, 0.0, 1.0],
        ],
    },
    "CAM_FRONT_RIGHT": {
        "translation": [1.58082565783, -0.499078711449, 1.51749368405],
        "rotation": [0.20335173766558642, -0.19146333228946724, 0.6785710044972951, -0.6793609166212989],
        "camera_intrinsic": [
            [1256.7485116440405, 0.0, 817.7887570959712],
            [0.0, 1256.7485116440403, 451.9541780095127],
            [0.0, 0.0, 1.0],
        ],
    },
    "CAM_BACK_RIGHT": {
        "translation": [1.05945173053, -0.46720294852, 1.55050857555],
        "rotation": [0.13819187705364147, -0.13796718183628456, -0.6893329941542625, 0.697630335509333],
        "camera_intrinsic": [
            [1249.9629280788233, 0.0, 825.3768045375984],
            [0.0, 1249.9629280788233, 462.54816385708756],
            [0.0, 0.0, 1.0],
        ],
    },
    "CAM_BACK": {
        "translation": [0.05524611077, 0.0107882366898, 1.56794286957],
        "rotation": [0.5067997344989889, -0.4977567019405021, -0.4987849934090844, 0.496594225837321],
        "camera_intrinsic": [
            [796.8910634503094, 0.0, 857.7774326863696],
            [0.0, 796.8910634503094, 476.8848988407415],
            [0.0, 0.0, 1.0],
        ],
    },
    "CAM_BACK_LEFT": {
        "translation": [1.04852047718, 0.483058131052, 1.56210154484],
        "rotation": [0.7048620297871717, -0.6907306801461466, -0.11209091960167808, 0.11617345743327073],
        "camera_intrinsic": [
            [1254.9860565800168, 0.0, 829.5769333630991],
            [0.0, 1254.9860565800168, 467.1680561863987],
            [0.0, 0.0, 1.0],
        ],
    },
    "CAM_FRONT_LEFT": {
        "translation": [1.5752559464, 0.500519383135, 1.50696032589],
        "rotation": [0.6812088525125634, -0.6687507165046241, 0.2101702448905517, -0.21108161122114324],
        "camera_intrinsic": [
            [1257.8625342125129, 0.0, 827.2410631095686],
            [0.0, 1257.8625342125129, 450.915498205774],
            [0.0, 0.0, 1.0],
        ],
    },
    "LIDAR_TOP": {
        "translation": [0.985793, 0.0, 1.84019],
        "rotation": [0.706749235646644, -0.015300993788500868, 0.01739745181256607, -0.7070846669051719],
        "camera_intrinsic": [],
    },
}
CAMERA_CHANNELS = tuple(name for name in NUSCENES_CAMERAS if name.startswith("CAM_"))
NUSCENES_IMAGE_SIZE = (1600, 900)  # [px] (width, height) the intrinsics above are given at


@dataclass(frozen=True)
class CameraConfig:
    """Which cameras render, at what size and range, and how much the lighting varies between images."""

    channels: tuple[str, ...] = ("CAM_FRONT",)
    """nuScenes camera channels to render (CAM_FRONT, CAM_FRONT_RIGHT, CAM_BACK_RIGHT, CAM_BACK, ...)."""
    width: int = 800
    """[px] image width (intrinsics are scaled from nuScenes' 1600 px)."""
    height: int = 450
    """[px] image height (intrinsics are scaled from nuScenes' 900 px)."""
    max_depth: float = 150.0
    """[m] render distance: ground and vehicles fade into the haze towards it; nothing farther is drawn."""
    max_vehicles: int = 32
    """Nearest vehicles that can be in a camera's view rendered per camera."""
    sun_elevation_range: tuple[float, float] = (15.0, 70.0)
    """[deg] sun elevation, drawn per image (the azimuth is uniform)."""
    exposure_range: tuple[float, float] = (0.8, 1.2)
    """[-] brightness multiplier, drawn per image."""
    contrast_range: tuple[float, float] = (0.85, 1.15)
    """[-] contrast around mid-grey, drawn per image."""
    color_temperature: float = 0.08
    """[-] largest relative red/blue shift (warm or cold white balance), drawn per image."""
    noise_std: float = 2.0
    """[0-255 levels] standard deviation of the per-pixel sensor noise."""

    def validate(self) -> CameraConfig:
        """Raise ValueError naming the field for anything out of range; returns self."""
        bad = [c for c in self.channels if c not in CAMERA_CHANNELS]
        if bad or not self.channels:
            raise ValueError(
                f"invalid config: camera.channels={self.channels!r} has unknown channels {bad}; "
                f"allowed: {', '.join(CAMERA_CHANNELS)}"
            )
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"invalid config: camera.channels={self.channels!r} repeats a channel")
        for name in ("width", "height", "max_vehicles"):
            if getattr(self, name) < 1:
                raise ValueError(f"invalid config: camera.{name}={getattr(self, name)!r}; allowed: >= 1")
        if not 1.0 <= self.max_depth <= 250.0:
            raise ValueError(
                f"invalid config: camera.max_depth={self.max_depth!r}; allowed: 1..250 m "
                "(the road's lookup tables reach 300 m past the ego)"
            )
        for name, lo_min, hi_max in (
            ("sun_elevation_range", 1.0, 90.0),
            ("exposure_range", 0.05, 10.0),
            ("contrast_range", 0.05, 10.0),
        ):
            lo, hi = getattr(self, name)
            if not lo_min <= lo <= hi <= hi_max:
                raise ValueError(
                    f"invalid config: camera.{name}={(lo, hi)!r}; allowed: {lo_min} <= low <= high <= {hi_max}"
                )
        if not 0.0 <= self.color_temperature <= 0.5:
            raise ValueError(f"invalid config: camera.color_temperature={self.color_temperature!r}; allowed: 0..0.5")
        if not 0.0 <= self.noise_std <= 50.0:
            raise ValueError(f"invalid config: camera.noise_std={self.noise_std!r}; allowed: 0..50 levels")
        return self


@dataclass(frozen=True)
class CameraRig:
    """C cameras mounted on the ego; tensors lead with C, on one device."""

    channels: tuple[str, ...]
    width: int  # [px]
    height: int  # [px]
    intrinsic: torch.Tensor  # (C, 3, 3) [px] at width x height
    translation: torch.Tensor  # (C, 3) [m] camera position in the ego frame
    rotation: torch.Tensor  # (C, 4) quaternion (w, x, y, z), camera -> ego
    cam_to_ego: torch.Tensor  # (C, 4, 4) homogeneous transform, camera -> ego
    config: CameraConfig = CameraConfig()  # render distance, vehicle budget and lighting variation

    @property
    def num_cameras(self) -> int:
        return len(self.channels)

    @property
    def device(self) -> torch.device:
        return self.intrinsic.device


def camera_rig(config: CameraConfig | None = None, device: torch.device | str = "cpu") -> CameraRig:
    """The cameras of `config` with nuScenes' calibration, intrinsics scaled to config.width x height."""
    config = (config or CameraConfig()).validate()
    f32 = dict(dtype=torch.float32, device=device)
    sx, sy = config.width / NUSCENES_IMAGE_SIZE[0], config.height / NUSCENES_IMAGE_SIZE[1]
    scale = torch.tensor([[sx, sx, sx], [sy, sy, sy], [1.0, 1.0, 1.0]], dtype=torch.float64)  # fx, cx by x; fy, cy by y
    records = [NUSCENES_CAMERAS[c] for c in config.channels]
    intrinsic = torch.stack([torch.tensor(r["camera_intrinsic"], dtype=torch.float64) * scale for r in records])
    translation = torch.tensor([r["translation"] for r in records], dtype=torch.float64)
    rotation = torch.tensor([r["rotation"] for r in records], dtype=torch.float64)
    cam_to_ego = make_transform(quaternion_to_matrix(rotation), translation)  # (C, 4, 4)
    return CameraRig(
        channels=tuple(config.channels),
        width=config.width,
        height=config.height,
        intrinsic=intrinsic.to(**f32),
        translation=translation.to(**f32),
        rotation=rotation.to(**f32),
        cam_to_ego=cam_to_ego.to(**f32),
        config=config,
    )


def ego_to_camera(points_ego: torch.Tensor, rig: CameraRig) -> torch.Tensor:
    """Points [..., 3] in the ego frame -> camera frames [..., C, 3] (x right, y down, z forward) [m]."""
    rot = rig.cam_to_ego[:, :3, :3].to(points_ego.dtype)  # (C, 3, 3) camera -> ego
    rel = points_ego.unsqueeze(-2) - rig.translation.to(points_ego.dtype)  # (..., C, 3)
    return torch.einsum("cji,...cj->...ci", rot, rel)  # R^T (p - t)


def project_to_image(points_ego: torch.Tensor, rig: CameraRig) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates of ego-frame points in every camera of the rig.

    Args:
        points_ego: [..., 3] [m] points in the ego frame.
        rig: the cameras.

    Returns:
        uv [..., C, 2] [px] continuous pixel coordinates (column, row); meaningful only where depth > 0.
        depth [..., C] [m] distance along each camera's optical axis (negative behind the camera).
    """
    p = ego_to_camera(points_ego, rig)  # (..., C, 3)
    depth = p[..., 2]
    z = torch.where(depth.abs() < 1e-9, torch.full_like(depth, 1e-9), depth)  # keeps uv finite at depth 0
    k = rig.intrinsic.to(p.dtype)  # (C, 3, 3)
    u = k[:, 0, 0] * p[..., 0] / z + k[:, 0, 2]
    v = k[:, 1, 1] * p[..., 1] / z + k[:, 1, 2]
    return torch.stack([u, v], dim=-1), depth


def pixel_rays(rig: CameraRig, height: int | None = None, width: int | None = None) -> torch.Tensor:
    """Unit ray directions [C, height, width, 3] in the ego frame through the pixel centres.

    height and width may exceed the image (padding rows and columns continue the same camera model).
    The rays start at rig.translation.
    """
    H, W = height or rig.height, width or rig.width
    dev = rig.device
    k = rig.intrinsic  # (C, 3, 3)
    u = torch.arange(W, device=dev, dtype=torch.float32) + 0.5
    v = torch.arange(H, device=dev, dtype=torch.float32) + 0.5
    x = (u.view(1, 1, W) - k[:, 0, 2].view(-1, 1, 1)) / k[:, 0, 0].view(-1, 1, 1)  # (C, 1, W)
    y = (v.view(1, H, 1) - k[:, 1, 2].view(-1, 1, 1)) / k[:, 1, 1].view(-1, 1, 1)  # (C, H, 1)
    x, y = torch.broadcast_tensors(x, y)
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # (C, H, W, 3) camera frame
    d_ego = torch.einsum("cij,chwj->chwi", rig.cam_to_ego[:, :3, :3], d_cam)
    return d_ego / d_ego.norm(dim=-1, keepdim=True)


def points_bbox(
    points_cam: torch.Tensor, intrinsic: torch.Tensor, edges: tuple[tuple[int, int], ...], near: float = 0.05
) -> torch.Tensor:
    """Pixel bounding boxes (x0, y0, x1, y1) [..., 4] of convex bodies given by corners in camera frames.

    The body is clipped at the plane z = near first (corners behind it are replaced by the points where
    the body's edges cross it), so bodies partly behind the camera get their true, possibly huge, extent.
    NaN where the body lies entirely behind the plane. Not clipped to the image.

    Args:
        points_cam: [..., M, 3] [m] corners in the camera frame (x right, y down, z forward).
        intrinsic: [..., 3, 3] the camera's intrinsic matrix (broadcast against the leading dims).
        edges: the body's edges as pairs of corner indices.
    """
    a = points_cam[..., [i for i, _ in edges], :]  # (..., E, 3)
    b = points_cam[..., [j for _, j in edges], :]
    za, zb = a[..., 2:3], b[..., 2:3]
    crosses = (za - near) * (zb - near) < 0
    w = ((near - za) / torch.where(crosses, zb - za, torch.ones_like(za))).clamp(0.0, 1.0)
    cut = a + w * (b - a)  # (..., E, 3) on the near plane where the edge crosses it
    pts = torch.cat([points_cam, cut], dim=-2)
    ok = torch.cat([points_cam[..., 2] >= near, crosses.squeeze(-1)], dim=-1)  # (..., M + E)
    z = pts[..., 2].clamp_min(near)
    k = intrinsic.unsqueeze(-3)  # (..., 1, 3, 3)
    u = k[..., 0, 0] * pts[..., 0] / z + k[..., 0, 2]
    v = k[..., 1, 1] * pts[..., 1] / z + k[..., 1, 2]
    inf = torch.full_like(u, torch.inf)
    box = torch.stack(
        [
            torch.where(ok, u, inf).amin(-1),
            torch.where(ok, v, inf).amin(-1),
            torch.where(ok, u, -inf).amax(-1),
            torch.where(ok, v, -inf).amax(-1),
        ],
        dim=-1,
    )
    return torch.where(ok.any(dim=-1, keepdim=True), box, torch.full_like(box, torch.nan))


def clip_to_image(box: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pixel boxes [..., 4] clipped to the image; NaN where nothing of the box is inside it."""
    x0, y0 = box[..., 0].clamp(0.0, width), box[..., 1].clamp(0.0, height)
    x1, y1 = box[..., 2].clamp(0.0, width), box[..., 3].clamp(0.0, height)
    out = torch.stack([x0, y0, x1, y1], dim=-1)
    keep = (x1 > x0) & (y1 > y0)  # False for NaN too
    return torch.where(keep.unsqueeze(-1), out, torch.full_like(out, torch.nan))


def frustum_normals(rig: CameraRig) -> torch.Tensor:
    """Inward unit normals (C, 4, 3) of the four side planes of each camera's view, camera frame."""
    W, H = float(rig.width), float(rig.height)
    k = rig.intrinsic
    corners = torch.tensor([[0.0, 0.0], [W, 0.0], [W, H], [0.0, H]], device=rig.device)  # clockwise on screen
    x = (corners[:, 0] - k[:, 0, 2:3]) / k[:, 0, 0:1]  # (C, 4)
    y = (corners[:, 1] - k[:, 1, 2:3]) / k[:, 1, 1:2]
    rays = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # (C, 4, 3)
    n = torch.linalg.cross(rays, rays.roll(-1, dims=1), dim=-1)
    n = torch.where(n[..., 2:3] < 0, -n, n)  # the optical axis (0, 0, 1) is inside
    return n / n.norm(dim=-1, keepdim=True)
