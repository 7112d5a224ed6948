"""The model registry: every streetloc model by name, with its builder, trainer, evaluator and weights.

>>> from perception.models import get_model, list_models, PosePredictor
>>> model = get_model("posenet", backbone="resnet18")        # untrained, from scratch
>>> predictor = PosePredictor()                               # the default checkpoint, ready to localize

Each model registers itself when its package or module is imported below.
"""

from perception.models import detector, posenet, segmenter  # noqa: F401 - they register their models
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
from perception.models.posenet import PoseEstimates, PoseNet, PosePredictor

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
