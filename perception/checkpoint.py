"""Detector checkpoints: plain tensors and JSON-like metadata, loaded with `torch.load(weights_only=True)`.

A checkpoint file holds

    format          "drivestack-detector/2" (/2: nine regression channels, the ninth the depth uncertainty)
    model_config    `ModelConfig.to_dict()`: the architecture, classes and input size the weights belong to
    attributes      detection name -> the nuScenes attribute written into submissions (the training set's most
                    common one for that class: a single-frame detector does not estimate it)
    model           the network's state_dict
    optimizer, scheduler, epoch, step, best (training state; resumable checkpoints only)
    info            free-form run facts (dataset, split, metrics at save time)

Saving writes a temporary sibling and renames it into place, so an interrupted save never leaves a truncated
file under the final name.
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from drivestack.common.artifacts import atomic_path
from drivestack.perception.config import Backbone, ModelConfig
from drivestack.perception.model import CenterNet3D

FORMAT = "drivestack-detector/2"
HINT = "train one with `drivestack train detector`"


def save_checkpoint(path: Path, model: CenterNet3D, attributes: dict[str, str], **state: Any) -> Path:
    """Write `model` (its config and weights), the attribute table and any training `state` to `path`."""
    payload = {
        "format": FORMAT,
        "model_config": model.cfg.to_dict(),
        "attributes": dict(attributes),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **state,
    }
    with atomic_path(path) as tmp:  # creates the parents
        torch.save(payload, tmp)
    return path


def save_half_precision(source: Path | str, path: Path | str) -> Path:
    """Copy checkpoint `source` to `path` with its floating-point weights in float16 (half the bytes; the
    training state, e.g. the optimizer, is left out). Loading casts them back to float32 (`model_from_checkpoint`);
    a detector's outputs move by about float16's rounding (1e-3 relative), what a release can afford for half
    the download."""
    data = load_checkpoint(source)
    keep = {k: v for k, v in data.items() if k not in ("model", "optimizer", "path")}
    model = {k: v.half() if v.is_floating_point() else v for k, v in data["model"].items()}
    with atomic_path(Path(path)) as tmp:
        torch.save({**keep, "model": model}, tmp)
    return Path(path)


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (no code runs); FileNotFoundError / ValueError naming the file."""
    path = Path(path)
    if path.is_dir():  # a run directory: its best checkpoint
        candidates = [path / "checkpoints" / "best.pt", path / "best.pt", path / "checkpoints" / "last.pt"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{path} holds no checkpoints/best.pt or checkpoints/last.pt; {HINT}")
        path = found
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; {HINT}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"checkpoint {path} cannot be read safely ({first}); is it a drivestack detector checkpoint?"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"checkpoint {path} has format {found!r}, expected {FORMAT!r}; {HINT}")
    for key in ("model_config", "model", "attributes"):
        if key not in data:
            raise ValueError(f"checkpoint {path} lacks field {key!r}")
    data["path"] = str(path)
    return data


def model_from_checkpoint(data: dict[str, Any]) -> CenterNet3D:
    """The network of a loaded checkpoint; ValueError naming the first parameter that does not fit."""
    where = data.get("path", "checkpoint")
    try:
        cfg = ModelConfig.from_dict(data["model_config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: field model_config is invalid ({err})") from None
    model = CenterNet3D(cfg)
    own = model.state_dict()
    state = data["model"]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{where}: weights do not match model_config (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); the checkpoint is damaged or from another version"
        )
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{where}: weight {key} has shape {tuple(state[key].shape)}, model_config "
                f"{cfg.classes} at {cfg.input_width}x{cfg.input_height} needs {tuple(value.shape)}"
            )
    model.load_state_dict(state)
    return model


def check_deeper(cfg: ModelConfig, blocks: tuple[int, ...]) -> None:
    """ValueError (one line) unless `deepen` can grow a `cfg` network to `blocks`."""
    if cfg.backbone != Backbone.SLIM:
        raise ValueError(f"blocks={list(blocks)}: only the slim backbone can be deepened, not {cfg.backbone.value}")
    if len(blocks) != len(cfg.blocks) or any(b < a for a, b in zip(cfg.blocks, blocks)):
        raise ValueError(
            f"blocks={list(blocks)}: a fine-tuned detector can only grow deeper than its {list(cfg.blocks)} per "
            "stage; drop --blocks to keep its architecture"
        )


def deepen(model: CenterNet3D, blocks: tuple[int, ...]) -> CenterNet3D:
    """`model` with more residual blocks per backbone stage (`blocks`, at least its own in each stage), computing
    the same function: its weights are copied and each added block starts as the identity (the last batch norm
    of its residual branch has zero scale, as in Goyal et al.'s zero-gamma initialisation), so fine-tuning
    starts from the trained detector's accuracy with more capacity to fit (Net2Net's deepening)."""
    cfg = model.cfg
    check_deeper(cfg, blocks)
    deeper = CenterNet3D(replace(cfg, blocks=tuple(blocks)).validate())
    state = deeper.state_dict()
    state.update(model.state_dict())  # every weight of the old network keeps its name
    for stage, (old, new) in enumerate(zip(cfg.blocks, blocks)):
        for block in range(old, new):
            state[f"backbone.stages.{stage}.{block}.bn2.weight"].zero_()
    deeper.load_state_dict(state)
    return deeper


def check_compatible(cfg: ModelConfig, expected: ModelConfig, where: str) -> None:
    """ValueError naming the first architecture field (classes, input size, ...) where `cfg` differs."""
    for name, value in cfg.to_dict().items():
        want = expected.to_dict()[name]
        if value != want:
            raise ValueError(
                f"{where} was trained with {name}={value}, but {want} was asked for; use a checkpoint "
                f"trained for {name}={want} or drop the option"
            )
