"""``streetloc sim``: render a drive through the synthetic city (sim_data) with full ground truth."""

from __future__ import annotations

import argparse
import sys
import time

from localization.geodesy import GeoOrigin
from nodes.commands import pair_of_ints


def _origin(text: str) -> GeoOrigin:
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--origin {text!r}: expected LAT,LON or LAT,LON,ALT in degrees and metres") from None
    if len(parts) not in (2, 3):
        raise ValueError(f"--origin {text!r}: expected LAT,LON or LAT,LON,ALT in degrees and metres")
    return GeoOrigin(*parts)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sim",
        help="render a drive through the synthetic city (MCAP with GPS truth, boxes, masks)",
        description="Render a drive through the procedural city of sim_data: camera frames with the true GPS "
        "pose, odometry, intrinsics, boxes and label masks of every frame, written as a streetloc drive "
        "(.mcap). Equal arguments give identical frames.",
    )
    p.add_argument("-o", "--output", metavar="DRIVE.mcap", help="drive file to write")
    p.add_argument("--preview", metavar="OUT.png", help="contact sheet of frames with masks and boxes overlaid")
    p.add_argument("--preview-frames", type=int, default=8, metavar="N", help="frames on the contact sheet (8)")
    p.add_argument("--city-seed", type=int, default=0, help="which city (0)")
    p.add_argument("--blocks", default="3x2", metavar="ExN", help="district size in blocks, east x north (3x2)")
    p.add_argument("--route", default=None,
                   help="named route (train; random when only --route-seed is given); see --list-routes")
    p.add_argument("--route-seed", type=int, default=None, help="seed of random routes and traffic (route's default)")
    p.add_argument("--frames", type=int, default=None, help="frames to render (default: to the route's end)")
    p.add_argument("--size", default="320x240", metavar="WxH", help="image size in pixels (320x240)")
    p.add_argument("--fps", type=float, default=10.0, help="frames per second of the drive (10)")
    p.add_argument("--hfov", type=float, default=70.0, metavar="DEG", help="horizontal field of view (70)")
    p.add_argument("--camera-height", type=float, default=1.5, metavar="M", help="camera height above the road (1.5)")
    p.add_argument("--time-of-day", type=float, default=None, metavar="H", help="local time 0-24 h (route's default)")
    p.add_argument("--traffic", choices=("light", "normal", "heavy"), default=None, help="traffic (route's default)")
    sky = p.add_mutually_exclusive_group()
    sky.add_argument("--overcast", dest="overcast", action="store_true", default=None, help="grey sky, soft light")
    sky.add_argument("--clear", dest="overcast", action="store_false", help="clear sky")
    p.add_argument("--noise", action="store_true", help="add camera noise (stronger in the dark)")
    p.add_argument("--motion-blur", action="store_true", help="blur frames while turning")
    p.add_argument("--odometry-noise", default="typical", choices=("none", "typical", "poor"), metavar="PRESET",
                   help="wheel-speed/gyro error model of the odometry channel: none (the truth), typical, poor "
                   "(typical); see sim_data/odometry.py")
    p.add_argument("--origin", default=None, metavar="LAT,LON[,ALT]",
                   help="geo origin of the city (default: downtown Los Angeles)")
    p.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of the stored frames (90)")
    p.add_argument("--export-map", metavar="MAP.geojson",
                   help="write the city's landmark map (signal heads, signs, lamp posts as GeoJSON points with "
                        "OpenStreetMap tags; docs/landmarks.md) for fusion's map= parameter; alone, renders nothing")
    p.add_argument("--map-of", metavar="DRIVE.mcap",
                   help="with --export-map: the city (seed, blocks) and geo origin of this synthetic drive")
    p.add_argument("--list-routes", action="store_true", help="list the named routes and exit")
    p.add_argument("--survey", choices=("turns",), default=None,
                   help="instead of a drive, write a survey for a place index: views along every turn of "
                        "every intersection in every lane (sim_data/survey.py); with -o")
    p.add_argument("--survey-spacing", type=float, default=1.0, metavar="M",
                   help="with --survey: metres between views along a turn (1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from sim_data.drive import SimConfig, SimDrive, default_origin, write_drive
    from sim_data.preview import PreviewSampler, write_preview
    from sim_data.routes import ROUTES

    if args.list_routes:
        width = max(len(n) for n in ROUTES)
        for name, spec in ROUTES.items():
            print(f"{name.ljust(width)}  {spec.description}")
        return 0
    if args.map_of and not args.export_map:
        raise ValueError("--map-of DRIVE: only with --export-map MAP.geojson")
    if args.export_map:
        export_map(args)
        if not args.output and not args.preview:
            return 0
    if not args.output and not args.preview:
        raise ValueError("nothing to do: give -o DRIVE.mcap, --preview OUT.png and/or --export-map MAP.geojson")
    if args.preview_frames < 1:
        raise ValueError(f"--preview-frames {args.preview_frames}: must be at least 1")
    # Sizes and the origin are parsed here, not by argparse, so that a bad one is a one-line error.
    size = pair_of_ints(args.size, option="--size", names="WIDTHxHEIGHT")
    config = SimConfig(
        city_seed=args.city_seed,
        blocks=pair_of_ints(args.blocks, option="--blocks", names="EASTxNORTH", low=0),  # SimConfig bounds it
        route=args.route or ("random" if args.route_seed is not None else "train"),
        route_seed=args.route_seed,
        frames=args.frames,
        width_px=size[0],
        height_px=size[1],
        fps=args.fps,
        hfov_deg=args.hfov,
        camera_height_m=args.camera_height,
        time_of_day_h=args.time_of_day,
        traffic=args.traffic,
        overcast=args.overcast,
        camera_noise=args.noise,
        motion_blur=args.motion_blur,
        odometry_noise=args.odometry_noise,
        origin=_origin(args.origin) if args.origin else default_origin(),
    )
    if args.survey:
        from sim_data.survey import write_survey

        if not args.output or args.preview:
            raise ValueError("--survey writes a survey drive: give -o SURVEY.mcap (and no --preview)")
        summary = write_survey(config, args.output, kind=args.survey, spacing_m=args.survey_spacing,
                               jpeg_quality=args.jpeg_quality)
        print(f"wrote {summary.path}: a {args.survey} survey of {summary.frames} views in {summary.wall_s:.1f} s, "
              f"{summary.bytes / 1e6:.1f} MB")
        return 0
    sampler = PreviewSampler(args.preview_frames)
    t0 = time.perf_counter()
    last = [t0]

    def on_frame(frame) -> None:
        sampler(frame)
        now = time.perf_counter()
        if not args.quiet and now - last[0] > 2.0:
            last[0] = now
            print(f"\r  frame {frame.index + 1}  t={frame.t_s:.1f}s  {(frame.index + 1) / (now - t0):.0f} frames/s",
                  end="", file=sys.stderr, flush=True)

    if args.output:
        summary = write_drive(config, args.output, jpeg_quality=args.jpeg_quality, on_frame=on_frame)
        n, wall = summary.frames, summary.wall_s
        if not args.quiet:
            print("\r", end="", file=sys.stderr)
        print(f"wrote {summary.path}: {n} frames ({summary.duration_s:.1f} s of driving) in {wall:.1f} s "
              f"({summary.frames_per_s:.0f} frames/s), {summary.bytes / 1e6:.1f} MB")
    else:
        n = 0
        for frame in SimDrive(config):
            on_frame(frame)
            n += 1
        if not args.quiet:
            print("\r", end="", file=sys.stderr)
        print(f"rendered {n} frames in {time.perf_counter() - t0:.1f} s")
    if args.preview:
        write_preview(args.preview, sampler.frames())
        print(f"wrote {args.preview}")
    return 0


def export_map(args: argparse.Namespace) -> None:
    """Write the landmark map of the city of ``--city-seed``/``--blocks``/``--origin``, or of the drive
    ``--map-of`` names (its metadata records the city and the origin)."""
    import json

    from sim_data.city import generate_city
    from sim_data.drive import default_origin
    from sim_data.landmarks import city_landmarks

    if args.map_of:
        from perception.drives import DriveReader

        with DriveReader(args.map_of) as reader:
            meta = reader.metadata
        extra = meta.extra
        if extra.get("generator") != "sim_data" or "city_seed" not in extra or "blocks" not in extra:
            raise ValueError(f"--map-of {args.map_of}: not a synthetic drive (its metadata names no sim_data city: "
                             "city_seed, blocks)")
        seed, blocks = int(extra["city_seed"]), (int(extra["blocks"][0]), int(extra["blocks"][1]))
        origin = meta.geo_origin or default_origin()
    else:
        seed = args.city_seed
        blocks = pair_of_ints(args.blocks, option="--blocks", names="EASTxNORTH", low=1)
        origin = _origin(args.origin) if args.origin else default_origin()
    landmark_map = city_landmarks(generate_city(seed, *blocks), origin)
    with open(args.export_map, "w", encoding="utf-8") as f:
        json.dump(landmark_map.to_geojson(), f, indent=None, separators=(",", ":"))
        f.write("\n")
    counts = ", ".join(f"{n} {k}" for k, n in sorted(landmark_map.counts().items()))
    print(f"wrote {args.export_map}: {len(landmark_map)} landmarks of city_seed={seed} blocks={blocks[0]}x{blocks[1]} "
          f"({counts})")
