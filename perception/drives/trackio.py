"""Track files: read GPX (gpxpy), NMEA (pynmea2, see localization.nmea) and CSV tracks; write GPX and
GeoJSON.

Readers reject bad input with a ValueError naming the file, the line (the point for GPX) and the field. CSV columns (header row
required, comma/semicolon/tab separated, names case-insensitive):

| column (aliases)                                           | meaning                                           |
|------------------------------------------------------------|---------------------------------------------------|
| ``stamp_ns``                                               | time, integer ns since the Unix epoch (UTC)       |
| ``time`` (``timestamp``, ``time_utc``, ``datetime``)       | time, ISO 8601 (``Z``/offset; naive = UTC) or Unix seconds |
| ``t_s`` (``elapsed_s``)                                    | time in seconds since the start of the video     |
| ``lat_deg`` (``lat``, ``latitude``)                        | WGS84 latitude, degrees                           |
| ``lon_deg`` (``lon``, ``lng``, ``longitude``)              | WGS84 longitude, degrees                          |
| ``alt_m`` (``alt``, ``altitude``, ``ele``, ``elevation``)  | altitude, m (optional)                            |
| ``heading_deg`` (``heading``, ``course``, ``bearing``)     | degrees clockwise from north (optional)           |
| ``speed_mps`` (``speed``)                                  | ground speed, m/s (optional)                      |
| ``horizontal_std_m`` (``accuracy_m``, ``accuracy``, ``hacc``) | 1-sigma horizontal error, m (optional)        |

Exactly one time column must be present; empty optional cells mean unknown.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import decimal
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import gpxpy
import gpxpy.gpx
import numpy as np

from localization.nmea import read_nmea_track

from .track import Track

_ISO_RE = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9})\d*)?)?\s*"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?\s*$",
    re.IGNORECASE,
)


def parse_time_ns(text: str) -> int:
    """ISO 8601 date-time (``2014-06-07T10:24:05.656Z``, offsets allowed, naive taken as UTC) or a number
    of Unix seconds, to integer ns since the epoch. ValueError names the text."""
    value = text.strip()
    match = _ISO_RE.match(value)
    if match is None:
        return seconds_text_to_ns(value, f"time {text!r} is neither ISO 8601 nor Unix seconds")
    year, month, day, hour, minute = (int(match.group(i)) for i in range(1, 6))
    second = int(match.group(6) or 0)
    fraction = (match.group(7) or "").ljust(9, "0")
    zone = match.group(8)
    offset_s = 0
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset_s = sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
    try:
        moment = dt.datetime(year, month, day, hour, minute, min(second, 59), tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"time {text!r} is not a calendar date-time") from None
    seconds = int(moment.timestamp()) - offset_s + (1 if second == 60 else 0)  # a leap second rolls over
    return seconds * 1_000_000_000 + int(fraction)


def seconds_text_to_ns(text: str, error: str = "") -> int:
    """Decimal seconds as text to integer ns, exactly (a float loses the last digits of an epoch)."""
    try:
        seconds = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        raise ValueError(error or f"{text!r} is not a number of seconds") from None
    if not seconds.is_finite():
        raise ValueError(error or f"{text!r} is not a finite number of seconds")
    return int((seconds * 1_000_000_000).to_integral_value(decimal.ROUND_HALF_EVEN))


def format_time_iso(stamp_ns: int, digits: int = 3) -> str:
    """``2014-06-07T10:24:05.656Z`` (UTC, ``digits`` fractional digits)."""
    seconds, ns = divmod(int(stamp_ns), 1_000_000_000)
    base = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits <= 0:
        return base + "Z"
    return f"{base}.{str(ns).rjust(9, '0')[:digits]}Z"


@dataclass
class TrackFile:
    """A track read from a file. With ``relative_time`` the stamps count from the video's start (CSV
    ``t_s``) instead of the Unix epoch."""

    path: Path
    track: Track
    relative_time: bool = False


def read_track_file(path: str | Path, *, date: dt.date | None = None) -> TrackFile:
    """Read a GPX (``.gpx``), NMEA (``.nmea``, ``.nma``, ``.log``, ``.txt``) or CSV (``.csv``) track,
    sorted by time. ``date`` is the UTC date for NMEA logs without RMC sentences."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise OSError(f"{path}: track file not found")
    if suffix == ".gpx":
        result = read_gpx(path)
    elif suffix == ".csv":
        result = read_csv_track(path)
    elif suffix in (".nmea", ".nma", ".log", ".txt"):
        result = read_nmea(path, date=date)
    else:
        raise ValueError(f"{path}: unknown track format {suffix!r}; use .gpx, .nmea or .csv")
    if not len(result.track):
        raise ValueError(f"{path}: the track has no fixes")
    return result


# ---------------------------------------------------------------------------------------------- NMEA


def read_nmea(path: str | Path, *, date: dt.date | None = None) -> TrackFile:
    """GGA/RMC fixes of an NMEA log; HDOP x 5 m stands in for the horizontal error when GGA gives it
    (a common rule of thumb for a consumer receiver's UERE)."""
    fixes = read_nmea_track(path, date=date)
    nan = float("nan")
    track = Track(
        [f.stamp_ns for f in fixes],
        [f.lat_deg for f in fixes],
        [f.lon_deg for f in fixes],
        [nan if f.alt_m is None else f.alt_m for f in fixes],
        [nan if f.course_deg is None else f.course_deg for f in fixes],
        [nan if f.speed_mps is None else f.speed_mps for f in fixes],
        [nan if f.hdop is None else 5.0 * f.hdop for f in fixes],
    )
    return TrackFile(Path(path), track)


# ---------------------------------------------------------------------------------------------- GPX


def read_gpx(path: str | Path) -> TrackFile:
    """Track points (route points, then waypoints, when there are none) of a GPX 1.0/1.1 file, read by
    gpxpy, with ``ele``, ``time``, ``hdop`` (x 5 m as the horizontal error), and ``course``/``speed``
    from GPX 1.0 or Garmin's TrackPointExtension. Sorted by time.

    gpxpy keeps no line numbers, so errors name the point by its position (``track point 3 of 120``).
    Measured on 20,000 points (2-core VM): 1.24 s against 0.94 s for the expat reader it replaced.
    Its reader also turns a ``<time>`` it cannot parse into no time, which is reported as such."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            gpx = gpxpy.parse(f)
    except gpxpy.gpx.GPXXMLSyntaxException as exc:
        raise ValueError(f"{path}: not valid GPX XML ({exc})") from None
    except gpxpy.gpx.GPXException as exc:
        raise ValueError(f"{path}: not a valid GPX file: {exc}") from None
    kind, points = "track point", [p for t in gpx.tracks for seg in t.segments for p in seg.points]
    if not points:
        kind, points = "route point", [p for r in gpx.routes for p in r.points]
    if not points:
        kind, points = "waypoint", list(gpx.waypoints)
    nan = float("nan")
    columns: dict[str, list] = {k: [] for k in ("stamp", "lat", "lon", "alt", "heading", "speed", "std")}
    for i, point in enumerate(points):
        if point.time is None:
            raise ValueError(f"{path}: {kind} {i + 1} of {len(points)} (lat {point.latitude}, lon {point.longitude}) "
                             "has no valid <time>; a track needs times to align with video")
        extension = _garmin_extension(path, point, f"{kind} {i + 1} of {len(points)}")
        course = getattr(point, "course", None)  # GPX 1.0 track points only
        speed = getattr(point, "speed", None)
        course = extension.get("course") if course is None else course
        speed = extension.get("speed") if speed is None else speed
        columns["stamp"].append(_datetime_ns(point.time))
        columns["lat"].append(point.latitude)
        columns["lon"].append(point.longitude)
        columns["alt"].append(nan if point.elevation is None else point.elevation)
        columns["heading"].append(nan if course is None else course)
        columns["speed"].append(nan if speed is None else speed)
        columns["std"].append(nan if point.horizontal_dilution is None else 5.0 * point.horizontal_dilution)
    track = Track(columns["stamp"], columns["lat"], columns["lon"], columns["alt"], columns["heading"],
                  columns["speed"], columns["std"])
    _check_range(path, track, lambda i: f" {kind} {i + 1} of {len(points)}")
    return TrackFile(path, track.sorted())


def _datetime_ns(moment: dt.datetime) -> int:
    # integer ns since the epoch; a time without a zone is UTC, as GPX says
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    seconds = calendar.timegm(moment.utctimetuple())
    return seconds * 1_000_000_000 + moment.microsecond * 1000


def _garmin_extension(path: Path, point: gpxpy.gpx.GPXTrackPoint | gpxpy.gpx.GPXRoutePoint | gpxpy.gpx.GPXWaypoint,
                      where: str) -> dict[str, float]:
    """``speed`` and ``course`` of a Garmin TrackPointExtension (v1 or v2) on ``point``."""
    values: dict[str, float] = {}
    for element in point.extensions:
        for child in element.iter():
            name = child.tag.rsplit("}", 1)[-1]
            if name in ("speed", "course") and child.text and child.text.strip():
                try:
                    values[name] = float(child.text)
                except ValueError:
                    raise ValueError(f"{path}: {where}: <{name}> {child.text.strip()!r} is not a number") from None
    return values


def _check_range(path: Path, track: Track, where: Callable[[int], str]) -> None:
    bad = ~((np.abs(track.lat_deg) <= 90.0) & (np.abs(track.lon_deg) <= 180.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}:{where(i)}: position lat={float(track.lat_deg[i])!r}, lon={float(track.lon_deg[i])!r} is out of range")


def write_gpx(path: str | Path, track: Track, *, name: str = "", creator: str = "streetloc") -> None:
    """GPX 1.1 with one track; heading and speed in Garmin's TrackPointExtension (``gpxtpx:course``,
    ``gpxtpx:speed``), which most tools read."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<gpx version="1.1" creator="{escape(creator)}" xmlns="http://www.topografix.com/GPX/1/1" '
        'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2">',
        f"  <trk><name>{escape(name)}</name><trkseg>",
    ]
    for i in range(len(track)):
        parts = [f'    <trkpt lat="{track.lat_deg[i]:.8f}" lon="{track.lon_deg[i]:.8f}">']
        if np.isfinite(track.alt_m[i]):
            parts.append(f"<ele>{track.alt_m[i]:.2f}</ele>")
        parts.append(f"<time>{format_time_iso(int(track.stamp_ns[i]))}</time>")
        extension = []
        if np.isfinite(track.speed_mps[i]):
            extension.append(f"<gpxtpx:speed>{track.speed_mps[i]:.3f}</gpxtpx:speed>")
        if np.isfinite(track.heading_deg[i]):
            extension.append(f"<gpxtpx:course>{track.heading_deg[i]:.2f}</gpxtpx:course>")
        if extension:
            parts.append("<extensions><gpxtpx:TrackPointExtension>" + "".join(extension) + "</gpxtpx:TrackPointExtension></extensions>")
        parts.append("</trkpt>")
        out.append("".join(parts))
    out += ["  </trkseg></trk>", "</gpx>", ""]
    Path(path).write_text("\n".join(out), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- GeoJSON


def _finite_or_none(value: float, digits: int) -> float | None:
    return round(float(value), digits) if np.isfinite(value) else None


def track_geojson(track: Track, *, properties: dict | None = None, points: bool = False) -> dict:
    """A GeoJSON FeatureCollection (RFC 7946: [lon, lat(, alt)]) with the track as one LineString whose
    ``coordTimes`` (the de-facto per-vertex time property) and ``stamps_ns`` give each vertex's time;
    with ``points``, one Point feature per fix too, carrying time, heading and speed."""
    has_alt = bool(np.isfinite(track.alt_m).all()) and len(track) > 0

    def coord(i: int) -> list[float]:
        c = [round(float(track.lon_deg[i]), 8), round(float(track.lat_deg[i]), 8)]
        if has_alt:
            c.append(round(float(track.alt_m[i]), 2))
        return c

    line_props = {
        **(properties or {}),
        "coordTimes": [format_time_iso(int(s)) for s in track.stamp_ns],
        "stamps_ns": [int(s) for s in track.stamp_ns],
        "heading_deg": [_finite_or_none(h, 2) for h in track.heading_deg],
        "distance_m": round(track.distance_m(), 2),
    }
    features: list[dict] = []
    if len(track) >= 2:
        features.append({"type": "Feature", "geometry": {"type": "LineString", "coordinates": [coord(i) for i in range(len(track))]}, "properties": line_props})
    elif len(track) == 1:
        features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": coord(0)}, "properties": line_props})
    if points:
        for i in range(len(track)):
            features.append({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": coord(i)},
                "properties": {
                    "time": format_time_iso(int(track.stamp_ns[i])),
                    "stamp_ns": int(track.stamp_ns[i]),
                    "heading_deg": _finite_or_none(track.heading_deg[i], 2),
                    "speed_mps": _finite_or_none(track.speed_mps[i], 3),
                    "horizontal_std_m": _finite_or_none(track.horizontal_std_m[i], 2),
                },
            })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | Path, track: Track, *, properties: dict | None = None, points: bool = False) -> None:
    Path(path).write_text(json.dumps(track_geojson(track, properties=properties, points=points)) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- CSV

_COLUMNS: dict[str, tuple[str, ...]] = {
    "stamp_ns": ("stamp_ns",),
    "time": ("time", "timestamp", "time_utc", "datetime"),
    "t_s": ("t_s", "elapsed_s"),
    "lat": ("lat_deg", "lat", "latitude"),
    "lon": ("lon_deg", "lon", "lng", "longitude"),
    "alt": ("alt_m", "alt", "altitude", "ele", "elevation"),
    "heading": ("heading_deg", "heading", "course", "bearing"),
    "speed": ("speed_mps", "speed"),
    "std": ("horizontal_std_m", "accuracy_m", "accuracy", "hacc"),
}


def _find_columns(path: Path, header: Sequence[str]) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    found: dict[str, int] = {}
    for key, aliases in _COLUMNS.items():
        for alias in aliases:
            if alias in names:
                found[key] = names.index(alias)
                break
    for key in ("lat", "lon"):
        if key not in found:
            raise ValueError(f"{path}:1: CSV header has no {_COLUMNS[key][0]} column (aliases: {', '.join(_COLUMNS[key])}); header: {list(header)}")
    times = [k for k in ("stamp_ns", "time", "t_s") if k in found]
    if len(times) != 1:
        raise ValueError(f"{path}:1: CSV header needs exactly one time column of stamp_ns, time, t_s; found {times or 'none'}")
    return found


def read_csv_track(path: str | Path) -> TrackFile:
    """A CSV track (columns in the module docstring), sorted by time."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(4096)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        rows = csv.reader(f, dialect)
        header = next(rows, None)
        if header is None:
            raise ValueError(f"{path}:1: empty CSV file")
        columns = _find_columns(path, header)
        time_key = next(k for k in ("stamp_ns", "time", "t_s") if k in columns)
        data: dict[str, list] = {k: [] for k in ("stamp", "lat", "lon", "alt", "heading", "speed", "std", "line")}
        for line_no, row in enumerate(rows, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            values = _parse_csv_row(path, line_no, header, row, columns, time_key)
            for key, value in values.items():
                data[key].append(value)
            data["line"].append(line_no)
    track = Track(data["stamp"], data["lat"], data["lon"], data["alt"], data["heading"], data["speed"], data["std"])
    lines = np.array(data["line"], dtype=np.int64)
    _check_range(path, track, lambda i: str(lines[i]))
    order = np.argsort(track.stamp_ns, kind="stable")
    return TrackFile(path, track.take(order), relative_time=time_key == "t_s")


def _parse_csv_row(
    path: Path, line_no: int, header: Sequence[str], row: Sequence[str], columns: dict[str, int], time_key: str
) -> dict[str, float | int]:
    where = f"{path}:{line_no}"

    def cell(key: str) -> str:
        index = columns[key]
        if index >= len(row):
            raise ValueError(f"{where}: row has {len(row)} cells, no {header[index]!r} (column {index + 1})")
        return row[index].strip()

    def number(key: str, required: bool) -> float:
        text = cell(key)
        if not text:
            if required:
                raise ValueError(f"{where}: {header[columns[key]]!r} is empty")
            return float("nan")
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{where}: {header[columns[key]]!r}={text!r} is not a number") from None

    text = cell(time_key)
    try:
        if time_key == "stamp_ns":
            stamp = int(text)
        elif time_key == "t_s":
            stamp = seconds_text_to_ns(text)
        else:
            stamp = parse_time_ns(text)
    except ValueError:
        raise ValueError(f"{where}: {header[columns[time_key]]!r}={text!r} is not a time") from None
    values: dict[str, float | int] = {"stamp": stamp, "lat": number("lat", True), "lon": number("lon", True)}
    for key in ("alt", "heading", "speed", "std"):
        values[key] = number(key, False) if key in columns else float("nan")
    return values
