"""`drivestack replay`: replay nuScenes logs through perception, tracking and the shadow planners, scored open loop.

The config and the runner are `drivestack.pipeline.replay`'s (the stages and the files written are documented
there; the metrics in docs/replay.md).
"""

from __future__ import annotations

from drivestack.pipeline.replay import ReplayConfig, run_replay

__all__ = ["ReplayConfig", "run_replay"]
