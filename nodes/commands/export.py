"""``streetloc export DRIVE -o OUT``: a GPS or pose channel as GPX or GeoJSON."""

from __future__ import annotations

import argparse

from perception.drives.topics import GPS_TOPIC


def _run(args: argparse.Namespace) -> int:
    from perception.drives.export import export_track

    count = export_track(args.drive, args.output, topic=args.topic, fmt=args.format, points=args.points)
    print(f"wrote {args.output}: {count} fixes from {args.topic}")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a drive's GPS or pose channel as GPX or GeoJSON",
        description="Write the fixes of a GPS or pose channel (gps/fix, localization/pose, posenet/fix) as a "
        "GPX 1.1 track or a GeoJSON LineString.",
    )
    parser.add_argument("drive", help="drive file (.mcap)")
    parser.add_argument("-o", "--output", required=True, help="output file: .gpx or .geojson")
    parser.add_argument("--topic", default=GPS_TOPIC, help="channel to export (default gps/fix)")
    parser.add_argument("--format", choices=("gpx", "geojson"), help="default: from the output suffix")
    parser.add_argument("--points", action="store_true", help="GeoJSON: also one Point feature per fix")
    parser.set_defaults(func=_run)
