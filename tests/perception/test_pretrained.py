"""The opt-in ImageNet-initialised backbone: torchvision resnet18 weights loaded from a file the test writes itself
(or from the torch hub cache), weights_only, never downloaded; one-line errors naming the file to place."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from drivestack.perception.config import Backbone, ModelConfig
from drivestack.perception.model import CenterNet3D, load_pretrained_backbone, pretrained_path


def _weights(path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision resnet18 state dict (random: a stand-in for the ImageNet file) saved at `path`."""
    torch.manual_seed(seed)
    state = resnet18(weights=None).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def _model() -> CenterNet3D:
    return CenterNet3D(ModelConfig(backbone=Backbone.RESNET18, input_width=160, input_height=96))


def test_weights_file_fills_the_backbone(tmp_path: Path) -> None:
    state = _weights(tmp_path / "r18.pth")
    model = _model()
    heads = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    assert load_pretrained_backbone(model, tmp_path / "r18.pth") == tmp_path / "r18.pth"
    trunk = model.backbone.state_dict()
    assert torch.equal(trunk["stem.0.weight"], state["conv1.weight"])
    assert torch.equal(trunk["stem.1.running_var"], state["bn1.running_var"])
    assert torch.equal(trunk["stages.3.1.conv2.weight"], state["layer4.1.conv2.weight"])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in heads.items())  # neck and heads untouched


def test_torch_cache_is_read_and_never_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(FileNotFoundError) as err:
        pretrained_path("torch-cache")
    assert str(expected) in str(err.value) and "nothing is downloaded" in str(err.value)
    assert "\n" not in str(err.value) and not expected.exists()
    state = _weights(expected, seed=1)
    model = _model()
    load_pretrained_backbone(model, "torch-cache")
    assert torch.equal(model.backbone.state_dict()["stages.0.0.conv1.weight"], state["layer1.0.conv1.weight"])


class _Payload:
    def __reduce__(self) -> tuple:
        return (print, ("code ran",))


def test_bad_weights_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_pretrained_backbone(_model(), tmp_path / "absent.pth")
    code = tmp_path / "code.pth"
    code.write_bytes(pickle.dumps({"conv1.weight": _Payload()}, protocol=2))
    with pytest.raises(ValueError, match="not a torch weights file") as err:
        load_pretrained_backbone(_model(), code)  # weights_only refuses to run the pickle's code
    assert "\n" not in str(err.value)
    other = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not resnet18 weights"):
        load_pretrained_backbone(_model(), other)
    shapes = tmp_path / "shapes.pth"
    state = resnet18(weights=None).state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(state, shapes)
    with pytest.raises(ValueError, match=r"stages.1.0.conv1.weight is \(1, 1, 1, 1\)"):
        load_pretrained_backbone(_model(), shapes)
    slim = CenterNet3D(ModelConfig())
    _weights(tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="use --backbone resnet18"):
        load_pretrained_backbone(slim, tmp_path / "r18.pth")
