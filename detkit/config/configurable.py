"""`configurable`: let a constructor take plain arguments or a config, via `from_config`."""
import functools
import inspect
from typing import Any, Callable, Dict, Optional

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


def configurable(init_func: Optional[Callable] = None, *, from_config: Optional[Callable] = None) -> Callable:
    """Let a constructor, or a function, be called with plain arguments or with a config.

    On ``__init__`` (``@configurable``): ``MyPart(a=1, b=2)`` calls ``__init__`` as usual.
    ``MyPart(cfg, extra=...)`` (or ``MyPart(cfg=cfg, ...)``) first calls
    ``MyPart.from_config(cfg, extra=...)``, a classmethod that returns the keyword arguments for
    ``__init__``; keywords it does not accept are passed straight to ``__init__``.

    On a function (``@configurable(from_config=func_from_config)``), as in detectron2: a call
    whose first argument (or ``cfg=``) is a config runs ``func_from_config(cfg, ...)`` and calls
    the function with the keyword arguments it returns; any other call goes straight through.
    """
    if init_func is None:
        if from_config is None:
            raise TypeError("@configurable on a function needs from_config=, e.g. "
                            "@configurable(from_config=_loader_from_config).")
        return lambda func: _configurable_function(func, from_config)
    if from_config is not None:
        raise TypeError("@configurable on __init__ takes no from_config=; define a classmethod from_config instead.")
    if init_func.__name__ != "__init__":
        raise TypeError("@configurable decorates a class's __init__ method "
                        "(or a function, as @configurable(from_config=...)).")

    @functools.wraps(init_func)
    def wrapped(self, *args, **kwargs):
        if not _cfg_given(args, kwargs):
            return init_func(self, *args, **kwargs)
        from_config = getattr(type(self), "from_config", None)
        if from_config is None or not inspect.ismethod(from_config):
            raise TypeError(f"{type(self).__name__} was given a config but has no classmethod from_config(cls, cfg, ...).")
        explicit = _call_from_config(from_config, *args, **kwargs)
        init_func(self, **explicit)

    return wrapped


def _cfg_given(args: tuple, kwargs: dict) -> bool:
    return bool((args and _is_cfg(args[0])) or _is_cfg(kwargs.get("cfg")))


def _configurable_function(func: Callable, from_config: Callable) -> Callable:
    if not callable(from_config) or inspect.isclass(func):
        raise TypeError("@configurable(from_config=...) decorates a function and takes a callable from_config.")

    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        if not _cfg_given(args, kwargs):
            return func(*args, **kwargs)
        return func(**_call_from_config(from_config, *args, **kwargs))

    wrapped.from_config = from_config
    return wrapped
