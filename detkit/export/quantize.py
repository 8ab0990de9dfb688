"""int8 post-training quantization of an exported detector, with ONNX Runtime's static quantizer.

Opt-in, and only for ONNX Runtime: ``quantize_onnx`` rewrites the convolutions and matrix products
of a ``model.onnx`` written by :func:`detkit.export.export_model` to int8 (QDQ format, weights per
output channel, activations per tensor from min/max seen on calibration images). Decoding, top-k,
NMS and RoIAlign stay float32. The result is a folder that :class:`ONNXPredictor` runs as it runs
the float32 one. Whether the accuracy holds is the user's to check on their own data (``tools/
deploy/quantize_onnx.py --evaluate`` scores both models with the COCO evaluator).
"""
import logging
import os
from typing import Iterator, Sequence

import numpy as np
import yaml

from .onnx_export import INPUT_NAME, MODEL_YAML
from .predictor import read_model_yaml

__all__ = ["quantize_onnx", "QUANTIZED_OPS"]

logger = logging.getLogger(__name__)

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


def _resized(cfg, images: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """Each image after the test resize (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``) that ONNXPredictor applies."""
    from detkit.data.detection_utils import build_augmentation

    (aug,) = build_augmentation(cfg, is_train=False)
    for image in images:
        yield np.ascontiguousarray(aug.get_transform(image).apply_image(image))


def quantize_onnx(onnx_path: str, output_dir: str, calibration_images: Sequence[np.ndarray],
                  per_channel: bool = True) -> str:
    """Write an int8 copy of an exported detector to ``output_dir``.

    Args:
        onnx_path: ``model.onnx`` written by ``export_model`` (``model.yaml`` beside it).
        output_dir: folder for the quantized ``model.onnx`` and its ``model.yaml`` (the export's, with
            ``precision: int8`` and a ``quantization`` section).
        calibration_images: (H, W, C) uint8 arrays in ``INPUT.FORMAT``, e.g. a few dozen training
            images; they are resized as ``ONNXPredictor`` resizes.
        per_channel: one weight scale per output channel (else one per tensor).

    Returns:
        The path of the quantized ``model.onnx``.
    """
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError as e:
        raise ImportError("quantize_onnx needs onnxruntime: pip install 'detkit[export]'.") from e
    from detkit.config import CfgNode

    if not calibration_images:
        raise ValueError("quantize_onnx needs at least one calibration image.")
    meta = read_model_yaml(onnx_path)
    if meta.get("precision", "fp32") != "fp32":
        raise ValueError(f"{onnx_path} is already {meta['precision']} (its {MODEL_YAML}); quantize the float32 export.")
    cfg = CfgNode(meta["config"])  # its test resize

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._images = _resized(cfg, calibration_images)

        def get_next(self):
            image = next(self._images, None)
            return None if image is None else {INPUT_NAME: image}

    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "model.onnx")
    if os.path.abspath(path) == os.path.abspath(onnx_path):
        raise ValueError(f"quantize_onnx would overwrite its input {onnx_path}; give another output_dir.")
    quantize_static(onnx_path, path, _Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
                    per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    meta["precision"] = "int8"
    meta["quantization"] = {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                            "ops": list(QUANTIZED_OPS), "weights": "int8, per channel" if per_channel else "int8",
                            "activations": "uint8, per tensor, min/max", "calibration_images": len(calibration_images)}
    with open(os.path.join(output_dir, MODEL_YAML), "w") as f:
        yaml.safe_dump(meta, f, sort_keys=False)
    logger.info("quantize_onnx: wrote %s (int8 %s, %d calibration images)", path, "/".join(QUANTIZED_OPS),
                len(calibration_images))
    return path
