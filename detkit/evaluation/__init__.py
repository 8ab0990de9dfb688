"""Evaluation: the evaluator interface and inference loop, COCO and Pascal VOC evaluators, result reporting."""
from .coco_eval_backend import COCO_EVAL_BACKENDS
from .coco_evaluation import COCOEvaluator, score_coco_results
from .json_results import draw_results_file, rescore_results_file
from .evaluator import DatasetEvaluator, DatasetEvaluators, inference_context, inference_on_dataset
from .pascal_voc_evaluation import PascalVOCDetectionEvaluator
from .proposal_evaluation import evaluate_box_proposals
from .testing import print_csv_format

__all__ = ["DatasetEvaluator", "DatasetEvaluators", "inference_on_dataset", "inference_context", "COCOEvaluator",
           "PascalVOCDetectionEvaluator", "print_csv_format", "score_coco_results", "evaluate_box_proposals",
           "COCO_EVAL_BACKENDS", "rescore_results_file", "draw_results_file"]
