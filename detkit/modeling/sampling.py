"""Balanced sampling of positive and negative labels (anchors in the RPN, RoIs in the box head).

``subsample_labels`` picks at most ``num_samples * positive_fraction`` positives and fills the
rest of ``num_samples`` with negatives, uniformly at random, separately for each image.

Labels follow detectron2's convention: ``-1`` is ignored, ``bg_label`` is negative, anything
else is positive. Several images can be sampled in one call: pass the flat labels of all
images and ``image_ids``, the image each label belongs to; every image then gets its own quota,
exactly as if it had been sampled alone, with no Python loop over images.
"""
from typing import Optional, Tuple

import torch

__all__ = ["subsample_labels"]


def _pick_per_image(candidates: torch.Tensor, quota: torch.Tensor, image_ids: torch.Tensor,
                    num_images: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Keep ``quota[i]`` random candidates of each image i.

    Args:
        candidates: (N,) bool, the elements that may be picked.
        quota: (num_images,) int64, how many to keep per image (at most its candidate count).
        image_ids: (N,) int64 in [0, num_images).
        num_images: number of images.
        generator: source of randomness.

    Returns:
        (N,) bool mask of the picked elements.
    """
    n = candidates.numel()
    rand = torch.rand(n, generator=generator, device=generator.device if generator is not None else candidates.device,
                      dtype=torch.float64).to(candidates.device)
    # Sort key: image id + a random offset in [0, 1) for candidates, +inf otherwise, so the sorted
    # order is image 0's candidates in random order, then image 1's, ..., then non-candidates.
    key = torch.where(candidates, image_ids.to(torch.float64) + rand, torch.full_like(rand, float("inf")))
    order = key.argsort()  # (N,)
    counts = torch.bincount(image_ids[candidates], minlength=num_images)  # (num_images,)
    starts = counts.cumsum(0) - counts  # first sorted position of each image's candidates
    sorted_img = image_ids[order]  # (N,)
    rank = torch.arange(n, device=candidates.device) - starts[sorted_img]  # rank within its image
    keep_sorted = candidates[order] & (rank < quota[sorted_img])
    picked = torch.zeros_like(candidates)
    picked[order[keep_sorted]] = True
    return picked


def subsample_labels(labels: torch.Tensor, num_samples: int, positive_fraction: float, bg_label: int,
                     generator: Optional[torch.Generator] = None,
                     image_ids: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sample at most ``num_samples`` labels per image, a ``positive_fraction`` of them positive.

    Per image: ``num_pos = min(#positives, int(num_samples * positive_fraction))`` positives and
    ``num_neg = min(#negatives, num_samples - num_pos)`` negatives are drawn uniformly at random;
    ignored labels (-1) are never drawn.

    Args:
        labels: (N,) int, -1 ignore, ``bg_label`` negative, any other value positive.
        num_samples: samples per image (positives + negatives).
        positive_fraction: target fraction of positives.
        bg_label: the label of negatives.
        generator: optional ``torch.Generator`` for reproducible draws.
        image_ids: optional (N,) int64, the image of each label (sorted or not); None means one image.

    Returns:
        pos_idx, neg_idx: 1-D int64 indices into ``labels`` of the sampled positives and
        negatives, in increasing order.
    """
    if labels.dim() != 1:
        raise ValueError(f"subsample_labels expects 1-D labels, got shape {tuple(labels.shape)}; flatten them and "
                         "pass image_ids to sample several images at once.")
    if image_ids is None:
        image_ids = torch.zeros_like(labels, dtype=torch.int64)
    image_ids = image_ids.to(device=labels.device, dtype=torch.int64)
    num_images = int(image_ids.max()) + 1 if image_ids.numel() else 1

    positive = (labels != -1) & (labels != bg_label)  # (N,)
    negative = labels == bg_label  # (N,)
    num_pos_avail = torch.bincount(image_ids[positive], minlength=num_images)  # (num_images,)
    num_neg_avail = torch.bincount(image_ids[negative], minlength=num_images)
    num_pos = num_pos_avail.clamp(max=int(num_samples * positive_fraction))
    num_neg = torch.minimum(num_neg_avail, num_samples - num_pos)

    pos_mask = _pick_per_image(positive, num_pos, image_ids, num_images, generator)
    neg_mask = _pick_per_image(negative, num_neg, image_ids, num_images, generator)
    return pos_mask.nonzero().squeeze(1), neg_mask.nonzero().squeeze(1)
