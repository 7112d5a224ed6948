"""The NMEA node: what a GPS consumer reads from it, parsed with pynmea2 over a real TCP connection."""

from __future__ import annotations

import math
import socket

import pynmea2
import pytest

from localization.nmea import format_gst
from nodes.bus.messages import Header, Pose
from nodes.nmea import NmeaNode, NmeaParams, pose_sentences
from perception.drives.topics import POSE_TOPIC

T0_NS = 1_718_987_400_000_000_000  # 2024-06-21 16:30:00 UTC


def pose(status: str = "tracking", *, valid: bool = True, stamp_ns: int = T0_NS, heading_std_deg: float = 3.0,
         cov=(4.0, 0.0, 0.0, 1.0)) -> Pose:
    return Pose(Header(stamp_ns), lat_deg=48.137, lon_deg=-11.575, heading_deg=45.0, speed_mps=10.0,
                cov_enu_m2=cov, heading_std_deg=heading_std_deg, status=status, valid=valid)


def parsed(lines: list[str]) -> dict[str, pynmea2.NMEASentence]:
    return {s.sentence_type: s for s in (pynmea2.parse(line.strip(), check=True) for line in lines)}


def test_tracking_pose_is_a_gps_fix_with_its_error_ellipse():
    s = parsed(pose_sentences(pose()))
    assert set(s) == {"GGA", "RMC", "HDT", "GST"}
    gga, rmc, gst = s["GGA"], s["RMC"], s["GST"]
    assert gga.gps_qual == 1 and gga.latitude == pytest.approx(48.137, abs=1e-6)
    assert gga.longitude == pytest.approx(-11.575, abs=1e-6) and gga.timestamp.strftime("%H:%M:%S") == "16:30:00"
    assert float(gga.horizontal_dil) == pytest.approx(math.sqrt(5.0) / 5.0, abs=0.05)  # radius / uere_m
    assert rmc.status == "A" and rmc.spd_over_grnd == pytest.approx(10.0 * 3600 / 1852, abs=0.01)
    assert rmc.true_course == pytest.approx(45.0) and rmc.datestamp.isoformat() == "2024-06-21"
    assert float(s["HDT"].heading) == pytest.approx(45.0)
    # east std 2 m, north std 1 m: the major axis points east (90 deg from north)
    assert (gst.std_dev_major, gst.std_dev_minor, gst.orientation) == pytest.approx((2.0, 1.0, 90.0))
    assert (gst.std_dev_latitude, gst.std_dev_longitude) == pytest.approx((1.0, 2.0))


def test_degraded_is_estimated_and_lost_is_an_invalid_fix():
    deg = parsed(pose_sentences(pose("degraded")))
    assert deg["GGA"].gps_qual == 6 and deg["RMC"].status == "A" and deg["RMC"].mode_indicator == "E"
    lost = parsed(pose_sentences(pose("lost", valid=False)))
    assert lost["GGA"].gps_qual == 0 and lost["RMC"].status == "V" and "HDT" not in lost
    init = parsed(pose_sentences(pose("initializing", valid=False)))
    assert init["GGA"].gps_qual == 0
    assert "HDT" not in parsed(pose_sentences(pose(heading_std_deg=90.0)))  # heading not known well enough


def test_gst_ellipse_orientation_of_a_tilted_covariance():
    # major axis along north-east (45 deg from north): equal variances, positive correlation
    gst = pynmea2.parse(format_gst(T0_NS, (2.0, 1.0, 1.0, 2.0)).strip())
    assert gst.orientation == pytest.approx(45.0) and gst.std_dev_major == pytest.approx(math.sqrt(3.0), abs=0.01)
    with pytest.raises(ValueError, match="cov_enu_m2"):
        format_gst(T0_NS, (math.nan, 0.0, 0.0, 1.0))


def test_tcp_clients_read_every_epoch_at_the_configured_rate(tmp_path):
    out = tmp_path / "nmea.log"
    node = NmeaNode(NmeaParams(port=0, rate_hz=5.0, file=str(out)))
    try:
        client = socket.create_connection(("127.0.0.1", node.port), timeout=2.0)
        node.on_tick(0)  # accepts the client
        for k in range(20):  # 1 s of 20 Hz poses
            node.on_message(POSE_TOPIC, pose(stamp_ns=T0_NS + k * 50_000_000), 0)
        node.on_message(POSE_TOPIC, pose("lost", valid=False, stamp_ns=T0_NS + 1_000_000_000), 0)
        data = b""
        while data.count(b"\r\n") < 6 * 4 - 1:
            data += client.recv(65536)
        client.close()
    finally:
        node.close()
    lines = data.decode("ascii").splitlines()
    sentences = [pynmea2.parse(line, check=True) for line in lines]
    ggas = [s for s in sentences if s.sentence_type == "GGA"]
    assert [g.gps_qual for g in ggas] == [1, 1, 1, 1, 1, 0]  # 5 Hz of the 20 Hz poses, then the lost one
    assert out.read_text().replace("\r\n", "\n").splitlines() == lines  # the file got the same


def test_sentences_go_on_when_the_poses_start_over(tmp_path):
    """A looping replay: the poses start over in time (the runtime calls ``on_input_restart``); the
    sentences are paced from the next pose, not held back until the last pass's stamps come again."""
    out = tmp_path / "nmea.log"
    node = NmeaNode(NmeaParams(port=-1, rate_hz=5.0, file=str(out)))
    try:
        for k in range(20):
            node.on_message(POSE_TOPIC, pose(stamp_ns=T0_NS + 10_000_000_000 + k * 50_000_000), 0)
        sent = node.epochs_sent
        node.on_input_restart(POSE_TOPIC)
        for k in range(20):
            node.on_message(POSE_TOPIC, pose(stamp_ns=T0_NS + k * 50_000_000), 0)
    finally:
        node.close()
    assert sent == 5 and node.epochs_sent == 10
