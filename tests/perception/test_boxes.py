"""Box geometry: encode / decode round trips and augmentation that keeps image and 3D geometry consistent."""

from __future__ import annotations

import math

import torch

from drivestack.common.geometry import (
    make_transform,
    matrix_to_yaw,
    quaternion_to_matrix,
    wrap_angle,
    yaw_to_quaternion,
)
from drivestack.perception.augment import AugmentConfig, augment
from drivestack.perception.boxes import (
    BoxEncoding,
    boxes_to_image_boxes,
    decode_boxes,
    depth_to_target,
    encode_boxes,
    project,
    scale_intrinsic,
    target_to_depth,
)
from drivestack.perception.dataset import TargetBoxes

# Real nuScenes CAM_FRONT calibration (scene-0523): slightly pitched and rolled.
CAM_ROT = torch.tensor(
    [0.5077241387638071, -0.4973392230703816, 0.49837167536166627, -0.4964832014373754], dtype=torch.float64
)
CAM_T = torch.tensor([1.72200568478, 0.00475453292289, 1.49491291905], dtype=torch.float64)
K = torch.tensor([[1252.8131, 0.0, 826.5881], [0.0, 1252.8131, 469.9847], [0.0, 0.0, 1.0]], dtype=torch.float64)
LEVEL_ROT = torch.tensor([0.5, -0.5, 0.5, -0.5], dtype=torch.float64)  # exactly level front camera


def random_boxes(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = 5 + 45 * torch.rand(n, generator=g, dtype=torch.float64)
    y = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * 0.8 * x  # inside a ~80 deg wide view
    z = 0.5 + torch.rand(n, generator=g, dtype=torch.float64)
    size = 1 + 4 * torch.rand(n, 3, generator=g, dtype=torch.float64)
    yaw = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * 2 * math.pi
    return torch.cat([torch.stack([x, y, z], 1), size, yaw[:, None]], 1)


def test_quaternion_yaw_round_trip() -> None:
    yaw = torch.linspace(-3.1, 3.1, 13, dtype=torch.float64)
    assert torch.allclose(matrix_to_yaw(quaternion_to_matrix(yaw_to_quaternion(yaw))), yaw, atol=1e-12)
    rot = quaternion_to_matrix(CAM_ROT)
    assert torch.allclose(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_encode_decode_round_trip_any_camera() -> None:
    boxes = random_boxes(200)
    for rot_q in (CAM_ROT, LEVEL_ROT):
        cam2ego = make_transform(quaternion_to_matrix(rot_q), CAM_T)
        enc = encode_boxes(boxes, K, cam2ego)
        assert (enc.depth > 0).all()
        back = decode_boxes(enc, K, cam2ego)
        assert torch.allclose(back[:, :6], boxes[:, :6], atol=1e-9)
        assert torch.allclose(wrap_angle(back[:, 6] - boxes[:, 6]), torch.zeros(200, dtype=torch.float64), atol=1e-9)
    # A side camera (yawed 55 deg left, like CAM_FRONT_LEFT) and batched leading dimensions.
    left = make_transform(
        quaternion_to_matrix(yaw_to_quaternion(torch.tensor(0.96, dtype=torch.float64)))
        @ quaternion_to_matrix(LEVEL_ROT),
        CAM_T,
    )
    rot_boxes = boxes.clone()
    rot_boxes[:, :2] = (
        boxes[:, :2] @ quaternion_to_matrix(yaw_to_quaternion(torch.tensor(0.96, dtype=torch.float64)))[:2, :2].T
    )
    batch = torch.stack([rot_boxes, rot_boxes])
    enc = encode_boxes(batch, K.expand(2, 3, 3), left.expand(2, 4, 4))
    back = decode_boxes(enc, K.expand(2, 3, 3), left.expand(2, 4, 4))
    assert torch.allclose(back[..., :6], batch[..., :6], atol=1e-8)


def test_alpha_is_yaw_relative_to_the_viewing_ray() -> None:
    cam2ego = make_transform(quaternion_to_matrix(LEVEL_ROT), CAM_T)
    # Two boxes on the same ray from the camera with the same yaw look the same: same alpha.
    ray = torch.tensor([math.cos(0.3), math.sin(0.3), 0.0], dtype=torch.float64)
    c1, c2 = CAM_T + 10 * ray, CAM_T + 30 * ray
    boxes = torch.stack(
        [
            torch.cat([c1, torch.tensor([2.0, 4.5, 1.6, 1.0], dtype=torch.float64)]),
            torch.cat([c2, torch.tensor([2.0, 4.5, 1.6, 1.0], dtype=torch.float64)]),
        ]
    )
    enc = encode_boxes(boxes, K, cam2ego)
    assert torch.allclose(enc.alpha, torch.tensor([0.7, 0.7], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(enc.uv[0], enc.uv[1], atol=1e-6)


def test_depth_target_round_trip_and_focal_normalisation() -> None:
    depth = torch.tensor([1.0, 10.0, 55.0])
    for f in (300.0, 1266.0):
        assert torch.allclose(target_to_depth(depth_to_target(depth, torch.tensor(f)), torch.tensor(f)), depth)
    # Doubling the focal length (zooming in 2x) makes the same object look like one at half the depth.
    assert torch.allclose(depth_to_target(depth, torch.tensor(1000.0)), depth_to_target(depth / 2, torch.tensor(500.0)))


def test_image_boxes_enclose_the_projected_centre() -> None:
    boxes = random_boxes(50, seed=1)
    cam2ego = make_transform(quaternion_to_matrix(CAM_ROT), CAM_T)
    enc = encode_boxes(boxes, K, cam2ego)
    b2d = boxes_to_image_boxes(boxes, K, cam2ego, (10_000, 10_000))
    inside = (
        (b2d[:, 0] <= enc.uv[:, 0])
        & (enc.uv[:, 0] <= b2d[:, 2])
        & (b2d[:, 1] <= enc.uv[:, 1])
        & (enc.uv[:, 1] <= b2d[:, 3])
    )
    assert inside.all()
    assert ((b2d[:, 2] - b2d[:, 0]) > 0).all()


def _targets(boxes: torch.Tensor, k: torch.Tensor, cam2ego: torch.Tensor, size: tuple[int, int]) -> TargetBoxes:
    enc = encode_boxes(boxes, k, cam2ego)
    n = boxes.shape[0]
    return TargetBoxes(
        uv=enc.uv[None].float(),
        box2d=boxes_to_image_boxes(boxes, k, cam2ego, size)[None].float(),
        depth=enc.depth[None].float(),
        size=enc.size[None].float(),
        alpha=enc.alpha[None].float(),
        labels=torch.zeros(1, n, dtype=torch.long),
        focal=torch.sqrt(k[0, 0] * k[1, 1])[None].float(),
    )


def test_augmentation_moves_ground_truth_with_the_pixels() -> None:
    """Flip + scale: the augmented targets equal the encoding of the mirrored / rescaled camera, and a marker
    drawn at each projected centre lands where the augmented targets say."""
    W, H = 320, 180
    k = scale_intrinsic(K, W / 1600, H / 900)
    cam2ego = make_transform(quaternion_to_matrix(LEVEL_ROT), CAM_T)
    boxes = torch.tensor(
        [[20.0, 2.0, 0.8, 2.0, 4.5, 1.6, 0.4], [35.0, -4.0, 0.8, 2.0, 4.5, 1.6, -2.0]], dtype=torch.float64
    )
    t = _targets(boxes, k, cam2ego, (W, H))
    image = torch.zeros(1, 3, H, W, dtype=torch.uint8)
    for u, v in t.uv[0].floor().long().tolist():  # a 3x3 marker centred on the pixel holding the centre
        image[0, :, v - 1 : v + 2, u - 1 : u + 2] = 255
    cfg = AugmentConfig(flip_prob=1.0, scale_min=1.1, scale_max=1.1, shift=0.05, brightness=0, contrast=0, saturation=0)
    out, moved, k_aug = augment(image, t, k[None].float(), cfg, torch.Generator().manual_seed(0))
    # Mirror world: flip the camera-frame x of every box; the mirrored camera has cx' = W - cx.
    k_flip = k.clone()
    k_flip[0, 2] = W - k[0, 2]
    mirror = torch.diag(torch.tensor([-1.0, 1, 1], dtype=torch.float64))
    rot = quaternion_to_matrix(LEVEL_ROT)
    centers = (boxes[:, :3] - CAM_T) @ rot  # camera frame
    m_centers = centers @ mirror @ rot.T + CAM_T
    m_yaw = -boxes[:, 6]  # a level front camera's mirror plane is the ego xz plane: yaw -> -yaw
    m_boxes = torch.cat([m_centers, boxes[:, 3:6], m_yaw[:, None]], 1)
    enc = encode_boxes(m_boxes, k_flip, cam2ego)
    s = 1.1
    assert torch.allclose(moved.alpha[0].double(), enc.alpha, atol=1e-5)
    assert torch.allclose(moved.focal[0].double(), s * torch.sqrt(k[0, 0] * k[1, 1]), atol=1e-3)
    shift = moved.uv[0].double() - s * enc.uv  # the same translation for every box
    assert torch.allclose(shift, shift[:1].expand(2, 2), atol=1e-3)
    # The returned intrinsic is the augmented image's camera: it projects the mirrored centres onto the moved ones.
    m_cam = (m_centers - CAM_T) @ rot
    assert torch.allclose(project(m_cam, k_aug[0].double()), moved.uv[0].double(), atol=1e-3)
    # Pixels: the marker's centroid (pixel centres at +0.5) sits at the moved centre.
    for u, v in moved.uv[0].tolist():
        ui, vi = int(u), int(v)
        patch = out[0, 0, vi - 5 : vi + 6, ui - 5 : ui + 6]
        ys, xs = torch.meshgrid(torch.arange(11.0), torch.arange(11.0), indexing="ij")
        cu = ui - 5 + 0.5 + float((patch * xs).sum() / patch.sum())
        cv = vi - 5 + 0.5 + float((patch * ys).sum() / patch.sum())
        assert abs(cu - u) < 0.8 and abs(cv - v) < 0.8, (cu, cv, u, v)


def test_decode_of_encoded_boxes_through_the_network_head() -> None:
    """Targets written into perfect output maps decode back to the ground-truth boxes."""
    from drivestack.perception.config import ModelConfig
    from drivestack.perception.infer import decode_outputs
    from drivestack.perception.loss import build_targets

    cfg = ModelConfig(classes=("car", "truck"), input_width=320, input_height=192, head_stride=4, max_detections=10)
    k = scale_intrinsic(K, 320 / 1600, 192 / 900)
    cam2ego = make_transform(quaternion_to_matrix(CAM_ROT), CAM_T)
    boxes = torch.tensor(
        [
            [15.0, 2.0, 0.8, 2.0, 4.5, 1.6, 0.4],
            [30.0, -4.0, 1.2, 2.5, 7.0, 3.0, -2.0],
            [45.0, 5.0, 0.9, 1.9, 4.4, 1.5, 3.0],
        ],
        dtype=torch.float64,
    )
    t = _targets(boxes, k, cam2ego, cfg.input_size)
    t.labels[0] = torch.tensor([0, 1, 0])
    dense = build_targets(t, torch.tensor(cfg.size_priors()), cfg.output_size, cfg.head_stride)
    Wf, Hf = cfg.output_size
    assert torch.equal(dense.heatmap.flatten(2).amax(2)[0], torch.ones(2))
    logits = torch.where(dense.heatmap == 1, 10.0, -10.0)
    reg = torch.zeros(1, 9, Hf * Wf)
    reg[0, :8, dense.index[0]] = dense.regression[0].T
    reg[0, 8] = -12.0  # a certain depth: the localisation confidence is 1 and the score the heat-map's
    dets = decode_outputs(logits, reg.view(1, 9, Hf, Wf), k[None].float(), cam2ego[None].float(), cfg)
    got = dets.boxes[0, :3][dets.scores[0, :3].argsort()]
    assert (dets.scores[0, :3] > 0.99).all() and (dets.scores[0, 3:] < 0.01).all()
    order = torch.argsort(torch.cdist(got[:, :3].double(), boxes[:, :3]).argmin(1))
    want = boxes[torch.cdist(got[:, :3].double(), boxes[:, :3]).argmin(1)]
    assert torch.allclose(got[:, :6].double(), want[:, :6], atol=1e-3), order
    assert torch.allclose(wrap_angle(got[:, 6].double() - want[:, 6]), torch.zeros(3, dtype=torch.float64), atol=1e-4)
    label_of = {0: 0, 1: 1, 2: 0}
    nearest = torch.cdist(dets.boxes[0, :3, :3].double(), boxes[:, :3]).argmin(1).tolist()
    assert dets.labels[0, :3].tolist() == [label_of[i] for i in nearest]


def test_box_encoding_dataclass_broadcasts() -> None:
    enc = BoxEncoding(
        uv=torch.zeros(2, 3, 2), depth=torch.ones(2, 3), size=torch.ones(2, 3, 3), alpha=torch.zeros(2, 3)
    )
    cam2ego = make_transform(quaternion_to_matrix(LEVEL_ROT), CAM_T).float().expand(2, 4, 4)
    assert decode_boxes(enc, K.float().expand(2, 3, 3), cam2ego).shape == (2, 3, 7)


def test_depth_uncertainty_ranks_sure_boxes_first() -> None:
    """Two equal heat-map peaks: the one whose depth the network is sure of scores higher; without the
    confidence both score the peak."""
    from drivestack.perception.config import ModelConfig
    from drivestack.perception.infer import decode_outputs, localization_confidence

    cfg = ModelConfig(classes=("car",), input_width=128, input_height=64, max_detections=2)
    Wf, Hf = cfg.output_size
    logits = torch.full((1, 1, Hf, Wf), -10.0)
    logits[0, 0, 3, 4] = logits[0, 0, 4, 12] = 2.0
    reg = torch.zeros(1, 9, Hf, Wf)
    reg[0, 2] = 3.4  # ~30 m
    reg[0, 7] = 1.0
    reg[0, 8, 3, 4], reg[0, 8, 4, 12] = -1.0, -4.0  # 37 % vs 2 % relative depth error
    k = torch.tensor([[[100.0, 0, 64], [0, 100.0, 32], [0, 0, 1]]])
    cam2ego = torch.eye(4)[None]
    dets = decode_outputs(logits, reg, k, cam2ego, cfg)
    peak = torch.sigmoid(torch.tensor(2.0))
    assert dets.scores[0, 0] > dets.scores[0, 1] and dets.scores[0, 0] < peak
    assert dets.boxes[0, 0, 0] > 0 > dets.boxes[0, 1, 0]  # the sure box is the one right of the principal point
    plain = decode_outputs(logits, reg, k, cam2ego, cfg, depth_confidence=False)
    assert torch.allclose(plain.scores[0], peak.expand(2))
    conf = localization_confidence(torch.tensor([10.0, 10.0, 40.0]), torch.log(torch.tensor([0.01, 0.1, 0.1])))
    assert conf[0] > 0.99 and conf[0] > conf[1] > conf[2] > 0
