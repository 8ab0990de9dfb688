"""Tests for detkit.structures.boxes: Boxes helpers, BoxMode, pairwise_iou (hand-derived values)."""
import pytest
import torch

from detkit.structures import Boxes, BoxMode, pairwise_iou


def test_pairwise_iou_hand_values():
    a = torch.tensor([[0., 0., 2., 2.], [1., 1., 3., 3.]])
    b = torch.tensor([[0., 0., 2., 2.], [2., 0., 4., 2.], [0., 0., 4., 4.], [1., 1., 3., 3.]])
    # a0 vs b: itself 1; touching edge 0; inside a 4x4 -> 4/16; the shifted box: inter 1, union 4+4-1 -> 1/7.
    # a1 (1,1,3,3) vs b: 1/7; vs (2,0,4,2): inter (2,1,3,2)=1, union 7 -> 1/7; vs 4x4: 4/16; itself 1.
    expected = torch.tensor([[1.0, 0.0, 0.25, 1 / 7], [1 / 7, 1 / 7, 0.25, 1.0]])
    torch.testing.assert_close(pairwise_iou(a, b), expected)
    torch.testing.assert_close(pairwise_iou(Boxes(a), Boxes(b)), expected)  # Boxes in, same out
    assert pairwise_iou(Boxes(a), torch.zeros(0, 4)).shape == (2, 0)


def test_pairwise_iou_empty_boxes_are_zero_not_nan():
    # Two identical zero-area boxes: 0 / 0 -> 0 (no overlap), as detectron2.
    iou = pairwise_iou(torch.tensor([[1., 1., 1., 1.]]), torch.tensor([[1., 1., 1., 1.], [0., 0., 2., 2.]]))
    assert iou.tolist() == [[0.0, 0.0]]


def test_boxes_helpers():
    boxes = Boxes(torch.tensor([[-2., 1., 4., 5.], [3., 3., 3., 8.], [1., 1., 12., 9.]]))
    assert boxes.area().tolist() == [24.0, 0.0, 88.0]
    assert boxes.nonempty().tolist() == [True, False, True]
    assert boxes.get_centers().tolist() == [[1.0, 3.0], [3.0, 5.5], [6.5, 5.0]]
    boxes.clip((6, 10))  # (height, width)
    assert boxes.tensor.tolist() == [[0., 1., 4., 5.], [3., 3., 3., 6.], [1., 1., 10., 6.]]
    boxes.scale(2.0, 0.5)
    assert boxes.tensor[2].tolist() == [2.0, 0.5, 20.0, 3.0]
    assert len(boxes) == 3 and len(boxes[1]) == 1 and boxes[1].tensor.shape == (1, 4)
    assert boxes[torch.tensor([True, False, True])].tensor.shape == (2, 4)
    cat = Boxes.cat([boxes, Boxes([[0, 0, 1, 1]])])
    assert len(cat) == 4 and cat.tensor[-1].tolist() == [0., 0., 1., 1.]
    assert len(Boxes.cat([])) == 0


def test_boxes_construction():
    assert Boxes([]).tensor.shape == (0, 4) and Boxes([]).tensor.dtype == torch.float32
    ints = Boxes(torch.tensor([[0, 0, 3, 3]]))
    assert ints.tensor.dtype == torch.float32 and ints.area().tolist() == [9.0]
    with pytest.raises(ValueError, match=r"\(N, 4\) tensor, got shape \(2, 3\)"):
        Boxes(torch.zeros(2, 3))


def test_box_mode_convert():
    assert BoxMode.convert([1, 2, 3, 4], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) == [1.0, 2.0, 4.0, 6.0]
    assert BoxMode.convert([1, 2, 4, 6], BoxMode.XYXY_ABS, BoxMode.XYWH_ABS) == [1.0, 2.0, 3.0, 4.0]
    assert BoxMode.convert([1, 2, 4, 6], 0, 0) == [1, 2, 4, 6]
