"""Tests for detkit.structures.instances: fields, len, indexing, cat, to."""
import numpy as np
import pytest
import torch

from detkit.structures import Boxes, Instances


def _inst():
    return Instances((20, 30), gt_boxes=Boxes(torch.arange(12.).view(3, 4)), gt_classes=torch.tensor([4, 5, 6]))


def test_fields_and_len():
    inst = _inst()
    assert len(inst) == 3 and inst.image_size == (20, 30)
    assert inst.has("gt_classes") and not inst.has("scores")
    inst.scores = torch.tensor([0.1, 0.2, 0.3])
    assert list(inst.get_fields()) == ["gt_boxes", "gt_classes", "scores"]
    # detectron2's message, raised as its AssertionError (and a ValueError, as detkit raised before).
    with pytest.raises(AssertionError, match=r"^Adding a field of length 2 to a Instances of length 3 \(field 'bad'\)"):
        inst.bad = torch.zeros(2)
    with pytest.raises(ValueError, match="length 4 to a Instances of length 3"):
        inst.set("bad", [1, 2, 3, 4])
    assert not inst.has("bad")
    with pytest.raises(AttributeError, match="no field 'pred_boxes'"):
        inst.pred_boxes
    inst.remove("scores")
    assert not inst.has("scores")
    assert len(Instances((1, 1))) == 0


def test_indexing():
    inst = _inst()
    one = inst[1]
    assert len(one) == 1 and one.gt_classes.tolist() == [5] and one.gt_boxes.tensor.tolist() == [[4., 5., 6., 7.]]
    assert inst[-1].gt_classes.tolist() == [6] and inst[-3].gt_classes.tolist() == [4]
    assert inst[torch.tensor([True, False, True])].gt_classes.tolist() == [4, 6]
    assert inst[1:].gt_classes.tolist() == [5, 6]
    with pytest.raises(IndexError):
        inst[3]


def test_cat_and_to():
    a, b = _inst(), _inst()[:1]
    c = Instances.cat([a, b])
    assert len(c) == 4 and c.gt_classes.tolist() == [4, 5, 6, 4]
    assert isinstance(c.gt_boxes, Boxes) and c.gt_boxes.tensor[-1].tolist() == [0., 1., 2., 3.]
    lists = Instances.cat([Instances((1, 1), names=["x"]), Instances((1, 1), names=["y", "z"])])
    assert lists.names == ["x", "y", "z"]
    moved = a.to(torch.float64)
    assert moved.gt_classes.dtype == torch.float64 and moved.gt_boxes.tensor.dtype == torch.float64
    assert a.gt_classes.dtype == torch.int64  # the original is untouched
    with pytest.raises(ValueError, match="at least one"):
        Instances.cat([])


def test_instances_pickle_round_trip():
    # Data-loader workers send Instances to the main process by pickling them.
    import pickle

    import torch

    from detkit.structures import Boxes, Instances

    inst = Instances((3, 4), gt_boxes=Boxes(torch.tensor([[0.0, 1.0, 2.0, 3.0]])), gt_classes=torch.tensor([2]))
    again = pickle.loads(pickle.dumps(inst))
    assert again.image_size == (3, 4)
    assert torch.equal(again.gt_boxes.tensor, inst.gt_boxes.tensor) and again.gt_classes.tolist() == [2]


def test_int_indexing_negative_and_out_of_range():
    inst = _inst()
    for index, cls in ((0, 4), (2, 6), (-1, 6), (-2, 5), (-3, 4), (np.int64(1), 5)):
        one = inst[index]
        assert len(one) == 1 and one.gt_classes.tolist() == [cls] and one.image_size == (20, 30)
        assert one.gt_boxes.tensor.shape == (1, 4)
    for index in (3, -4, 100):
        with pytest.raises(IndexError, match=f"Instances index out of range! Index {index} for 3 instances"):
            inst[index]


def test_slice_bool_and_long_indexing():
    inst = _inst()
    assert inst[::2].gt_classes.tolist() == [4, 6] and inst[5:].gt_classes.tolist() == []
    picked = inst[torch.tensor([2, 0, 2])]  # a long tensor may reorder and repeat
    assert picked.gt_classes.tolist() == [6, 4, 6]
    assert picked.gt_boxes.tensor[:, 0].tolist() == [8., 0., 8.]  # rows 2, 0, 2 of arange(12).view(3, 4)
    masked = inst[inst.gt_classes > 4]
    assert masked.gt_classes.tolist() == [5, 6] and masked.gt_boxes.tensor[:, 0].tolist() == [4., 8.]
    assert len(inst[torch.zeros(3, dtype=torch.bool)]) == 0


def test_cat_refuses_other_image_sizes_and_non_instances():
    with pytest.raises(AssertionError, match=r"one image size, got \[\(20, 30\), \(20, 31\)\]"):
        Instances.cat([_inst(), Instances((20, 31), gt_classes=torch.tensor([1]))])
    with pytest.raises(ValueError, match="list of Instances"):
        Instances.cat([_inst(), torch.zeros(1)])
