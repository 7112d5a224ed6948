"""The fusion node with a landmark map (``map=``): it subscribes to perception/detections, matches the sign
boxes to the map, reports ``landmarks_used`` and the landmark ids in the pose, is closer to the truth than
without the map; a bad map file is one line naming the file, feature and field; the launch files pass
``map``, and a lock-step replay of such a graph waits for the detections too."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from localization.geodesy import GeoOrigin, LocalFrame
from localization.landmarks import LandmarkMap, LandmarkParams, Pinhole, expected_boxes
from nodes.bus.messages import CameraInfo, Detections, GeoFix, Header, Odometry, Pose
from nodes.clock import run_offline
from nodes.fusion import FusionNode, FusionParams
from perception.classes import CAR, CLASS_NAMES, SIGN
from perception.drives.topics import DETECTIONS_TOPIC, ODOMETRY_TOPIC, POSE_TOPIC, POSENET_TOPIC

T0_NS = 1_718_987_400_000_000_000
FRAME = LocalFrame(GeoOrigin())
CAMERA = CameraInfo.from_hfov(320, 240, 70.0)


def _map_file(tmp_path) -> str:
    """Signal heads (post and mast arm per approach) at intersections every 80 m along a north avenue."""
    features = []
    for k in range(5):
        for travel in (0.0, 90.0, 180.0, 270.0):
            h = math.radians(travel)
            fwd, right = np.array([math.sin(h), math.cos(h)]), np.array([math.cos(h), -math.sin(h)])
            post = np.array([0.0, 80.0 * k]) + fwd * 9.2 + right * 9.2
            for mount, pos, bottom in (("post", post, 2.6), ("mast", post - right * 7.5, 4.7)):
                lat, lon, _ = FRAME.to_geodetic(*pos)
                features.append({"type": "Feature", "id": f"sig/{k}/{travel:g}/{mount}",
                                 "geometry": {"type": "Point", "coordinates": [float(lon), float(lat)]},
                                 "properties": {"highway": "traffic_signals", "min_height": str(bottom),
                                                "height": str(bottom + 1.05), "streetloc:height_m": "1.05",
                                                "streetloc:width_m": "0.38", "streetloc:position_std_m": "0.05"}})
    path = tmp_path / "map.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return str(path)


def _messages(map_path: str, seconds: float = 24.0, seed: int = 0):
    """A drive north at 10 m/s along east = 4 m: odometry 10 Hz; fixes 5 Hz with a slowly varying 3 m
    error; with each fix the detector's boxes (signs of the map as a level camera sees them, plus a car)."""
    rng = np.random.default_rng(seed)
    enu = LandmarkMap.load(map_path).in_frame(FRAME)
    pin = Pinhole(CAMERA.fx_px, CAMERA.fy_px, CAMERA.cx_px, CAMERA.cy_px, 320, 240)
    bias = np.zeros(2)
    out, truth = [], {}
    for k in range(int(seconds * 10)):
        stamp = T0_NS + k * 100_000_000
        north = -40.0 + 1.0 * k
        out.append((ODOMETRY_TOPIC, Odometry(Header(stamp), speed_mps=10.0, yaw_rate_radps=0.0)))
        if k % 2:
            continue
        truth[stamp] = (4.0, north)
        bias = 0.97 * bias + rng.normal(0, 0.7, 2)
        lat, lon, _ = FRAME.to_geodetic(4.0 + bias[0], north + bias[1])
        out.append((POSENET_TOPIC, GeoFix(Header(stamp), lat_deg=float(lat), lon_deg=float(lon), heading_deg=0.0,
                                          heading_std_deg=5.0, cov_enu_m2=(9.0, 0.0, 0.0, 9.0))))
        boxes, _ = expected_boxes(np.array([4.0, north, math.pi / 2]), enu, pin, LandmarkParams())
        boxes = boxes + rng.normal(0, 0.5, boxes.shape)
        boxes = np.vstack([boxes, [[100.0, 120.0, 140.0, 150.0]]]).astype(np.float32)  # a car
        ids = np.array([SIGN] * (len(boxes) - 1) + [CAR], np.int32)
        out.append((DETECTIONS_TOPIC, Detections(Header(stamp), boxes_xyxy_px=boxes, class_ids=ids,
                                                 scores=np.full(len(boxes), 0.9, np.float32),
                                                 class_names=list(CLASS_NAMES), image_width_px=320,
                                                 image_height_px=240, intrinsics=CAMERA)))
    return out, truth


def _errors(poses: list[Pose], truth: dict[int, tuple[float, float]]) -> np.ndarray:
    errs = []
    for p in poses:
        if p.header.stamp_ns in truth and p.status == "tracking":
            e, n, _ = FRAME.to_enu(p.lat_deg, p.lon_deg)
            errs.append(math.hypot(float(e) - truth[p.header.stamp_ns][0], float(n) - truth[p.header.stamp_ns][1]))
    return np.array(errs)


def _run(params: FusionParams, msgs) -> list[Pose]:
    node = FusionNode(params)
    if not params.map:
        msgs = [(t, m) for t, m in msgs if t != DETECTIONS_TOPIC]
    return [m for t, m in run_offline(node, msgs) if t == POSE_TOPIC]


def test_fusion_with_a_map_uses_the_landmarks_and_gets_closer(tmp_path):
    map_path = _map_file(tmp_path)
    msgs, truth = _messages(map_path)
    assert DETECTIONS_TOPIC not in FusionNode(FusionParams(tick_hz=0.0)).subscribes  # no map: no subscription
    without = _run(FusionParams(tick_hz=0.0, init_confirm_m=20.0), msgs)
    with_map = _run(FusionParams(tick_hz=0.0, init_confirm_m=20.0, map=map_path), msgs)
    used = [p for p in with_map if p.landmarks_used]
    assert len(used) > 30 and all(len(p.landmark_ids) == p.landmarks_used for p in with_map)
    assert all(i.startswith("sig/") for p in used for i in p.landmark_ids)
    assert all(DETECTIONS_TOPIC in p.inputs_used for p in used)
    assert all(p.landmarks_used == 0 for p in without)
    e0, e1 = _errors(without, truth), _errors(with_map, truth)
    assert np.median(e1) < 0.6 * np.median(e0), (np.median(e1), np.median(e0))


def test_detections_before_the_first_fix_are_skipped_and_counted(tmp_path):
    node = FusionNode(FusionParams(tick_hz=0.0, map=_map_file(tmp_path)))
    det = Detections(Header(T0_NS), boxes_xyxy_px=np.zeros((0, 4), np.float32), class_ids=np.zeros(0, np.int32),
                     scores=np.zeros(0, np.float32), image_width_px=320, image_height_px=240)
    assert node.on_message(DETECTIONS_TOPIC, det, T0_NS) == ()
    assert node.counters == {f"{DETECTIONS_TOPIC}:no_fix_yet": 1}


def test_a_bad_map_stops_the_node_with_one_line(tmp_path):
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "n1", "geometry": {"type": "Point", "coordinates": [0, 0]},
         "properties": {"highway": "traffic_signals", "min_height": "low"}}]}))
    with pytest.raises(ValueError, match=r"bad.geojson: feature 0 \(id n1\): field properties.min_height='low'"):
        FusionNode(FusionParams(map=str(path)))


@pytest.mark.parametrize("launch_file", ["launch/replay.toml", "launch/robot.toml"])
def test_launch_files_pass_the_map_and_lockstep_waits_for_detections(launch_file):
    from nodes.commands import checked_graph
    from nodes.commands.replay import answered_topics

    graph = checked_graph(launch_file, {"map": "city.geojson", "detector": "true"})
    fusion = graph.nodes["fusion"]
    assert fusion.params.map == "city.geojson" and DETECTIONS_TOPIC in fusion.subscribes
    if launch_file == "launch/replay.toml":
        assert answered_topics(graph) == [POSENET_TOPIC, DETECTIONS_TOPIC]
        assert answered_topics(checked_graph(launch_file, {"detector": "true"})) == [POSENET_TOPIC]
        # a map without the detector is refused before anything starts, saying what is missing
        with pytest.raises(ValueError, match="subscribes to 'perception/detections' but no node"):
            checked_graph(launch_file, {"map": "city.geojson"})


def test_eval_plot_marks_landmark_associations(tmp_path, capsys):
    """A recorded run whose poses used landmarks: `streetloc eval --plot --map` draws the map's landmarks and
    a magenta link from each pose to the landmarks it used; the same run's figures are unchanged."""
    import cv2

    from nodes.cli import main
    from perception.drives import DriveMetadata, DriveWriter
    from perception.drives.topics import GPS_TOPIC

    map_path = _map_file(tmp_path)
    run = tmp_path / "run.mcap"
    with DriveWriter(str(run), DriveMetadata(source="test", geo_origin=GeoOrigin())) as w:
        for k in range(100):
            t = T0_NS + k * 200_000_000
            lat, lon, _ = FRAME.to_geodetic(4.0, -20.0 + 2.0 * k)
            w.write(GPS_TOPIC, GeoFix(Header(t), float(lat), float(lon), heading_deg=0.0))
            ids = ["sig/1/0/post", "sig/1/0/mast"] if 20 <= k < 40 else []
            w.write(POSE_TOPIC, Pose(Header(t), float(lat), float(lon), cov_enu_m2=(1.0, 0.0, 0.0, 1.0),
                                     status="tracking", valid=True, landmarks_used=len(ids), landmark_ids=ids))
    png = tmp_path / "run.png"
    assert main(["eval", str(run), "--plot", str(png), "--map", map_path]) == 0
    img = cv2.imread(str(png))
    magenta = (img[:, :900, 0] > 150) & (img[:, :900, 1] < 90) & (img[:, :900, 2] > 150)
    assert magenta.sum() > 200  # the links and the marked poses
    assert main(["eval", str(run), "--plot", str(tmp_path / "plain.png")]) == 0  # no map: marks only
    capsys.readouterr()


def test_sim_exports_the_map_of_a_drives_city(tmp_path, capsys):
    """`streetloc sim --export-map` of a shipped drive's city (from its metadata) equals the map of the same
    city named by its seed and size; a drive that is not synthetic is one line."""
    from nodes.cli import main
    from perception.drives import DriveMetadata, DriveWriter
    from sim_data import DRIVES_DIR

    by_drive, by_seed = tmp_path / "a.geojson", tmp_path / "b.geojson"
    assert main(["sim", "--export-map", str(by_drive), "--map-of", str(DRIVES_DIR / "test_small.mcap")]) == 0
    assert main(["sim", "--export-map", str(by_seed), "--city-seed", "0", "--blocks", "2x1"]) == 0
    assert by_drive.read_text() == by_seed.read_text()
    m = LandmarkMap.load(by_drive)
    assert m.counts()["traffic_signals"] > 10 and "wrote" in capsys.readouterr().out
    other = tmp_path / "photos.mcap"
    with DriveWriter(str(other), DriveMetadata(source="import photos")) as w:
        w.write(POSE_TOPIC, Pose(Header(T0_NS), 34.0, -118.0))
    assert main(["sim", "--export-map", str(tmp_path / "c.geojson"), "--map-of", str(other)]) == 2
    assert "not a synthetic drive" in capsys.readouterr().err
