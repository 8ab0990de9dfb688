"""Registry: a name -> object map for swappable components, with helpful lookup errors."""
import difflib
import inspect
from typing import Any, Iterator, Tuple

from fvcore.common.registry import Registry as _FvcoreRegistry
from tabulate import tabulate

__all__ = ["Registry"]


def _origin(obj: Any) -> str:
    """The module an object was defined in, e.g. "detkit.modeling.backbone.regnet"."""
    module = inspect.getmodule(obj)
    return module.__name__ if module is not None else getattr(obj, "__module__", "?")


class Registry(_FvcoreRegistry):
    """A registry of components keyed by their ``__name__``.

    Use it as a decorator, ``@BACKBONE_REGISTRY.register()``, or call it,
    ``BACKBONE_REGISTRY.register(MyBackbone)``. Lookups of unknown names raise a ``KeyError``
    that lists the closest registered names; registering a name twice raises a ``KeyError``
    that names both defining modules.
    """

    @property
    def name(self) -> str:
        return self._name

    def _do_register(self, name: str, obj: Any) -> None:
        if name in self._obj_map:
            raise KeyError(
                f"'{name}' is already registered in the {self._name} registry by "
                f"{_origin(self._obj_map[name])}; {_origin(obj)} tried to register it again. "
                "Give the new component another name, or make sure its module is imported once."
            )
        self._obj_map[name] = obj

    def get(self, name: str) -> Any:
        if name in self._obj_map:
            return self._obj_map[name]
        known = sorted(self._obj_map)
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(
            f"No component named '{name}' in the {self._name} registry.{hint} "
            f"Registered names: {', '.join(known) if known else '(none)'}. "
            "A component from a plugin is only known after the plugin is loaded (--plugin or PLUGINS)."
        )

    def names(self) -> list:
        """The registered names, sorted."""
        return sorted(self._obj_map)

    def __len__(self) -> int:
        return len(self._obj_map)

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        return iter(sorted(self._obj_map.items()))

    def table(self, tablefmt: str = "simple") -> str:
        """A tabulate listing of names and the modules that define them."""
        rows = [(name, _origin(obj)) for name, obj in self]
        return tabulate(rows, headers=["Name", "Defined in"], tablefmt=tablefmt)

    def __repr__(self) -> str:
        return f"Registry of {self._name}:\n{self.table()}"

    __str__ = __repr__
