"""A video file plus a GPS track (GPX, NMEA or CSV) into a drive.

Alignment: frame ``i`` is stamped ``video_start + t_i + offset``, where ``t_i`` is the frame's time in
the video and ``video_start`` the video's creation time (the MP4/MOV ``mvhd`` box), or ``start_time_ns``
when given. Phones often write the creation time when recording *stops*, or in local time: measure
the error once (a landmark in view and on the map) and pass it as ``offset_s``. A CSV track with a
``t_s`` column is already relative to the video's start and needs no alignment.

GPS is interpolated to every frame time and written at the frame's stamp, so each frame has its fix;
frames outside the track (or across a gap longer than ``max_gap_s``) are kept without a fix.
"""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import cv2
import numpy as np

from localization.geodesy import GeoOrigin
from perception.drives.metadata import CameraInfo, DriveMetadata
from perception.drives.trackio import format_time_iso, read_track_file
from perception.drives.writer import DriveWriter

from ._common import ImportResult, resize_to_width

_MP4_EPOCH_OFFSET_S = 2_082_844_800  # seconds from 1904-01-01 (QuickTime epoch) to 1970-01-01
DEFAULT_TRACK_STD_M = 5.0


def _iter_boxes(f, start: int, end: int):
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header)
        body = pos + 8
        if size == 1:
            large = f.read(8)
            if len(large) < 8:
                return
            (size,) = struct.unpack(">Q", large)
            body = pos + 16
        elif size == 0:
            size = end - pos
        if size < 8:
            return
        yield kind, body, pos + size
        pos += size


def mp4_creation_time_ns(path: str | Path) -> int | None:
    """The ``mvhd`` creation time of an MP4/MOV file (UTC ns), None when absent or zero."""
    path = Path(path)
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        for kind, body, end in _iter_boxes(f, 0, size):
            if kind != b"moov":
                continue
            for inner, inner_body, _ in _iter_boxes(f, body, end):
                if inner != b"mvhd":
                    continue
                f.seek(inner_body)
                version = f.read(4)[:1]
                if version == b"\x01":
                    (created,) = struct.unpack(">Q", f.read(8))
                else:
                    (created,) = struct.unpack(">I", f.read(4))
                if created == 0:
                    return None
                return (created - _MP4_EPOCH_OFFSET_S) * 1_000_000_000
    return None


def _iso(stamp_ns: int) -> str:
    return format_time_iso(stamp_ns, 1)


def import_video(
    video: str | Path,
    track_path: str | Path,
    out: str | Path,
    *,
    offset_s: float = 0.0,
    start_time_ns: int | None = None,
    fps: float | None = None,
    max_width_px: int | None = None,
    hfov_deg: float | None = None,
    date: dt.date | None = None,
    max_gap_s: float = 5.0,
    jpeg_quality: int = 90,
) -> ImportResult:
    """Write ``video`` with GPS from ``track_path`` as a drive at ``out``.

    Args:
        offset_s: added to every frame time (seconds; positive when the video's clock is behind GPS).
        start_time_ns: the video's first-frame time, UTC ns; overrides the container's creation time.
        fps: keep at most this many frames per second (None: every frame).
        max_width_px: shrink wider frames.
        hfov_deg: horizontal field of view, for the stored intrinsics (None: no intrinsics).
        date: UTC date for NMEA logs without RMC sentences.
        max_gap_s: frames between fixes further apart than this get no GPS.
    """
    video = Path(video)
    if not video.is_file():
        raise OSError(f"{video}: video file not found")
    track_file = read_track_file(track_path, date=date)
    track = track_file.track
    result = ImportResult(Path(out))

    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise OSError(f"{video}: OpenCV cannot open this video")
    try:
        video_fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        duration_s = frame_count / video_fps if video_fps > 0 else 0.0

        if start_time_ns is not None:
            video_start_ns, time_source = int(start_time_ns), "start_time"
        else:
            created = mp4_creation_time_ns(video) if video.suffix.lower() in (".mp4", ".mov", ".m4v", ".3gp") else None
            if created is not None:
                video_start_ns, time_source = created, "creation_time"
            elif track_file.relative_time:
                video_start_ns, time_source = 0, "relative"
                result.notes.append("no video creation time: stamps count from the Unix epoch")
            else:
                raise ValueError(
                    f"{video}: no creation time in the video container; pass --start-time (UTC, ISO 8601) "
                    "to say when its first frame was taken"
                )
        if track_file.relative_time:
            track.stamp_ns = track.stamp_ns + video_start_ns  # t_s counts from the video's first frame
        offset_ns = round(offset_s * 1e9)
        first_ns = video_start_ns + offset_ns
        last_ns = first_ns + round(duration_s * 1e9)
        if track.end_ns < first_ns or track.start_ns > last_ns:
            raise ValueError(
                f"{track_file.path}: track {_iso(track.start_ns)} .. {_iso(track.end_ns)} does not overlap the video "
                f"{video.name} {_iso(first_ns)} .. {_iso(last_ns)} ({time_source}, offset {offset_s:+.1f} s); "
                "fix the alignment with --offset or --start-time"
            )
        track = track.with_motion_headings()
        speeds = track.speeds_from_motion()
        track.speed_mps = np.where(np.isfinite(track.speed_mps), track.speed_mps, speeds)

        # The size from the first decoded frame: container sizes ignore rotation metadata that OpenCV applies.
        ok, first_frame = capture.read()
        if not ok:
            raise ValueError(f"{video}: OpenCV read no frames from this video")
        first_t_ns = round(capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
        height, width = resize_to_width(first_frame, max_width_px).shape[:2]
        camera = CameraInfo.from_hfov(width, height, hfov_deg) if hfov_deg is not None else None
        origin = GeoOrigin(float(track.lat_deg[0]), float(track.lon_deg[0]), float(np.nan_to_num(track.alt_m[0])))
        metadata = DriveMetadata(
            source=f"import video {video.name} + {track_file.path.name}",
            geo_origin=origin,
            camera=camera,
            extra={
                "importer": "video",
                "video": video.name,
                "track": track_file.path.name,
                "time_source": time_source,
                "offset_s": offset_s,
                "video_fps": video_fps,
            },
        )
        keep_every_ns = round(1e9 / fps) if fps else 0
        next_keep_ns = None
        previous_t_ns = -1
        index = 0
        with DriveWriter(out, metadata, jpeg_quality=jpeg_quality) as writer:
            pending: tuple[np.ndarray, int] | None = (first_frame, first_t_ns)
            while True:
                if pending is not None:
                    frame, t_ns = pending
                    pending = None
                else:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    t_ns = round(capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
                # The container's presentation time when it is sane, else index / fps.
                if t_ns <= previous_t_ns and video_fps > 0:
                    t_ns = round(index * 1e9 / video_fps)
                previous_t_ns = t_ns
                index += 1
                if next_keep_ns is not None and t_ns < next_keep_ns:
                    continue
                next_keep_ns = t_ns + keep_every_ns - keep_every_ns // 10  # 10 % slack for jittery clocks
                stamp_ns = first_ns + t_ns
                writer.add_image(stamp_ns, resize_to_width(frame, max_width_px))
                result.frames += 1
                result.stamp(stamp_ns)
                at, inside = track.interpolate(np.array([stamp_ns]), max_gap_s=max_gap_s)
                if not inside[0]:
                    result.frames_without_gps += 1
                    continue
                std = at.horizontal_std_m[0]
                writer.add_gps(
                    stamp_ns,
                    lat_deg=float(at.lat_deg[0]),
                    lon_deg=float(at.lon_deg[0]),
                    alt_m=float(np.nan_to_num(at.alt_m[0])),
                    heading_deg=None if np.isnan(at.heading_deg[0]) else float(at.heading_deg[0]),
                    horizontal_std_m=float(std) if np.isfinite(std) and std > 0 else DEFAULT_TRACK_STD_M,
                    speed_mps=None if np.isnan(at.speed_mps[0]) else float(at.speed_mps[0]),
                )
                result.gps_fixes += 1
    finally:
        capture.release()
    return result
