"""DetectorBase: what every meta-architecture shares, and the model's input / output contract.

**Input.** A model is called on a list of dicts, one per image:

* ``"image"``: a uint8 tensor (C, H, W), channels in ``INPUT.FORMAT`` order (RGB by default,
  since torchvision's ImageNet weights expect RGB), already resized by the data loader;
* ``"height"``, ``"width"`` (optional): the size the outputs are rescaled to, normally the
  original image's; without them, outputs stay in the input image's coordinates;
* ``"instances"`` (training only): an ``Instances`` of the resized image with ``gt_boxes``
  (``Boxes``, XYXY absolute) and ``gt_classes`` (int64 (N,), 0-based);
* ``"image_id"`` (optional): used in error messages.

**Output.** In training mode, a dict of scalar loss tensors (their sum is optimised). In eval
mode, one dict per image, ``{"instances": Instances(pred_boxes: Boxes, scores, pred_classes)}``
in ``height`` x ``width`` coordinates (``ProposalNetwork`` gives ``{"proposals": Instances(
proposal_boxes, objectness_logits)}``).

**What the base does.** It holds the backbone and the neck, normalises the images with
``MODEL.PIXEL_MEAN`` / ``MODEL.PIXEL_STD`` and pads them to a multiple of the neck's largest
stride, lays the backbone and the neck out in channels_last when ``MODEL.CHANNELS_LAST`` (the
heads keep their own layout), and runs the network under autocast in eval mode when
``TEST.AMP.ENABLED``, and through ``torch.compile`` when ``TEST.COMPILE.ENABLED`` (``network``).
Subclasses add their heads and write ``forward``.
"""
import contextlib
import logging
from typing import Callable, Dict, List, Sequence

import torch
from torch import nn

from detkit.layers import is_plain_inference, state_version
from detkit.structures import ImageList, Instances

from .processing import detector_postprocess, inference_autocast, preprocess_images

__all__ = ["DetectorBase"]

logger = logging.getLogger(__name__)


class _FrozenCompiled:
    """``torch.compile(part)`` whose calls run with inductor's weight freezing on: inductor reads the
    flag when a call compiles, and ``torch.compile``'s ``options`` does not reach that pass."""

    def __init__(self, part: nn.Module):
        self.compiled = torch.compile(part)

    def __call__(self, *args):
        with torch._inductor.config.patch(freezing=True):
            return self.compiled(*args)


class DetectorBase(nn.Module):
    """Backbone + neck, pre-processing, ground truth and output rescaling for every detector."""

    def __init__(self, *, backbone: nn.Module, neck: nn.Module, pixel_mean: Sequence[float],
                 pixel_std: Sequence[float], input_format: str = "RGB", channels_last: bool = False,
                 amp_inference: bool = False, compile_inference: bool = False):
        """
        Args:
            backbone: image -> {"c3", "c4", "c5"} with ``output_shape()``.
            neck: backbone features -> {"p3", ...} with ``output_shape()`` (each level's stride).
            pixel_mean, pixel_std: per-channel normalisation, in the input's channel order.
            input_format: channel order of the input images ("RGB" or "BGR").
            channels_last: run backbone and neck in channels_last memory format (MODEL.CHANNELS_LAST).
            amp_inference: in eval mode, run the network under autocast (bf16 on a CPU with native
                bf16, fp16 on CUDA; TEST.AMP.ENABLED); post-processing stays float32.
            compile_inference: in eval mode without autograd, run the parts ``network`` hands out
                through ``torch.compile`` with frozen weights (TEST.COMPILE.ENABLED).
        """
        super().__init__()
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"MODEL.PIXEL_MEAN {list(pixel_mean)} and MODEL.PIXEL_STD {list(pixel_std)} "
                             "must have the same length.")
        self.backbone = backbone
        self.neck = neck
        self.input_format = input_format
        strides = [int(s.stride) for s in neck.output_shape().values()]
        self.size_divisibility = max(int(getattr(backbone, "size_divisibility", 0) or 0),
                                     int(getattr(neck, "size_divisibility", 0) or 0), max(strides))
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.channels_last = bool(channels_last)
        self.amp_inference = bool(amp_inference)
        self.compile_inference = bool(compile_inference)
        self._compiled: Dict[str, tuple] = {}  # part name -> (state_version, compiled part); not a submodule
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
            self.neck.to(memory_format=torch.channels_last)

    @staticmethod
    def base_config(cfg) -> Dict:
        """The constructor arguments of the base read from ``cfg`` (subclasses' ``from_config`` add theirs)."""
        from detkit.modeling.backbone import build_backbone
        from detkit.modeling.neck import build_neck

        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "neck": build_neck(cfg, backbone.output_shape()),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "input_format": cfg.INPUT.FORMAT,
            "channels_last": cfg.MODEL.CHANNELS_LAST,
            "amp_inference": cfg.TEST.AMP.ENABLED,
            "compile_inference": cfg.TEST.COMPILE.ENABLED,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalise and pad the input images into one ImageList (channels_last if configured)."""
        return preprocess_images(batched_inputs, self.pixel_mean, self.pixel_std, self.size_divisibility,
                                 channels_last=self.channels_last)

    def extract_features(self, images: ImageList) -> Dict[str, torch.Tensor]:
        """The neck's feature maps, e.g. {"p3", "p4", "p5"}."""
        return self.network("neck")(self.network("backbone")(images.tensor))

    def network(self, name: str) -> Callable:
        """The part ``name`` ("backbone", "neck", "head") as ``forward`` should call it.

        That is the part itself, except for inference with ``TEST.COMPILE.ENABLED`` (eval mode, no
        autograd): then it is ``torch.compile(part)`` with inductor's weight freezing, compiled on
        its first call and on the first call of each new input size. Frozen weights are constants
        of the compiled code, so a change to any of them (a training step, ``load_state_dict``)
        drops every compiled graph and compiles anew.
        """
        part = getattr(self, name)
        if not (self.compile_inference and is_plain_inference(self)):
            return part
        key = state_version(part)
        cached = self._compiled.get(name)
        if cached is None or cached[0] != key:
            if cached is not None:
                torch._dynamo.reset()  # forget the graphs that hold the old weights as constants
                self._compiled.clear()
            logger.info("TEST.COMPILE: compiling the %s for inference on its first call (tens of seconds on a CPU).",
                        name)
            cached = (key, _FrozenCompiled(part))
            self._compiled[name] = cached
        return cached[1]

    def network_autocast(self):
        """The autocast context for the network: TEST.AMP's in eval mode, none in training (the
        trainer's AMPTrainer owns training autocast)."""
        if self.training or not self.amp_inference:
            return contextlib.nullcontext()
        return inference_autocast(self.device, True)

    def ground_truth(self, batched_inputs: List[Dict]) -> List[Instances]:
        """Every input's ``instances`` on the model's device; a clear error when one has none."""
        missing = [i for i, x in enumerate(batched_inputs) if "instances" not in x]
        if missing:
            ids = [batched_inputs[i].get("image_id", i) for i in missing]
            raise ValueError(f"{type(self).__name__} in training mode needs 'instances' (gt_boxes, gt_classes) in "
                             f"every input; images {ids} have none. Use DatasetMapper(cfg, is_train=True), "
                             "or call model.eval().")
        return [x["instances"].to(self.device) for x in batched_inputs]

    @staticmethod
    def postprocess(results: List[Instances], batched_inputs: List[Dict], field: str = "instances") -> List[Dict]:
        """Rescale each image's results to its input's ``height`` x ``width``: [{field: Instances}]."""
        return [{field: detector_postprocess(r, x.get("height", r.image_size[0]), x.get("width", r.image_size[1]))}
                for r, x in zip(results, batched_inputs)]
