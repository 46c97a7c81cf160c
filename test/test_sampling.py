"""training/sampling.py: epoch order that resumes after the done batches, seeded augmentations."""

from __future__ import annotations

import torch

from fcn_road_seg.training.sampling import BalancedEpochSampler, EpochSampler, EpochSeeded


def test_epoch_sampler_skips_done_batches() -> None:
    """set_epoch(e, k) yields epoch e's permutation after k batches, keyed (index, e)."""
    sampler = EpochSampler(range(10), 1, 0, seed=3, batch_size=2)
    sampler.set_epoch(4)
    whole = list(sampler)
    assert sorted(i for i, _ in whole) == list(range(10)) and {e for _, e in whole} == {4}
    sampler.set_epoch(4, 3)
    assert list(sampler) == whole[6:] and len(sampler) == 4
    sampler.set_epoch(5)
    assert [i for i, _ in sampler] != [i for i, _ in whole]


class RandomDraws(torch.utils.data.Dataset):
    """Each item is three draws from the global torch RNG, as the training transforms make."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(3)


def test_epoch_seeded_augmentation_ignores_and_keeps_global_rng() -> None:
    """A sample's draws depend on (seed, epoch, index) only; the caller's RNG is untouched."""
    ds = EpochSeeded(RandomDraws(), seed=7)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    x = ds[(2, 1)]
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(5)  # another global RNG position
    assert torch.equal(ds[(2, 1)], x)
    assert not torch.equal(ds[(2, 0)], x) and not torch.equal(ds[(1, 1)], x)
    assert not torch.equal(EpochSeeded(RandomDraws(), seed=8)[(2, 1)], x)


def test_balanced_sampler_draws_each_dataset_equally_often() -> None:
    """2 frames of dataset a and 8 of b: a's frames come up half the time, not a fifth."""
    groups = ["a"] * 2 + ["b"] * 8
    sampler = BalancedEpochSampler(range(10), 1, 0, seed=1, batch_size=2, groups=groups)
    draws = []
    for epoch in range(400):
        sampler.set_epoch(epoch)
        draws += [i for i, _ in sampler]
    assert len(draws) == 4000
    share_a = sum(i < 2 for i in draws) / len(draws)
    assert abs(share_a - 0.5) < 0.03  # binomial sd 0.008
    sampler.set_epoch(7)
    whole = list(sampler)
    assert {e for _, e in whole} == {7} and len(whole) == 10
    sampler.set_epoch(7, 2)
    assert list(sampler) == whole[4:]  # a resumed epoch skips the batches already done
    ranks = [
        BalancedEpochSampler(range(10), 2, r, seed=1, batch_size=2, groups=groups) for r in (0, 1)
    ]
    for r in ranks:
        r.set_epoch(7)
    both = [list(r) for r in ranks]
    assert len(both[0]) == len(both[1]) == 5
    assert sorted(i for part in both for i, _ in part) == sorted(i for i, _ in whole)
