"""Tests for detkit.modeling.sampling.subsample_labels: per-image counts, determinism, label kinds."""
import pytest
import torch

from detkit.modeling.sampling import subsample_labels


def _labels(num_pos: int, num_neg: int, num_ignore: int, pos_value: int = 1, bg: int = 0) -> torch.Tensor:
    """Positives first, then negatives, then ignored (-1)."""
    return torch.tensor([pos_value] * num_pos + [bg] * num_neg + [-1] * num_ignore)


@pytest.mark.parametrize(
    "num_pos, num_neg, num_samples, fraction, expect_pos, expect_neg",
    [
        # Enough of both: int(16 * 0.25) = 4 positives, then 16 - 4 = 12 negatives.
        (10, 20, 16, 0.25, 4, 12),
        # Few positives: min(2, int(16 * 0.5) = 8) = 2; negatives fill the rest: min(20, 16 - 2) = 14.
        (2, 20, 16, 0.5, 2, 14),
        # Few negatives: 8 positives, then min(3, 16 - 8) = 3 negatives (the batch stays short).
        (10, 3, 16, 0.5, 8, 3),
        # int(5 * 0.3) = int(1.5) = 1 positive, 5 - 1 = 4 negatives.
        (6, 6, 5, 0.3, 1, 4),
        # Nothing positive: 0 positives, all 16 samples may be negatives but only 7 exist.
        (0, 7, 16, 0.5, 0, 7),
    ],
)
def test_counts_with_fixed_generator(num_pos, num_neg, num_samples, fraction, expect_pos, expect_neg):
    labels = _labels(num_pos, num_neg, 5)
    pos, neg = subsample_labels(labels, num_samples, fraction, 0, generator=torch.Generator().manual_seed(0))
    assert pos.numel() == expect_pos and neg.numel() == expect_neg
    assert bool((labels[pos] == 1).all()) and bool((labels[neg] == 0).all())  # never an ignored label
    assert pos.unique().numel() == pos.numel() and neg.unique().numel() == neg.numel()
    assert torch.equal(pos, pos.sort().values) and torch.equal(neg, neg.sort().values)


def test_same_generator_seed_gives_same_draw_and_another_seed_another():
    labels = _labels(10, 20, 0)
    a = subsample_labels(labels, 8, 0.5, 0, generator=torch.Generator().manual_seed(7))
    b = subsample_labels(labels, 8, 0.5, 0, generator=torch.Generator().manual_seed(7))
    c = subsample_labels(labels, 8, 0.5, 0, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # With these two fixed seeds the draws differ (4 of 10 positives, 4 of 20 negatives).
    assert not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]))


def test_every_candidate_is_drawn_uniformly():
    # 2 of 4 positives per draw: over 400 seeded draws each positive is picked about 200 times.
    labels = _labels(4, 0, 0)
    gen = torch.Generator().manual_seed(0)
    hits = torch.zeros(4)
    for _ in range(400):
        pos, _ = subsample_labels(labels, 4, 0.5, 0, generator=gen)
        hits[pos] += 1
    assert hits.sum() == 800
    assert bool((hits > 150).all()), hits


def test_multiclass_positives_with_background_label_k():
    # Box-head labels: classes 0..2 are foreground, 3 (= K) background, -1 ignored.
    labels = torch.tensor([0, 1, 2, 2, 3, 3, 3, 3, 3, 3, -1, -1])
    pos, neg = subsample_labels(labels, 8, 0.25, 3, generator=torch.Generator().manual_seed(0))
    # int(8 * 0.25) = 2 of the 4 foreground; 8 - 2 = 6 of the 6 background (all of them).
    assert pos.numel() == 2 and bool((labels[pos] < 3).all())
    assert torch.equal(neg, torch.tensor([4, 5, 6, 7, 8, 9]))


def test_each_image_gets_its_own_quota():
    # Image 0: 3 positives, 10 negatives. Image 1: 0 positives, 4 negatives. Image 2: 6 positives, 1 negative.
    # Ids interleaved on purpose; num_samples 6, fraction 0.5 -> quota 3 positives per image.
    image_ids = torch.tensor([0] * 13 + [1] * 4 + [2] * 7)
    labels = torch.cat([_labels(3, 10, 0), _labels(0, 4, 0), _labels(6, 1, 0)])
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))
    labels, image_ids = labels[perm], image_ids[perm]
    pos, neg = subsample_labels(labels, 6, 0.5, 0, generator=torch.Generator().manual_seed(0), image_ids=image_ids)
    # Image 0: min(3, 3) = 3 pos, min(10, 6 - 3) = 3 neg. Image 1: 0 pos, min(4, 6) = 4 neg.
    # Image 2: min(6, 3) = 3 pos, min(1, 6 - 3) = 1 neg.
    assert torch.bincount(image_ids[pos], minlength=3).tolist() == [3, 0, 3]
    assert torch.bincount(image_ids[neg], minlength=3).tolist() == [3, 4, 1]
    assert bool((labels[pos] == 1).all()) and bool((labels[neg] == 0).all())


def test_rejects_two_dimensional_labels():
    with pytest.raises(ValueError, match=r"1-D labels.*\(2, 3\).*image_ids"):
        subsample_labels(torch.zeros(2, 3, dtype=torch.int64), 4, 0.5, 0)
