"""Process-replay logs of the issue-13 scenarios in the default city, for tests/nodes/test_fusion_scenarios.py.

openpilot's process replay in small: a scenario drive of the default city (the city the default PoseNet
checkpoint knows) is rendered, PoseNet (`nodes.posenet`'s node, its validity check included) is run on
it offline, and what the fusion node subscribes to is kept: ``posenet/fix`` (with hypotheses),
``odometry`` (typical noise) and ``gps/fix`` (the truth the tests score against), plus the drive's
metadata (``kidnap_stamp_ns``, ``blackout_stamps_ns``). No images: a log is ~100 kB, and the tests replay
it through the fusion node in well under a second, without torch.

    PYTHONPATH=. python benchmarks/fusion_scenarios.py             # all three into tests/nodes/data/
    PYTHONPATH=. python benchmarks/fusion_scenarios.py kidnap      # one

Re-make them after a new default PoseNet checkpoint (the fixes change; the tests' outcomes should not).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.drives import DriveMetadata, DriveReader, DriveWriter  # noqa: E402
from perception.drives.topics import CAMERA_TOPIC, GPS_TOPIC, ODOMETRY_TOPIC, POSENET_TOPIC  # noqa: E402
from sim_data.drive import SimConfig, write_drive  # noqa: E402

OUT_DIR = Path(__file__).resolve().parents[1] / "tests" / "nodes" / "data"
# The named scenario routes at their default route seeds, default city, 5 frames/s (PoseNet's rate on a
# CPU), long enough for the event and what follows it.
SCENARIOS: dict[str, SimConfig] = {
    "blackout": SimConfig(route="blackout", frames=225, fps=5.0),  # dark 20-32 s, 13 s after
    "kidnap": SimConfig(route="kidnap", frames=225, fps=5.0),  # carried off at 30 s, 15 s after
    "stop_at_light": SimConfig(route="stop_at_light", fps=5.0),  # the route's length: the wait, driving off
}


def make(name: str, out_dir: Path = OUT_DIR, model: str = "") -> Path:
    from nodes.clock import run_offline
    from nodes.posenet import PoseNetNode, PoseNetParams

    out = out_dir / f"fusion_{name}.mcap"
    with tempfile.TemporaryDirectory() as tmp:
        drive_path = Path(tmp) / "drive.mcap"
        write_drive(SCENARIOS[name], drive_path)
        with DriveReader(drive_path) as drive:
            meta = drive.metadata
            images = list(drive.read(CAMERA_TOPIC))
            odometry = list(drive.read(ODOMETRY_TOPIC))
            truth = list(drive.read(GPS_TOPIC))
    node = PoseNetNode(PoseNetParams(threads=1, model=model))
    fixes = [m for t, m in run_offline(node, [(CAMERA_TOPIC, im) for im in images]) if t == POSENET_TOPIC]
    out_dir.mkdir(parents=True, exist_ok=True)
    source = f"benchmarks/fusion_scenarios.py {name}: {meta.source}; PoseNet {node.model_id}"
    with DriveWriter(out, DriveMetadata(source=source, geo_origin=meta.geo_origin, extra=meta.extra)) as w:
        for topic, msgs in ((POSENET_TOPIC, fixes), (ODOMETRY_TOPIC, odometry), (GPS_TOPIC, truth)):
            for m in msgs:
                w.write(topic, m)
    print(f"{out}: {len(fixes)} fixes ({sum(not f.valid for f in fixes)} flagged), {len(odometry)} odometry, "
          f"{out.stat().st_size / 1e3:.0f} kB")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"scenarios: {', '.join(SCENARIOS)} (default: all)")
    ap.add_argument("--model", default="", help="PoseNet checkpoint (default: the default weights)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    for name in args.names or list(SCENARIOS):
        make(name, model=args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
