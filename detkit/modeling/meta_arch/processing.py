"""Pre- and post-processing shared by every meta-architecture: normalise + pad, rescale outputs."""
from typing import Dict, List

import torch

from detkit.structures import ImageList, Instances

__all__ = ["preprocess_images", "detector_postprocess"]


def preprocess_images(batched_inputs: List[Dict], pixel_mean: torch.Tensor, pixel_std: torch.Tensor,
                      size_divisibility: int = 0) -> ImageList:
    """Normalise each ``input["image"]`` (uint8, C x H x W) and pad them into one ImageList.

    Args:
        batched_inputs: the model's input dicts.
        pixel_mean, pixel_std: (C, 1, 1) tensors on the model's device.
        size_divisibility: pad height and width up to a multiple of this (the largest stride).
    """
    device = pixel_mean.device
    images = [x["image"].to(device, non_blocking=True) for x in batched_inputs]
    sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    padded = ImageList.from_tensors(images, size_divisibility).tensor  # (B, C, H, W), still uint8
    # Normalise the whole padded batch at once; padding is then re-zeroed so it reads as "mean".
    normalized = (padded.float() - pixel_mean) / pixel_std
    if len(images) > 1 or padded.shape[-2:] != images[0].shape[-2:]:
        for i, (h, w) in enumerate(sizes):
            normalized[i, :, h:, :] = 0
            normalized[i, :, :h, w:] = 0
    return ImageList(normalized, sizes)


def detector_postprocess(results: Instances, output_height: int, output_width: int) -> Instances:
    """Rescale predicted boxes from the network's input size to (output_height, output_width).

    Boxes are clipped to the output image; empty boxes are kept (evaluation treats them as misses).
    """
    in_h, in_w = results.image_size
    scale_x, scale_y = output_width / in_w, output_height / in_h
    out = Instances((output_height, output_width), **results.get_fields())
    for name in ("pred_boxes", "proposal_boxes"):
        if out.has(name):
            boxes = out.get(name).clone()
            boxes.scale(scale_x, scale_y)
            boxes.clip(out.image_size)
            out.set(name, boxes)
    return out
