"""Merging cameras: one car seen by two cameras is one box; frames, classes and one camera's boxes stay apart."""

from __future__ import annotations

import torch

from drivestack.perception.merge import merge_cameras


def _greedy(boxes, scores, labels, frame, camera, radius):  # the reference: NMS as a Python loop
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    kept: list[int] = []
    for i in order:
        if not any(
            labels[i] == labels[j]
            and frame[i] == frame[j]
            and camera[i] != camera[j]
            and float(torch.dist(boxes[i, :2].double(), boxes[j, :2].double())) < radius
            for j in kept
        ):
            kept.append(i)
    return torch.tensor([i in kept for i in range(len(scores))])


def test_a_car_at_a_seam_is_one_box() -> None:
    boxes = torch.tensor([[10.0, 5.0, 0.8, 1.9, 4.5, 1.6, 0.0], [10.9, 5.6, 0.8, 1.9, 4.5, 1.6, 0.05]])
    keep = merge_cameras(
        boxes, torch.tensor([0.6, 0.9]), torch.tensor([0, 0]), torch.tensor([0, 0]), torch.tensor([0, 1])
    )
    assert keep.tolist() == [False, True]


def test_same_camera_other_class_other_frame_are_kept() -> None:
    boxes = torch.zeros(4, 7)
    boxes[:, 0] = torch.tensor([10.0, 10.5, 10.2, 10.1])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 0])
    frame = torch.tensor([0, 0, 0, 1])
    camera = torch.tensor([0, 0, 1, 1])
    assert merge_cameras(boxes, scores, labels, frame, camera).all()


def test_matches_greedy_nms_on_random_chains() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        M = 60
        boxes = torch.zeros(M, 7)
        boxes[:, :2] = torch.rand(M, 2, generator=g) * 12.0
        scores = torch.rand(M, generator=g)
        labels = torch.randint(0, 2, (M,), generator=g)
        frame = torch.randint(0, 2, (M,), generator=g)
        camera = torch.randint(0, 3, (M,), generator=g)
        keep = merge_cameras(boxes, scores, labels, frame, camera, radius=2.0)
        assert torch.equal(keep, _greedy(boxes, scores, labels, frame, camera, 2.0))


def test_far_boxes_and_empty_input() -> None:
    boxes = torch.zeros(2, 7)
    boxes[1, :2] = 1e10
    keep = merge_cameras(
        boxes, torch.tensor([0.5, 0.9]), torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.tensor([0, 1])
    )
    assert keep.all()
    assert merge_cameras(torch.zeros(0, 7), torch.zeros(0), torch.zeros(0), torch.zeros(0), torch.zeros(0)).numel() == 0
