"""FCOS training targets and losses, computed over all levels and images of a batch at once."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from detkit.modeling.box_coder import centerness
from detkit.utils import comm

__all__ = ["LossNormalizer", "gather_fcos_targets", "fcos_losses"]


class LossNormalizer(nn.Module):
    """An exponential moving average of the positive count, used to divide the FCOS losses.

    The first value seeds the average; later ones move it by ``1 - momentum``. Values are
    clamped to at least 1 so an image without objects does not blow the losses up. The average is
    a buffer, so it is saved in checkpoints and a resumed run continues exactly.
    """

    def __init__(self, momentum: float = 0.9):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"Loss normalizer momentum must be in [0, 1) (MODEL.FCOS.LOSS_NORMALIZER_MOMENTUM), "
                             f"got {momentum}.")
        self.momentum = momentum
        self.register_buffer("ema", torch.tensor(-1.0, dtype=torch.float64))  # -1: no value yet

    @property
    def value(self) -> Optional[float]:
        """The current average, or None before the first update."""
        v = float(self.ema)
        return None if v < 0 else v

    def update(self, count: float) -> float:
        """Fold ``count`` into the average and return the new average."""
        count = max(float(count), 1.0)
        previous = self.value
        new = count if previous is None else self.momentum * previous + (1 - self.momentum) * count
        self.ema.fill_(new)
        return new


def gather_fcos_targets(matched_idxs: torch.Tensor, gt_boxes: List[torch.Tensor], gt_classes: List[torch.Tensor],
                        num_classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Turn the matcher's per-location gt indices into per-location class labels and boxes.

    Args:
        matched_idxs: (B, N) int64, the matched gt index of each location of each image, -1 = background.
        gt_boxes: per image, (M_i, 4) XYXY ground-truth boxes.
        gt_classes: per image, (M_i,) int64 ground-truth classes in [0, num_classes).
        num_classes: K; background locations get label K.

    Returns:
        labels: (B, N) int64 in [0, K], K = background.
        boxes: (B, N, 4) the matched gt box of each location (an arbitrary real box, or zeros, for background).
    """
    # Pad the ragged per-image gt lists into (B, M, ...) so one gather serves the whole batch.
    padded_boxes = torch.nn.utils.rnn.pad_sequence(list(gt_boxes), batch_first=True)  # (B, M, 4)
    padded_classes = torch.nn.utils.rnn.pad_sequence(list(gt_classes), batch_first=True)  # (B, M)
    if padded_boxes.shape[1] == 0:  # no gt anywhere in the batch: keep one dummy slot to gather from
        padded_boxes = F.pad(padded_boxes, (0, 0, 0, 1))
        padded_classes = F.pad(padded_classes, (0, 1))
    index = matched_idxs.clamp(min=0)  # (B, N)
    boxes = torch.gather(padded_boxes, 1, index.unsqueeze(-1).expand(-1, -1, 4))  # (B, N, 4)
    classes = torch.gather(padded_classes.long(), 1, index)  # (B, N)
    labels = torch.where(matched_idxs >= 0, classes, torch.full_like(classes, num_classes))
    return labels, boxes


def fcos_losses(
    locations: torch.Tensor,
    strides: torch.Tensor,
    pred_logits: torch.Tensor,
    pred_ltrb: torch.Tensor,
    pred_ctrness: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    box_coder,
    *,
    focal_loss_alpha: float,
    focal_loss_gamma: float,
    box_loss_type: str,
    normalizer: LossNormalizer,
) -> Dict[str, torch.Tensor]:
    """The three FCOS losses for a batch; all levels are concatenated along N.

    Classification: sigmoid focal loss over every location and class, divided by
    the EMA of the positive count (``normalizer``, fed the count averaged over processes). Box: GIoU
    on decoded boxes, or L1 on the stride-normalised LTRB, of positive locations, weighted by their
    centerness target and divided by the sum of those targets (averaged over processes).
    Centerness: BCE on positive locations, divided by the same EMA as classification.

    Args:
        locations: (N, 2) xy of every location.
        strides: (N,) stride of each location's level.
        pred_logits: (B, N, K) class logits.
        pred_ltrb: (B, N, 4) predicted LTRB, in units of stride.
        pred_ctrness: (B, N) centerness logits.
        gt_labels: (B, N) int64 labels, K = background (from :func:`gather_fcos_targets`).
        gt_boxes: (B, N, 4) matched gt boxes.
        box_coder: an LTRBBoxCoder (encode / decode between boxes and stride-normalised LTRB).
        focal_loss_alpha, focal_loss_gamma: focal loss parameters.
        box_loss_type: "giou" or "l1".
        normalizer: the EMA of the positive count; updated once per call.

    Returns:
        {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}: scalar tensors.
    """
    num_classes = pred_logits.shape[-1]
    pos = gt_labels != num_classes  # (B, N)
    cls_target = F.one_hot(gt_labels, num_classes + 1)[..., :num_classes].to(pred_logits.dtype)  # (B, N, K)
    loss_cls = sigmoid_focal_loss(pred_logits, cls_target, alpha=focal_loss_alpha, gamma=focal_loss_gamma,
                                  reduction="sum")

    batch = pred_logits.shape[0]
    pos_locations = locations.expand(batch, -1, -1)[pos]  # (P, 2)
    pos_strides = strides.expand(batch, -1)[pos]  # (P,)
    pos_gt = gt_boxes[pos]  # (P, 4)
    target_ltrb = box_coder.encode(pos_locations, pos_gt, pos_strides)  # (P, 4)
    ctr_target = centerness(target_ltrb)  # (P,)
    pos_pred = pred_ltrb[pos]  # (P, 4)
    if box_loss_type == "giou":
        pred_boxes = box_coder.decode(pos_locations, pos_pred, pos_strides)  # (P, 4)
        box_loss = generalized_box_iou_loss(pred_boxes, pos_gt, reduction="none")  # (P,)
    elif box_loss_type == "l1":
        box_loss = (pos_pred - target_ltrb).abs().sum(dim=-1)  # (P,)
    else:
        raise ValueError(f"Unknown FCOS box loss type '{box_loss_type}' (MODEL.FCOS.BOX_LOSS_TYPE); "
                         "use 'giou' or 'l1'.")
    # One all-reduce for both normalisers; each process then divides by the per-process average.
    # The EMA tracks the positive count of the whole batch over all processes, so its saved value
    # does not depend on the number of processes.
    totals = comm.reduce_dict({"num_pos": pos.sum().to(torch.float32),
                               "ctr_sum": ctr_target.detach().sum().to(torch.float32)}, average=True)
    world_size = comm.get_world_size()
    loss_normalizer = normalizer.update(totals["num_pos"].item() * world_size) / world_size
    ctrness_normalizer = max(totals["ctr_sum"].item(), 1e-6)
    loss_loc = (box_loss * ctr_target).sum() / ctrness_normalizer
    loss_ctr = F.binary_cross_entropy_with_logits(pred_ctrness[pos], ctr_target, reduction="sum") / loss_normalizer
    # Keep every output in the graph even without positives (DDP expects all parameters to get grads).
    zero = pred_ltrb.sum() * 0 + pred_ctrness.sum() * 0
    return {
        "loss_fcos_cls": loss_cls / loss_normalizer,
        "loss_fcos_loc": loss_loc + zero,
        "loss_fcos_ctr": loss_ctr + zero,
    }
