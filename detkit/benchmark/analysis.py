"""Model analysis as tables: parameter counts and fvcore FLOPs per module."""
from typing import List

import torch

__all__ = ["flop_table", "parameter_table", "roofline_table", "ANALYSIS_TASKS"]

ANALYSIS_TASKS = ("parameter", "flop", "structure", "roofline")


class _FlatOutputs(torch.nn.Module):
    """Wrap a detector so it takes one (3, H, W) uint8 image tensor and returns plain tensors
    (boxes, scores, classes), which is what fvcore's jit-based FLOP counter can trace."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        h, w = int(image.shape[-2]), int(image.shape[-1])
        inst = self.model([{"image": image, "height": h, "width": w}])[0]["instances"]
        return inst.pred_boxes.tensor, inst.scores, inst.pred_classes


def _images(cfg, n: int) -> List[torch.Tensor]:
    """``n`` test images of DATASETS.TEST[0] (as the test loader makes them), or random images of
    INPUT.MIN_SIZE_TEST px when no test set is configured."""
    if cfg.DATASETS.TEST:
        from detkit.data import build_detection_test_loader

        out = []
        for batch in build_detection_test_loader(cfg, cfg.DATASETS.TEST[0]):
            out.extend(x["image"] for x in batch)
            if len(out) >= n:
                return out[:n]
        return out
    side = cfg.INPUT.MIN_SIZE_TEST or 512
    return [torch.randint(0, 256, (3, side, side), dtype=torch.uint8) for _ in range(n)]


def _flop_analysis(model, image: torch.Tensor):
    from fvcore.nn import FlopCountAnalysis

    with torch.no_grad():
        flops = FlopCountAnalysis(_FlatOutputs(model).eval(), (image,))
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops.total()  # runs the trace inside no_grad
    return flops


def flop_table(cfg, model, num_inputs: int = 1) -> str:
    """fvcore's FLOP table of ``model`` on the first test image, and the mean total over ``num_inputs`` images."""
    from fvcore.nn import flop_count_table

    tables, totals = [], []
    for i, image in enumerate(_images(cfg, num_inputs)):
        flops = _flop_analysis(model, image)
        totals.append(flops.total())
        if i == 0:
            tables.append(f"FLOPs per module (image 0, {tuple(image.shape)}):\n"
                          + flop_count_table(flops, max_depth=4))
            skipped = flops.unsupported_ops()
            if skipped:
                counted = ", ".join(f"{k} x{v}" for k, v in sorted(skipped.items()))
                tables.append("Operators not counted: " + counted)
    mean = sum(totals) / len(totals)
    tables.append(f"Total GFLOPs: {mean / 1e9:.3f} (mean over {len(totals)} image(s); fvcore counts one "
                  "multiply-add as one flop)")
    return "\n".join(tables)


def parameter_table(model, max_depth: int = 3) -> str:
    """fvcore's parameter count per module, to ``max_depth``."""
    from fvcore.nn import parameter_count_table

    return "Parameters per module:\n" + parameter_count_table(model, max_depth=max_depth)


def roofline_table(cfg, model) -> str:
    """The model's inference time on the first test image against its FLOPs at this CPU's measured
    conv throughput (:func:`detkit.benchmark.roofline.roofline_report`)."""
    from .roofline import roofline_report

    image = _images(cfg, 1)[0]
    return "Physical limit:\n" + roofline_report(model, image, _flop_analysis(model, image).total())
