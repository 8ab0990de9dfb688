"""Data transforms with detectron2's API, on fvcore's transforms (re-exported here).

``Transform`` / ``TransformList`` and the deterministic transforms come from
``fvcore.transforms`` (flip, crop, pad, blend, ...) and :mod:`.transform` (resize, extent,
colour); :mod:`.augmentation` holds the ``Augmentation`` / ``AugInput`` API and
:mod:`.augmentation_impl` the builtin random augmentations, which draw from numpy's global
generator.
"""
from fvcore.transforms.transform import Transform, TransformList  # noqa: F401  (listed first, as detectron2)
from fvcore.transforms.transform import *  # noqa: F401,F403

from .augmentation import *  # noqa: F401,F403
from .augmentation_impl import *  # noqa: F401,F403
from .transform import *  # noqa: F401,F403

__all__ = [k for k in globals().keys() if not k.startswith("_")]
