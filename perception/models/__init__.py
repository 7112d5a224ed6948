"""The model registry: every streetloc model by name, with its builder, trainer, evaluator and weights.

>>> from perception.models import get_model, list_models, PosePredictor
>>> model = get_model("posenet", backbone="resnet18")        # untrained, from scratch
>>> predictor = PosePredictor()                               # the default checkpoint, ready to localize

Each model registers itself when its package is imported, which the registry does on the first use of
its name (``get_model("detector")``, ``list_models()``, a weights name): importing this package imports
none of them, so a PoseNet node loads PoseNet's modules only (no detector, segmenter or torchvision).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from perception.models._api import (
    Checkpoint,
    ModelEntry,
    WeightsEntry,
    default_weights,
    get_model,
    get_model_entry,
    get_weights,
    list_models,
    list_weights,
    register_model,
    register_weights,
    resolve_checkpoint,
)

if TYPE_CHECKING:
    from perception.models.posenet import PoseEstimates, PoseNet, PosePredictor

_LAZY = {"PoseEstimates": "perception.models.posenet", "PoseNet": "perception.models.posenet",
         "PosePredictor": "perception.models.posenet"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Checkpoint",
    "ModelEntry",
    "PoseEstimates",
    "PoseNet",
    "PosePredictor",
    "WeightsEntry",
    "default_weights",
    "get_model",
    "get_model_entry",
    "get_weights",
    "list_models",
    "list_weights",
    "register_model",
    "register_weights",
    "resolve_checkpoint",
]
