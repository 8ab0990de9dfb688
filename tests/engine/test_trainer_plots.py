"""The Trainer's plots: losses.png after training, TEST.PLOTS off, and a failing plot that only warns."""
import logging

from detkit.engine import Trainer
from detkit.evaluation.reports import report as report_module

from engine_testing import tiny_fcos_cfg


def _train(cfg):
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer


def test_losses_png_after_training_unless_plots_are_off(tmp_path):
    _train(tiny_fcos_cfg(tmp_path / "on"))
    assert (tmp_path / "on" / "plots" / "losses.png").stat().st_size > 1000
    _train(tiny_fcos_cfg(tmp_path / "off", "TEST.PLOTS", "False"))
    assert (tmp_path / "off" / "metrics.json").exists() and not (tmp_path / "off" / "plots").exists()


def test_a_plotting_error_is_a_warning_and_training_completes(tmp_path, monkeypatch, detkit_records):
    def broken(*args, **kwargs):
        raise RuntimeError("matplotlib exploded")

    monkeypatch.setattr(report_module, "plot_losses", broken)
    trainer = _train(tiny_fcos_cfg(tmp_path))
    assert trainer.completed and (tmp_path / "model_final.pth").exists()
    warnings = [r.getMessage() for r in detkit_records if r.levelno == logging.WARNING]
    assert any("'losses'" in w and "matplotlib exploded" in w for w in warnings), warnings
    assert not (tmp_path / "plots" / "losses.png").exists()
