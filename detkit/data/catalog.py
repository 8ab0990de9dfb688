"""DatasetCatalog (name -> function returning dataset dicts) and MetadataCatalog (name -> Metadata)."""
import difflib
import logging
from typing import Any, Callable, Dict, List

__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata"]

logger = logging.getLogger(__name__)


def _closest(name: str, known: List[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class _DatasetCatalog:
    """A global map from dataset name to a zero-argument function returning a list of dicts.

    The function is called on every ``get``; it is not cached, so registration stays cheap.
    """

    def __init__(self):
        self._funcs: Dict[str, Callable[[], List[dict]]] = {}

    def register(self, name: str, func: Callable[[], List[dict]]) -> None:
        if not callable(func):
            raise TypeError(f"DatasetCatalog.register('{name}', ...) needs a callable that returns a list of dicts.")
        if name in self._funcs:
            raise KeyError(f"Dataset '{name}' is already registered. Remove it first or pick another name.")
        self._funcs[name] = func

    def get(self, name: str) -> List[dict]:
        if name not in self._funcs:
            raise KeyError(
                f"Dataset '{name}' is not registered.{_closest(name, self.list())} "
                f"Registered datasets: {', '.join(self.list())}."
            )
        return self._funcs[name]()

    def list(self) -> List[str]:
        return sorted(self._funcs)

    def remove(self, name: str) -> None:
        if name not in self._funcs:
            raise KeyError(f"Dataset '{name}' is not registered.{_closest(name, self.list())}")
        self._funcs.pop(name)

    def __contains__(self, name: str) -> bool:
        return name in self._funcs


class Metadata:
    """Attributes describing a dataset (``thing_classes``, ``evaluator_type``, ``json_file``, ...).

    An attribute, once set, cannot be changed to a different value (that would silently break
    evaluation); set it again to the same value, or use ``MetadataCatalog.remove``.
    ``set_lazy(key, func)`` defers an attribute until first read (e.g. class names that need a
    JSON file read); ``meta.key``, ``meta.get(key)`` and ``hasattr`` all resolve it.
    """

    def __init__(self, name: str = "", **kwargs: Any):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_lazy", {})
        self.set(**kwargs)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") or key == "_lazy":
            raise AttributeError(key)
        lazy = self.__dict__.get("_lazy", {})
        if key in lazy:
            val = lazy.pop(key)()
            object.__setattr__(self, key, val)
            return val
        raise AttributeError(
            f"Metadata of dataset '{self.name}' has no attribute '{key}'. "
            f"It has: {', '.join(sorted(self._keys()))}."
        )

    def _keys(self) -> List[str]:
        return [k for k in self.__dict__ if k != "_lazy"] + list(self.__dict__.get("_lazy", {}))

    def __setattr__(self, key: str, val: Any) -> None:
        self.__dict__["_lazy"].pop(key, None)  # an explicit value replaces a pending lazy one
        if key in self.__dict__ and self.__dict__[key] != val:
            raise AttributeError(
                f"Metadata '{key}' of dataset '{self.name}' is already {self.__dict__[key]!r}; "
                f"refusing to change it to {val!r}."
            )
        object.__setattr__(self, key, val)

    def set(self, **kwargs: Any) -> "Metadata":
        for k, v in kwargs.items():
            setattr(self, k, v)
        return self

    def set_lazy(self, key: str, func: Callable[[], Any]) -> "Metadata":
        """Compute attribute ``key`` with ``func()`` the first time it is read (if not set before)."""
        if key not in self.__dict__:
            self.__dict__["_lazy"][key] = func
        return self

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.__dict__.get("_lazy", {}):
            return getattr(self, key)
        return self.__dict__.get(key, default) if key != "_lazy" else default

    def as_dict(self) -> Dict[str, Any]:
        """All attributes (resolving lazy ones)."""
        for key in list(self.__dict__["_lazy"]):
            getattr(self, key)
        return {k: v for k, v in self.__dict__.items() if k != "_lazy"}


class _MetadataCatalog:
    """A global map from dataset name to its ``Metadata``; ``get`` creates it on first use."""

    def __init__(self):
        self._data: Dict[str, Metadata] = {}

    def get(self, name: str) -> Metadata:
        if name not in self._data:
            self._data[name] = Metadata(name=name)
        return self._data[name]

    def list(self) -> List[str]:
        return sorted(self._data)

    def remove(self, name: str) -> None:
        self._data.pop(name, None)


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()
