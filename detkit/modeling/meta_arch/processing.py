"""Pre- and post-processing shared by every meta-architecture: normalise + pad, autocast, rescale outputs."""
import contextlib
from typing import Dict, List

import torch

from detkit.structures import ImageList, Instances
from detkit.utils.env import autocast_dtype

__all__ = ["preprocess_images", "detector_postprocess", "inference_autocast"]


def preprocess_images(batched_inputs: List[Dict], pixel_mean: torch.Tensor, pixel_std: torch.Tensor,
                      size_divisibility: int = 0, channels_last: bool = False) -> ImageList:
    """Normalise each ``input["image"]`` (uint8, C x H x W) and pad them into one ImageList.

    The batch is allocated once (float32, on ``pixel_mean``'s device), each image is copied into
    its corner, and the whole batch is normalised in place; the padding then reads 0 (the mean).

    Args:
        batched_inputs: the model's input dicts.
        pixel_mean, pixel_std: (C, 1, 1) tensors on the model's device.
        size_divisibility: pad height and width up to a multiple of this (the largest stride).
        channels_last: lay the batch out in channels_last (NHWC) memory format.

    Returns:
        An ImageList of a (B, C, H, W) float32 tensor and each image's (height, width).
    """
    device = pixel_mean.device
    images = [x["image"].to(device, non_blocking=True) for x in batched_inputs]
    if not images:
        raise ValueError("preprocess_images got an empty batch.")
    sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    max_h, max_w = max(s[0] for s in sizes), max(s[1] for s in sizes)
    if size_divisibility > 1:
        max_h = -(-max_h // size_divisibility) * size_divisibility
        max_w = -(-max_w // size_divisibility) * size_divisibility
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    batch = torch.empty((len(images), images[0].shape[0], max_h, max_w), dtype=torch.float32, device=device,
                        memory_format=fmt)  # (B, C, H, W)
    for i, (im, (h, w)) in enumerate(zip(images, sizes)):
        batch[i, :, :h, :w].copy_(im)  # uint8 -> float32 in the copy
    batch.sub_(pixel_mean).div_(pixel_std)
    for i, (h, w) in enumerate(sizes):  # padding (uninitialised until now) reads as the mean
        if h < max_h:
            batch[i, :, h:, :] = 0
        if w < max_w:
            batch[i, :, :h, w:] = 0
    return ImageList(batch, sizes)


def inference_autocast(device: torch.device, enabled: bool):
    """The autocast context of TEST.AMP.ENABLED: fp16 on CUDA, bf16 on a CPU with native bf16
    (``detkit.utils.env.autocast_dtype``); a no-op when disabled or elsewhere.

    Wrap the network (backbone, neck, heads) only: decoding, top-k and NMS should see float32,
    so cast head outputs back with ``.float()`` before post-processing.
    """
    device = torch.device(device)
    dtype = autocast_dtype(device.type, "TEST.AMP.ENABLED") if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


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
