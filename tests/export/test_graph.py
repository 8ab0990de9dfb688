"""The export graph's building blocks on hand-made inputs: class-wise NMS, dense post-processing,
pre-processing, and the error for a meta-architecture without an export graph."""
import pytest
import torch
from torch import nn

from detkit.export import batched_nms_in_graph, build_export_graph, dense_detections
from detkit.export.graph import ExportGraph

HW = torch.tensor([20.0, 30.0])  # image height 20, width 30


def test_class_wise_nms_suppresses_within_a_class_only():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [1, 1, 10, 10], [20, 0, 30, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    classes = torch.tensor([0, 0, 1, 0])
    # box 1 overlaps box 0 by IoU 81/100 > 0.5 in class 0: dropped; box 2 is class 1: kept.
    assert batched_nms_in_graph(boxes, scores, classes, 0.5, HW).tolist() == [0, 2, 3]
    # at IoU threshold 0.85 the overlap 0.81 is not enough to suppress
    assert batched_nms_in_graph(boxes, scores, classes, 0.85, HW).tolist() == [0, 1, 2, 3]


def test_dense_detections_top_k_threshold_decode_clip_nms_and_cap():
    # level 0: 2 locations x 2 classes; level 1: 1 location x 2 classes
    level_scores = [torch.tensor([[0.9, 0.1], [0.3, 0.8]]), torch.tensor([[0.05, 0.7]])]
    level_boxes = [torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10]]), torch.tensor([[-5.0, -5, 40, 25]])]

    def decode(level, index):
        return level_boxes[level][index]

    boxes, scores, classes = dense_detections(level_scores, decode, HW, score_thresh=0.2, topk_candidates=3,
                                              nms_thresh=0.5, max_detections=10)
    # level 0 top-3: 0.9 (loc 0, cls 0), 0.8 (loc 1, cls 1), 0.3 (loc 1, cls 0); 0.3's box overlaps
    # 0.9's (IoU 0.81, class 0): suppressed. Level 1: 0.7 (cls 1), clipped to the 30 x 20 image; its
    # IoU with the 0.8 box of class 1 is 81/600: kept.
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert classes.tolist() == [0, 1, 1]
    assert boxes.tolist() == [[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 30, 20]]
    # top-k of 1 per level keeps 0.9 and 0.7; the cap of 1 keeps the best
    _, scores, _ = dense_detections(level_scores, decode, HW, score_thresh=0.2, topk_candidates=1,
                                    nms_thresh=0.5, max_detections=10)
    assert scores.tolist() == pytest.approx([0.9, 0.7])
    _, scores, _ = dense_detections(level_scores, decode, HW, score_thresh=0.2, topk_candidates=3,
                                    nms_thresh=0.5, max_detections=1)
    assert scores.tolist() == pytest.approx([0.9])
    # logits with a sigmoid on the top-k: the same detections
    logits = [torch.logit(x) for x in level_scores]
    _, scores, classes = dense_detections(logits, decode, HW, score_thresh=0.2, topk_candidates=3, nms_thresh=0.5,
                                          max_detections=10, score_transform=torch.sigmoid)
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert classes.tolist() == [0, 1, 1]


class _Stub(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor([10.0, 20.0, 30.0]).view(-1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([2.0, 4.0, 5.0]).view(-1, 1, 1))
        self.size_divisibility = 4


def test_preprocess_normalises_hwc_and_pads_with_zeros_after_normalising():
    image = torch.tensor([[[12, 24, 40]] * 3] * 2, dtype=torch.uint8)  # (2, 3, 3): H=2, W=3
    x, image_hw = ExportGraph(_Stub()).preprocess(image)
    assert x.shape == (1, 3, 4, 4)
    assert image_hw.tolist() == [2.0, 3.0]
    expected = torch.zeros(3, 4, 4)
    expected[0, :2, :3], expected[1, :2, :3], expected[2, :2, :3] = 1.0, 1.0, 2.0  # (12-10)/2, (24-20)/4, (40-30)/5
    torch.testing.assert_close(x[0], expected)


def test_meta_arch_without_export_graph_is_refused():
    class ProposalOnly(nn.Module):
        pass

    with pytest.raises(NotImplementedError, match="ONNX export has no graph for meta-architecture 'ProposalOnly' "
                                                  r"\(MODEL.META_ARCHITECTURE\); exportable: \[") as info:
        build_export_graph(ProposalOnly())
    assert "'FCOS'" in str(info.value) and "'GeneralizedRCNN'" in str(info.value)
