"""Tests for detkit.structures.boxes: Boxes helpers, BoxMode, pairwise IoU / IoA / intersection (hand values)."""
import json

import numpy as np
import pytest
import torch

from detkit.structures import (
    Boxes, BoxMode, matched_pairwise_iou, pairwise_intersection, pairwise_ioa, pairwise_iou,
    pairwise_point_box_distance,
)


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


def test_box_mode_members_and_json():
    assert [(m.name, int(m)) for m in BoxMode] == [
        ("XYXY_ABS", 0), ("XYWH_ABS", 1), ("XYXY_REL", 2), ("XYWH_REL", 3), ("XYWHA_ABS", 4)]
    assert BoxMode(2) is BoxMode.XYXY_REL and BoxMode(1) == 1
    text = json.dumps({"bbox_mode": BoxMode.XYWH_ABS})
    assert text == '{"bbox_mode": 1}'
    assert BoxMode(json.loads(text)["bbox_mode"]) is BoxMode.XYWH_ABS
    with pytest.raises(ValueError, match="7 is not a valid BoxMode"):
        BoxMode.convert([0, 0, 1, 1], 7, 0)


def test_box_mode_convert_one_box_keeps_list_or_tuple():
    out = BoxMode.convert([10, 20, 30, 40], 1, 0)  # ints for the modes; XYWH (w 30, h 40) -> x1 40, y1 60
    assert out == [10.0, 20.0, 40.0, 60.0] and type(out) is list and all(type(v) is float for v in out)
    out = BoxMode.convert((10, 20, 40, 60), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
    assert out == (10.0, 20.0, 30.0, 40.0) and type(out) is tuple and all(type(v) is float for v in out)
    out = BoxMode.convert((np.float32(1.5), 2, 3, 4), BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)  # numpy scalars count
    assert out == (1.5, 2.0, 4.5, 6.0)
    assert BoxMode.convert((1, 2, 3, 4), 0, 0) == (1.0, 2.0, 3.0, 4.0)
    for bad in ([[1, 2, 3, 4]], [[1, 2, 3, 4]] * 4, [1, 2, 3]):  # nested (even four of them), or too short
        with pytest.raises(AssertionError, match="list / tuple of 4 numbers"):
            BoxMode.convert(bad, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)


def test_box_mode_convert_arrays_keep_dtype_and_shape():
    boxes = np.array([[1, 2, 3, 4], [0, 0, 10, 5]], dtype=np.int32)
    out = BoxMode.convert(boxes, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
    assert out.dtype == np.int32 and out.shape == (2, 4)
    assert out.tolist() == [[1, 2, 4, 6], [0, 0, 10, 5]]
    assert boxes.tolist() == [[1, 2, 3, 4], [0, 0, 10, 5]]  # the input is not modified
    back = BoxMode.convert(out.astype(np.float64), 0, 1)
    assert back.dtype == np.float64 and back.tolist() == [[1, 2, 3, 4], [0, 0, 10, 5]]
    assert BoxMode.convert(np.zeros((0, 4), np.float32), 1, 0).shape == (0, 4)
    same = np.ones((3, 4))
    assert BoxMode.convert(same, 1, 1) is same


def test_box_mode_convert_tensors_keep_dtype_and_shape():
    for dtype in (torch.float32, torch.float16, torch.int64):
        t = torch.tensor([[1, 2, 3, 4], [5, 6, 1, 1]], dtype=dtype)
        out = BoxMode.convert(t, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
        assert out.dtype == dtype and out.shape == (2, 4)
        assert out.tolist() == [[1, 2, 4, 6], [5, 6, 6, 7]]
        assert t.tolist() == [[1, 2, 3, 4], [5, 6, 1, 1]]
    t = torch.tensor([[2.0, 3.0, 7.0, 11.0]])
    assert BoxMode.convert(t, 0, 1).tolist() == [[2.0, 3.0, 5.0, 8.0]]
    with pytest.raises(ValueError, match=r"4 numbers in the last dimension, got shape \(2, 5\)"):
        BoxMode.convert(torch.zeros(2, 5), 1, 0)


def test_box_mode_relative_and_rotated_modes_raise():
    for src, dst in ((BoxMode.XYXY_REL, BoxMode.XYXY_ABS), (0, 3), (2, 1), (BoxMode.XYWH_ABS, BoxMode.XYWH_REL)):
        with pytest.raises(AssertionError, match="Relative mode not yet supported"):
            BoxMode.convert([0.1, 0.2, 0.3, 0.4], src, dst)
        with pytest.raises(AssertionError, match="Relative mode not yet supported"):
            BoxMode.convert(torch.zeros(1, 4), src, dst)
    with pytest.raises(NotImplementedError, match="rotated boxes"):
        BoxMode.convert([1, 2, 3, 4], BoxMode.XYWH_ABS, BoxMode.XYWHA_ABS)
    with pytest.raises(NotImplementedError, match="rotated boxes"):  # said before any complaint about 5 numbers
        BoxMode.convert(torch.zeros(2, 5), BoxMode.XYWHA_ABS, BoxMode.XYXY_ABS)
    # Callers that catch ValueError for a bad annotation (dataset checks) catch these too.
    for src, dst in ((2, 0), (0, 4)):
        with pytest.raises(ValueError):
            BoxMode.convert([1, 2, 3, 4], src, dst)
    with pytest.raises(ValueError):
        BoxMode.convert([[1, 2, 3, 4]], 1, 0)


# Four boxes of area 4, 4, 16, 4 against two of area 4.
_A = torch.tensor([[0., 0., 2., 2.], [1., 1., 3., 3.]])
_B = torch.tensor([[0., 0., 2., 2.], [2., 0., 4., 2.], [0., 0., 4., 4.], [1., 1., 3., 3.]])


def test_pairwise_intersection_and_ioa_hand_values():
    # (0,0,2,2): itself 4; the neighbour only touches it (0); inside the 4x4 (4); the shifted box 1x1 (1).
    # (1,1,3,3): 1; with (2,0,4,2) the square (2,1,3,2) = 1; 4; itself 4.
    inter = pairwise_intersection(Boxes(_A), Boxes(_B))
    assert inter.tolist() == [[4., 0., 4., 1.], [1., 1., 4., 4.]]
    # IoA divides by the area of the second argument's box: 4, 4, 16, 4.
    ioa = pairwise_ioa(Boxes(_A), Boxes(_B))
    assert ioa.tolist() == [[1.0, 0.0, 0.25, 0.25], [0.25, 0.25, 0.25, 1.0]]
    # Not symmetric: the 4x4 box covers all of (0,0,2,2): intersection 4 over its area 4.
    assert pairwise_ioa(Boxes(_B[2:3]), Boxes(_A[:1])).tolist() == [[1.0]]
    # An empty box in boxes2 has no overlap: 0, not 0 / 0.
    assert pairwise_ioa(Boxes(_A), Boxes([[1., 1., 1., 1.]])).tolist() == [[0.0], [0.0]]
    assert pairwise_ioa(Boxes(_A), Boxes.cat([])).shape == (2, 0)


def test_matched_iou_and_point_box_distance():
    # (0,0,2,2) vs (1,1,3,3) and (1,1,3,3) vs (2,0,4,2): intersection 1, union 7 each.
    torch.testing.assert_close(matched_pairwise_iou(Boxes(_A), Boxes(_B[[3, 1]])), torch.tensor([1 / 7, 1 / 7]))
    with pytest.raises(ValueError, match="2 and 4"):
        matched_pairwise_iou(Boxes(_A), Boxes(_B))
    d = pairwise_point_box_distance(torch.tensor([[1., 1.], [5., 0.]]), Boxes([[0., 0., 2., 3.]]))
    assert d.shape == (2, 1, 4) and d[:, 0].tolist() == [[1., 1., 1., 2.], [5., 0., -3., 3.]]


def test_boxes_inside_iter_device_clone_to():
    boxes = Boxes([[0., 0., 4.5, 3.5], [-1., 0., 2., 2.], [0., 0., 5., 4.], [1., 1., 2., 2.]])
    # Image (height 4, width 5): x0, y0 >= 0 and x1 < 5, y1 < 4 (a box touching the far edge is outside).
    assert boxes.inside_box((4, 5)).tolist() == [True, False, False, True]
    assert boxes.inside_box((4, 5), boundary_threshold=1).tolist() == [True, True, True, True]
    rows = list(boxes)
    assert len(rows) == 4 and rows[1].shape == (4,) and rows[1].tolist() == [-1., 0., 2., 2.]
    assert boxes.device == torch.device("cpu")
    copy = boxes.clone()
    copy.tensor[0, 0] = 9.0
    assert boxes.tensor[0, 0] == 0.0
    moved = boxes.to(device="cpu")
    assert isinstance(moved, Boxes) and moved.device == torch.device("cpu") and torch.equal(moved.tensor, boxes.tensor)
    assert boxes[torch.tensor([3, 0])].tensor.tolist() == [[1., 1., 2., 2.], [0., 0., 4.5, 3.5]]
    empty = Boxes.cat([])
    assert isinstance(empty, Boxes) and empty.tensor.shape == (0, 4) and empty.tensor.dtype == torch.float32
    with pytest.raises(TypeError, match="list of Boxes"):
        Boxes.cat([boxes.tensor])
