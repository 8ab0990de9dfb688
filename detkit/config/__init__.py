"""Configuration: `get_cfg()`, `CfgNode`, and the `configurable` pattern."""
from .config import CfgNode, ConfigError, get_cfg
from .configurable import configurable

__all__ = ["CfgNode", "ConfigError", "get_cfg", "configurable"]
