"""`configurable`: let a constructor take plain arguments or a config, via `from_config`."""
import functools
import inspect
from typing import Any, Callable, Dict

__all__ = ["configurable"]


def _is_cfg(obj: Any) -> bool:
    from .config import CfgNode

    return isinstance(obj, CfgNode)


def _call_from_config(from_config: Callable, *args, **kwargs) -> Dict[str, Any]:
    """Call ``from_config`` with the arguments it accepts; pass the rest through unchanged."""
    params = inspect.signature(from_config).parameters
    takes_var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    if takes_var_kw:
        return from_config(*args, **kwargs)
    accepted = {k: v for k, v in kwargs.items() if k in params}
    extra = {k: v for k, v in kwargs.items() if k not in params}
    out = from_config(*args, **accepted)
    out.update(extra)
    return out


def configurable(init_func: Callable) -> Callable:
    """Decorate ``__init__`` so the class can be built from plain arguments or from a config.

    ``MyPart(a=1, b=2)`` calls ``__init__`` as usual. ``MyPart(cfg, extra=...)`` (or
    ``MyPart(cfg=cfg, ...)``) first calls ``MyPart.from_config(cfg, extra=...)``, a classmethod
    that returns the keyword arguments for ``__init__``; keywords it does not accept are passed
    straight to ``__init__``.
    """
    if init_func.__name__ != "__init__":
        raise TypeError("@configurable decorates a class's __init__ method.")

    @functools.wraps(init_func)
    def wrapped(self, *args, **kwargs):
        cfg_given = (args and _is_cfg(args[0])) or _is_cfg(kwargs.get("cfg"))
        if not cfg_given:
            return init_func(self, *args, **kwargs)
        from_config = getattr(type(self), "from_config", None)
        if from_config is None or not inspect.ismethod(from_config):
            raise TypeError(f"{type(self).__name__} was given a config but has no classmethod from_config(cls, cfg, ...).")
        explicit = _call_from_config(from_config, *args, **kwargs)
        init_func(self, **explicit)

    return wrapped
