"""Read-throughput benchmark of a 640x480 JPEG drive: DriveReader against the plain mcap reader.

    python -m perception.drives.benchmark [--frames 600] [--repeat 5] [--clock wall|cpu] [--keep DIR]

Writes a synthetic drive (textured 640x480 frames at 30 Hz, JPEG q90, GPS at 10 Hz, odometry at
60 Hz), then times, on the same file and warm page cache, best of ``--repeat`` runs (default 5) by the
wall clock, or with ``--clock cpu`` by this process's CPU time (steadier on a shared machine, where
waiting for a core shows in the wall clock):

- ``mcap iter_messages``: ``mcap.reader.make_reader(f).iter_messages(topics=[camera/image])``, the
  floor for any reader of this file (no protobuf parse, no CRC check);
- ``DriveReader.messages``: the same library reader with chunk CRC checks, as ``RawMessage`` tuples;
- ``DriveReader.images``: + protobuf parse + JPEG marker and size check into bus ``Image`` records
  (what replay publishes);
- ``DriveReader.frames``: + GPS interpolated at each frame;
- ``DriveReader.images(decode=True)``: + JPEG decode to BGR (what a perception node pays), one run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .metadata import CameraInfo, DriveMetadata
from .reader import DriveReader
from .topics import CAMERA_TOPIC
from .writer import DriveWriter

T0_NS = 1_700_000_000_000_000_000


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    # Street-like content compresses like street imagery: smooth regions plus edges plus some noise.
    import cv2

    small = rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    image = cv2.GaussianBlur(image, (5, 5), 0)
    noise = rng.integers(0, 12, image.shape, dtype=np.uint8)
    return cv2.add(image, noise)


def write_benchmark_drive(path: Path, frames: int, width: int = 640, height: int = 480) -> float:
    """Write the benchmark drive; returns the seconds spent writing."""
    rng = np.random.default_rng(0)
    base = _texture(rng, width * 2, height)
    camera = CameraInfo.from_hfov(width, height, 70.0)
    start = time.perf_counter()
    with DriveWriter(path, DriveMetadata(source="benchmark", camera=camera)) as writer:
        period_ns = 1_000_000_000 // 30
        for i in range(frames):
            stamp = T0_NS + i * period_ns
            shift = (i * 7) % width  # the camera pans: every frame differs
            writer.add_image(stamp, np.ascontiguousarray(base[:, shift : shift + width]))
            if i % 3 == 0:
                writer.add_gps(stamp, lat_deg=55.7 + i * 1e-6, lon_deg=13.19, alt_m=40.0, heading_deg=0.0)
            for k in range(2):  # ~60 Hz odometry
                writer.add_odometry(stamp + k * period_ns // 2, speed_mps=5.0, yaw_rate_radps=0.0)
    return time.perf_counter() - start


def _best(fn, repeat: int, clock=time.perf_counter) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeat):
        start = clock()
        count = fn()
        best = min(best, clock() - start)
    return best, count


def run(frames: int, repeat: int, keep: Path | None, clock: str = "wall") -> list[tuple[str, float]]:
    from mcap.reader import make_reader

    folder = keep or Path(tempfile.mkdtemp(prefix="streetloc-bench-"))
    path = folder / "bench_640x480.mcap"
    write_s = write_benchmark_drive(path, frames)
    size_mb = os.path.getsize(path) / 1e6
    print(f"drive: {path} {frames} frames 640x480 JPEG q90, {size_mb:.1f} MB ({size_mb * 1e3 / frames:.0f} kB/frame); "
          f"written in {write_s:.2f} s ({frames / write_s:.0f} frames/s incl. JPEG encode)")

    def mcap_only() -> int:
        with open(path, "rb") as f:
            return sum(1 for _ in make_reader(f).iter_messages(topics=[CAMERA_TOPIC]))

    def drive_messages() -> int:
        with DriveReader(path) as d:
            return sum(1 for _ in d.messages(CAMERA_TOPIC))

    def drive_images() -> int:
        with DriveReader(path) as d:
            return sum(1 for _ in d.images())

    def drive_frames() -> int:
        with DriveReader(path) as d:
            return sum(1 for f in d.frames() if f.gps is not None)

    def drive_decoded() -> int:
        with DriveReader(path) as d:
            return sum(1 for _ in d.images(decode=True))

    results = []
    for name, fn, n_repeat in (
        ("mcap iter_messages (baseline)", mcap_only, repeat),
        ("DriveReader.messages", drive_messages, repeat),
        ("DriveReader.images", drive_images, repeat),
        ("DriveReader.frames (+GPS)", drive_frames, repeat),
        ("DriveReader.images(decode=True)", drive_decoded, 1),
    ):
        seconds, count = _best(fn, n_repeat, time.process_time if clock == "cpu" else time.perf_counter)
        rate = count / seconds
        results.append((name, rate))
        print(f"{name:<34} {count:>6} frames  {seconds * 1e3:8.1f} ms  {rate:>9.0f} frames/s  {rate * size_mb / frames:7.0f} MB/s")
    if keep is None:
        path.unlink()
        folder.rmdir()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600, help="frames in the drive (default 600 = 20 s at 30 Hz)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per reader; the best counts (default 5)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time by the wall clock (default) or by this process's CPU time")
    parser.add_argument("--keep", type=Path, help="write the drive into this folder and keep it")
    args = parser.parse_args(argv)
    run(args.frames, args.repeat, args.keep, args.clock)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
