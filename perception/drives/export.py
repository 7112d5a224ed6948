"""Export a drive's GPS or pose channel as GPX or GeoJSON."""

from __future__ import annotations

import os
from pathlib import Path

from .reader import DriveReader
from .topics import GPS_TOPIC, SCHEMA_LOCATION_FIX
from .trackio import write_geojson, write_gpx

FORMATS = ("gpx", "geojson")


def export_track(
    drive_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    topic: str = GPS_TOPIC,
    fmt: str | None = None,
    points: bool = False,
) -> int:
    """Write the fixes of ``topic`` (a foxglove.LocationFix channel) to ``out``; returns the count.

    ``fmt`` is ``gpx`` or ``geojson``; None picks it from the suffix (``.gpx``, ``.geojson``/``.json``).
    ``points`` adds one GeoJSON Point per fix.
    """
    out = Path(out)
    if fmt is None:
        suffix = out.suffix.lower()
        fmt = {".gpx": "gpx", ".geojson": "geojson", ".json": "geojson"}.get(suffix)
        if fmt is None:
            raise ValueError(f"{out}: cannot tell the format from suffix {suffix!r}; use .gpx or .geojson, or --format")
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    with DriveReader(drive_path) as drive:
        channels = drive.channels
        if topic not in channels:
            located = [t for t, c in channels.items() if c.schema_name == SCHEMA_LOCATION_FIX]
            raise ValueError(f"{drive_path}: no topic {topic!r}; GPS/pose topics here: {', '.join(located) or 'none'}")
        if channels[topic].schema_name != SCHEMA_LOCATION_FIX:
            raise ValueError(f"{drive_path}: topic {topic!r} holds {channels[topic].schema_name}, not GPS/pose fixes")
        track = drive.track(topic)
        name = f"{Path(drive_path).stem} {topic}"
        if fmt == "gpx":
            write_gpx(out, track, name=name)
        else:
            write_geojson(out, track, properties={"name": name, "topic": topic, "source": drive.metadata.source}, points=points)
    return len(track)
