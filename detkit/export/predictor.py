"""ONNXPredictor: run an exported detector with ONNX Runtime, with DefaultPredictor's call and results."""
import logging
import os
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import yaml

from detkit.config import CfgNode
from detkit.structures import Boxes, Instances

from .onnx_export import INPUT_NAME, MODEL_YAML

__all__ = ["ONNXPredictor", "evaluate_onnx", "read_model_yaml"]

logger = logging.getLogger(__name__)


def _providers(available: List[str]) -> List[str]:
    """CUDA first when this onnxruntime has it, the CPU provider always."""
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


def read_model_yaml(onnx_path: str) -> Dict[str, Any]:
    """The ``model.yaml`` beside an exported ``model.onnx``: ``config``, ``class_names``, ``precision``, ...

    Raises:
        FileNotFoundError: the graph or its ``model.yaml`` is missing.
        ValueError: the ``model.yaml`` has no ``config`` section.
    """
    if not os.path.isfile(onnx_path):
        raise FileNotFoundError(f"ONNX model {onnx_path} does not exist; write it with "
                                "tools/deploy/export_model.py --format onnx --output DIR.")
    meta_path = os.path.join(os.path.dirname(os.path.abspath(onnx_path)), MODEL_YAML)
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f"{meta_path} is missing: detkit reads the config and class names from the "
                                f"{MODEL_YAML} that export_model writes beside {os.path.basename(onnx_path)}.")
    with open(meta_path) as f:
        meta = yaml.safe_load(f)
    if not isinstance(meta, dict) or "config" not in meta:
        raise ValueError(f"{meta_path} has no 'config' section; re-export the model with export_model.")
    return meta


class ONNXPredictor:
    """Run ``model.onnx`` (written by :func:`detkit.export.export_model`) on single images.

    It reads ``model.yaml`` beside the graph and, like ``DefaultPredictor``, resizes each image
    with the test transform (``INPUT.MIN_SIZE_TEST`` / ``INPUT.MAX_SIZE_TEST``) before the graph
    and rescales the boxes to the original image after it. onnxruntime's CUDA provider is used
    when it is available, its CPU provider otherwise.

    Usage::

        predictor = ONNXPredictor("export/model.onnx", num_threads=2)
        outputs = predictor(image)  # image: HxWxC uint8 numpy array in INPUT.FORMAT
        outputs["instances"].pred_boxes  # in the image's own coordinates

    Attributes:
        cfg: the config the model was exported with.
        class_names: the class names (index = ``pred_classes``).
        precision: "fp32" for an export, "int8" for a ``quantize_onnx`` copy (from ``model.yaml``).
        session: the ``onnxruntime.InferenceSession``.
    """

    def __init__(self, onnx_path: str, num_threads: Optional[int] = None):
        """
        Args:
            onnx_path: path of ``model.onnx``; ``model.yaml`` must be in the same folder.
            num_threads: onnxruntime's intra-op threads; None lets onnxruntime choose.
        """
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError("ONNXPredictor needs onnxruntime: pip install 'detkit[export]'.") from e
        from detkit.data import transforms as T

        meta = read_model_yaml(onnx_path)
        self.cfg = CfgNode(meta["config"])
        self.class_names = list(meta.get("class_names") or [])
        self.precision = str(meta.get("precision", "fp32"))
        self.input_format = self.cfg.INPUT.FORMAT
        self.aug = T.ResizeShortestEdge([self.cfg.INPUT.MIN_SIZE_TEST] * 2, self.cfg.INPUT.MAX_SIZE_TEST)
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        providers = _providers(ort.get_available_providers())
        self.session = ort.InferenceSession(onnx_path, sess_options=options, providers=providers)
        logger.info("ONNXPredictor: %s on %s", onnx_path, self.session.get_providers())

    def __call__(self, original_image: np.ndarray) -> Dict[str, Any]:
        """
        Args:
            original_image: an (H, W, C) uint8 array, channels in ``INPUT.FORMAT`` order.

        Returns:
            ``{"instances": Instances(pred_boxes, scores, pred_classes)}`` in original coordinates.
        """
        from detkit.modeling.meta_arch import detector_postprocess

        if not (isinstance(original_image, np.ndarray) and original_image.ndim == 3 and original_image.dtype == np.uint8):
            got = getattr(original_image, "shape", None), getattr(original_image, "dtype", type(original_image))
            raise ValueError(f"ONNXPredictor expects an (H, W, C) uint8 array; got shape/dtype {got}.")
        height, width = original_image.shape[:2]
        image = self.aug.get_transform(original_image).apply_image(original_image)
        boxes, scores, classes = self.session.run(None, {INPUT_NAME: np.ascontiguousarray(image)})
        result = Instances(image.shape[:2], pred_boxes=Boxes(torch.from_numpy(boxes)),
                           scores=torch.from_numpy(scores), pred_classes=torch.from_numpy(classes))
        return {"instances": detector_postprocess(result, height, width)}


def evaluate_onnx(onnx_path: str, dataset_name: str, num_threads: Optional[int] = None,
                  max_images: Optional[int] = None) -> Dict[str, Dict[str, float]]:
    """COCO metrics of an exported detector on a registered dataset, run by :class:`ONNXPredictor`.

    Args:
        onnx_path: ``model.onnx`` with its ``model.yaml``.
        dataset_name: a name in ``DatasetCatalog`` with ground truth (e.g. "shapes_val").
        num_threads: onnxruntime's intra-op threads.
        max_images: score only the first N images (None: all).

    Returns:
        ``COCOEvaluator.evaluate()``'s results, e.g. ``{"bbox": {"AP": ..., "AP50": ..., ...}}``.
    """
    from detkit.data import DatasetCatalog, read_image
    from detkit.evaluation import COCOEvaluator

    predictor = ONNXPredictor(onnx_path, num_threads=num_threads)
    evaluator = COCOEvaluator(dataset_name, output_dir=None, distributed=False)
    evaluator.reset()
    for record in DatasetCatalog.get(dataset_name)[:max_images]:
        image = read_image(record["file_name"], format=predictor.input_format, image_id=record.get("image_id"))
        evaluator.process([record], [predictor(image)])
    return evaluator.evaluate()
