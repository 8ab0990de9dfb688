"""Tests for detkit.structures.image_list: padding to a common, divisible size."""
import pytest
import torch

from detkit.structures import ImageList


def test_from_tensors_pads_and_records_sizes():
    a = torch.ones(3, 5, 7)
    b = torch.full((3, 9, 4), 2.0)
    images = ImageList.from_tensors([a, b], size_divisibility=8)
    # max (9, 7) rounded up to multiples of 8 -> (16, 8).
    assert images.tensor.shape == (2, 3, 16, 8) and images.image_sizes == [(5, 7), (9, 4)]
    assert len(images) == 2
    assert torch.equal(images[0], a) and torch.equal(images[1], b)
    assert images.tensor[0, :, 5:].abs().sum() == 0 and images.tensor[0, :, :, 7:].abs().sum() == 0
    assert images.tensor[1, :, :, 4:].abs().sum() == 0


def test_from_tensors_single_and_no_divisibility():
    one = ImageList.from_tensors([torch.ones(1, 5, 6)], size_divisibility=4, pad_value=-1.0)
    assert one.tensor.shape == (1, 1, 8, 8) and one.tensor[0, 0, 7, 7] == -1.0 and one.tensor[0, 0, 4, 5] == 1.0
    same = ImageList.from_tensors([torch.ones(1, 5, 6), torch.ones(1, 3, 2)])
    assert same.tensor.shape == (2, 1, 5, 6) and same.to(torch.float64).tensor.dtype == torch.float64
    with pytest.raises(ValueError, match="at least one image"):
        ImageList.from_tensors([])
