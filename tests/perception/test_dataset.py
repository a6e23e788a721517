"""The nuScenes-format reader: frames, ground truth in the ego frame, the image cache, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from drivestack.common.nuscenes import available_splits, open_nuscenes, split_sample_tokens
from drivestack.perception.boxes import encode_boxes
from drivestack.perception.dataset import cache_frames, classes_present, load_frames, visible_mask


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_fixture_frames_and_ego_frame_ground_truth(tiny_root: Path) -> None:
    nusc = open_nuscenes(tiny_root)
    assert available_splits(nusc) == ["train", "val", "all"]  # "empty" lists no scene: not usable
    frames = load_frames(nusc, "train")
    assert len(frames) == 8 and len(load_frames(nusc, "val")) == 4 and len(load_frames(nusc, "all")) == 12
    frame = frames[0]
    assert frame.image_size == (320, 180) and frame.image_path.is_file()
    # Boxes back in the global frame are the table's annotations.
    anns = [nusc.get("sample_annotation", t) for t in nusc.get("sample", frame.sample_token)["anns"]]
    glob = frame.boxes[:, :3] @ frame.ego2global[:3, :3].T + frame.ego2global[:3, 3]
    assert np.allclose(glob, [a["translation"] for a in anns], atol=1e-9)
    assert frame.names == ["car" if a["category_name"] == "vehicle.car" else "truck" for a in anns]
    assert np.allclose(frame.boxes[:, 2], np.array([a["size"][2] for a in anns]) / 2, atol=1e-9)  # on the ground
    assert classes_present(frames) <= {"car", "truck"} and classes_present(frames)


def test_cache_resizes_images_and_scales_the_intrinsic(tiny_root: Path) -> None:
    nusc = open_nuscenes(tiny_root)
    frames = load_frames(nusc, "val")
    cache = cache_frames(frames, ("car", "truck"), (160, 96), progress=False)
    assert cache.images.shape == (4, 3, 96, 160) and cache.images.dtype == torch.uint8
    assert torch.allclose(cache.intrinsic[0, 0], torch.from_numpy(frames[0].intrinsic[0]).float() * 0.5)
    assert torch.allclose(cache.intrinsic[0, 1], torch.from_numpy(frames[0].intrinsic[1]).float() * 96 / 180)
    t = cache.targets
    valid = t.labels >= 0
    assert int(valid.sum()) == sum(int(visible_mask(f).sum()) for f in frames)
    assert ((t.uv[..., 0][valid] >= 0) & (t.uv[..., 0][valid] < 160)).all()
    # The cached, resized image is brighter than the road where a car's centre projects (cars are bright red/blue).
    b, m = torch.nonzero(valid)[0].tolist()
    u, v = t.uv[b, m].long().tolist()
    assert not torch.equal(cache.images[b, :, v, u], cache.images[b, :, 90, 2])


def test_real_scene_reads_and_projects_like_the_devkit(real_root: Path) -> None:
    from nuscenes.eval.detection.utils import category_to_detection_name
    from nuscenes.utils.geometry_utils import view_points

    nusc = open_nuscenes(real_root)
    assert "val" in available_splits(nusc)
    frames = load_frames(nusc, "val")
    assert len(frames) == 40 and frames[0].image_size == (1600, 900)
    frame = frames[5]
    sd = nusc.get("sample", frame.sample_token)["data"]["CAM_FRONT"]
    _, boxes, k = nusc.get_sample_data(sd)  # the devkit's boxes in the camera frame
    enc = encode_boxes(
        torch.from_numpy(frame.boxes), torch.from_numpy(frame.intrinsic), torch.from_numpy(frame.cam2ego)
    )
    by_token = {b.token: b for b in boxes}
    anns = nusc.get("sample", frame.sample_token)["anns"]
    tokens = [t for t in anns if category_to_detection_name(nusc.get("sample_annotation", t)["category_name"])]
    assert len(tokens) == len(frame.names)  # frame box i is annotation tokens[i]
    checked = 0
    for i, token in enumerate(tokens):
        box = by_token.get(token)
        if box is not None and box.center[2] > 1.0:
            uv = view_points(box.center[:, None], k, normalize=True)[:2, 0]
            assert np.allclose(uv, enc.uv[i].numpy(), atol=1e-6)
            assert abs(box.center[2] - float(enc.depth[i])) < 1e-6
            checked += 1
    assert checked >= 5


def test_split_resolution_and_errors(tiny_root: Path) -> None:
    nusc = open_nuscenes(tiny_root)
    assert len(split_sample_tokens(nusc, "val")) == 4
    with pytest.raises(ValueError, match="split 'empty' has no scene"):
        split_sample_tokens(nusc, "empty")
    with pytest.raises(ValueError, match="unknown split 'nope'.*available: train, val, all"):
        split_sample_tokens(nusc, "nope")
    with pytest.raises(ValueError, match="split 'mini_val' has no scene"):  # official, but none of its scenes here
        split_sample_tokens(nusc, "mini_val")


def test_layout_errors_name_the_file(tiny_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"dataroot {tmp_path / 'missing'} does not exist"):
        open_nuscenes(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="has no version folder"):
        open_nuscenes(tmp_path)
    with pytest.raises(FileNotFoundError, match="version folder .*v1.0-mini does not exist"):
        open_nuscenes(tiny_root, "v1.0-mini")

    root = _copy(tiny_root, tmp_path / "no-table")
    (root / "v1.0-trainval" / "ego_pose.json").unlink()
    with pytest.raises(FileNotFoundError, match="table .*ego_pose.json is missing"):
        open_nuscenes(root)

    root = _copy(tiny_root, tmp_path / "bad-json")
    (root / "v1.0-trainval" / "sample_data.json").write_text("[{")
    with pytest.raises(ValueError, match="table .*sample_data.json is not valid JSON"):
        open_nuscenes(root)

    root = _copy(tiny_root, tmp_path / "bad-field")
    path = root / "v1.0-trainval" / "sample_data.json"
    rows = json.loads(path.read_text())
    del rows[0]["calibrated_sensor_token"]
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="malformed.*calibrated_sensor_token"):
        open_nuscenes(root)

    root = _copy(tiny_root, tmp_path / "no-image")
    image = sorted((root / "samples" / "CAM_FRONT").glob("*.jpg"))[-1]
    image.unlink()
    nusc = open_nuscenes(root)
    with pytest.raises(FileNotFoundError, match=f"image file {image} is missing"):
        load_frames(nusc, "val")
    load_frames(nusc, "train")  # the other split is whole

    root = _copy(tiny_root, tmp_path / "bad-splits")
    (root / "v1.0-trainval" / "splits.json").write_text('{"train": "fixture-0000"}')
    with pytest.raises(ValueError, match="splits.json: split 'train' must be a list of scene names"):
        load_frames(open_nuscenes(root), "train")
