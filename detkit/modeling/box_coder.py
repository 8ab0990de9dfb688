"""Box coders: turn boxes into regression targets and back (anchor deltas, FCOS LTRB distances).

* ``Box2BoxTransform``: detectron2's centre/size parametrisation. For a source box with centre
  (sx, sy) and size (sw, sh) and a target (tx, ty, tw, th), the deltas are
  ``dx = wx * (tx - sx) / sw``, ``dy = wy * (ty - sy) / sh``, ``dw = ww * log(tw / sw)``,
  ``dh = wh * log(th / sh)``. Decoding clamps dw, dh at ``scale_clamp``.
* ``LTRBBoxCoder``: FCOS's distances from a location (x, y) to the four sides of a box,
  ``(x - x0, y - y0, x1 - x, y1 - y)``, optionally divided by the location's stride.
* ``Box2BoxTransformLinear``: detectron2's name and interface for the same distances, seen from
  the centre of a source box and divided by its (w, h, w, h); decoding clamps them at 0 first.
* ``centerness``: FCOS's centre-ness of LTRB distances.
* ``box_regression_loss``: the summed smooth-L1 / L1 loss between predicted and target deltas
  (the RPN's and the RoI box head's).

All arithmetic runs in float32, whatever the input dtype or autocast state.
"""
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from detkit.config import configurable
from detkit.registry import Registry

__all__ = ["BOX_CODER_REGISTRY", "Box2BoxTransform", "Box2BoxTransformLinear", "LTRBBoxCoder", "centerness",
           "build_box_coder", "box_regression_loss"]

BOX_CODER_REGISTRY = Registry("BOX_CODER")
BOX_CODER_REGISTRY.__doc__ = """Box coders: encode boxes as regression targets. Built by ``build_box_coder``."""

_DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


@BOX_CODER_REGISTRY.register()
class Box2BoxTransform:
    """Encode / decode boxes as (dx, dy, dw, dh) deltas relative to source boxes (R-CNN style)."""

    @configurable
    def __init__(self, weights: Sequence[float], scale_clamp: float = _DEFAULT_SCALE_CLAMP):
        """
        Args:
            weights: (wx, wy, ww, wh) multipliers of the four deltas.
            scale_clamp: upper bound of dw and dh when decoding, so exp() cannot explode.
        """
        if len(weights) != 4:
            raise ValueError(f"Box2BoxTransform needs 4 weights (wx, wy, ww, wh), got {list(weights)}.")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = float(scale_clamp)

    @classmethod
    def from_config(cls, cfg):
        """The RPN's coder (MODEL.RPN.BBOX_REG_WEIGHTS); the RoI heads pass their own weights."""
        return {"weights": cfg.MODEL.RPN.BBOX_REG_WEIGHTS}

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """
        Args:
            src_boxes: (N, 4) XYXY source boxes (anchors or proposals).
            target_boxes: (N, 4) XYXY boxes to reach.

        Returns:
            (N, 4) float32 deltas (dx, dy, dw, dh) that turn each source box into its target.
        """
        src = src_boxes.float()
        tgt = target_boxes.float()
        wx, wy, ww, wh = self.weights
        src_w, src_h = src[:, 2] - src[:, 0], src[:, 3] - src[:, 1]  # (N,)
        src_x, src_y = src[:, 0] + 0.5 * src_w, src[:, 1] + 0.5 * src_h
        tgt_w, tgt_h = tgt[:, 2] - tgt[:, 0], tgt[:, 3] - tgt[:, 1]
        tgt_x, tgt_y = tgt[:, 0] + 0.5 * tgt_w, tgt[:, 1] + 0.5 * tgt_h
        dx = wx * (tgt_x - src_x) / src_w
        dy = wy * (tgt_y - src_y) / src_h
        dw = ww * torch.log(tgt_w / src_w)
        dh = wh * torch.log(tgt_h / src_h)
        return torch.stack((dx, dy, dw, dh), dim=1)  # (N, 4)

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """
        Args:
            deltas: (N, k*4) deltas, k boxes per source box (e.g. one per class).
            boxes: (N, 4) XYXY source boxes.

        Returns:
            (N, k*4) float32 XYXY decoded boxes.
        """
        deltas = deltas.float()
        boxes = boxes.float()
        wx, wy, ww, wh = self.weights
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]  # (N,)
        ctr_x, ctr_y = boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights

        d = deltas.reshape(deltas.shape[0], -1, 4)  # (N, k, 4)
        dx, dy = d[..., 0] / wx, d[..., 1] / wy  # (N, k)
        dw = (d[..., 2] / ww).clamp(max=self.scale_clamp)
        dh = (d[..., 3] / wh).clamp(max=self.scale_clamp)

        pred_x = dx * widths[:, None] + ctr_x[:, None]  # (N, k)
        pred_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]
        pred = torch.stack((pred_x - 0.5 * pred_w, pred_y - 0.5 * pred_h,
                            pred_x + 0.5 * pred_w, pred_y + 0.5 * pred_h), dim=-1)  # (N, k, 4)
        return pred.reshape(deltas.shape)


@BOX_CODER_REGISTRY.register()
class LTRBBoxCoder:
    """Encode boxes as (left, top, right, bottom) distances from locations, as FCOS does."""

    @configurable
    def __init__(self, normalize_by_stride: bool = True):
        """
        Args:
            normalize_by_stride: divide the distances by each location's stride (targets of a
                similar scale on every level).
        """
        self.normalize_by_stride = bool(normalize_by_stride)

    @classmethod
    def from_config(cls, cfg):
        return {"normalize_by_stride": True}

    def _scale(self, strides: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if not self.normalize_by_stride:
            return like.new_ones(())
        strides = torch.as_tensor(strides, device=like.device, dtype=torch.float32)
        return strides.unsqueeze(-1)  # (N, 1); a scalar stride also broadcasts

    def encode(self, locations: torch.Tensor, boxes: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
        """
        Args:
            locations: (..., N, 2) xy of the locations.
            boxes: (..., N, 4) XYXY box assigned to each location.
            strides: (N,) stride of each location (or a scalar / any shape broadcasting with (..., N)).

        Returns:
            (..., N, 4) float32 LTRB distances (in strides when ``normalize_by_stride``).
        """
        loc = locations.float()
        boxes = boxes.float()
        ltrb = torch.cat((loc - boxes[..., :2], boxes[..., 2:] - loc), dim=-1)  # (..., N, 4)
        return ltrb / self._scale(strides, ltrb)

    def decode(self, locations: torch.Tensor, deltas: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
        """
        Args:
            locations: (..., N, 2) xy of the locations.
            deltas: (..., N, 4) LTRB distances, as ``encode`` gives them.
            strides: (N,) stride of each location (or a scalar / any shape broadcasting with (..., N)).

        Returns:
            (..., N, 4) float32 XYXY boxes.
        """
        loc = locations.float()
        dist = deltas.float() * self._scale(strides, loc)  # (..., N, 4)
        return torch.cat((loc - dist[..., :2], loc + dist[..., 2:]), dim=-1)


@BOX_CODER_REGISTRY.register()
class Box2BoxTransformLinear:
    """detectron2's linear (FCOS) box transform: LTRB distances from the centre of a source box.

    For a source box with centre (cx, cy) and size (w, h) and a target (x0, y0, x1, y1), the deltas
    are ``(cx - x0, cy - y0, x1 - cx, y1 - cy)``, divided by ``(w, h, w, h)`` when
    ``normalize_by_size``. The centre of the source box should lie inside the target.
    ``apply_deltas`` clamps the deltas at 0 (so a decoded box is never inverted) and inverts that.
    With square source boxes of side ``stride`` centred on FCOS's locations this is
    ``LTRBBoxCoder``, whose arithmetic it uses.
    """

    @configurable
    def __init__(self, normalize_by_size: bool = True):
        """
        Args:
            normalize_by_size: divide the deltas by the source box's width (left, right) and
                height (top, bottom).
        """
        self.normalize_by_size = bool(normalize_by_size)
        self._ltrb = LTRBBoxCoder(normalize_by_stride=False)

    @classmethod
    def from_config(cls, cfg):
        return {"normalize_by_size": True}

    @staticmethod
    def _centres_and_sizes(boxes: torch.Tensor):
        centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])  # (N, 2)
        sizes = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)  # (N, 4): w, h, w, h
        return centres, sizes

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """
        Args:
            src_boxes: (N, 4) XYXY source boxes (e.g. square anchors).
            target_boxes: (N, 4) XYXY boxes to reach.

        Returns:
            (N, 4) float32 deltas (l, t, r, b) with ``apply_deltas(deltas, src_boxes) == target_boxes``.
        """
        centres, sizes = self._centres_and_sizes(src_boxes.float())
        deltas = self._ltrb.encode(centres, target_boxes, 1)  # (N, 4)
        return deltas / sizes if self.normalize_by_size else deltas

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """
        Args:
            deltas: (N, k*4) deltas, k boxes per source box (e.g. one per class); negative ones count as 0.
            boxes: (N, 4) XYXY source boxes.

        Returns:
            (N, k*4) float32 XYXY decoded boxes.
        """
        centres, sizes = self._centres_and_sizes(boxes.float())
        d = F.relu(deltas.float()).reshape(deltas.shape[0], -1, 4)  # (N, k, 4)
        if self.normalize_by_size:
            d = d * sizes[:, None, :]
        return self._ltrb.decode(centres[:, None, :], d, 1).reshape(deltas.shape)


def centerness(ltrb: torch.Tensor) -> torch.Tensor:
    """FCOS centre-ness of LTRB distances: sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b)).

    Args:
        ltrb: (..., 4) distances (l, t, r, b); rows that are all -1 mark background.

    Returns:
        (...) float32 centre-ness in [0, 1], and -1 for background rows. Negative distances
        (a location outside its box) count as 0.
    """
    ltrb = ltrb.float()
    background = (ltrb == -1).all(dim=-1)  # (...)
    d = ltrb.clamp(min=0)
    lr, tb = d[..., 0::2], d[..., 1::2]  # (..., 2) each
    ratio = (lr.min(dim=-1).values / lr.max(dim=-1).values.clamp(min=1e-12)) * \
            (tb.min(dim=-1).values / tb.max(dim=-1).values.clamp(min=1e-12))
    return torch.where(background, torch.full_like(ratio, -1.0), ratio.sqrt())


def build_box_coder(cfg, name: str, **kwargs):
    """Build the box coder ``name`` from BOX_CODER_REGISTRY.

    Args:
        cfg: the config; used (through the class's ``from_config``) only when no kwargs are given.
        name: a registered coder, e.g. "Box2BoxTransform" or "LTRBBoxCoder".
        kwargs: the constructor's arguments; when given, the config is not read.
    """
    cls = BOX_CODER_REGISTRY.get(name)
    if kwargs:
        return cls(**kwargs)
    return cls(cfg)


def box_regression_loss(pred_deltas: torch.Tensor, gt_deltas: torch.Tensor, loss_type: str,
                        smooth_l1_beta: float) -> torch.Tensor:
    """Summed smooth-L1 (``beta`` > 0) or L1 loss between (N, 4) predicted and target deltas."""
    if loss_type == "smooth_l1" and smooth_l1_beta > 0:
        return F.smooth_l1_loss(pred_deltas, gt_deltas, beta=smooth_l1_beta, reduction="sum")
    if loss_type in ("smooth_l1", "l1"):
        return F.l1_loss(pred_deltas, gt_deltas, reduction="sum")
    raise ValueError(f"Unknown box regression loss type '{loss_type}'; use 'smooth_l1' or 'l1'.")
