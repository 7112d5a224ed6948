"""Foxglove protobuf message classes by schema name, and the schema bytes MCAP stores for them."""

from __future__ import annotations

from functools import cache

from foxglove_schemas_protobuf.CameraCalibration_pb2 import CameraCalibration
from foxglove_schemas_protobuf.Color_pb2 import Color
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations
from foxglove_schemas_protobuf.KeyValuePair_pb2 import KeyValuePair
from foxglove_schemas_protobuf.LocationFix_pb2 import LocationFix
from foxglove_schemas_protobuf.Odometry_pb2 import Odometry
from foxglove_schemas_protobuf.Point2_pb2 import Point2
from foxglove_schemas_protobuf.PointsAnnotation_pb2 import PointsAnnotation
from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
from foxglove_schemas_protobuf.TextAnnotation_pb2 import TextAnnotation
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from google.protobuf.timestamp_pb2 import Timestamp

MESSAGE_CLASSES = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (CompressedImage, RawImage, CameraCalibration, LocationFix, Odometry, ImageAnnotations)
}

__all__ = [
    "MESSAGE_CLASSES",
    "CameraCalibration",
    "Color",
    "CompressedImage",
    "ImageAnnotations",
    "KeyValuePair",
    "LocationFix",
    "Odometry",
    "Point2",
    "PointsAnnotation",
    "RawImage",
    "TextAnnotation",
    "Timestamp",
    "schema_data",
    "timestamp",
]


@cache
def schema_data(schema_name: str) -> bytes:
    """A serialized FileDescriptorSet holding the schema's file and every file it imports (MCAP's
    ``protobuf`` schema encoding), dependencies first."""
    fds = FileDescriptorSet()
    seen: set[str] = set()

    def add(file: FileDescriptor) -> None:
        for dep in file.dependencies:
            if dep.name not in seen:
                seen.add(dep.name)
                add(dep)
        file.CopyToProto(fds.file.add())

    add(MESSAGE_CLASSES[schema_name].DESCRIPTOR.file)
    return fds.SerializeToString()


def timestamp(stamp_ns: int) -> Timestamp:
    seconds, nanos = divmod(int(stamp_ns), 1_000_000_000)
    return Timestamp(seconds=seconds, nanos=nanos)
