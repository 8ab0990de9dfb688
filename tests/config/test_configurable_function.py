"""@configurable on a function, as detectron2's loaders use it: (cfg, ...) or plain keyword arguments."""
import pytest

from detkit.config import configurable, get_cfg


def _from_config(cfg, scale=1, *, offset=0):
    return {"total": cfg.SOLVER.IMS_PER_BATCH * scale + offset, "label": "cfg"}


@configurable(from_config=_from_config)
def build(*, total, label="plain", extra=None):
    return total, label, extra


def test_function_called_with_a_config_or_plain_arguments():
    cfg = get_cfg()
    cfg.SOLVER.IMS_PER_BATCH = 4
    assert build(cfg) == (4, "cfg", None)
    assert build(cfg, 3, offset=1) == (13, "cfg", None)
    assert build(cfg=cfg, scale=2) == (8, "cfg", None)
    assert build(cfg, extra="x") == (4, "cfg", "x")  # keywords from_config does not take go to the function
    assert build(total=7) == (7, "plain", None)
    assert build.from_config is _from_config and build.__name__ == "build"


def test_function_form_needs_from_config():
    with pytest.raises(TypeError, match="needs from_config="):
        configurable()
