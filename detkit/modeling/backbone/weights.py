"""Load ImageNet weights into a backbone trunk: a torchvision weights name, a local path or a URL.

``MODEL.BACKBONE.WEIGHTS`` may be

* a torchvision weights name, e.g. ``"RegNet_X_400MF_Weights.IMAGENET1K_V2"`` (resolved with
  ``torchvision.models.get_weight`` to its URL);
* a URL, fetched through iopath's ``HTTPURLHandler``;
* a local path (or any iopath path).

For a name or URL, torch.hub's checkpoint cache (``torch.hub.get_dir()/checkpoints/<file>``) is
looked at first, so files torchvision already downloaded, or files copied there by hand on an
offline machine, are used as they are.
"""
import logging
import os
import re
from typing import Dict, List, Tuple
from urllib.parse import urlparse

import torch
from iopath.common.file_io import HTTPURLHandler, PathManager
from torch import nn

__all__ = ["load_backbone_weights", "resolve_weights_path"]

logger = logging.getLogger(__name__)

_WEIGHTS_NAME = re.compile(r"^[A-Za-z0-9_]+_Weights\.[A-Za-z0-9_]+$")
_PREFIXES = ("module.", "backbone.body.", "backbone.bottom_up.", "backbone.", "body.")
_CLASSIFIER_PREFIXES = ("fc.", "classifier.")

_path_manager = PathManager()
_path_manager.register_handler(HTTPURLHandler())


def _hub_cache_path(url: str) -> str:
    """Where torch.hub keeps the file of ``url``: ``<hub dir>/checkpoints/<basename>``."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


def _download(url: str) -> str:
    """Fetch ``url`` through iopath and return the local file (iopath's own cache)."""
    return _path_manager.get_local_path(url)


def resolve_weights_path(spec: str) -> str:
    """Turn a weights name, URL or path into a local file path.

    Args:
        spec: the value of MODEL.BACKBONE.WEIGHTS.

    Returns:
        A local file path.

    Raises:
        ValueError: an unknown torchvision weights name.
        FileNotFoundError: a local path that does not exist.
        RuntimeError: a download failed (e.g. offline); the message names the URL and where to put the file.
    """
    url = None
    if _WEIGHTS_NAME.match(spec):
        from torchvision.models import get_weight

        try:
            url = get_weight(spec).url
        except (ValueError, KeyError, AttributeError) as e:
            raise ValueError(f"MODEL.BACKBONE.WEIGHTS = {spec!r} is not a torchvision weights name ({e}); "
                             "use e.g. 'RegNet_X_400MF_Weights.IMAGENET1K_V2', a path or a URL.") from e
    elif "://" in spec and spec.split("://", 1)[0] in ("http", "https"):
        url = spec
    if url is None:
        if not _path_manager.exists(spec):
            raise FileNotFoundError(f"MODEL.BACKBONE.WEIGHTS = {spec!r}: no such file. Give an existing path, "
                                    "a URL or a torchvision weights name.")
        return _path_manager.get_local_path(spec)

    cached = _hub_cache_path(url)
    if os.path.isfile(cached):
        logger.info(f"Backbone weights {spec} found in the torch.hub cache: {cached}")
        return cached
    try:
        return _download(url)
    except Exception as e:  # offline, proxy, HTTP error...: all end the same way for the user
        raise RuntimeError(f"Could not download backbone weights {url} ({type(e).__name__}: {e}). If this "
                           f"machine is offline, download that file elsewhere and put it at {cached} "
                           "(torch.hub's cache, $TORCH_HOME/hub/checkpoints), or set MODEL.BACKBONE.WEIGHTS "
                           "to a local path.") from e


def _extract_state_dict(obj, path: str) -> Dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"Backbone weights file {path} holds neither a state dict nor {{'model': state dict}}.")
    return obj


def _map_keys(state_dict: Dict[str, torch.Tensor], own_keys) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Map checkpoint keys onto the module's: strip wrapper prefixes until a key is known."""
    mapped, unexpected = {}, []
    for key, value in state_dict.items():
        candidate = key
        while candidate not in own_keys:
            prefix = next((p for p in _PREFIXES if candidate.startswith(p)), None)
            if prefix is None:
                break
            candidate = candidate[len(prefix):]
        if candidate in own_keys:
            mapped[candidate] = value
        elif not candidate.startswith(_CLASSIFIER_PREFIXES) and not key.endswith("num_batches_tracked"):
            unexpected.append(key)
    return mapped, unexpected


def load_backbone_weights(module: nn.Module, spec: str) -> None:
    """Load ``spec`` (a torchvision weights name, a path or a URL) into ``module``.

    The file is read with ``torch.load(weights_only=True)`` and may hold a raw state dict or
    ``{"model": state_dict}``. Key names are torchvision's (``stem.0.weight``, ``layer1.0.conv1.weight``,
    ...); wrapper prefixes such as ``module.`` or ``backbone.body.`` are stripped. The ImageNet
    classifier (and BN ``num_batches_tracked``, which frozen BN lacks) is dropped silently; other missing / unexpected keys and shape mismatches are logged.

    Args:
        module: the backbone trunk, whose state-dict keys follow torchvision's names.
        spec: MODEL.BACKBONE.WEIGHTS; "" does nothing.
    """
    if not spec:
        return
    path = resolve_weights_path(spec)
    state_dict = _extract_state_dict(torch.load(path, map_location="cpu", weights_only=True), path)
    own = module.state_dict()
    mapped, unexpected = _map_keys(state_dict, own)
    mismatched = [k for k, v in mapped.items() if tuple(v.shape) != tuple(own[k].shape)]
    for k in mismatched:
        logger.warning(f"Skipping {k} from {spec}: shape {tuple(mapped[k].shape)} in the file, "
                       f"{tuple(own[k].shape)} in the model.")
        del mapped[k]
    missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    module.load_state_dict(mapped, strict=False)
    logger.info(f"Loaded {len(mapped)} backbone tensors from {spec}.")
    if missing:
        logger.warning(f"Backbone weights {spec}: {len(missing)} keys missing from the file, left as initialised: "
                       + ", ".join(missing))
    if unexpected:
        logger.warning(f"Backbone weights {spec}: {len(unexpected)} unexpected keys in the file, ignored: "
                       + ", ".join(unexpected))
