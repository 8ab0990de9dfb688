"""Instances: the per-image set of detected or ground-truth objects, as named fields."""
import itertools
import numbers
from typing import Any, Dict, List, Tuple

import torch

__all__ = ["Instances"]


class _InstancesError(AssertionError, ValueError):
    """Bad use of Instances: an AssertionError as detectron2 raises, and a ValueError as detkit's callers catch."""


class Instances:
    """Named per-image fields of equal length, e.g. ``gt_boxes``, ``gt_classes``, ``scores``.

    ``inst.pred_boxes = Boxes(...)`` adds a field; ``inst[mask]`` / ``inst[idx]`` index all fields
    at once; ``Instances.cat([...])`` concatenates images' fields; ``.to(device)`` moves them.
    """

    def __init__(self, image_size: Tuple[int, int], **fields: Any):
        self._image_size = (int(image_size[0]), int(image_size[1]))
        self._fields: Dict[str, Any] = {}
        for k, v in fields.items():
            self.set(k, v)

    @property
    def image_size(self) -> Tuple[int, int]:
        """(height, width) of the image the fields refer to."""
        return self._image_size

    def __setattr__(self, name: str, val: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, val)
        else:
            self.set(name, val)

    def __getattr__(self, name: str) -> Any:
        # While unpickling, __dict__ is still empty: a lookup must not recurse into _fields.
        fields = self.__dict__.get("_fields")
        if fields is None or name not in fields:
            raise AttributeError(f"Instances has no field '{name}'; it has {list(fields or [])}.")
        return fields[name]

    def set(self, name: str, value: Any) -> None:
        """Set the field ``name``; its length must match the fields already there."""
        n = len(value)
        if self._fields and len(self) != n:
            raise _InstancesError(f"Adding a field of length {n} to a Instances of length {len(self)} "
                                  f"(field '{name}'); give every field one entry per instance.")
        self._fields[name] = value

    def has(self, name: str) -> bool:
        return name in self._fields

    def remove(self, name: str) -> None:
        del self._fields[name]

    def get(self, name: str) -> Any:
        return self._fields[name]

    def get_fields(self) -> Dict[str, Any]:
        return self._fields

    def to(self, *args: Any, **kwargs: Any) -> "Instances":
        out = Instances(self._image_size)
        for k, v in self._fields.items():
            out.set(k, v.to(*args, **kwargs) if hasattr(v, "to") else v)
        return out

    def __getitem__(self, item) -> "Instances":
        """All fields indexed by ``item``: an int (negative counts from the end), a slice, or a bool / long tensor.

        An int keeps the instance dimension (the result has length 1). Out of range raises IndexError.
        """
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            item = int(item)
            if item >= len(self) or item < -len(self):
                raise IndexError(f"Instances index out of range! Index {item} for {len(self)} instances.")
            item = slice(item, None, len(self))  # exactly one element, also for negative indices
        out = Instances(self._image_size)
        for k, v in self._fields.items():
            out.set(k, v[item])
        return out

    def __len__(self) -> int:
        for v in self._fields.values():
            return v.__len__()
        return 0

    def __iter__(self):
        raise NotImplementedError("Instances are not iterable; index them instead.")

    @staticmethod
    def cat(instance_lists: List["Instances"]) -> "Instances":
        """Concatenate the fields of several Instances of the same image size."""
        if not all(isinstance(i, Instances) for i in instance_lists):
            raise _InstancesError(f"Instances.cat takes a list of Instances, got "
                                  f"{[type(i).__name__ for i in instance_lists]}.")
        if not instance_lists:
            raise _InstancesError("Instances.cat needs at least one Instances.")
        if len(instance_lists) == 1:
            return instance_lists[0]
        size = instance_lists[0].image_size
        sizes = [i.image_size for i in instance_lists]
        if any(s != size for s in sizes):
            raise _InstancesError(f"Instances.cat needs Instances of one image size, got {sizes}.")
        out = Instances(size)
        for k in instance_lists[0]._fields:
            values = [i.get(k) for i in instance_lists]
            v0 = values[0]
            if isinstance(v0, torch.Tensor):
                merged = torch.cat(values, dim=0)
            elif isinstance(v0, list):
                merged = list(itertools.chain(*values))
            elif hasattr(type(v0), "cat"):
                merged = type(v0).cat(values)
            else:
                raise ValueError(f"Field '{k}' of type {type(v0)} cannot be concatenated.")
            out.set(k, merged)
        return out

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}: {v}" for k, v in self._fields.items())
        return f"Instances(num_instances={len(self)}, image_height={self._image_size[0]}, " \
               f"image_width={self._image_size[1]}, fields=[{fields}])"
