"""The Augmentation API: policies that look at the data and return a deterministic Transform.

An :class:`Augmentation` decides (often at random, from numpy's global generator) which
``Transform`` to apply; :class:`AugInput` holds the data (image, boxes, semantic segmentation)
and applies that transform to all of it in place. The returned transforms can then be applied to
anything else the user has (annotations, proposals), and inverted::

    aug_input = AugInput(image, boxes=boxes)
    transforms = AugmentationList([ResizeShortestEdge(800, 1333), RandomFlip()])(aug_input)
    image, boxes = aug_input.image, aug_input.boxes
"""
import inspect
import pprint
from typing import Any, List, Optional, Tuple, Union

import numpy as np
from fvcore.transforms.transform import Transform, TransformList

__all__ = ["Augmentation", "AugmentationList", "AugInput", "TransformGen", "apply_transform_gens",
           "StandardAugInput", "apply_augmentations"]


def _check_img(img) -> None:
    if not isinstance(img, np.ndarray):
        raise TypeError(f"AugInput needs the image as a numpy array, got {type(img).__name__}.")
    if img.ndim not in (2, 3):
        raise ValueError(f"AugInput needs an (H, W) or (H, W, C) image, got shape {img.shape}.")


def _input_args(aug: "Augmentation", aug_input) -> List[Any]:
    """The attributes of ``aug_input`` that ``aug.get_transform`` asks for, in its parameter order.

    A ``get_transform`` with one parameter gets the image, whatever the parameter is called;
    with several, each parameter names the attribute it receives.
    """
    if aug.input_args is None:
        params = list(inspect.signature(aug.get_transform).parameters.items())
        if len(params) == 1:
            names = ("image",)
        else:
            for name, p in params:
                if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                    raise TypeError(f"{type(aug).__name__}.get_transform takes *args or **kwargs, so the "
                                    "default __call__ cannot tell which inputs it needs; override __call__ "
                                    "or set input_args.")
            names = tuple(name for name, _ in params)
        aug.input_args = tuple(names)
    args = []
    for name in aug.input_args:
        try:
            args.append(getattr(aug_input, name))
        except AttributeError as e:
            raise AttributeError(f"{type(aug).__name__}.get_transform needs the input attribute '{name}', "
                                 f"which {type(aug_input).__name__} does not have.") from e
    return args


class Augmentation:
    """A (usually random) policy that returns the ``Transform`` to apply to some data.

    Subclasses implement ``get_transform(...)``; its parameter names choose the attributes of the
    input it receives (``image``, ``boxes``, ``sem_seg`` for :class:`AugInput`); a name the input
    lacks raises ``AttributeError``. ``__call__(aug_input)`` runs the policy, transforms the input
    in place and returns the transform. Randomness comes from numpy's global generator, so
    ``np.random.seed`` reproduces a run.
    """

    input_args: Optional[Tuple[str, ...]] = None
    """The attribute names ``get_transform`` receives; by default its parameter names."""

    def _init(self, params: Optional[dict] = None) -> None:
        """Store the constructor's arguments (pass ``locals()``) as attributes of the same names."""
        for k, v in (params or {}).items():
            if k != "self" and not k.startswith("_"):
                setattr(self, k, v)

    def get_transform(self, *args) -> Transform:
        """Decide, from the input data, which deterministic ``Transform`` to apply."""
        raise NotImplementedError

    def __call__(self, aug_input) -> Transform:
        """Transform ``aug_input`` in place with the policy's transform, and return that transform."""
        tfm = self.get_transform(*_input_args(self, aug_input))
        if not isinstance(tfm, (Transform, TransformList)):
            raise TypeError(f"{type(self).__name__}.get_transform must return a Transform, "
                            f"got {type(tfm).__name__}.")
        aug_input.transform(tfm)
        return tfm

    def _rand_range(self, low=1.0, high=None, size=None):
        """A uniform float in [low, high) from numpy's global generator ([0, low) with one argument)."""
        if high is None:
            low, high = 0, low
        return np.random.uniform(low, high, [] if size is None else size)

    def __repr__(self) -> str:
        """``Name(arg=value, ...)`` for the constructor's arguments that are not their default object."""
        args = []
        for name, param in inspect.signature(self.__init__).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or not hasattr(self, name):
                return super().__repr__()
            value = getattr(self, name)
            if value is param.default:
                continue
            text = pprint.pformat(value)
            args.append(f"{name}={'...' if chr(10) in text else text}")
        return f"{type(self).__name__}({', '.join(args)})"

    __str__ = __repr__


class _TransformToAug(Augmentation):
    """A fixed ``Transform`` used where an Augmentation is expected."""

    def __init__(self, tfm: Transform):
        self.tfm = tfm

    def get_transform(self, *args) -> Transform:
        return self.tfm

    def __repr__(self) -> str:
        return repr(self.tfm)

    __str__ = __repr__


def _transform_to_aug(tfm_or_aug) -> Augmentation:
    if isinstance(tfm_or_aug, Augmentation):
        return tfm_or_aug
    if isinstance(tfm_or_aug, Transform):
        return _TransformToAug(tfm_or_aug)
    raise TypeError(f"Expected a Transform or an Augmentation, got {tfm_or_aug!r}.")


class AugmentationList(Augmentation):
    """Apply augmentations (or fixed transforms) in order; lists may nest.

    Each one sees the input as the previous ones left it, so it has no ``get_transform``.
    """

    def __init__(self, augs: List[Union[Augmentation, Transform]]):
        """
        Args:
            augs: Augmentations or Transforms.
        """
        super().__init__()
        self.augs = [_transform_to_aug(x) for x in augs]

    def __call__(self, aug_input) -> TransformList:
        return TransformList([aug(aug_input) for aug in self.augs])

    def __repr__(self) -> str:
        return f"AugmentationList[{', '.join(str(a) for a in self.augs)}]"

    __str__ = __repr__


class AugInput:
    """The standard input of augmentations: ``image``, and optionally ``boxes`` and ``sem_seg``.

    ``transform(tfm)`` applies a transform to every attribute in place; afterwards the attributes
    hold the transformed data.
    """

    def __init__(self, image: np.ndarray, *, boxes: Optional[np.ndarray] = None,
                 sem_seg: Optional[np.ndarray] = None):
        """
        Args:
            image: (H, W) or (H, W, C) array, uint8 in [0, 255] or float.
            boxes: (N, 4) float XYXY_ABS boxes, or None.
            sem_seg: (H, W) uint8 per-pixel labels, or None.
        """
        _check_img(image)
        self.image = image
        self.boxes = boxes
        self.sem_seg = sem_seg

    def transform(self, tfm: Transform) -> None:
        """Apply ``tfm`` in place to the image, and to the boxes and segmentation when present."""
        self.image = tfm.apply_image(self.image)
        if self.boxes is not None:
            self.boxes = tfm.apply_box(self.boxes)
        if self.sem_seg is not None:
            self.sem_seg = tfm.apply_segmentation(self.sem_seg)

    def apply_augmentations(self, augmentations: List[Union[Augmentation, Transform]]) -> TransformList:
        """Same as ``AugmentationList(augmentations)(self)``."""
        return AugmentationList(augmentations)(self)


def apply_augmentations(augmentations: List[Union[Augmentation, Transform]], inputs):
    """Apply ``augmentations`` to an image array or an :class:`AugInput`.

    Returns:
        (the transformed image, or the AugInput transformed in place; the ``TransformList``).
    """
    if isinstance(inputs, np.ndarray):  # an image alone
        aug_input = AugInput(inputs)
        tfms = aug_input.apply_augmentations(augmentations)
        return aug_input.image, tfms
    return inputs, inputs.apply_augmentations(augmentations)


apply_transform_gens = apply_augmentations
"""detectron2's older name of :func:`apply_augmentations`."""

TransformGen = Augmentation
"""detectron2's older name of :class:`Augmentation`."""

StandardAugInput = AugInput
"""detectron2's older name of :class:`AugInput`."""
