"""Multi-dataset and class-balanced sampling (perception.sampling): the proportions drawn, determinism under a
seed, the one-line errors of --mix (training runs through the CLI: tests/bench/test_perception_bench_training.py)."""

from __future__ import annotations

import pytest
import torch

from drivestack.perception.sampling import (
    class_balance_weights,
    epoch_order,
    mix_weights,
    sampling_probabilities,
)

NUM_DRAWS = 40_000


def _draw(prob: torch.Tensor, seed: int) -> torch.Tensor:
    return epoch_order(NUM_DRAWS, torch.Generator().manual_seed(seed), prob)


def test_mixing_weights_set_the_share_of_each_dataset() -> None:
    dataset_index = torch.cat([torch.zeros(100, dtype=torch.long), torch.ones(300, dtype=torch.long)])
    prob = sampling_probabilities(dataset_index, mix_weights([100, 300], [0.7, 0.3]))
    assert prob[:100].sum().item() == pytest.approx(0.7) and prob[100:].sum().item() == pytest.approx(0.3)
    drawn = dataset_index[_draw(prob, 0)]
    assert (drawn == 0).float().mean().item() == pytest.approx(0.7, abs=0.01)  # 40k draws: std 0.0023
    # the default: in proportion to the sizes
    default = sampling_probabilities(dataset_index, mix_weights([100, 300]))
    assert torch.allclose(default, torch.full((400,), 1 / 400, dtype=torch.float64))
    assert (dataset_index[_draw(default, 1)] == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    # weights need not sum to 1; weight 0 drops a dataset
    assert mix_weights([5, 5], [3, 1]).tolist() == [0.75, 0.25]
    assert (dataset_index[_draw(sampling_probabilities(dataset_index, mix_weights([100, 300], [0, 1])), 2)] == 1).all()


def test_sampling_is_deterministic_under_a_seed() -> None:
    dataset_index = torch.tensor([0] * 10 + [1] * 30)
    prob = sampling_probabilities(dataset_index, mix_weights([10, 30], [0.5, 0.5]))
    assert torch.equal(
        epoch_order(40, torch.Generator().manual_seed(3), prob), epoch_order(40, torch.Generator().manual_seed(3), prob)
    )
    assert not torch.equal(
        epoch_order(40, torch.Generator().manual_seed(3), prob), epoch_order(40, torch.Generator().manual_seed(4), prob)
    )
    perm = epoch_order(40, torch.Generator().manual_seed(3))  # no weights: a permutation, each image once
    assert sorted(perm.tolist()) == list(range(40))


def test_class_balance_gives_rare_classes_an_equal_share() -> None:
    # 90 images of cars, 10 of trucks, 20 without a box: each group drawn a third of the time
    present = torch.zeros(120, 2, dtype=torch.bool)
    present[:90, 0] = True
    present[90:100, 1] = True
    w = class_balance_weights(present)
    assert (
        w[0].item() == pytest.approx(1 / 90)
        and w[95].item() == pytest.approx(1 / 10)
        and w[110].item() == pytest.approx(1 / 20)
    )
    prob = sampling_probabilities(torch.zeros(120, dtype=torch.long), torch.ones(1, dtype=torch.float64), present)
    drawn = _draw(prob, 0)
    for lo, hi in ((0, 90), (90, 100), (100, 120)):
        assert ((drawn >= lo) & (drawn < hi)).float().mean().item() == pytest.approx(1 / 3, abs=0.01)
    # with two datasets, class balance acts within each and the mix between them
    present2 = torch.cat([present, torch.ones(40, 2, dtype=torch.bool)])
    index = torch.cat([torch.zeros(120, dtype=torch.long), torch.ones(40, dtype=torch.long)])
    prob2 = sampling_probabilities(index, mix_weights([120, 40], [0.6, 0.4]), present2)
    assert prob2[:120].sum().item() == pytest.approx(0.6) and prob2[90:100].sum().item() == pytest.approx(0.2)


def test_mix_mistakes_are_one_line() -> None:
    with pytest.raises(ValueError, match=r"give one weight per --dataroot \(2\)"):
        mix_weights([3, 4], [1.0])
    with pytest.raises(ValueError, match=r"--mix=nan; allowed: a finite number >= 0"):
        mix_weights([3, 4], [1.0, float("nan")])
    with pytest.raises(ValueError, match="--mix=-1.0"):
        mix_weights([3, 4], [1.0, -1.0])
    with pytest.raises(ValueError, match="sum to 0"):
        mix_weights([3, 4], [0.0, 0.0])
    with pytest.raises(ValueError, match="dataset 2 has no training image"):
        mix_weights([3, 0], [1.0, 1.0])
