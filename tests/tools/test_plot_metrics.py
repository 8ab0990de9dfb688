"""OUTPUT_DIR/plots after train_net.py (training and --eval-only), and tools/plot_metrics.py redrawing them."""
import shutil

import numpy as np
from PIL import Image

from detkit.evaluation.reports import load_metrics, plot_losses
from tools_testing import run_tool

DATASET_PLOTS = ("pr_curves", "confusion_matrix", "per_class_ap", "errors", "predictions")


def _assert_picture(path):
    """The PNG exists, decodes, and is not one flat colour."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100, path
    assert pixels.std() > 5, f"{path} is blank"


def _assert_all_plots(plots):
    _assert_picture(plots / "losses.png")
    for name in DATASET_PLOTS:
        _assert_picture(plots / "shapes_tools_val" / f"{name}.png")
    for name in ("pr_curves.json", "confusion_matrix.csv", "errors.json"):
        assert (plots / "shapes_tools_val" / name).stat().st_size > 0, name


def test_train_net_writes_every_plot(trained_run):
    _, out, stdout = trained_run
    _assert_all_plots(out / "plots")
    assert "Could not write the plot" not in stdout
    csv_lines = (out / "plots" / "shapes_tools_val" / "confusion_matrix.csv").read_text().splitlines()
    assert csv_lines[0] == "true\\pred,square,circle,triangle,background"
    assert [line.split(",")[0] for line in csv_lines[1:]] == ["square", "circle", "triangle", "background"]


def test_eval_only_writes_every_plot(trained_run, tmp_path):
    cfg, out, _ = trained_run
    run = tmp_path / "run"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("plots"))
    proc = run_tool("train_net.py", "--config", run / "config.yaml", "--eval-only",
                    "MODEL.WEIGHTS", run / "model_final.pth", "OUTPUT_DIR", run)
    _assert_all_plots(run / "plots")
    assert "Could not write the plot" not in proc.stdout
    name = "shapes_tools_val/pr_curves.json"
    assert (run / "plots" / name).read_text() == (out / "plots" / name).read_text()


def test_plot_metrics_redraws_a_run_and_overlays_several(trained_run, tmp_path):
    _, out, _ = trained_run
    runs = []
    for label in ("run_a", "run_b"):
        shutil.copytree(out, tmp_path / label, ignore=shutil.ignore_patterns("plots", "*.pth"))
        runs.append(tmp_path / label)
    proc = run_tool("plot_metrics.py", *runs, "--output", tmp_path / "compare")
    assert "wrote 13 plots" in proc.stdout  # 6 per run (losses and 5 of the dataset) and the overlay
    for run in runs:
        _assert_all_plots(run / "plots")
        for name in ("pr_curves.json", "confusion_matrix.csv", "errors.json"):
            path = f"plots/shapes_tools_val/{name}"
            assert (run / path).read_text() == (out / path).read_text(), name
    _assert_picture(tmp_path / "compare" / "losses.png")


def test_overlaid_losses_are_labelled_by_run(trained_run, tmp_path):
    _, out, _ = trained_run
    records = load_metrics(str(out / "metrics.json"))
    legends = plot_losses({"run_a": records, "run_b": records}, str(tmp_path / "losses.png"))
    assert legends["total_loss"] == ["run_a", "run_b"]
    assert legends["box AP per evaluation"] == ["run_a: AP", "run_a: AP50", "run_b: AP", "run_b: AP50"]
    assert {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"} <= set(legends)
    single = plot_losses({"out": records}, str(tmp_path / "single.png"))
    assert single["total_loss"] == ["smoothed"]
