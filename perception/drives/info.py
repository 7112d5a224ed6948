"""What ``streetloc info`` says about a drive: duration, channels, frame size, where it went, damage."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from .reader import DriveReader
from .topics import CAMERA_TOPIC, LOCATION_TOPICS
from .trackio import format_time_iso


@dataclass
class ChannelSummary:
    topic: str
    schema: str
    count: int
    rate_hz: float | None


@dataclass
class DriveSummary:
    path: str
    size_bytes: int
    source: str
    created_utc: str
    format_version: int
    truncated: bool
    has_summary: bool
    start_ns: int | None
    end_ns: int | None
    duration_s: float
    channels: list[ChannelSummary]
    frame_size_px: tuple[int, int] | None
    camera: dict | None
    geo_origin: dict | None
    track_topic: str | None
    bbox_deg: tuple[float, float, float, float] | None  # min_lat, min_lon, max_lat, max_lon
    distance_m: float | None
    corrupt_chunks: int
    corrupt_frames: int | None  # None unless frames were checked
    extra: dict = field(default_factory=dict)
    undecodable_messages: int = 0  # skipped while summarizing (e.g. stamp_ns beyond int64)

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(path: str | os.PathLike, *, check_frames: bool = False) -> DriveSummary:
    """Read a drive's summary; with ``check_frames`` also scan every frame for corruption (no decode)."""
    with DriveReader(path) as drive:
        infos = drive.channels
        track_topic = next((t for t in LOCATION_TOPICS if t in infos and infos[t].message_count), None)
        bbox = distance = None
        if track_topic is not None:
            track = drive.track(track_topic)
            if len(track):
                bbox = track.bounds()
                distance = track.distance_m()
        camera = drive.camera()
        frame_size = drive.frame_size() if CAMERA_TOPIC in infos else None
        corrupt_frames = None
        if check_frames and CAMERA_TOPIC in infos:
            before = drive.errors.corrupt_frames
            for _ in drive.images():
                pass
            corrupt_frames = drive.errors.corrupt_frames - before
        meta = drive.metadata
        return DriveSummary(
            path=str(path),
            size_bytes=os.path.getsize(path),
            source=meta.source,
            created_utc=meta.created_utc,
            format_version=meta.format_version,
            truncated=drive.truncated,
            has_summary=drive.has_summary,
            start_ns=drive.start_ns,
            end_ns=drive.end_ns,
            duration_s=drive.duration_s,
            channels=[ChannelSummary(c.topic, c.schema_name, c.message_count, c.rate_hz) for c in infos.values()],
            frame_size_px=frame_size,
            camera=None if camera is None else camera.to_record(),
            geo_origin=None if meta.geo_origin is None else meta.geo_origin.to_dict(),
            track_topic=track_topic,
            bbox_deg=bbox,
            distance_m=distance,
            corrupt_chunks=drive.errors.corrupt_chunks,
            corrupt_frames=corrupt_frames,
            extra=dict(meta.extra),
            undecodable_messages=drive.errors.undecodable_messages,
        )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def format_summary(s: DriveSummary) -> str:
    """Human-readable text, one fact per line (``key: value``), as ``mcap info`` prints."""
    lines = [f"drive:     {s.path} ({_size(s.size_bytes)})"]
    if s.truncated:
        lines.append("status:    TRUNCATED - the recording was cut off mid-write; read up to its last complete chunk")
    elif not s.has_summary:
        lines.append("status:    no summary section (not closed cleanly?); all data present")
    else:
        lines.append("status:    complete")
    if s.corrupt_chunks:
        lines.append(f"damage:    {s.corrupt_chunks} corrupt chunk(s) skipped")
    if s.undecodable_messages:
        lines.append(f"damage:    {s.undecodable_messages} undecodable message(s) skipped")
    if s.corrupt_frames is not None:
        lines.append(f"frames:    {s.corrupt_frames} corrupt frame(s)")
    lines.append(f"source:    {s.source or '-'}")
    if s.created_utc:
        lines.append(f"created:   {s.created_utc}")
    if s.start_ns is not None and s.end_ns is not None:
        lines.append(f"time:      {format_time_iso(s.start_ns)} .. {format_time_iso(s.end_ns)}")
    lines.append(f"duration:  {s.duration_s:.2f} s")
    if s.frame_size_px is not None:
        lines.append(f"frame:     {s.frame_size_px[0]}x{s.frame_size_px[1]} px")
    if s.camera is not None:
        c = s.camera
        lines.append(f"camera:    fx={float(c['fx_px']):.1f} fy={float(c['fy_px']):.1f} cx={float(c['cx_px']):.1f} cy={float(c['cy_px']):.1f} px")
    if s.geo_origin is not None:
        o = s.geo_origin
        lines.append(f"origin:    {o['lat_deg']:.7f}, {o['lon_deg']:.7f}, {o['alt_m']:.1f} m")
    if s.bbox_deg is not None:
        a, b, c, d = s.bbox_deg
        lines.append(f"bbox:      lat {a:.7f} .. {c:.7f}, lon {b:.7f} .. {d:.7f} ({s.track_topic})")
    if s.distance_m is not None:
        lines.append(f"distance:  {s.distance_m:.1f} m ({s.track_topic})")
    lines.append("channels:")
    width = max((len(c.topic) for c in s.channels), default=0)
    schema_width = max((len(c.schema) for c in s.channels), default=0)
    for c in s.channels:
        rate = "-" if c.rate_hz is None else f"{c.rate_hz:.2f} Hz"
        lines.append(f"  {c.topic:<{width}}  {c.schema:<{schema_width}}  {c.count:>7} msgs  {rate:>10}")
    return "\n".join(lines)


__all__ = ["ChannelSummary", "DriveSummary", "format_summary", "summarize"]
