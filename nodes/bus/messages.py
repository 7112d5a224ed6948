"""The bus message records. They live in `perception.drives.messages` (the drive reader yields the same
records, and training may not import ``nodes``); this module re-exports them for bus code and clients."""

from perception.drives.messages import (
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    CameraInfo,
    Detections,
    Diagnostics,
    FixHypothesis,
    GeoFix,
    Header,
    Hop,
    Image,
    Odometry,
    Pose,
    PoseStatus,
    Segmentation,
    TopicStats,
)

__all__ = [
    "MESSAGE_TYPES", "SCHEMA_VERSION", "CameraInfo", "Detections", "Diagnostics", "FixHypothesis", "GeoFix",
    "Header", "Hop", "Image", "Odometry", "Pose", "PoseStatus", "Segmentation", "TopicStats",
]
