"""Backbone: the base class of detkit's trunks (named stages, output_shape, freezing, weights, and
batch norms folded into the convolutions for inference)."""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

from torch import nn

from detkit.layers import ShapeSpec, convert_frozen_batchnorm, fold_batch_norms, is_plain_inference, state_version

from .weights import load_backbone_weights

__all__ = ["Backbone"]

logger = logging.getLogger(__name__)


class Backbone(nn.Module):
    """A trunk split into a stem and stages "c2".."c5"; ``forward(x)`` returns the requested stages.

    Subclasses keep torchvision's module names (so torchvision weights load as they are) and call
    ``_setup`` with the dotted paths of the stem's modules and of each stage.

    In eval mode without autograd (``torch.no_grad`` / ``torch.inference_mode``), ``forward`` runs a
    copy of the stem and stages with each batch norm folded into the convolution before it
    (``fold_batch_norms``): the same outputs up to float rounding, without the batch norms' passes
    over the feature maps. The copy is rebuilt whenever a weight or statistic changes, and is never
    used in training, under autograd, or while tracing, compiling or exporting.
    """

    #: stride of each stage output
    _STRIDES = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}

    def _setup(self, stem: Sequence[str], stages: Dict[str, str], channels: Dict[str, int],
               out_features: Sequence[str], freeze_at: int, weights: str) -> None:
        """
        Args:
            stem: dotted paths of the stem's modules, run in order.
            stages: {"c2": path, ..., "c5": path}, in order.
            channels: output channels of each stage.
            out_features: the stages ``forward`` returns.
            freeze_at: see ``freeze``.
            weights: MODEL.BACKBONE.WEIGHTS, loaded by ``load_backbone_weights`` ("" for none).
        """
        unknown = [f for f in out_features if f not in stages]
        if unknown or not out_features:
            raise ValueError(f"{type(self).__name__} out_features {list(out_features)}: choose among {list(stages)}.")
        if not 0 <= freeze_at <= 1 + len(stages):
            raise ValueError(f"MODEL.BACKBONE.FREEZE_AT = {freeze_at} must be in [0, {1 + len(stages)}] "
                             f"(0 none, 1 stem, k stem + first k-1 stages).")
        self._stem_paths: List[str] = list(stem)
        self._stage_paths: Dict[str, str] = dict(stages)
        self._stage_names = list(stages)
        self._out_features = list(out_features)
        self._out_channels = {name: channels[name] for name in self._stage_names}
        # Stop once the last requested stage is computed.
        self._num_stages_run = 1 + max(self._stage_names.index(f) for f in self._out_features)
        # (key, [stem, stage...]) of the folded inference copy; a plain attribute, so neither a
        # submodule nor part of the state dict.
        self._folded: Optional[Tuple[tuple, List[nn.Module]]] = None
        load_backbone_weights(self, weights)
        self.freeze(freeze_at)

    @staticmethod
    def trunk_config(cfg) -> Dict:
        """The constructor arguments every torchvision trunk reads from ``MODEL.BACKBONE``."""
        return {"norm": cfg.MODEL.BACKBONE.NORM, "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
                "weights": cfg.MODEL.BACKBONE.WEIGHTS}

    def _replace(self, path: str, new: nn.Module) -> None:
        parent, _, name = path.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, name, new)

    def freeze(self, freeze_at: int) -> "Backbone":
        """Freeze the stem (freeze_at >= 1) and the first freeze_at - 1 stages.

        Frozen parts stop requiring gradients and their batch norms become FrozenBatchNorm2d.
        """
        self.freeze_at = freeze_at
        paths = list(self._stem_paths) if freeze_at >= 1 else []
        paths += [self._stage_paths[n] for n in self._stage_names[: max(freeze_at - 1, 0)]]
        for path in paths:
            part = self.get_submodule(path)
            for p in part.parameters():
                p.requires_grad_(False)
            frozen = convert_frozen_batchnorm(part)
            if frozen is not part:
                self._replace(path, frozen)
        return self

    def forward(self, x):
        """
        Args:
            x: (B, 3, H, W) normalised images, H and W multiples of ``size_divisibility``.

        Returns:
            {name: (B, C_name, H / stride, W / stride)} for each of ``out_features``.
        """
        names = self._stage_names[: self._num_stages_run]
        if is_plain_inference(self):
            stem, *stages = self._folded_parts()
            x = stem(x)
        else:
            for path in self._stem_paths:
                x = self.get_submodule(path)(x)
            stages = [self.get_submodule(self._stage_paths[name]) for name in names]
        out = {}
        for name, stage in zip(names, stages):
            x = stage(x)
            if name in self._out_features:
                out[name] = x
        return out

    def _parts(self) -> List[nn.Module]:
        """The stem (as one module) and the stages that ``forward`` runs, in order."""
        stem = nn.Sequential(*[self.get_submodule(path) for path in self._stem_paths]).train(self.training)
        stages = [self.get_submodule(self._stage_paths[n]) for n in self._stage_names[: self._num_stages_run]]
        return [stem] + stages

    def _folded_parts(self) -> List[nn.Module]:
        """``_parts()`` with the batch norms folded, cached until a parameter or buffer changes."""
        key = state_version(self)
        if self._folded is None or self._folded[0] != key:
            try:
                parts = [fold_batch_norms(part) for part in self._parts()]
            except Exception as e:  # e.g. a subclass's stage torch.fx cannot trace: run unfolded
                logger.warning("%s: batch norms not folded for inference (%s: %s); running them as they are.",
                               type(self).__name__, type(e).__name__, e)
                parts = self._parts()
            self._folded = (key, parts)
        return self._folded[1]

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """Channels and stride of each output feature."""
        return {n: ShapeSpec(channels=self._out_channels[n], stride=self._STRIDES[n]) for n in self._out_features}

    @property
    def size_divisibility(self) -> int:
        """Input sides must be multiples of this (the largest stride)."""
        return max(self._STRIDES[n] for n in self._out_features)
