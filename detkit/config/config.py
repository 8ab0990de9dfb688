"""CfgNode: fvcore's config node with `_BASE_` inheritance, safe YAML and precise merge errors."""
import difflib
import os
from typing import Any, Dict, List, Tuple

import yaml
from fvcore.common.config import CfgNode as _FvcoreCfgNode
from iopath.common.file_io import g_pathmgr

from detkit.utils.nested import flatten_dict

__all__ = ["CfgNode", "get_cfg", "ConfigError"]

BASE_KEY = "_BASE_"
VERSION_KEY = "VERSION"
_VERSION = 2  # detectron2's current config format, the only one detkit reads


class ConfigError(ValueError):
    """A config file or override could not be applied; the message says where and why."""


def _deep_update(dst: Dict[str, Any], src: Dict[str, Any]) -> None:
    """Merge nested dict ``src`` into ``dst``; values of ``src`` win."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


def _coerce(key: str, new: Any, old: Any, where: str) -> Any:
    """Return ``new`` converted to the type of ``old``, or raise a ConfigError naming both types."""
    if old is None or new is None or type(new) is type(old):
        return new
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return type(old)(new)
    if isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
        return float(new)
    raise ConfigError(
        f"Type mismatch for config key '{key}' ({where}): the default is "
        f"{type(old).__name__} ({old!r}) but got {type(new).__name__} ({new!r}). "
        f"Give a value of type {type(old).__name__}."
    )


class CfgNode(_FvcoreCfgNode):
    """A config node. See ``get_cfg`` for a fresh copy of the defaults.

    Compared with fvcore's: YAML is always loaded safely, ``_BASE_`` chains are checked for
    cycles, and unknown keys or wrong types raise a ``KeyError`` / ``ConfigError`` that names the
    full key, the file (or override) it came from, and the closest valid key.

    As in yacs, ``set_new_allowed(True)`` lets a merged file or config add keys the node lacks
    (command-line overrides still only change existing keys); the added groups accept new keys too.
    detectron2's ``VERSION: 2`` is accepted; another version is refused, as detkit cannot upgrade it.
    """

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False,
                            _stack: Tuple[str, ...] = ()) -> Dict[str, Any]:
        """Load a YAML file and the ``_BASE_`` files it names, bases first.

        Returns a dict whose leaves are ``(value, source_file)`` pairs wrapped in ``_Sourced``.
        """
        if allow_unsafe:
            raise ConfigError("detkit loads config files with yaml.safe_load only; allow_unsafe is not supported.")
        path = os.path.abspath(os.path.expanduser(filename)) if "://" not in filename else filename
        if path in _stack:
            chain = " -> ".join(list(_stack) + [path])
            raise ConfigError(f"Cycle in {BASE_KEY} chain: {chain}. Remove one of these {BASE_KEY} entries.")
        if not g_pathmgr.exists(path):
            where = f" (named in {BASE_KEY} of {_stack[-1]})" if _stack else ""
            raise FileNotFoundError(f"Config file not found: {path}{where}.")
        with g_pathmgr.open(path, "r") as f:
            try:
                data = yaml.safe_load(f)
            except yaml.constructor.ConstructorError as e:
                raise ConfigError(
                    f"Config file {path} uses a YAML tag that safe loading refuses ({e.problem}). "
                    "detkit never executes code from config files; write plain values instead."
                ) from None
            except yaml.YAMLError as e:
                raise ConfigError(f"Config file {path} is not valid YAML: {e}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"Config file {path} must hold a mapping of keys, got {type(data).__name__}.")
        data = _mark_source(data, path)
        bases = data.pop(BASE_KEY, None)
        if bases is None:
            return data
        bases = bases.value if isinstance(bases, _Sourced) else bases
        merged: Dict[str, Any] = {}
        for base in [bases] if isinstance(bases, str) else list(bases):
            base = os.path.expanduser(base)
            if not os.path.isabs(base) and "://" not in base:
                base = os.path.join(os.path.dirname(path), base)
            _deep_update(merged, cls.load_yaml_with_base(base, _stack=_stack + (path,)))
        _deep_update(merged, data)
        return merged

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a YAML file (and its ``_BASE_`` chain) into this config.

        The YAML itself is read with ``yaml.safe_load``: a ``!!python/...`` tag is refused, so the
        file's data cannot construct Python objects. But a ``PLUGINS`` list in the file *is* code:
        the modules and ``.py`` files it names are imported (and run) first, so the file may use the
        keys they add. Merge only config files whose plugins you trust.
        """
        data = self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe)
        plugins = data.pop("PLUGINS", None)
        if plugins is not None:
            from .plugins import load_plugins

            specs = plugins.value
            if isinstance(specs, str):
                specs = [specs]
            load_plugins(specs, cfg=self, relative_to=os.path.dirname(plugins.source))
        self._merge_sourced(data, prefix="", root=self)

    def merge_from_other_cfg(self, cfg_other: "CfgNode") -> None:
        if BASE_KEY in cfg_other:
            raise ConfigError(f"The key '{BASE_KEY}' can only be used in config files.")
        self._merge_sourced(_mark_source(cfg_other, "another config"), prefix="", root=self)

    def merge_from_list(self, cfg_list: List[str]) -> None:
        """Apply ``["KEY.PATH", "value", ...]`` overrides; values are parsed as Python literals."""
        if len(cfg_list) % 2 != 0:
            raise ConfigError(
                f"Config overrides must come in KEY VALUE pairs; got {len(cfg_list)} items: {cfg_list}. "
                "Check for a missing value."
            )
        for key, raw in zip(cfg_list[0::2], cfg_list[1::2]):
            if key == BASE_KEY:
                raise ConfigError(f"The key '{BASE_KEY}' can only be used in config files.")
            node, parts = self, key.split(".")
            for i, part in enumerate(parts):
                if not isinstance(node, CfgNode) or part not in node:
                    _unknown_key(self, ".".join(parts[: i + 1]), "the command-line overrides")
                if i < len(parts) - 1:
                    node = node[part]
            value = CfgNode._decode_cfg_value(raw)
            if key == VERSION_KEY:
                _check_version(value, "the command-line overrides")
            if key == "PLUGINS":
                from .plugins import load_plugins

                load_plugins([value] if isinstance(value, str) else list(value), cfg=self)
                continue
            old = node[parts[-1]]
            if isinstance(old, CfgNode):
                raise ConfigError(f"'{key}' is a group of keys, not a value; override one of its keys instead.")
            node[parts[-1]] = _coerce(key, value, old, "command-line overrides")

    # -- internals -------------------------------------------------------------------------

    def _merge_sourced(self, data: Dict[str, Any], prefix: str, root: "CfgNode") -> None:
        for k, v in data.items():
            full = prefix + k
            if full == VERSION_KEY and isinstance(v, _Sourced):
                _check_version(v.value, v.source)
            if k not in self:
                if not self.is_new_allowed():
                    _unknown_key(root, full, _first_source(v))
                self[k] = _unsourced(v, new_allowed=True)
                continue
            old = self[k]
            if isinstance(old, CfgNode):
                if not isinstance(v, dict):
                    raise ConfigError(
                        f"Config key '{full}' ({_first_source(v)}) is a group of keys, "
                        f"but the file gives it a single value ({v.value!r})."
                    )
                old._merge_sourced(v, full + ".", root)
            else:
                if isinstance(v, dict):
                    raise ConfigError(
                        f"Config key '{full}' ({_first_source(v)}) is a single value, but the file gives it sub-keys."
                    )
                value = v.value
                if isinstance(value, str) and not isinstance(old, str):
                    # detectron2 configs write tuples as strings, e.g. MIN_SIZE_TRAIN: (640, 672).
                    value = CfgNode._decode_cfg_value(value)
                self[k] = _coerce(full, value, old, v.source)


class _Sourced:
    """A config value remembered together with the file it came from."""

    __slots__ = ("value", "source")

    def __init__(self, value: Any, source: str):
        self.value, self.source = value, source


def _mark_source(node: Dict[str, Any], source: str) -> Dict[str, Any]:
    return {k: (_mark_source(v, source) if isinstance(v, dict) else _Sourced(v, source)) for k, v in node.items()}


def _unsourced(v: Any, new_allowed: bool) -> Any:
    """A merged value without its sources: sub-dicts become CfgNodes; strings are decoded as yacs does."""
    if isinstance(v, dict):
        node = CfgNode(new_allowed=new_allowed)
        for k, x in v.items():
            node[k] = _unsourced(x, new_allowed)
        return node
    return CfgNode._decode_cfg_value(v.value) if isinstance(v.value, str) else v.value


def _check_version(value: Any, where: str) -> None:
    if value != _VERSION:
        raise ConfigError(
            f"Config key '{VERSION_KEY}' is {value!r} (from {where}); detkit reads detectron2's version-{_VERSION} "
            f"configs only. Write '{VERSION_KEY}: {_VERSION}' (or drop the key) after porting the file to version "
            f"{_VERSION}, e.g. with detectron2's config upgrade."
        )


def _first_source(v: Any) -> str:
    while isinstance(v, dict):
        if not v:
            return "a config file"
        v = next(iter(v.values()))
    return v.source


def _unknown_key(root: CfgNode, full_key: str, where: str) -> None:
    """Raise a KeyError naming the unknown key, where it came from, and the closest valid key."""
    valid = list(flatten_dict(root).keys())
    groups = {k.rsplit(".", i)[0] for k in valid for i in range(1, k.count(".") + 1)}
    close = difflib.get_close_matches(full_key, valid + sorted(groups), n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise KeyError(
        f"Unknown config key '{full_key}' (from {where}).{hint} "
        "See detkit/config/defaults.py for every key; a plugin's keys exist only once it is loaded."
    )


def get_cfg() -> CfgNode:
    """A fresh, mutable copy of detkit's default config (``detkit/config/defaults.py``)."""
    from .defaults import _C

    return _C.clone()
