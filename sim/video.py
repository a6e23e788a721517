"""MP4 (H.264) video writing for rendered frames, through imageio's ffmpeg backend.

imageio-ffmpeg ships its own ffmpeg binary, so no system ffmpeg is needed. Frames are encoded as
yuv420p (the pixel format every player decodes), which needs even width and height: odd sizes are
padded by one edge-replicated row or column rather than resized (imageio's default `macro_block_size`
of 16 would rescale every frame and warn). The file is written under a temporary name in the target
directory and renamed into place only once ffmpeg has finished, so an interrupted run never leaves a
truncated MP4 under the final name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from drivestack.common.artifacts import atomic_path

DEFAULT_FPS = 15.0  # [Hz] highway-env's video rate


def _check_frame(frame: object, index: int, shape: tuple[int, ...] | None) -> np.ndarray:
    """Validate one RGB frame (uint8 [H, W, 3], same shape as the first); raise ValueError if not."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame {index}: expected a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(
            f"frame {index}: expected dtype uint8, got {frame.dtype}; "
            "convert with (frame * 255).clip(0, 255).astype(np.uint8) or similar"
        )
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame {index}: expected an RGB image shaped (H, W, 3), got {frame.shape}")
    if shape is not None and frame.shape != shape:
        raise ValueError(
            f"frame {index}: shape {frame.shape} differs from the first frame's {shape}; "
            "all frames of a video must have the same size"
        )
    return frame


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """Pad an odd height or width by one edge-replicated pixel (yuv420p needs even sizes)."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


def write_mp4(
    frames: Iterable[np.ndarray] | np.ndarray, path: str | os.PathLike[str], fps: float = DEFAULT_FPS
) -> Path:
    """Encode RGB frames into an H.264 MP4 file, atomically.

    Args:
        frames: uint8 RGB frames shaped [H, W, 3] (an iterable, consumed once), or one array [T, H, W, 3].
        path: output file; missing parent directories are created, an existing file is replaced.
        fps: [Hz] frame rate.

    Returns:
        The path written.

    Raises:
        ValueError: no frames, a frame that is not uint8 [H, W, 3], frames of different sizes, or fps <= 0.
    """
    import imageio.v2 as imageio  # deferred: imageio's ffmpeg plugin is only needed when writing video

    if not fps > 0:
        raise ValueError(f"write_mp4: fps must be > 0 Hz, got {fps}")
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ValueError(f"write_mp4: a frame array must be shaped (T, H, W, 3), got {frames.shape}")
    it: Iterator[np.ndarray] = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError(f"write_mp4: no frames to write to {path}")
    shape = _check_frame(first, 0, None).shape

    path = Path(path)
    # Same directory, so the final rename is atomic; the temporary name keeps .mp4, so ffmpeg picks the muxer.
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,
            ffmpeg_log_level="error",
        )
        try:
            writer.append_data(_pad_even(first))
            for i, frame in enumerate(it, start=1):
                writer.append_data(_pad_even(_check_frame(frame, i, shape)))
        finally:
            writer.close()
    return path


class VideoRecorder:
    """Collects rendered frames in memory and writes them as one MP4.

    Example:
        rec = VideoRecorder(fps=15)
        for _ in range(T):
            rec.add(render_topdown(road, state))
        rec.save("runs/demo/episode.mp4")
    """

    def __init__(self, fps: float = DEFAULT_FPS) -> None:
        if not fps > 0:
            raise ValueError(f"VideoRecorder: fps must be > 0 Hz, got {fps}")
        self.fps = fps
        self.frames: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, frame: np.ndarray) -> None:
        """Append a copy of one uint8 RGB frame [H, W, 3] (same size as the frames before it)."""
        shape = self.frames[0].shape if self.frames else None
        self.frames.append(_check_frame(frame, len(self.frames), shape).copy())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the collected frames to an MP4 at `path` (see `write_mp4`); the frames are kept."""
        return write_mp4(self.frames, path, fps=self.fps)

    def clear(self) -> None:
        """Drop the collected frames (e.g. between episodes)."""
        self.frames.clear()
