"""Recorded drives: one MCAP file per drive, for recorded, imported and synthetic drives alike.

The channels (topic names equal the bus topics) and their Foxglove schemas are listed in
`perception.drives.channels`; drive-wide metadata in `perception.drives.metadata`.

>>> from perception.drives import DriveWriter, DriveReader, DriveMetadata, CameraInfo
>>> with DriveWriter("d.mcap", DriveMetadata(source="demo", camera=CameraInfo(640, 480, 500, 500, 320, 240))) as w:
...     w.add_image(stamp_ns, image_bgr)
...     w.add_gps(stamp_ns, lat_deg=55.7, lon_deg=13.19, alt_m=40.0, heading_deg=90.0)
>>> for frame in DriveReader("d.mcap").frames():
...     frame.image.data, frame.gps.lat_deg

Never imports torch or zmq: tools that only read drives stay light.
"""

from localization.geodesy import GeoOrigin

from .channels import (
    CALIBRATION_TOPIC,
    CAMERA_TOPIC,
    CHANNELS,
    DETECTIONS_TOPIC,
    GPS_TOPIC,
    ODOMETRY_TOPIC,
    POSE_TOPIC,
    POSENET_TOPIC,
    SEGMENTATION_TOPIC,
    TRUTH_BOXES_TOPIC,
    TRUTH_SEGMENTATION_TOPIC,
)
from .metadata import CameraInfo, DriveMetadata
from .reader import (
    BoxSet,
    ChannelInfo,
    DriveReader,
    Frame,
    GpsFix,
    ImageFrame,
    LabelMask,
    OdometrySample,
    RawMessage,
    ReadErrors,
)
from .track import Track
from .writer import DriveWriter

__all__ = [
    "CALIBRATION_TOPIC",
    "CAMERA_TOPIC",
    "CHANNELS",
    "DETECTIONS_TOPIC",
    "GPS_TOPIC",
    "ODOMETRY_TOPIC",
    "POSENET_TOPIC",
    "POSE_TOPIC",
    "SEGMENTATION_TOPIC",
    "TRUTH_BOXES_TOPIC",
    "TRUTH_SEGMENTATION_TOPIC",
    "BoxSet",
    "CameraInfo",
    "ChannelInfo",
    "DriveMetadata",
    "DriveReader",
    "DriveWriter",
    "Frame",
    "GeoOrigin",
    "GpsFix",
    "ImageFrame",
    "LabelMask",
    "OdometrySample",
    "RawMessage",
    "ReadErrors",
    "Track",
]
