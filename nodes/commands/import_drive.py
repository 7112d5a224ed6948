"""``streetloc import``: turn other recordings into drives (photos with EXIF GPS, video + track, KITTI raw)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from nodes.commands import positive_float, positive_int


def _output(args: argparse.Namespace, default_name: str) -> Path:
    return Path(args.output) if args.output else Path.cwd() / f"{default_name}.mcap"


def _frame_slice(text: str) -> slice:
    """``START:STOP[:STEP]``: the frame selection of ``DRIVE@START:STOP:STEP`` (`DriveSpec.parse`, not called
    here: perception.datasets imports torch, seconds for an import that needs none)."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not START:STOP[:STEP] (e.g. 11:18)")
    try:
        values = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not START:STOP[:STEP] of integers (e.g. 11:18)") from None
    if len(values) == 3 and values[2] is not None and values[2] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the step must be positive")
    return slice(*values)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _report(result) -> int:
    print(result.summary())
    for note in result.notes:
        print(f"  note: {note}")
    return 0


def _photos(args: argparse.Namespace) -> int:
    from perception.drives.importers import import_photos

    folder = Path(args.folder)
    result = import_photos(
        folder, _output(args, folder.resolve().name), max_width_px=args.max_width, interval_s=args.interval_s,
        jpeg_quality=args.jpeg_quality, heading=args.heading, frames=args.frames,
    )
    return _report(result)


def _video(args: argparse.Namespace) -> int:
    from perception.drives.importers import import_video
    from perception.drives.trackio import parse_time_ns

    start_ns = None
    if args.start_time is not None:
        try:
            start_ns = parse_time_ns(args.start_time)
        except ValueError as exc:
            raise ValueError(f"--start-time: {exc}") from None
    video = Path(args.video)
    result = import_video(
        video, args.track, _output(args, video.stem), offset_s=args.offset, start_time_ns=start_ns, fps=args.fps,
        max_width_px=args.max_width, hfov_deg=args.hfov_deg, date=args.date, max_gap_s=args.max_gap_s,
        jpeg_quality=args.jpeg_quality,
    )
    return _report(result)


def _kitti(args: argparse.Namespace) -> int:
    from perception.drives.importers import import_kitti

    drive = Path(args.drive)
    result = import_kitti(
        drive, _output(args, drive.resolve().name), camera=args.camera, max_frames=args.max_frames,
        max_width_px=args.max_width, jpeg_quality=args.jpeg_quality,
    )
    return _report(result)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "import",
        help="turn other recordings into drives: photos with EXIF GPS, video + GPX/NMEA/CSV track, KITTI raw",
        description="Write another recording as a drive (MCAP): geotagged photos, a video with a GPS track, "
        "or a KITTI raw drive. Bad input is rejected with the file and line that is wrong.",
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", help="drive file to write (default: ./<input name>.mcap)")
        p.add_argument("--max-width", type=positive_int, metavar="PX", help="shrink wider frames to this width")
        p.add_argument("--jpeg-quality", type=int, default=90, metavar="Q", help="JPEG quality of re-encoded frames (default 90)")

    photos = kinds.add_parser("photos", help="a folder of geotagged JPEG photos (EXIF GPS)")
    photos.add_argument("folder", help="folder of .jpg photos")
    photos.add_argument("--interval-s", type=positive_float, metavar="S",
                        help="photos without EXIF time: order by file name, S seconds apart")
    photos.add_argument("--heading", choices=("auto", "exif", "track"), default="auto",
                        help="auto: EXIF direction, else from the track (default); exif: EXIF only; track: always from the track")
    photos.add_argument("--frames", type=_frame_slice, metavar="START:STOP[:STEP]",
                        help="keep only these photos of the time order, as DRIVE@START:STOP elsewhere (11:18: the "
                        "12th to the 18th): a held-out stretch as its own drive; headings still from all photos")
    common(photos)
    photos.set_defaults(func=_photos)

    video = kinds.add_parser("video", help="a video file with a GPX, NMEA or CSV track")
    video.add_argument("video", help="video file (anything OpenCV reads: mp4, mov, avi, mkv)")
    video.add_argument("--track", required=True, help="GPS track: .gpx, .nmea/.log/.txt (NMEA 0183), or .csv")
    video.add_argument("--offset", type=float, default=0.0, metavar="S",
                       help="seconds added to every frame time (video clock behind GPS: positive)")
    video.add_argument("--start-time", metavar="ISO", help="UTC time of the first frame, e.g. 2024-05-01T10:00:00Z "
                       "(default: the video's creation time)")
    video.add_argument("--fps", type=positive_float, help="keep at most this many frames per second")
    video.add_argument("--hfov-deg", type=positive_float, help="horizontal field of view, to store intrinsics")
    video.add_argument("--date", type=_date, help="UTC date (YYYY-MM-DD) for NMEA logs without RMC sentences")
    video.add_argument("--max-gap-s", type=positive_float, default=5.0,
                       help="no GPS for frames between fixes further apart than this (default 5)")
    common(video)
    video.set_defaults(func=_video)

    kitti = kinds.add_parser("kitti", help="a KITTI raw drive folder (image_02 + oxts)")
    kitti.add_argument("drive", help="e.g. 2011_09_26/2011_09_26_drive_0001_sync")
    kitti.add_argument("--camera", default="image_02", help="camera folder (default image_02, left colour)")
    kitti.add_argument("--max-frames", type=positive_int, help="import only the first N frames")
    common(kitti)
    kitti.set_defaults(func=_kitti)
