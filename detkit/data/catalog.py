"""DatasetCatalog (name -> function returning dataset dicts) and MetadataCatalog (name -> Metadata)."""
import difflib
import logging
from collections import UserDict
from typing import Any, Callable, Dict, List

__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata", "CatalogError", "MetadataConflictError"]

logger = logging.getLogger(__name__)


def _closest(name: str, known: List[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class CatalogError(KeyError, AssertionError):
    """A catalog misuse (a name registered twice, an unknown name to remove).

    It is a ``KeyError`` (detkit's contract) and an ``AssertionError`` (what detectron2 raises
    for a duplicate registration), so code written for either catches it.
    """

    def __str__(self) -> str:  # KeyError would print the message inside quotes
        return str(self.args[0]) if self.args else ""


class MetadataConflictError(AttributeError, AssertionError):
    """A metadata attribute set to a value different from the one it has (an ``AttributeError``
    for detkit, an ``AssertionError`` as detectron2 raises)."""


def _unknown(kind: str, name: str, known: List[str]) -> CatalogError:
    return CatalogError(f"{kind} '{name}' is not registered.{_closest(name, known)} "
                        f"Registered datasets: {', '.join(known) if known else '(none)'}.")


class _DatasetCatalog(UserDict):
    """A global map from dataset name to a zero-argument function returning a list of dicts.

    As detectron2's: ``register``, ``get`` (calls the function), ``list``, ``remove``, ``pop``,
    ``clear``, ``name in DatasetCatalog``, and the dict methods (``DatasetCatalog[name]`` is the
    function). The function is called on every ``get``; it is not cached, so registration stays
    cheap.
    """

    def register(self, name: str, func: Callable[[], List[dict]]) -> None:
        """Register ``func`` (called with no arguments, returns the dataset dicts) as ``name``.

        Raises:
            TypeError: ``func`` is not callable.
            CatalogError: ``name`` is already registered.
        """
        if not callable(func):
            raise TypeError(f"DatasetCatalog.register('{name}', ...) needs a callable that returns a list of dicts.")
        if name in self:
            raise CatalogError(f"Dataset '{name}' is already registered. Remove it first or pick another name.")
        self[name] = func

    def get(self, name: str) -> List[dict]:
        """Call the function registered as ``name`` and return its dataset dicts."""
        if name not in self:
            raise _unknown("Dataset", name, self.list())
        return self[name]()

    def list(self) -> List[str]:
        """The registered names, sorted."""
        return sorted(self.keys())

    def remove(self, name: str) -> None:
        """Unregister ``name`` (its metadata stays in ``MetadataCatalog``)."""
        self.pop(name)

    def pop(self, name: str, *default: Any) -> Any:
        """Unregister ``name`` and return its function; ``default`` if given and ``name`` is unknown."""
        if name not in self and not default:
            raise _unknown("Dataset", name, self.list())
        return super().pop(name, *default)

    def __str__(self) -> str:
        return f"DatasetCatalog(registered datasets: {', '.join(self.list())})"

    __repr__ = __str__


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
            raise MetadataConflictError(
                f"Metadata '{key}' of dataset '{self.name}' is already {self.__dict__[key]!r}; "
                f"refusing to change it to {val!r}. Use another dataset name, or MetadataCatalog.remove('{self.name}') "
                "first."
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


class _MetadataCatalog(UserDict):
    """A global map from dataset name to its ``Metadata``; ``get`` creates it on first use.

    As detectron2's: ``get``, ``list``, ``remove``, ``pop``, ``clear`` and ``name in MetadataCatalog``.
    """

    def get(self, name: str) -> Metadata:
        """The metadata of ``name``, created empty on first use."""
        if name not in self:
            self[name] = Metadata(name=name)
        return self[name]

    def list(self) -> List[str]:
        """Names that have metadata, sorted."""
        return sorted(self.keys())

    def remove(self, name: str) -> None:
        """Forget the metadata of ``name`` (so its attributes can be set anew)."""
        self.pop(name)

    def pop(self, name: str, *default: Any) -> Any:
        """Forget the metadata of ``name`` and return it; ``default`` if given and ``name`` has none."""
        if name not in self and not default:
            raise CatalogError(f"Dataset '{name}' has no metadata in MetadataCatalog.{_closest(name, self.list())}")
        return super().pop(name, *default)

    def __str__(self) -> str:
        return f"MetadataCatalog(registered metadata: {', '.join(self.list())})"

    __repr__ = __str__


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()
