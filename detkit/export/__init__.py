"""Deploy: export a detector to ONNX (pre- and post-processing inside the graph) and run it with
ONNX Runtime through :class:`ONNXPredictor`, optionally quantized to int8 (:func:`quantize_onnx`).
Needs the ``export`` extra (onnx, onnxruntime, onnxscript).

A meta-architecture becomes exportable by registering an :class:`ExportGraph` subclass for it
with :func:`register_export_graph` (see :mod:`detkit.export.meta_archs`).
"""
from . import meta_archs  # noqa: F401  (registers the FCOS and GeneralizedRCNN graphs)
from .graph import EXPORT_GRAPHS, ExportGraph, batched_nms_in_graph, build_export_graph, dense_detections, \
    register_export_graph
from .onnx_export import ExportError, export_model, export_onnx
from .predictor import ONNXPredictor, evaluate_onnx, read_model_yaml
from .quantize import quantize_onnx

__all__ = ["ExportGraph", "register_export_graph", "build_export_graph", "EXPORT_GRAPHS", "dense_detections",
           "batched_nms_in_graph", "ExportError", "export_model", "export_onnx", "ONNXPredictor",
           "evaluate_onnx", "quantize_onnx", "read_model_yaml"]
