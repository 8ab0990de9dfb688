"""Run reports: loss curves, PR curves, confusion matrix, per-class AP, TIDE error counts and predictions, as
PNGs (matplotlib, Agg) with the numbers behind each beside it.

``write_evaluation_report`` runs after an evaluation (the Trainer calls it), ``write_loss_plot`` after
training, ``replot_run`` draws a finished run again from its files (tools/plot_metrics.py).
``match_image`` is the per-image TP / FP / missed matching behind the confusion matrix and errors.
"""
from .curves import per_class_ap, pr_curves
from .matching import TIDE_CATEGORIES, ImageMatch, confusion_matrix, error_counts, match_coco_results, match_image
from .report import (confusion_matrix_csv, replot_run, write_dataset_report, write_evaluation_report,
                     write_loss_plot)
from .training_plots import load_metrics, plot_losses

__all__ = ["TIDE_CATEGORIES", "ImageMatch", "match_image", "match_coco_results", "confusion_matrix", "error_counts",
           "pr_curves", "per_class_ap", "confusion_matrix_csv", "write_dataset_report", "write_evaluation_report",
           "write_loss_plot", "replot_run", "load_metrics", "plot_losses"]
