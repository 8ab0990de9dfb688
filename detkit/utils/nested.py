"""Flattening nested dicts into one level of joined keys."""
from typing import Any, Dict

__all__ = ["flatten_dict"]


def flatten_dict(nested: Dict[str, Any], sep: str = ".", prefix: str = "") -> Dict[str, Any]:
    """``{"A": {"B": 1}}`` -> ``{"A.B": 1}`` (with ``sep="."``); non-dict values are the leaves."""
    out = {}
    for k, v in nested.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_dict(v, sep, key + sep))
        else:
            out[key] = v
    return out
