"""Tests for detkit.layers.wrappers and the layer names detectron2 users import from detkit.layers."""
import pytest
import torch

from detkit.layers import ShapeSpec, cat, nonzero_tuple


def test_cat_returns_a_single_tensor_itself():
    a = torch.tensor([[1, 2]])
    assert cat([a]) is a and cat((a,), dim=1) is a
    assert cat([a, torch.tensor([[3, 4]])]).tolist() == [[1, 2], [3, 4]]
    assert cat([a, torch.tensor([[3]])], dim=1).tolist() == [[1, 2, 3]]
    with pytest.raises(TypeError, match="list or tuple of tensors"):
        cat(a)


def test_nonzero_tuple_gives_one_index_tensor_per_dimension():
    rows, cols = nonzero_tuple(torch.tensor([[0, 3, 0], [5, 0, 7]]))
    assert rows.tolist() == [0, 1, 1] and cols.tolist() == [1, 0, 2]
    (idx,) = nonzero_tuple(torch.tensor([False, True, True]))
    assert idx.tolist() == [1, 2] and idx.dtype == torch.int64
    (none,) = nonzero_tuple(torch.zeros(4, dtype=torch.bool))
    assert none.shape == (0,)


def test_detectron2_module_paths():
    from detkit.layers.batch_norm import FrozenBatchNorm2d, get_norm
    from detkit.layers.nms import batched_nms
    from detkit.layers.shape_spec import ShapeSpec as FromModule
    from detkit.layers.wrappers import cat as cat_from_module, nonzero_tuple as nonzero_from_module
    import detkit.layers as layers

    assert FromModule is ShapeSpec and cat_from_module is cat and nonzero_from_module is nonzero_tuple
    assert layers.FrozenBatchNorm2d is FrozenBatchNorm2d and layers.get_norm is get_norm
    assert layers.batched_nms is batched_nms
    spec = ShapeSpec(channels=256, stride=8)
    assert (spec.channels, spec.height, spec.width, spec.stride) == (256, None, None, 8)
