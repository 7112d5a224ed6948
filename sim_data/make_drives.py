"""Regenerate the small drives shipped in ``sim_data/drives/`` (tests and the demo use them).

    .venv/bin/python -m sim_data.make_drives            # all of them
    .venv/bin/python -m sim_data.make_drives demo_320   # one

Each entry is the same as a ``streetloc sim`` command (printed as it runs, and listed in
sim_data/README.md). The frames are deterministic; the files are byte-identical as long as the JPEG
and zstd libraries are the same versions.
"""

from __future__ import annotations

import sys

from . import DRIVES_DIR
from .drive import SimConfig, write_drive

JPEG_QUALITY = 75  # small files; the frames stay clean enough for tests and looking at

# One small city (2 x 1 blocks), 160 x 120 at 2 frames/s: a training drive covering it, a test drive
# revisiting its streets the other way round, two scenarios; and a 320 x 240, 10 frames/s demo clip.
# Plus the demo drive in the default city (the default models' city).
SHIPPED: dict[str, SimConfig] = {
    "train_small": SimConfig(blocks=(2, 1), route="train", width_px=160, height_px=120, fps=2.0),
    "test_small": SimConfig(blocks=(2, 1), route="test_reverse", frames=160, width_px=160, height_px=120, fps=2.0),
    "kidnap_small": SimConfig(blocks=(2, 1), route="kidnap", frames=100, width_px=160, height_px=120, fps=2.0),
    "blackout_small": SimConfig(blocks=(2, 1), route="blackout", frames=80, width_px=160, height_px=120, fps=2.0),
    "demo_320": SimConfig(blocks=(2, 1), route="test_loop", frames=80, width_px=320, height_px=240, fps=10.0),
    # The demo drive: the default city (SimConfig defaults, 3 x 2 blocks, city seed 0) that the default
    # PoseNet checkpoint was trained on, along the held-out test_loop route (never trained on), 3 frames/s
    # so that 150 frames cover a few hundred metres.
    "demo_city": SimConfig(route="test_loop", frames=150, width_px=320, height_px=240, fps=3.0),
}


def command(name: str) -> str:
    """The ``streetloc sim`` command that writes shipped drive ``name``."""
    c = SHIPPED[name]
    parts = [f"streetloc sim --blocks {c.blocks[0]}x{c.blocks[1]} --route {c.route}"]
    if c.frames is not None:
        parts.append(f"--frames {c.frames}")
    parts.append(f"--size {c.width_px}x{c.height_px} --fps {c.fps:g} --jpeg-quality {JPEG_QUALITY}")
    parts.append(f"-o sim_data/drives/{name}.mcap")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(SHIPPED)
    unknown = [n for n in names if n not in SHIPPED]
    if unknown:
        print(f"unknown drive(s) {unknown}; the shipped drives are {list(SHIPPED)}", file=sys.stderr)
        return 2
    DRIVES_DIR.mkdir(exist_ok=True)
    for name in names:
        print(command(name))
        summary = write_drive(SHIPPED[name], DRIVES_DIR / f"{name}.mcap", jpeg_quality=JPEG_QUALITY)
        print(f"  {summary.frames} frames, {summary.bytes / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
