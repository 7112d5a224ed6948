"""The message bus: topic table, typed messages, wire codec, publish/subscribe, client API.

Quick start for other software (see docs/wire_format.md for other languages)::

    from nodes.bus import POSE_TOPIC, subscribe
    with subscribe(POSE_TOPIC, host="robot.local") as poses:
        for pose in poses:
            print(pose.lat_deg, pose.lon_deg, pose.cov_enu_m2)
"""

from nodes.bus.client import next_message, subscribe
from nodes.bus.messages import (
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
from nodes.bus.pubsub import Delivery, Publisher, Subscriber
from nodes.bus.topics import TOPICS, BusConfig, Topic, get_topic
from nodes.bus.wire import Codec, DecodeError
from perception.drives.topics import (  # the topic names, for subscribers
    CAMERA_TOPIC,
    DETECTIONS_TOPIC,
    GPS_TOPIC,
    ODOMETRY_TOPIC,
    POSE_TOPIC,
    POSENET_TOPIC,
    SEGMENTATION_TOPIC,
)

__all__ = [
    "CAMERA_TOPIC", "DETECTIONS_TOPIC", "GPS_TOPIC", "ODOMETRY_TOPIC", "POSENET_TOPIC", "POSE_TOPIC",
    "SEGMENTATION_TOPIC",
    "MESSAGE_TYPES", "SCHEMA_VERSION", "TOPICS", "BusConfig", "CameraInfo", "Codec", "DecodeError",
    "Delivery", "Detections", "Diagnostics", "FixHypothesis", "GeoFix", "Header", "Hop", "Image", "Odometry", "Pose",
    "PoseStatus", "Publisher", "Segmentation", "Subscriber", "Topic", "TopicStats", "get_topic",
    "next_message", "subscribe",
]
