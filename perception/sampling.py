"""Which training images each epoch visits: one dataset or several mixed by weight, optionally class-balanced.

With one dataset (or several mixed in proportion to their sizes) and no class balance, an epoch is a random
permutation of all images: every image once. Otherwise an epoch is as many draws with replacement, image i drawn
with probability

    p_i = mix[d(i)] * w_i / sum_{j in d(i)} w_j

where d(i) is the dataset of image i and w_i its class-balance weight (1 without class balance). Class balance
follows the spirit of CBGS (Zhu et al. 2019, class-balanced grouping and sampling, the nuScenes detection
challenge's usual remedy for rare classes): every group (each class, plus "no box" for images without any) gets
the same share of the draws, its images equally likely: w_i = sum over the groups g of image i of 1 / n_g, with n_g
the images of group g in that dataset. Both are pure functions of a torch.Generator: the same seed draws the same
images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from drivestack.common.checks import check_number


def mix_weights(sizes: Sequence[int], mix: Sequence[float] | None = None) -> torch.Tensor:
    """Normalised mixing weights (D,) float64 of D datasets of `sizes` images (None: proportional to the sizes).

    ValueError (one line, naming --mix) for a count that differs from the datasets', a negative or non-finite
    weight, or all zero; a dataset with no image cannot carry weight.
    """
    if mix is None:
        weights = torch.tensor([float(n) for n in sizes], dtype=torch.float64)
    else:
        if len(mix) != len(sizes):
            raise ValueError(
                f"mix={list(mix)}: give one weight per --dataroot ({len(sizes)}), e.g. --mix "
                + " ".join(["1"] * len(sizes))
            )
        for value in mix:
            check_number("mix", value, low=0.0)
        weights = torch.tensor([float(v) for v in mix], dtype=torch.float64)
        empty = [d for d, (n, w) in enumerate(zip(sizes, mix)) if n == 0 and w > 0]
        if empty:
            raise ValueError(f"mix={list(mix)}: dataset {empty[0] + 1} has no training image; give it weight 0")
    if not weights.sum() > 0:
        raise ValueError(f"mix={list(mix) if mix is not None else list(sizes)}: the weights sum to 0")
    return weights / weights.sum()


def class_balance_weights(present: torch.Tensor) -> torch.Tensor:
    """Per-image weights (N,) float64 that give every class group the same share of the draws.

    Args:
        present: (N, C) bool, whether image i holds a box of class c.
    Returns:
        w_i = sum over the groups of image i (its classes, or "no box" when it has none) of 1 / (images in group).
    """
    groups = torch.cat([present, ~present.any(dim=1, keepdim=True)], dim=1).double()  # (N, C + 1)
    counts = groups.sum(dim=0)  # (C + 1,) images per group
    return (groups / counts.clamp(min=1.0)).sum(dim=1)


def sampling_probabilities(
    dataset_index: torch.Tensor, mix: torch.Tensor, present: torch.Tensor | None = None
) -> torch.Tensor:
    """Probability (N,) float64 of drawing each image (see the module docstring).

    Args:
        dataset_index: (N,) int64 dataset of each image, 0 .. D-1.
        mix: (D,) normalised mixing weights (`mix_weights`).
        present: (N, C) bool classes per image for class balance (None: every image of a dataset alike).
    """
    prob = torch.zeros(len(dataset_index), dtype=torch.float64)
    for d in range(len(mix)):  # a handful of datasets
        member = dataset_index == d
        if not member.any():
            continue
        w = torch.ones(int(member.sum()), dtype=torch.float64)
        if present is not None:
            w = class_balance_weights(present[member])
        prob[member] = mix[d] * w / w.sum()
    return prob / prob.sum()


def epoch_order(num_images: int, generator: torch.Generator, probabilities: torch.Tensor | None = None) -> torch.Tensor:
    """The image indices (num_images,) one epoch visits: a permutation (None), else draws with replacement."""
    if probabilities is None:
        return torch.randperm(num_images, generator=generator)
    return torch.multinomial(probabilities.float(), num_images, replacement=True, generator=generator)
