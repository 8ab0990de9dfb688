"""Tests for detkit.modeling.meta_arch.fcos_losses: target gathering, the loss normaliser, exact loss values."""
import math

import pytest
import torch

from detkit.modeling.box_coder import LTRBBoxCoder
from detkit.modeling.meta_arch.fcos_losses import LossNormalizer, fcos_losses, gather_fcos_targets


def _focal(logit: float, target: float, alpha=0.25, gamma=2.0) -> float:
    """Sigmoid focal loss of one logit, written out by hand."""
    p = 1 / (1 + math.exp(-logit))
    ce = -(target * math.log(p) + (1 - target) * math.log(1 - p))
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return alpha_t * (1 - p_t) ** gamma * ce


def test_gather_fcos_targets_picks_matched_box_and_class_per_image():
    gt_boxes = [torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]]), torch.tensor([[1.0, 2, 3, 4]])]
    gt_classes = [torch.tensor([2, 0]), torch.tensor([1])]
    matched = torch.tensor([[1, -1, 0], [-1, 0, 0]])
    labels, boxes = gather_fcos_targets(matched, gt_boxes, gt_classes, num_classes=3)
    assert labels.tolist() == [[0, 3, 2], [3, 1, 1]]
    assert boxes[0, 0].tolist() == [5, 5, 20, 20]
    assert boxes[0, 2].tolist() == [0, 0, 10, 10]
    assert boxes[1, 1].tolist() == [1, 2, 3, 4]
    assert boxes.shape == (2, 3, 4)


def test_gather_fcos_targets_without_any_gt_gives_background():
    labels, boxes = gather_fcos_targets(torch.full((2, 5), -1), [torch.zeros(0, 4)] * 2,
                                        [torch.zeros(0, dtype=torch.int64)] * 2, num_classes=4)
    assert labels.tolist() == [[4] * 5] * 2
    assert boxes.shape == (2, 5, 4)


def test_loss_normalizer_is_seeded_then_moves_by_one_minus_momentum():
    norm = LossNormalizer(momentum=0.9)
    assert norm.update(4) == 4.0
    assert norm.update(10) == pytest.approx(0.9 * 4 + 0.1 * 10)
    assert norm.update(0) == pytest.approx(0.9 * 4.6 + 0.1 * 1.0)  # clamped to at least one positive


def test_loss_normalizer_state_is_saved_and_restored():
    norm = LossNormalizer(momentum=0.5)
    norm.update(6)
    state = norm.state_dict()
    assert float(state["ema"]) == 6.0
    again = LossNormalizer(momentum=0.5)
    assert again.value is None
    again.load_state_dict(state)
    assert again.update(2) == pytest.approx(0.5 * 6 + 0.5 * 2)


def test_loss_normalizer_rejects_bad_momentum():
    with pytest.raises(ValueError, match="LOSS_NORMALIZER_MOMENTUM"):
        LossNormalizer(momentum=1.0)


def _tiny_case():
    """One image, two locations of stride 8, K = 1: location 0 is positive for box (0, 0, 8, 16)."""
    locations = torch.tensor([[4.0, 4.0], [12.0, 4.0]])
    strides = torch.tensor([8.0, 8.0])
    logits = torch.zeros(1, 2, 1)
    pred_ltrb = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0]]])  # location 0 -> box (0, 0, 8, 8)
    pred_ctr = torch.zeros(1, 2)
    labels = torch.tensor([[0, 1]])  # location 1 is background (label K = 1)
    boxes = torch.tensor([[[0.0, 0, 8, 16], [0, 0, 0, 0]]])
    return locations, strides, logits, pred_ltrb, pred_ctr, labels, boxes


@pytest.mark.parametrize("box_loss_type,expected_loc", [
    # GIoU: pred (0,0,8,8) vs gt (0,0,8,16): IoU = 64/128, the hull is the gt box -> GIoU 0.5, loss 0.5.
    ("giou", 0.5),
    # L1 on stride-normalised LTRB: target (4,4,4,12)/8 = (.5,.5,.5,1.5) vs pred (.5,.5,.5,.5) -> 1.0.
    ("l1", 1.0),
])
def test_fcos_losses_exact_values(box_loss_type, expected_loc):
    locations, strides, logits, pred_ltrb, pred_ctr, labels, boxes = _tiny_case()
    norm = LossNormalizer(0.9)
    losses = fcos_losses(locations, strides, logits, pred_ltrb, pred_ctr, labels, boxes, LTRBBoxCoder(True),
                         focal_loss_alpha=0.25, focal_loss_gamma=2.0, box_loss_type=box_loss_type, normalizer=norm)
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
    # One positive -> normaliser 1. Focal at logit 0: positive 0.25*0.25*log2, negative 0.75*0.25*log2.
    assert losses["loss_fcos_cls"].item() == pytest.approx(_focal(0, 1) + _focal(0, 0), rel=1e-6)
    assert losses["loss_fcos_cls"].item() == pytest.approx(0.25 * math.log(2), rel=1e-6)
    # A single positive: the centerness weight cancels against its own sum.
    assert losses["loss_fcos_loc"].item() == pytest.approx(expected_loc, rel=1e-6)
    # BCE at logit 0 is log 2 for any target (here sqrt(1 * 4/12)).
    assert losses["loss_fcos_ctr"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert norm.value == 1.0


def test_fcos_losses_weight_box_loss_by_centerness_and_divide_by_ema():
    # Two positives of one box (0,0,32,16), K = 2: centerness targets differ, so the weights matter.
    locations = torch.tensor([[8.0, 8.0], [16.0, 8.0]])
    strides = torch.tensor([8.0, 8.0])
    logits = torch.zeros(1, 2, 2)
    labels = torch.tensor([[1, 1]])
    boxes = torch.tensor([[[0.0, 0, 32, 16], [0.0, 0, 32, 16]]])
    # Predictions: location 0 exact, location 1 L1 error of 1.0 (in strides).
    pred_ltrb = torch.tensor([[[1.0, 1.0, 3.0, 1.0], [2.0, 1.0, 3.0, 1.0]]])
    pred_ctr = torch.zeros(1, 2)
    norm = LossNormalizer(0.5)
    norm.update(6.0)
    losses = fcos_losses(locations, strides, logits, pred_ltrb, pred_ctr, labels, boxes, LTRBBoxCoder(True),
                         focal_loss_alpha=0.25, focal_loss_gamma=2.0, box_loss_type="l1", normalizer=norm)
    c0 = math.sqrt(8 / 24)  # l=8, r=24, t=b=8
    c1 = 1.0  # l=r=16, t=b=8
    assert losses["loss_fcos_loc"].item() == pytest.approx((0 * c0 + 1.0 * c1) / (c0 + c1), rel=1e-6)
    assert norm.value == pytest.approx(0.5 * 6 + 0.5 * 2)  # EMA of the positive count -> 4
    # Per location: class 1 positive, class 0 negative, all at logit 0.
    assert losses["loss_fcos_cls"].item() == pytest.approx(2 * (_focal(0, 1) + _focal(0, 0)) / 4, rel=1e-6)
    assert losses["loss_fcos_ctr"].item() == pytest.approx(2 * math.log(2) / 4, rel=1e-6)


def test_fcos_losses_without_positives_are_finite_and_keep_the_graph():
    locations, strides, logits, pred_ltrb, pred_ctr, _, boxes = _tiny_case()
    pred_ltrb.requires_grad_(True)
    pred_ctr.requires_grad_(True)
    labels = torch.tensor([[1, 1]])
    losses = fcos_losses(locations, strides, logits, pred_ltrb, pred_ctr, labels, boxes, LTRBBoxCoder(True),
                         focal_loss_alpha=0.25, focal_loss_gamma=2.0, box_loss_type="giou",
                         normalizer=LossNormalizer(0.9))
    assert losses["loss_fcos_loc"].item() == 0.0
    assert losses["loss_fcos_ctr"].item() == 0.0
    assert losses["loss_fcos_cls"].item() == pytest.approx(2 * _focal(0, 0), rel=1e-6)
    sum(losses.values()).backward()
    assert pred_ltrb.grad is not None and pred_ctr.grad is not None


def test_fcos_losses_unknown_box_loss_type_names_the_key():
    locations, strides, logits, pred_ltrb, pred_ctr, labels, boxes = _tiny_case()
    with pytest.raises(ValueError, match="BOX_LOSS_TYPE"):
        fcos_losses(locations, strides, logits, pred_ltrb, pred_ctr, labels, boxes, LTRBBoxCoder(True),
                    focal_loss_alpha=0.25, focal_loss_gamma=2.0, box_loss_type="smooth_l1",
                    normalizer=LossNormalizer(0.9))
