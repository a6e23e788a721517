"""`drivestack data make`: simulate scenes and write a nuScenes-format dataset (see sim/nuscenes_export.py).

With `--ray [ADDRESS]` the batches of scenes (`--batch-scenes`) are Ray tasks, each writing its sensor files into
the export's hidden temporary folder; this process merges what they return and writes the tables. The dataset is
byte for byte the one the same command writes without --ray: a batch is a function of the config and its first
scene alone (--threads included: each task runs with that many torch threads and asks Ray for as many CPUs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated

from drivestack.distributed import RAY_OPTION
from drivestack.sim import nuscenes_export
from drivestack.sim.nuscenes_export import export_dataset, export_shard
from drivestack.sim.nuscenes_rollout import SceneBatch

__all__ = ["DatasetConfig", "run_make"]


@dataclass(frozen=True)
class DatasetConfig(nuscenes_export.DatasetConfig):
    """Simulate scenes and write them as a nuScenes-format dataset."""

    ray: Annotated[str | None, RAY_OPTION] = None
    """Run the batches of scenes as Ray tasks: alone, a local Ray instance on this machine's cores; `auto` or
    `ray://HOST:10001`, a cluster (the --out folder must be on a filesystem every node sees). Same bytes as without.
    Needs the extra: pip install -e ".[ray]"."""

    def export_config(self) -> nuscenes_export.DatasetConfig:
        """The export's own config (everything but the Ray option)."""
        return nuscenes_export.DatasetConfig(
            **{f.name: getattr(self, f.name) for f in fields(nuscenes_export.DatasetConfig)}
        )


def run_make(cfg: nuscenes_export.DatasetConfig) -> dict:
    """Write the dataset (progress bar, then one summary line); returns the summary as a dict.

    The CLI turns SIGTERM into KeyboardInterrupt, so a terminated export removes its temporary directory like an
    interrupted one (exit 130); with --ray the running tasks are cancelled first.
    """
    address = getattr(cfg, "ray", None)
    if address is None:
        return asdict(export_dataset(cfg))
    from drivestack import distributed

    export_cfg = cfg.export_config().validate()  # every option checked before Ray starts
    if export_cfg.threads == 0:
        raise ValueError(
            "--threads 0 (torch's default: one per core of each machine) with --ray: the dataset's bytes depend on "
            "the thread count; pass --threads N (1, the default, is fastest per core)"
        )
    with distributed.ray_session(address):
        return asdict(export_dataset(export_cfg, run_shards=ray_shards))


def ray_shards(cfg: nuscenes_export.DatasetConfig, root: Path, batches: list[tuple[int, int]]) -> list[SceneBatch]:
    """`sim.nuscenes_export.ShardRunner` on the connected Ray cluster: one task per batch, a progress bar over them."""
    from drivestack import distributed

    distributed.warn_few_tasks(
        len(batches),
        f"batches of --batch-scenes {cfg.batch_scenes}",
        "a smaller --batch-scenes makes more (it changes the scenes drawn, with or without --ray)",
    )
    root = Path(root).absolute()  # workers may start in another folder
    arguments = [(cfg, root, first, nb) for first, nb in batches]
    return distributed.run_tasks(
        export_shard, arguments, desc="nuScenes export (Ray)", unit="shard", num_cpus=cfg.threads
    )
