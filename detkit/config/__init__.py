"""Configuration: `get_cfg()`, `CfgNode`, the `configurable` pattern, and plugin loading."""
from .config import CfgNode, ConfigError, get_cfg
from .configurable import configurable
from .plugins import PluginError, load_installed_plugins, load_plugins

__all__ = ["CfgNode", "ConfigError", "get_cfg", "configurable", "PluginError", "load_plugins",
           "load_installed_plugins"]
