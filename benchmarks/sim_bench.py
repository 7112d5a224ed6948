"""Synthetic city benchmark: frames per second of ``sim_data`` drives, rendering alone and rendering
plus writing the drive file, with the writer alone (the same frames, pre-rendered) as the baseline
measured in the same run.

- setup: city generation (cached per process: only the first route pays it) + renderer setup (lighting
  the texture banks, the sky);
- render: simulation (traffic, pedestrians, signals) + rendering + ground truth, frames kept in memory;
- render+write: ``write_drive`` (JPEG q90 frames, GPS, odometry, boxes, masks into MCAP, zstd);
- write only: the same frames through ``DriveWriter`` again, nothing rendered: what the file costs.

    .venv/bin/python benchmarks/sim_bench.py                          # train + test_reverse, 600 frames
    .venv/bin/python benchmarks/sim_bench.py --frames 3000 --routes train --size 320x240 --json
    .venv/bin/python benchmarks/sim_bench.py --full                    # whole routes, as `streetloc sim`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

from nodes.commands import pair_of_ints
from perception import classes as C
from perception.drives import CameraInfo, DriveMetadata, DriveWriter
from sim_data import SimConfig, SimDrive, generate_city, write_drive


def bench_route(route: str, frames: int | None, size: tuple[int, int], blocks: tuple[int, int]) -> dict:
    config = SimConfig(route=route, frames=frames, width_px=size[0], height_px=size[1], blocks=blocks)
    t0 = time.perf_counter()
    generate_city(config.city_seed, *blocks)
    city_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    it = iter(SimDrive(config))
    first = next(it)
    setup_s = time.perf_counter() - t0
    kept = [first]
    t0 = time.perf_counter()
    for f in it:
        kept.append(f)
    render_s = time.perf_counter() - t0
    n = len(kept)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.mcap")
        summary = write_drive(config, path)
        size_mb = summary.bytes / 1e6
        # Baseline: the writer alone, on the frames rendered above.
        cam = SimDrive(config).camera
        meta = DriveMetadata(source="bench", camera=CameraInfo(cam.width_px, cam.height_px, cam.fx_px, cam.fy_px,
                                                               cam.cx_px, cam.cy_px))
        names = list(C.CLASS_NAMES)
        t0 = time.perf_counter()
        with DriveWriter(os.path.join(tmp, "baseline.mcap"), meta, flush_interval_s=None) as w:
            for f in kept:
                w.add_image(f.stamp_ns, f.image_bgr)
                w.add_gps(f.stamp_ns, lat_deg=f.lat_deg, lon_deg=f.lon_deg, alt_m=f.alt_m, heading_deg=f.heading_deg,
                          horizontal_std_m=0.1)
                w.add_odometry(f.stamp_ns, speed_mps=f.speed_mps, yaw_rate_radps=f.yaw_rate_radps)
                w.add_boxes(f.stamp_ns, f.boxes_xyxy, f.box_class_ids, names)
                w.add_label_mask(f.stamp_ns, f.label_mask, names)
        write_s = time.perf_counter() - t0
    return {
        "route": route,
        "size": f"{size[0]}x{size[1]}",
        "blocks": f"{blocks[0]}x{blocks[1]}",
        "frames": n,
        "city_s": city_s,
        "setup_s": setup_s,
        "render_fps": (n - 1) / render_s,
        "render_write_fps": summary.frames / summary.wall_s,
        "write_only_fps": n / write_s,
        "drive_mb": size_mb,
        "boxes_per_frame": sum(len(f.boxes_xyxy) for f in kept) / n,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--routes", default="train,test_reverse", help="comma-separated route names")
    p.add_argument("--frames", type=int, default=600, help="frames per route (ignored with --full)")
    p.add_argument("--full", action="store_true", help="whole routes (train: ~4000 frames)")
    p.add_argument("--size", default=(320, 240), help="WxH pixels (default 320x240)",
                   type=lambda t: pair_of_ints(t, option="--size", names="WxH"))
    p.add_argument("--blocks", default=(3, 2), help="district size ExN blocks (default 3x2)",
                   type=lambda t: pair_of_ints(t, option="--blocks", names="ExN", high=16))
    p.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = p.parse_args()
    size, blocks = args.size, args.blocks
    rows = [bench_route(r, None if args.full else args.frames, size, blocks)  # type: ignore[arg-type]
            for r in args.routes.split(",")]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"\nsim_data frames/s ({machine}; one process, single-threaded numpy)\n")
    print("| route | size | frames | city gen s | setup s | render fps | render+write fps | write only fps (baseline) "
          "| MB | boxes/frame |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['route']} | {r['size']} | {r['frames']} | {r['city_s']:.2f} | {r['setup_s']:.2f} | "
              f"{r['render_fps']:.0f} | {r['render_write_fps']:.0f} | {r['write_only_fps']:.0f} | {r['drive_mb']:.1f} | "
              f"{r['boxes_per_frame']:.1f} |")
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
