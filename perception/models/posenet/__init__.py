"""PoseNet: the camera's position and heading, with covariance, from one street image.

| module        | what it holds                                                                 |
|---------------|-------------------------------------------------------------------------------|
| `network`     | the network, its registered builder and weights, the layout of its output      |
| `anchors`     | k-means anchor points of the training positions                                |
| `loss`        | the loss (anchor cross-entropy + Gaussian / von Mises NLL)                     |
| `predictor`   | inference: preprocessing, batching, metres, lat/lon, calibrated covariances    |
| `data`        | frames of drives with their GPS pose, the torch dataset                        |
| `training`    | the training task for `perception.training.fit`, its options                   |
| `evaluation`  | the figures of ``streetloc evaluate posenet``                                  |

Importing the package loads the network and the predictor only (what a node needs).
"""

from perception.models.posenet.network import PoseNet, posenet
from perception.models.posenet.predictor import PoseEstimates, PosePredictor

__all__ = ["PoseEstimates", "PoseNet", "PosePredictor", "posenet"]
