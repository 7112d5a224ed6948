"""benchmarks/landmarks_offline.py --truth-boxes (the oracle): the detector's boxes of a run are replaced by
the drive's truth boxes of the same frames, keeping what the fusion node needs from the detections."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from perception.classes import SIGN
from perception.drives import DriveReader
from perception.drives.messages import Detections, Header
from perception.drives.topics import DETECTIONS_TOPIC, ODOMETRY_TOPIC
from sim_data.drive import SimConfig, write_drive

REPO = Path(__file__).resolve().parents[2]


def _benchmark():
    spec = importlib.util.spec_from_file_location("landmarks_offline", REPO / "benchmarks" / "landmarks_offline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_truth_boxes_replace_the_detectors_frame_by_frame(tmp_path):
    path = tmp_path / "d.mcap"
    write_drive(SimConfig(route="random", route_seed=73, frames=20, fps=5.0), path)
    with DriveReader(path) as drive:
        truth = {b.header.stamp_ns: b for b in drive.boxes()}
        stamps = sorted(truth)
        empty = np.zeros((0, 4), np.float32)
        run = [(DETECTIONS_TOPIC, Detections(Header(stamp_ns=s, seq=k), empty, np.zeros(0, np.int32),
                                             np.zeros(0, np.float32), image_width_px=320, image_height_px=240,
                                             model_id="detector-x"))
               for k, s in enumerate(stamps)]
        run.append((ODOMETRY_TOPIC, object()))
        out = _benchmark()._with_truth_boxes(run, drive)
    assert len(out) == len(run) and out[-1] == run[-1]  # other inputs untouched
    dets = [m for t, m in out if t == DETECTIONS_TOPIC]
    assert [d.header.stamp_ns for d in dets] == stamps
    assert all(d.image_width_px == 320 and d.image_height_px == 240 and d.model_id == "truth" for d in dets)
    assert sum(int(np.sum(d.class_ids == SIGN)) for d in dets) > 0  # the drive's signs are there
    for d in dets:
        np.testing.assert_array_equal(d.boxes_xyxy_px, truth[d.header.stamp_ns].boxes_xyxy_px)
