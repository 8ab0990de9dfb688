"""export_model: a config's trained detector to ``model.onnx`` + ``model.yaml`` with torch's ONNX exporter.

The model (``MODEL.WEIGHTS`` loaded, eval mode, float32, CPU) is wrapped in its meta-architecture's
:class:`~detkit.export.graph.ExportGraph` and captured with ``torch.export`` (non-strict) with a
dynamic height and width; the program is translated by ``torch.onnx.export(..., dynamo=True)``
(onnxscript's torchlib: ``torchvision.ops.nms`` becomes ``NonMaxSuppression``,
``roi_align`` becomes ``RoiAlign``). The two steps are run separately so a failure can be blamed
on the part of the model that caused it (:class:`ExportError` names the module and its class, and
the operator when one has no ONNX translation) instead of surfacing an exporter traceback.

``model.yaml`` holds what a runtime needs besides the graph: the resolved config (test-time
resize, input format), the class names and the graph's input and outputs.
"""
import logging
import os
from typing import Dict, List, Optional, Tuple

import torch
import yaml
from torch import nn

from .graph import ExportGraph, build_export_graph

__all__ = ["ExportError", "export_model", "export_onnx", "class_names_of", "MODEL_YAML"]

logger = logging.getLogger(__name__)

MODEL_YAML = "model.yaml"
INPUT_NAME = "image"
OUTPUT_NAMES = ["boxes", "scores", "classes"]
_CORE_NAMESPACES = {"aten", "prims", "torchvision", "higher_order", "_operator", "builtins", "math"}


class ExportError(RuntimeError):
    """A model (or a part of it) that torch's ONNX exporter cannot export."""


def _module_names(graph: ExportGraph) -> Dict[int, Tuple[str, nn.Module]]:
    """id(module) -> (its name in the detector, e.g. "backbone.stem", the module) for every submodule."""
    return {id(m): (name or type(m).__name__, m) for name, m in graph.model.named_modules()}


def _exception_chain(exc: BaseException) -> List[BaseException]:
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        out.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return out


def _culprit_from_traceback(exc: BaseException, names: Dict[int, Tuple[str, nn.Module]]) -> Optional[str]:
    """The innermost detector module whose code was running when ``exc`` was raised, and the line."""
    best = None
    for e in _exception_chain(exc):
        tb = e.__traceback__
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            if owner is not None and id(owner) in names:
                name, module = names[id(owner)]
                best = (f"module '{name}' ({type(module).__qualname__}), at "
                        f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}")
            tb = tb.tb_next
        if best:
            return best
    return None


def _foreign_ops(program) -> List[str]:
    """Operators outside torch's and torchvision's own namespaces in an exported program, each with
    the module that called it (from the nodes' ``nn_module_stack``)."""
    found = []
    for node in program.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        namespace = node.target.namespace
        if namespace in _CORE_NAMESPACES:
            continue
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        where = ""
        if stack:
            path, cls = stack[-1]
            path = path.replace("L['self'].", "").replace("model.", "", 1)
            cls = getattr(cls, "__qualname__", None) or str(cls).rsplit(".", 1)[-1]
            where = f" in module '{path}' ({cls})"
        found.append(f"operator '{node.target.name()}'{where}")
    return sorted(set(found))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def export_onnx(model: nn.Module, path: str, sample_hw: Tuple[int, int], opset: Optional[int] = None) -> str:
    """Export ``model`` (a detkit meta-architecture) to ONNX at ``path``.

    Args:
        model: the detector; it is exported in eval mode, float32, on the CPU.
        path: the ``.onnx`` file to write.
        sample_hw: the size of the (random) sample image traced; any size runs afterwards.
        opset: ONNX opset; None lets the exporter choose.

    Returns:
        ``path``.

    Raises:
        ExportError: naming the module (and operator) that cannot be exported.
    """
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 6):
        raise ExportError(f"ONNX export needs torch >= 2.6 (torch.export and the dynamo ONNX exporter); this is "
                          f"torch {torch.__version__}.")
    model = model.to("cpu").float().eval()
    graph = build_export_graph(model).eval()
    names = _module_names(graph)
    height, width = int(sample_hw[0]), int(sample_hw[1])
    channels = int(model.pixel_mean.numel())
    sample = torch.randint(0, 256, (height, width, channels), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    # Above one stride of padding, every feature map has at least 2 cells (torch.export refuses
    # a range where a map could be 1 wide: broadcasting would change meaning there).
    smallest = int(model.size_divisibility) + 1
    dims = {0: torch.export.Dim("height", min=smallest, max=8192),
            1: torch.export.Dim("width", min=smallest, max=8192)}
    arch = type(model).__name__
    logger.info("Capturing %s with torch.export (dynamic height and width) ...", arch)
    try:
        with torch.no_grad():
            program = torch.export.export(graph, (sample,), dynamic_shapes=({**dims},), strict=False)
    except Exception as e:  # the user's module (a custom layer) or an unsupported construct
        where = _culprit_from_traceback(e, names) or f"meta-architecture {arch}"
        raise ExportError(f"ONNX export of {arch} failed in {where}: torch.export cannot capture it "
                          f"({type(e).__name__}: {_first_line(e)}). Rewrite that part with torch operators "
                          "(no Python values read from tensors, no numpy), or give its custom operator a fake "
                          "(meta) kernel and an ONNX translation.") from e
    foreign = _foreign_ops(program)
    logger.info("Translating %s to ONNX ...", arch)
    try:
        torch.onnx.export(program, (sample,), path, dynamo=True, input_names=[INPUT_NAME], output_names=OUTPUT_NAMES,
                          opset_version=opset, optimize=True, verbose=False, report=False)
    except Exception as e:
        parts = "; ".join(foreign) if foreign else f"meta-architecture {arch} ({type(e).__name__}: {_first_line(e)})"
        raise ExportError(f"ONNX export of {arch} failed: no ONNX translation for {parts}. "
                          "Replace that layer with torch operators, or "
                          "register an ONNX translation for the operator (torch.onnx.export's custom_translation_table)."
                          ) from e
    logger.info("Wrote %s", path)
    return path


def class_names_of(cfg) -> List[str]:
    """The class names of the config's test (else training) dataset, from its metadata; [] if unknown."""
    from detkit.data import MetadataCatalog

    names = list(cfg.DATASETS.TEST) or list(cfg.DATASETS.TRAIN)
    if not names:
        return []
    return list(getattr(MetadataCatalog.get(names[0]), "thing_classes", None) or [])


def _sample_hw(cfg) -> Tuple[int, int]:
    """A sample size like the test images: the shortest edge at INPUT.MIN_SIZE_TEST, 4:3, within MAX_SIZE_TEST."""
    short = int(cfg.INPUT.MIN_SIZE_TEST) or 320
    long = int(round(short * 4 / 3))
    if cfg.INPUT.MAX_SIZE_TEST and long > cfg.INPUT.MAX_SIZE_TEST:
        long = int(cfg.INPUT.MAX_SIZE_TEST)
    return short, long


def export_model(cfg, output_dir: str, fmt: str = "onnx") -> str:
    """Export the detector of ``cfg`` (with ``MODEL.WEIGHTS``) to ``output_dir``.

    Writes ``output_dir/model.onnx`` (see :mod:`detkit.export.graph` for its input and outputs)
    and ``output_dir/model.yaml`` (``config``: the resolved config, ``class_names``, ``input``,
    ``outputs``), which :class:`~detkit.export.ONNXPredictor` reads.

    Args:
        cfg: a config whose ``MODEL.META_ARCHITECTURE`` has an export graph.
        output_dir: the folder to write (created if needed).
        fmt: "onnx" (the only format).

    Returns:
        The path of ``model.onnx``.
    """
    from detkit.checkpoint import DetectionCheckpointer
    from detkit.modeling import build_model

    if fmt != "onnx":
        raise ValueError(f"Unknown export format '{fmt}'; use 'onnx'.")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model, save_to_disk=False).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting a randomly initialised model.")
    if cfg.TEST.AMP.ENABLED:
        logger.info("TEST.AMP.ENABLED is set; the exported graph runs in float32.")
    os.makedirs(output_dir, exist_ok=True)
    path = export_onnx(model, os.path.join(output_dir, "model.onnx"), _sample_hw(cfg))
    meta = {
        "config": yaml.safe_load(cfg.dump()),
        "class_names": class_names_of(cfg),
        "precision": "fp32",
        "input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "HWC", "format": cfg.INPUT.FORMAT,
                  "note": "resized with INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST before the graph"},
        "outputs": {"boxes": "(N, 4) float32 XYXY in the input image's pixels", "scores": "(N,) float32",
                    "classes": "(N,) int64, 0-based indices into class_names"},
    }
    with open(os.path.join(output_dir, MODEL_YAML), "w") as f:
        yaml.safe_dump(meta, f, sort_keys=False)
    return path

