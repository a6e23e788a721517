"""Checkpoints load without running code, rebuild the same network, and refuse what does not fit."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from drivestack.perception.checkpoint import (
    check_compatible,
    deepen,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    save_half_precision,
)
from drivestack.perception.config import Backbone, ModelConfig
from drivestack.perception.infer import Detector
from drivestack.perception.model import CenterNet3D

CFG = ModelConfig(classes=("car", "truck"), input_width=160, input_height=96, widths=(8, 16, 32, 64), neck_channels=16)


class Payload:
    """Unpickling this would run code: a safe loader must refuse it."""

    def __reduce__(self):  # pragma: no cover - only reached by an unsafe loader
        return (print, ("executed",))


def test_round_trip_same_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CenterNet3D(CFG).eval()
    path = save_checkpoint(tmp_path / "ck.pt", model, {"car": "vehicle.moving"}, epoch=3, step=30)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # the temporary file was renamed into place
    data = load_checkpoint(path)
    assert data["epoch"] == 3 and data["attributes"] == {"car": "vehicle.moving"}
    again = model_from_checkpoint(data).eval()
    assert again.cfg == CFG
    x = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        k = torch.tensor([[[120.0, 0, 80], [0, 120, 48], [0, 0, 1]]])
        assert all(torch.equal(a, b) for a, b in zip(model(x, k), again(x, k)))
    # A run directory stands for its checkpoints/best.pt.
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    path.rename(tmp_path / "run" / "checkpoints" / "best.pt")
    det = Detector.from_checkpoint(tmp_path / "run")
    assert det.cfg == CFG and det.attributes == {"car": "vehicle.moving"}


def test_refusals_name_the_file_or_field(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint .*none.pt does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    with pytest.raises(FileNotFoundError, match="holds no checkpoints/best.pt"):
        load_checkpoint(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "drivestack-detector/1", "x": Payload()}, evil)
    with pytest.raises(ValueError, match="cannot be read safely"):
        load_checkpoint(evil)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps([1, 2], protocol=2) + b"garbage")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else/2"}, other)
    with pytest.raises(ValueError, match="format 'something-else/2', expected 'drivestack-detector/2'"):
        load_checkpoint(other)
    older = tmp_path / "older.pt"  # format 1 had no depth-uncertainty channel: refused by name, not by shape
    torch.save({"format": "drivestack-detector/1"}, older)
    with pytest.raises(ValueError, match="older.pt has format 'drivestack-detector/1'"):
        load_checkpoint(older)

    path = save_checkpoint(tmp_path / "ck.pt", CenterNet3D(CFG), {})
    data = load_checkpoint(path)
    data["model_config"]["classes"] = ["car"]  # the weights still have two heat-map channels
    with pytest.raises(ValueError, match=r"weight heat_head.2.weight has shape \(2, 18, 1, 1\)"):
        model_from_checkpoint(data)
    with pytest.raises(ValueError, match=r"trained with classes=\['car', 'truck'\], but \['pedestrian'\] was asked"):
        check_compatible(CFG, ModelConfig(**{**CFG.__dict__, "classes": ("pedestrian",)}), str(path))
    with pytest.raises(ValueError, match="trained with input_width=160, but 320 was asked"):
        check_compatible(CFG, ModelConfig(**{**CFG.__dict__, "input_width": 320}), str(path))


def test_deepening_keeps_the_function_and_adds_trainable_blocks() -> None:
    torch.manual_seed(0)
    model = CenterNet3D(CFG)
    for m in model.modules():  # trained-looking batch-norm statistics, so the identity is not trivial
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    deeper = deepen(model, (2, 1, 3, 1)).eval()
    assert deeper.cfg.blocks == (2, 1, 3, 1) and model.cfg.blocks == (1, 1, 1, 1)
    assert [len(s) for s in deeper.backbone.stages] == [2, 1, 3, 1]
    assert sum(p.numel() for p in deeper.parameters()) > sum(p.numel() for p in model.parameters())
    x, k = torch.randn(2, 3, 96, 160), torch.tensor([[[120.0, 0, 80], [0, 120, 48], [0, 0, 1]]]).expand(2, 3, 3)
    with torch.no_grad():
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(model(x, k), deeper(x, k)))
    # the added blocks learn: one step moves their zero-scaled batch norm (their convolutions follow)
    heat, reg = deeper.train()(x, k)
    (heat.square().mean() + reg.square().mean()).backward()
    assert deeper.backbone.stages[2][2].bn2.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"can only grow deeper than its \[1, 1, 1, 1\]"):
        deepen(model, (2, 0, 1, 1))
    with pytest.raises(ValueError, match="only the slim backbone can be deepened"):
        deepen(CenterNet3D(ModelConfig(classes=("car",), backbone=Backbone.RESNET18)), (3, 2, 2, 2))


def test_half_precision_copy_is_half_the_bytes_and_detects_the_same(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CenterNet3D(CFG).eval()
    full = save_checkpoint(tmp_path / "full.pt", model, {"car": "vehicle.moving"}, epoch=3, optimizer={"lr": 1.0})
    half = save_half_precision(full, tmp_path / "half.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.pt", "half.pt"]
    assert half.stat().st_size < 0.6 * full.stat().st_size
    data = load_checkpoint(half)
    assert data["epoch"] == 3 and "optimizer" not in data and data["attributes"] == {"car": "vehicle.moving"}
    assert all(v.dtype in (torch.float16, torch.int64) for v in data["model"].values())
    again = model_from_checkpoint(data).eval()
    assert all(p.dtype == torch.float32 for p in again.parameters())
    x, k = torch.randn(1, 3, 96, 160), torch.tensor([[[120.0, 0, 80], [0, 120, 48], [0, 0, 1]]])
    with torch.no_grad():
        for a, b in zip(model(x, k), again(x, k)):
            assert not torch.equal(a, b) and torch.allclose(a, b, rtol=1e-2, atol=1e-2)
