"""Plugins: modules or .py files that register components and may add config keys (the `PLUGINS` key, `--plugin`)."""
import hashlib
import importlib
import importlib.util
import logging
import os
import sys
from importlib.metadata import entry_points
from types import ModuleType
from typing import Iterable, List, Optional

logger = logging.getLogger(__name__)

__all__ = ["load_plugins", "load_installed_plugins", "PluginError", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "detkit.plugins"

# The spec that first loaded each plugin module (by module name), so one module is recorded once in cfg.PLUGINS.
_CANONICAL_SPEC = {}


class PluginError(ImportError):
    """A plugin could not be imported; the message names the spec and the cause."""


def _module_by_file(path: str) -> Optional[ModuleType]:
    """A module already imported from ``path`` (under any name), if any."""
    real = os.path.realpath(path)
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and os.path.realpath(f) == real:
            return mod
    return None


def _is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec


def _import_file(path: str) -> ModuleType:
    existing = _module_by_file(path)
    if existing is not None:
        return existing
    stem = os.path.splitext(os.path.basename(path))[0]
    name = f"detkit_plugin_{stem}_{hashlib.sha1(os.path.realpath(path).encode()).hexdigest()[:8]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_module(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    found = importlib.util.find_spec(name)
    if found is not None and found.origin and os.path.isfile(found.origin):
        existing = _module_by_file(found.origin)  # already loaded by path under another name
        if existing is not None:
            sys.modules[name] = existing
            return existing
    return importlib.import_module(name)


def _resolve(spec: str, relative_to: Optional[str]) -> str:
    """Turn a file spec into an absolute path (relative to the config file first, then the cwd)."""
    if not _is_file_spec(spec) or os.path.isabs(spec):
        return spec
    if relative_to:
        candidate = os.path.join(relative_to, spec)
        if os.path.exists(candidate):
            return os.path.abspath(candidate)
    return os.path.abspath(spec)


def _add_config(module: ModuleType, cfg) -> None:
    """Apply the plugin's ``add_config(cfg)`` without resetting keys ``cfg`` already has."""
    hook = getattr(module, "add_config", None)
    if hook is None:
        return
    scratch = cfg.clone()
    hook(scratch)
    _copy_missing(scratch, cfg)


def _copy_missing(src, dst) -> None:
    from .config import CfgNode

    for k, v in src.items():
        if k not in dst:
            dst[k] = v
        elif isinstance(v, CfgNode) and isinstance(dst[k], CfgNode):
            _copy_missing(v, dst[k])


def load_plugins(specs: Iterable[str], cfg=None, relative_to: Optional[str] = None) -> List[ModuleType]:
    """Import plugins and apply their config hooks.

    Args:
        specs: module names (``my_pkg.detkit_parts``) or paths to ``.py`` files.
        cfg: if given, each plugin's ``add_config(cfg)`` adds its keys (existing keys are kept),
            and the resolved specs are recorded in ``cfg.PLUGINS`` so a dumped config reloads them.
        relative_to: folder that relative file paths are tried against first (a config's folder).

    Returns:
        The plugin modules, in order. Loading is idempotent: a module (or a file already imported
        under any name) is never executed twice, so nothing registers twice.

    Raises:
        PluginError: naming the spec and the underlying exception when a plugin fails to import.
    """
    modules = []
    for spec in specs:
        resolved = _resolve(str(spec), relative_to)
        try:
            if _is_file_spec(resolved):
                if not os.path.isfile(resolved):
                    raise FileNotFoundError(f"no such file: {resolved}")
                module = _import_file(resolved)
            else:
                module = _import_module(resolved)
        except PluginError:
            raise
        except Exception as e:
            raise PluginError(
                f"Could not load plugin '{spec}': {type(e).__name__}: {e}. "
                "A plugin is an importable module name or a path to a .py file."
            ) from e
        logger.debug("Loaded plugin %s", resolved)
        canonical = _CANONICAL_SPEC.setdefault(module.__name__, resolved)
        if cfg is not None:
            _add_config(module, cfg)
            if "PLUGINS" in cfg and canonical not in cfg.PLUGINS:
                cfg.PLUGINS = list(cfg.PLUGINS) + [canonical]
        modules.append(module)
    return modules


def load_installed_plugins(cfg=None) -> List[ModuleType]:
    """Load every installed package's ``detkit.plugins`` entry point (a module name each)."""
    specs = [ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return load_plugins(specs, cfg=cfg)
