"""Batched matching: Matcher on a padded (B, M, N) batch, pad_boxes, padded_pairwise_iou, and the
RPN / RoI heads labelling that uses them, against hand-derived labels and the former per-image path."""
import math

import pytest
import torch

from detkit.layers import ShapeSpec
from detkit.modeling.anchor_generator import DefaultAnchorGenerator
from detkit.modeling.box_coder import Box2BoxTransform
from detkit.modeling.matcher import Matcher, pad_boxes, padded_pairwise_iou
from detkit.modeling.poolers import ROIPooler
from detkit.modeling.proposal_generator import RPN
from detkit.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detkit.modeling.roi_heads import StandardROIHeads
from detkit.modeling.roi_heads.box_head import FastRCNNConvFCHead
from detkit.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detkit.modeling.sampling import subsample_labels
from detkit.structures import Boxes, Instances, pairwise_iou

PAD = 0.95  # quality written into padded rows: it would win every prediction if padding leaked

# Four images, 5 predictions each, gt lists padded to 3 rows.
IMAGE0 = [[0.8, 0.5, 0.5, 0.1, 0.0],     # gt0
          [0.2, 0.5, 0.6, 0.6, 0.0]]     # gt1
IMAGE1 = []                              # no ground truth
IMAGE2 = [[0.1, 0.75, 0.2, 0.0, 0.3],    # gt0
          [0.1, 0.75, 0.25, 0.0, 0.2],   # gt1
          [0.4, 0.1, 0.25, 0.0, 0.29]]   # gt2
IMAGE3 = [[0.0, 0.0, 0.0, 0.0, 0.0]]     # a gt that overlaps nothing


def _padded_batch():
    rows = [IMAGE0, IMAGE1, IMAGE2, IMAGE3]
    quality = torch.full((4, 3, 5), PAD)
    valid = torch.zeros(4, 3, dtype=torch.bool)
    for i, r in enumerate(rows):
        if r:
            quality[i, :len(r)] = torch.tensor(r)
            valid[i, :len(r)] = True
    return rows, quality, valid


def test_batched_matcher_hand_derived_labels_without_low_quality():
    # Thresholds [0.3, 0.7] -> labels 0 / -1 / 1 on [-inf, 0.3), [0.3, 0.7), [0.7, inf).
    # Image 0: best gt per prediction p0 0.8 (gt0) -> 1; p1 0.5 tied gt0/gt1 -> first, gt0, -1;
    #   p2 0.6 (gt1) -> -1; p3 0.6 (gt1) -> -1; p4 0.0 tied -> gt0, 0.
    # Image 1: no gt -> matches 0, labels 0 (the first range's label).
    # Image 2: p0 0.4 (gt2) -> -1; p1 0.75 tied gt0/gt1 -> gt0, 1; p2 0.25 tied gt1/gt2 -> gt1, 0;
    #   p3 0.0 all tied -> gt0, 0; p4 0.3 (gt0) -> -1 (ranges are closed on the left).
    # Image 3: one gt, all 0.0 -> gt0, 0.
    _, quality, valid = _padded_batch()
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1])(quality, valid)
    assert matches.shape == (4, 5) and matches.dtype == torch.int64 and labels.dtype == torch.int8
    assert matches.tolist() == [[0, 0, 1, 1, 0], [0] * 5, [2, 0, 1, 0, 0], [0] * 5]
    assert labels.tolist() == [[1, -1, -1, -1, 0], [0] * 5, [-1, 1, 0, 0, -1], [0] * 5]


def test_batched_matcher_hand_derived_low_quality_matches():
    # Image 0: gt0's best 0.8 is p0 (already 1); gt1's best 0.6 is tied at p2 and p3: both become 1.
    # Image 1: no gt, nothing is promoted (its padded rows of 0.95 must not count).
    # Image 2: gt0's and gt1's best 0.75 is p1 (already 1); gt2's best 0.4 is p0 -> 1.
    # Image 3: the gt's best quality is 0, tied at all five predictions: all five become 1 (detectron2).
    _, quality, valid = _padded_batch()
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)(quality, valid)
    assert matches.tolist() == [[0, 0, 1, 1, 0], [0] * 5, [2, 0, 1, 0, 0], [0] * 5]
    assert labels.tolist() == [[1, -1, 1, 1, 0], [0] * 5, [1, 1, 0, 0, -1], [1] * 5]


@pytest.mark.parametrize("low_quality", [False, True])
def test_batched_matcher_equals_per_image_calls(low_quality):
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=low_quality)
    rows, quality, valid = _padded_batch()
    matches, labels = matcher(quality, valid)
    for i, r in enumerate(rows):
        m, lab = matcher(torch.tensor(r).reshape(-1, 5))
        assert torch.equal(matches[i], m) and torch.equal(labels[i], lab), i
    # Many random batches whose qualities are multiples of 0.1, so ties are frequent.
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        counts = torch.randint(0, 5, (3,), generator=g).tolist()
        per_image = [torch.randint(0, 11, (c, 7), generator=g).float() / 10 for c in counts]
        rows = max(max(counts), 1)
        batch = torch.full((3, rows, 7), PAD)
        mask = torch.zeros(3, rows, dtype=torch.bool)
        for i, q in enumerate(per_image):
            batch[i, :len(q)], mask[i, :len(q)] = q, True
        matches, labels = matcher(batch, mask)
        for i, q in enumerate(per_image):
            m, lab = matcher(q)
            assert torch.equal(matches[i], m) and torch.equal(labels[i], lab), (counts, i)


def test_batched_matcher_without_any_gt_and_without_mask():
    matcher = Matcher([0.5], [0, 1], allow_low_quality_matches=True)
    matches, labels = matcher(torch.zeros(2, 0, 3))
    assert matches.tolist() == [[0] * 3] * 2 and labels.tolist() == [[0] * 3] * 2
    # No mask: every row is a gt. Image 1's best 0.2 at p2 is promoted; image 0 has 0.6 >= 0.5 at p1.
    quality = torch.tensor([[[0.1, 0.6, 0.2]], [[0.1, 0.1, 0.2]]])
    matches, labels = matcher(quality)
    assert labels.tolist() == [[0, 1, 0], [0, 0, 1]]


def test_matcher_rejects_bad_batches():
    matcher = Matcher([0.5], [0, 1])
    with pytest.raises(ValueError, match=r"gt_valid is for a padded \(B, M, N\) batch"):
        matcher(torch.zeros(2, 3), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"gt_valid must have shape \(B, M\) = \(2, 3\), got \(2, 4\)"):
        matcher(torch.zeros(2, 3, 5), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(M, N\) or \(B, M, N\).*\(1, 2, 3, 4\)"):
        matcher(torch.zeros(1, 2, 3, 4))


def test_pad_boxes():
    boxes = [torch.tensor([[0.0, 0, 4, 4], [1, 1, 2, 2]]), torch.zeros(0, 4), torch.tensor([[5.0, 5, 9, 9]])]
    padded, valid = pad_boxes(boxes)
    assert padded.tolist() == [[[0, 0, 4, 4], [1, 1, 2, 2]], [[0, 0, 0, 0], [0, 0, 0, 0]],
                               [[5, 5, 9, 9], [0, 0, 0, 0]]]
    assert valid.tolist() == [[True, True], [False, False], [True, False]]
    # All images empty: one zero row each, so that gathering row 0 stays valid.
    padded, valid = pad_boxes([torch.zeros(0, 4), torch.zeros(0, 4)])
    assert padded.shape == (2, 1, 4) and valid.tolist() == [[False], [False]]


def test_padded_pairwise_iou_equals_pairwise_iou_bit_for_bit():
    g = torch.Generator().manual_seed(1)

    def rand_boxes(n):
        xy = torch.rand(n, 2, generator=g) * 50
        return torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 30], dim=1)

    gts = [rand_boxes(3), torch.zeros(0, 4), rand_boxes(1)]
    preds = [rand_boxes(6), rand_boxes(2), torch.tensor([[0.0, 0, 0, 0], [1, 1, 1, 1]])]  # empty boxes too
    pred_pad, _ = pad_boxes(preds)
    iou, valid = padded_pairwise_iou(gts, pred_pad)
    assert iou.shape == (3, 3, 6) and valid.tolist() == [[True] * 3, [False] * 3, [True, False, False]]
    for i, (gt, pred) in enumerate(zip(gts, preds)):
        assert torch.equal(iou[i, :len(gt), :len(pred)], pairwise_iou(gt, pred)), i
        assert (iou[i, len(gt):] == -math.inf).all()  # padded rows never win
    # Shared (N, 4) boxes (anchors).
    shared, _ = padded_pairwise_iou(gts, preds[0])
    for i, gt in enumerate(gts):
        assert torch.equal(shared[i, :len(gt)], pairwise_iou(gt, preds[0]))
    # No gt anywhere: one padded row per image. Two empty boxes give 0, not NaN.
    iou, valid = padded_pairwise_iou([torch.zeros(0, 4)] * 2, preds[0])
    assert iou.shape == (2, 1, 6) and not valid.any()
    assert padded_pairwise_iou([torch.zeros(1, 4)], torch.zeros(2, 4))[0].tolist() == [[[0.0, 0.0]]]
    # Hand case: (0, 0, 10, 10) and (5, 0, 15, 10) overlap 50 of 150.
    assert padded_pairwise_iou([torch.tensor([[0.0, 0, 10, 10]])], torch.tensor([[5.0, 0, 15, 10]]))[0].item() == \
        pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- RPN / RoI heads vs the per-image path

def _per_image_rpn_labels(rpn, anchors, gt_instances):
    """The RPN's labelling as it was before batched matching: one Matcher call per image."""
    anchors = Boxes.cat(anchors)
    num_images, num_anchors = len(gt_instances), len(anchors)
    labels, matched = [], []
    for inst in gt_instances:
        idx, lab = rpn.anchor_matcher(pairwise_iou(inst.gt_boxes.tensor, anchors.tensor))
        labels.append(lab.to(torch.int64))
        matched.append(inst.gt_boxes.tensor[idx] if len(inst) else anchors.tensor.new_zeros(num_anchors, 4))
    labels, matched = torch.stack(labels), torch.stack(matched)
    if rpn.anchor_boundary_thresh >= 0:
        sizes = torch.as_tensor([x.image_size for x in gt_instances], dtype=torch.float32)
        t, a = rpn.anchor_boundary_thresh, anchors.tensor[None]
        inside = ((a[..., 0] >= -t) & (a[..., 1] >= -t) & (a[..., 2] < sizes[:, 1:2] + t)
                  & (a[..., 3] < sizes[:, 0:1] + t))
        labels[~inside] = -1
    image_ids = torch.arange(num_images).repeat_interleave(num_anchors)
    pos, neg = subsample_labels(labels.flatten(), rpn.batch_size_per_image, rpn.positive_fraction, 0,
                                image_ids=image_ids)
    sampled = torch.full((num_images * num_anchors,), -1, dtype=torch.int64)
    sampled[pos], sampled[neg] = 1, 0
    return sampled.view(num_images, num_anchors), matched


def _gt(size, boxes, classes=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    classes = torch.zeros(len(boxes), dtype=torch.int64) if classes is None else torch.tensor(classes)
    return Instances(size, gt_boxes=Boxes(boxes), gt_classes=classes)


@pytest.mark.parametrize("boundary", [-1.0, 0.0])
def test_rpn_batched_labels_equal_the_per_image_path(boundary):
    rpn = RPN(in_features=["p4"], head=torch.nn.Identity(),
              anchor_generator=DefaultAnchorGenerator([[16, 32]], [[0.5, 1.0, 2.0]], [16], offset=0.0),
              anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
              box2box_transform=Box2BoxTransform((1.0, 1.0, 1.0, 1.0)), batch_size_per_image=12,
              positive_fraction=0.5, pre_nms_topk=(100, 100), post_nms_topk=(50, 50), anchor_boundary_thresh=boundary)
    anchors = rpn.anchor_generator([torch.zeros(4, 1, 4, 4)])  # 4 x 4 cells x 6 anchors
    gts = [
        _gt((64, 64), [[8, 8, 24, 24], [24, 0, 40, 16], [0, 0, 64, 64]]),  # exact anchor, ties, a big box
        _gt((64, 64), []),                                                 # no ground truth
        _gt((48, 64), [[16, 16, 32, 32]]),                                 # one box, equal to 1:1 anchors
        _gt((64, 48), [[3, 5, 20, 50], [30, 2, 47, 9]]),
    ]
    for seed in range(5):
        torch.manual_seed(seed)
        labels, matched = rpn.label_and_sample_anchors(anchors, gts)
        torch.manual_seed(seed)
        ref_labels, ref_matched = _per_image_rpn_labels(rpn, anchors, gts)
        assert torch.equal(labels, ref_labels), seed
        pos = labels == 1
        assert torch.equal(matched[pos], ref_matched[pos]), seed
        assert matched[1].abs().sum() == 0  # the image without gt "matches" a zero box, as before
    assert int((labels[1] == 1).sum()) == 0 and int((labels[1] == 0).sum()) == 12


def _per_image_roi_labels(heads, proposals, targets):
    """StandardROIHeads.label_and_sample_proposals as it was before batched matching."""
    if heads.proposal_append_gt:
        proposals = add_ground_truth_to_proposals([t.gt_boxes for t in targets], proposals)
    counts = [len(p) for p in proposals]
    classes, boxes = [], []
    for props, tgt in zip(proposals, targets):
        idx, lab = heads.proposal_matcher(pairwise_iou(tgt.gt_boxes, props.proposal_boxes))
        c = tgt.gt_classes[idx] if len(tgt) else torch.full_like(idx, heads.num_classes)
        c[lab == 0] = heads.num_classes
        c[lab == -1] = -1
        classes.append(c)
        boxes.append(tgt.gt_boxes.tensor[idx] if len(tgt) else torch.zeros(len(props), 4))
    classes, boxes = torch.cat(classes), torch.cat(boxes)
    image_ids = torch.repeat_interleave(torch.arange(len(proposals)), torch.as_tensor(counts))
    pos, neg = subsample_labels(classes, heads.batch_size_per_image, heads.positive_fraction, heads.num_classes,
                                image_ids=image_ids)
    sampled = torch.cat([pos, neg]).sort().values
    all_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])
    out = []
    for i in range(len(proposals)):
        idx = sampled[image_ids[sampled] == i]
        out.append((all_boxes[idx], classes[idx], boxes[idx]))
    return out


def _proposals(size, boxes):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return Instances(size, proposal_boxes=Boxes(boxes), objectness_logits=torch.zeros(len(boxes)))


@pytest.mark.parametrize("append_gt", [True, False])
def test_roi_heads_batched_labels_equal_the_per_image_path(append_gt):
    head = FastRCNNConvFCHead(ShapeSpec(channels=4, height=7, width=7), conv_dims=[], fc_dims=[8])
    heads = StandardROIHeads(
        box_in_features=["p3"], box_pooler=ROIPooler(7, [1 / 8], 0, "ROIAlignV2"), box_head=head,
        box_predictor=FastRCNNOutputLayers(head.output_shape, box2box_transform=Box2BoxTransform((10, 10, 5, 5)),
                                           num_classes=3),
        num_classes=3, batch_size_per_image=4, positive_fraction=0.5,
        proposal_matcher=Matcher([0.5], [0, 1]), proposal_append_gt=append_gt)
    g = torch.Generator().manual_seed(3)

    def rand_boxes(n):
        xy = (torch.rand(n, 2, generator=g) * 40).round()
        return torch.cat([xy, xy + 4 + (torch.rand(n, 2, generator=g) * 20).round()], dim=1).tolist()

    gt0 = [[0, 0, 20, 20], [0, 0, 20, 20], [30, 30, 50, 50]]  # two equal gts: ties go to the first (class 2)
    props = [_proposals((64, 64), [[0, 0, 20, 20], [2, 0, 22, 20], [30, 30, 48, 50]] + rand_boxes(9)),
             _proposals((64, 64), rand_boxes(5)),   # no ground truth
             _proposals((64, 64), rand_boxes(14))]
    targets = [_gt((64, 64), gt0, [2, 0, 1]), _gt((64, 64), []), _gt((64, 64), rand_boxes(4), [0, 1, 2, 0])]
    seen_tie = 0
    for seed in range(5):
        torch.manual_seed(seed)
        out = heads.label_and_sample_proposals(props, targets)
        torch.manual_seed(seed)
        ref = _per_image_roi_labels(heads, props, targets)
        for inst, (ref_boxes, ref_classes, ref_gt) in zip(out, ref):
            assert torch.equal(inst.proposal_boxes.tensor, ref_boxes), seed
            assert torch.equal(inst.gt_classes, ref_classes), seed
            assert torch.equal(inst.gt_boxes.tensor, ref_gt), seed
        # A RoI equal to the two equal gts (IoU 1 with both) takes the first one's class, 2.
        tie = (out[0].proposal_boxes.tensor == torch.tensor([0.0, 0, 20, 20])).all(dim=1)
        assert out[0].gt_classes[tie].tolist() == [2] * int(tie.sum())
        seen_tie += int(tie.sum())
    assert seen_tie > 0
    assert [len(x) for x in out] == [4, 4, 4]
