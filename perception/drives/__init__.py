"""Recorded drives: one MCAP file per drive, for recorded, imported and synthetic drives alike.

The channels (topic names equal the bus topics), their records and their Foxglove schemas are listed in
`perception.drives.topics`; the records themselves in `perception.drives.messages`; drive-wide metadata
in `perception.drives.metadata`. The reader yields the same records the bus carries.

>>> from perception.drives import DriveWriter, DriveReader, DriveMetadata, CameraInfo
>>> with DriveWriter("d.mcap", DriveMetadata(source="demo", camera=CameraInfo(640, 480, 500, 500, 320, 240))) as w:
...     w.add_image(stamp_ns, image_bgr)
...     w.add_gps(stamp_ns, lat_deg=55.7, lon_deg=13.19, alt_m=40.0, heading_deg=90.0)
>>> for frame in DriveReader("d.mcap").frames():
...     frame.image.to_bgr(), frame.gps.lat_deg

Never imports torch or zmq. The reader and writer (MCAP, protobuf, OpenCV) load on first use, so that
bus clients, which import the records and the topic table from here, stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .messages import CameraInfo
from .topics import (
    CALIBRATION_TOPIC,
    CAMERA_TOPIC,
    DETECTIONS_TOPIC,
    GPS_TOPIC,
    ODOMETRY_TOPIC,
    POSE_TOPIC,
    POSENET_TOPIC,
    SEGMENTATION_TOPIC,
    TOPICS,
    TRUTH_BOXES_TOPIC,
    TRUTH_SEGMENTATION_TOPIC,
)

if TYPE_CHECKING:
    from localization.geodesy import GeoOrigin

    from .metadata import DriveMetadata
    from .reader import ChannelInfo, DriveReader, Frame, RawMessage, ReadErrors
    from .track import Track
    from .writer import DriveWriter

_LAZY = {
    "GeoOrigin": "localization.geodesy",
    "DriveMetadata": "perception.drives.metadata",
    "ChannelInfo": "perception.drives.reader",
    "DriveReader": "perception.drives.reader",
    "Frame": "perception.drives.reader",
    "RawMessage": "perception.drives.reader",
    "ReadErrors": "perception.drives.reader",
    "Track": "perception.drives.track",
    "DriveWriter": "perception.drives.writer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'perception.drives' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CALIBRATION_TOPIC",
    "CAMERA_TOPIC",
    "DETECTIONS_TOPIC",
    "GPS_TOPIC",
    "ODOMETRY_TOPIC",
    "POSENET_TOPIC",
    "POSE_TOPIC",
    "SEGMENTATION_TOPIC",
    "TOPICS",
    "TRUTH_BOXES_TOPIC",
    "TRUTH_SEGMENTATION_TOPIC",
    "CameraInfo",
    "ChannelInfo",
    "DriveMetadata",
    "DriveReader",
    "DriveWriter",
    "Frame",
    "GeoOrigin",
    "RawMessage",
    "ReadErrors",
    "Track",
]
