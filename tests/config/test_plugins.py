"""Plugins: load by file and by module name, idempotently; add config keys; errors name the spec."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from detkit.config import get_cfg
from detkit.modeling import BACKBONE_REGISTRY, build_backbone
from detkit.config.plugins import PluginError, load_plugins

REPO = Path(__file__).resolve().parents[2]

PLUGIN = textwrap.dedent('''
    import torch
    from detkit.config import CfgNode as CN
    from detkit.modeling import BACKBONE_REGISTRY

    LOADS = globals().get("LOADS", 0) + 1

    def add_config(cfg):
        cfg.MODEL.{name} = CN()
        cfg.MODEL.{name}.WIDTH = 4

    @BACKBONE_REGISTRY.register()
    class {name}(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, cfg.MODEL.{name}.WIDTH, 3)
''')


def _plugin(tmp_path, name):
    path = tmp_path / f"{name.lower()}_plugin.py"
    path.write_text(PLUGIN.format(name=name))
    return path


def test_file_then_module_name_loads_once_and_builds_from_yaml(tmp_path, monkeypatch):
    path = _plugin(tmp_path, "PluginBackboneA")
    cfg = get_cfg()
    (mod,) = load_plugins([str(path)], cfg=cfg)
    monkeypatch.syspath_prepend(str(tmp_path))
    (again,) = load_plugins(["pluginbackbonea_plugin"], cfg=cfg)  # same file, reached by module name
    assert again is mod and mod.LOADS == 1
    assert cfg.PLUGINS == [str(path)]

    yaml_file = tmp_path / "model.yaml"
    yaml_file.write_text(f"PLUGINS: [{path.name}]\nMODEL:\n  BACKBONE:\n    NAME: PluginBackboneA\n"
                         "  PluginBackboneA:\n    WIDTH: 9\n")
    fresh = get_cfg()
    fresh.merge_from_file(str(yaml_file))  # PLUGINS is honoured before the rest of the file
    backbone = build_backbone(fresh)
    assert backbone.conv.out_channels == 9
    assert "PluginBackboneA" in BACKBONE_REGISTRY

    # The resolved config lists the plugin and loads again cleanly in a new cfg.
    dumped = tmp_path / "config.yaml"
    dumped.write_text(fresh.dump())
    reloaded = get_cfg()
    reloaded.merge_from_file(str(dumped))
    assert reloaded == fresh and mod.LOADS == 1


def test_add_config_does_not_reset_values_already_set(tmp_path):
    path = _plugin(tmp_path, "PluginBackboneB")
    cfg = get_cfg()
    load_plugins([str(path)], cfg=cfg)
    cfg.MODEL.PluginBackboneB.WIDTH = 16
    load_plugins([str(path)], cfg=cfg)
    assert cfg.MODEL.PluginBackboneB.WIDTH == 16


def test_failing_plugin_names_spec_and_cause(tmp_path):
    bad = tmp_path / "broken_plugin.py"
    bad.write_text("raise RuntimeError('boom inside plugin')\n")
    with pytest.raises(PluginError, match=r"Could not load plugin '.*broken_plugin\.py': RuntimeError: boom inside plugin"):
        load_plugins([str(bad)])
    with pytest.raises(PluginError, match=r"'no_such_detkit_plugin': ModuleNotFoundError"):
        load_plugins(["no_such_detkit_plugin"])
    with pytest.raises(PluginError, match=r"no such file: .*missing\.py"):
        load_plugins([str(tmp_path / "missing.py")])


def test_unknown_component_error_points_at_plugins():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "RegNetX400F"
    with pytest.raises(KeyError, match=r"No component named 'RegNetX400F' in the BACKBONE registry.*plugin"):
        build_backbone(cfg)


def test_list_components_shows_plugin_parts(tmp_path):
    path = _plugin(tmp_path, "PluginBackboneC")
    out = subprocess.run([sys.executable, str(REPO / "tools" / "list_components.py"), "--plugin", str(path)],
                         capture_output=True, text=True, check=True).stdout
    assert "BACKBONE_REGISTRY" in out and "META_ARCH_REGISTRY" in out
    line = next(ln for ln in out.splitlines() if "PluginBackboneC" in ln)
    assert "detkit_plugin_pluginbackbonec_plugin" in line


def test_installed_entry_point_plugins_are_loaded(tmp_path, monkeypatch):
    from detkit.config.plugins import load_installed_plugins

    (tmp_path / "entry_point_plugin_mod.py").write_text(PLUGIN.format(name="PluginBackboneD"))
    info = tmp_path / "detkit_fake_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: detkit-fake-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[detkit.plugins]\nfake = entry_point_plugin_mod\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = get_cfg()
    modules = load_installed_plugins(cfg)
    assert [m.__name__ for m in modules] == ["entry_point_plugin_mod"]
    assert "PluginBackboneD" in BACKBONE_REGISTRY and cfg.MODEL.PluginBackboneD.WIDTH == 4
