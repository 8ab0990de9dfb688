"""ImageList: a padded batch of images that remembers each image's true size."""
from typing import List, Tuple

import torch
import torch.nn.functional as F

__all__ = ["ImageList"]


class ImageList:
    """A (B, C, H, W) padded tensor plus each image's (height, width) before padding."""

    def __init__(self, tensor: torch.Tensor, image_sizes: List[Tuple[int, int]]):
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    def __getitem__(self, idx: int) -> torch.Tensor:
        """The idx-th image without its padding."""
        h, w = self.image_sizes[idx]
        return self.tensor[idx, ..., :h, :w]

    def to(self, *args, **kwargs) -> "ImageList":
        return ImageList(self.tensor.to(*args, **kwargs), self.image_sizes)

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    @staticmethod
    def from_tensors(tensors: List[torch.Tensor], size_divisibility: int = 0, pad_value: float = 0.0) -> "ImageList":
        """Pad (C, H, W) tensors to a common size, a multiple of ``size_divisibility`` if > 0."""
        if len(tensors) == 0:
            raise ValueError("ImageList.from_tensors needs at least one image.")
        image_sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        max_h = max(s[0] for s in image_sizes)
        max_w = max(s[1] for s in image_sizes)
        if size_divisibility > 1:
            max_h = (max_h + size_divisibility - 1) // size_divisibility * size_divisibility
            max_w = (max_w + size_divisibility - 1) // size_divisibility * size_divisibility
        if len(tensors) == 1:
            h, w = image_sizes[0]
            batched = F.pad(tensors[0], (0, max_w - w, 0, max_h - h), value=pad_value).unsqueeze(0)
        else:
            batched = tensors[0].new_full((len(tensors), *tensors[0].shape[:-2], max_h, max_w), pad_value)
            for i, t in enumerate(tensors):
                batched[i, ..., : t.shape[-2], : t.shape[-1]].copy_(t)
        return ImageList(batched.contiguous(), image_sizes)
