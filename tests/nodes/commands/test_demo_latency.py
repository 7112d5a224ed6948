"""Per-hop latency from header traces (nodes/latency.py), the table of `streetloc demo` and of
`streetloc topic latency`: what a user reads off it must be the times the hops really took."""

from __future__ import annotations

import pytest

from nodes.bus.messages import GeoFix, Header, Hop, Odometry
from nodes.cli import main
from nodes.fusion import FusionNode, FusionParams
from nodes.latency import (
    Traced,
    decode_traces,
    encode_traces,
    join_traces,
    latency_rows,
    split_chains,
    traces_of_run,
)
from nodes.record import Recorder, RecordParams
from perception.drives.topics import DETECTIONS_TOPIC, ODOMETRY_TOPIC, POSE_TOPIC, POSENET_TOPIC

MS = 1_000_000
T0 = 1_700_000_000_000_000_000  # a frame's capture stamp


def frame_hops(k: int, *, replay_ms: float = 0.0) -> dict[str, Hop]:
    """The hops of frame k: replay publishes at +0, PoseNet receives at +2 and publishes at +12 ms, the
    detector publishes at +30 ms, fusion receives the fix at +13 and publishes at +15 ms (k ms later each frame)."""
    base = T0 + k * 100 * MS + int(replay_ms * MS)
    return {"replay": Hop("replay", base, base), "posenet": Hop("posenet", base + 2 * MS, base + 12 * MS),
            "detector": Hop("detector", base + 3 * MS, base + (30 + k) * MS),
            "fusion": Hop("fusion", base + 13 * MS, base + 15 * MS)}


def row(rows, stage):
    [r] = [r for r in rows if r.stage == stage]
    return r


def test_each_hop_is_timed_publish_to_publish_and_inside_its_node():
    msgs = []
    for k in range(10):
        h = frame_hops(k)
        stamp = T0 + k * 100 * MS
        msgs.append(Traced(POSE_TOPIC, stamp, (h["replay"], h["posenet"], h["fusion"])))
        msgs.append(Traced(DETECTIONS_TOPIC, stamp, (h["replay"], h["detector"])))
    rows = latency_rows(msgs)
    assert [r.stage for r in rows] == ["capture -> replay", "replay -> posenet", "posenet -> fusion",
                                       "replay -> fusion (total)", "replay -> detector"]
    assert row(rows, "replay -> posenet").p50_ms == pytest.approx(12.0)
    assert row(rows, "replay -> posenet").in_node_p50_ms == pytest.approx(10.0)
    assert row(rows, "posenet -> fusion").p50_ms == pytest.approx(3.0)
    assert row(rows, "posenet -> fusion").in_node_p95_ms == pytest.approx(2.0)
    assert row(rows, "replay -> fusion (total)").p50_ms == pytest.approx(15.0)
    det = row(rows, "replay -> detector")  # 30..39 ms
    assert det.n == 10 and det.p50_ms == pytest.approx(34.5) and det.p95_ms == pytest.approx(38.55)
    assert row(rows, "capture -> replay").p50_ms == pytest.approx(0.0)


def test_a_replayed_drive_s_old_stamps_are_not_a_capture_latency():
    h = frame_hops(0)
    rows = latency_rows([Traced(POSENET_TOPIC, T0 - 3600 * 10**9, (h["replay"], h["posenet"]))])
    assert [r.stage for r in rows] == ["replay -> posenet"]


def test_poses_on_the_tick_repeating_a_fix_s_chain_count_once_and_a_fix_with_its_pose_too():
    h = frame_hops(0)
    msgs = [Traced(POSENET_TOPIC, T0, (h["replay"], h["posenet"])),
            Traced(POSE_TOPIC, T0, (h["replay"], h["posenet"], h["fusion"]))]
    for tick in range(1, 6):  # 20 Hz poses after it, the same fix's chain, fusion publishing later each time
        msgs.append(Traced(POSE_TOPIC, T0 + tick * 50 * MS,
                           (h["replay"], h["posenet"], Hop("fusion", T0 + tick * 50 * MS, T0 + tick * 50 * MS))))
    rows = latency_rows(msgs)
    assert row(rows, "replay -> posenet").n == 1
    assert row(rows, "posenet -> fusion").n == 1 and row(rows, "posenet -> fusion").p50_ms == pytest.approx(3.0)


def test_a_joined_trace_times_every_input_to_the_consumer():
    h = frame_hops(0)
    trace = (*join_traces([[h["replay"], h["detector"]], [h["replay"], h["posenet"]]]), h["fusion"])
    assert [x.node for x in trace] == ["replay", "detector", "replay", "posenet", "fusion"]
    chains, consumer = split_chains(trace)
    assert [[x.node for x in c] for c in chains] == [["replay", "detector"], ["replay", "posenet"]]
    assert consumer == h["fusion"]
    rows = latency_rows([Traced(POSE_TOPIC, T0, trace)])
    # the detections came out 15 ms after the pose: negative, as it was (fusion did not wait for them)
    assert row(rows, "detector -> fusion").p50_ms == pytest.approx(-15.0)
    assert row(rows, "posenet -> fusion").p50_ms == pytest.approx(3.0)
    assert row(rows, "replay -> fusion (total)").p50_ms == pytest.approx(15.0)
    # the wire limit: 64 hops with the publisher's; the oldest chains are left out
    long = join_traces([[h["replay"], *[h["posenet"]] * 40], [h["replay"], h["posenet"]] * 20])
    assert len(long) == 40


def test_traces_survive_the_recording_metadata_and_bad_ones_are_named():
    h = frame_hops(3)
    msgs = [Traced(POSE_TOPIC, T0, (h["replay"], h["posenet"], h["fusion"]))]
    assert decode_traces(encode_traces(msgs)) == msgs
    with pytest.raises(ValueError, match="run.mcap.*localization/pose.*malformed"):
        decode_traces({POSE_TOPIC: "[[1, [[\"a\", 1]]]]"}, source="run.mcap")


def test_fusion_poses_carry_the_fix_chain_of_their_inputs(tmp_path):
    node = FusionNode(FusionParams(tick_hz=0.0, max_delay_s=0.0))
    poses = []
    for k in range(4):
        h = frame_hops(k)
        stamp = T0 + k * 100 * MS
        node.on_message(ODOMETRY_TOPIC, Odometry(Header(stamp, trace=[h["replay"]]), speed_mps=5.0,
                                                 yaw_rate_radps=0.0), 0)
        fix = GeoFix(Header(stamp, trace=[h["replay"], h["posenet"]]), lat_deg=34.05, lon_deg=-118.24,
                     cov_enu_m2=[4.0, 0.0, 0.0, 4.0], valid=True)
        poses.extend(msg for _, msg in node.on_message(POSENET_TOPIC, fix, 0))
    assert len(poses) == 4
    # each pose: its own frame's fix chain (odometry is not the camera path), fusion's hop added on publish
    for k, pose in enumerate(poses):
        h = frame_hops(k)
        assert pose.header.trace == [h["replay"], h["posenet"]]


def test_the_recorder_keeps_the_traces_that_topic_latency_reads(tmp_path, bus_config, capsys):
    run = tmp_path / "run.mcap"
    rec = Recorder(RecordParams(output=str(run), topics=[POSENET_TOPIC]))
    for k in range(5):
        h = frame_hops(k)
        rec.on_message(POSENET_TOPIC, GeoFix(Header(T0 + k * 100 * MS, trace=[h["replay"], h["posenet"]]),
                                             lat_deg=34.05, lon_deg=-118.24, valid=True), 0)
    rec.close()
    assert len(traces_of_run(str(run))) == 5
    assert main(["topic", "latency", POSENET_TOPIC, "--run", str(run)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("replay -> posenet"))
    assert line.split()[3:6] == ["5", "12.0", "12.0"]  # n, p50, p95 ms


def test_topic_latency_live_times_the_hops_of_what_the_bus_carries(bus_config, capsys):
    """`streetloc topic latency` on a live bus: fixes published here with known hops, the table from them."""
    import threading
    import time

    from nodes.bus.pubsub import Publisher

    result = {}
    command = threading.Thread(target=lambda: result.update(code=main(["topic", "latency", POSENET_TOPIC,
                                                                       "--duration", "2"])))
    pub = Publisher(POSENET_TOPIC, node="posenet", config=bus_config)
    command.start()
    try:
        while command.is_alive():  # until the command has listened its 2 s
            now = time.time_ns()
            # replay published 20 ms ago; PoseNet received it 15 ms ago (the publisher adds its hop now)
            pub.publish(GeoFix(Header(now - 25 * MS, trace=[Hop("replay", now - 20 * MS, now - 20 * MS)]),
                               lat_deg=34.05, lon_deg=-118.24, valid=True), recv_ns=now - 15 * MS)
            time.sleep(0.02)
    finally:
        command.join()
        pub.socket.close(0)
    out = capsys.readouterr()
    assert result["code"] == 0, out.err
    rows = {line[:24].strip(): line.split() for line in out.out.splitlines()[2:]}
    capture, hop = rows["capture -> replay"], rows["replay -> posenet"]
    assert int(hop[3]) >= 20  # every message heard once it was subscribed
    assert 19.0 <= float(hop[4]) <= 25.0 and 14.0 <= float(hop[6]) <= 20.0  # p50, in node p50 (ms)
    assert 4.0 <= float(capture[4]) <= 6.0  # p50: 25 ms stamp -> 20 ms publish


def test_fusion_with_a_map_carries_the_detector_chain_so_detector_to_fusion_is_timed(tmp_path):
    from nodes.clock import run_offline
    from tests.nodes.test_fusion_landmarks import _map_file, _messages

    map_path = _map_file(tmp_path)
    msgs, _ = _messages(map_path, seconds=6.0)
    for topic, msg in msgs:  # the hops a graph would have added: replay, then the CNN that made it
        t = msg.header.stamp_ns
        node = {POSENET_TOPIC: "posenet", DETECTIONS_TOPIC: "detector"}.get(topic)
        msg.header.trace = [Hop("replay", t, t)] + ([Hop(node, t + MS, t + 10 * MS)] if node else [])
    node = FusionNode(FusionParams(tick_hz=0.0, init_confirm_m=20.0, map=map_path))
    poses = [m for t, m in run_offline(node, msgs) if t == POSE_TOPIC]
    assert poses
    # a pose at fix k: the detector chain of the newest detections taken, then fix k's chain (which caused it)
    joined = [p for p in poses if [h.node for h in p.header.trace] == ["replay", "detector", "replay", "posenet"]]
    assert len(joined) >= len(poses) - 1
    traced = [Traced(POSE_TOPIC, p.header.stamp_ns, (*p.header.trace, Hop("fusion", p.header.stamp_ns + 11 * MS,
                                                                           p.header.stamp_ns + 12 * MS)))
              for p in poses]
    stages = [r.stage for r in latency_rows(traced)]
    assert {"replay -> posenet", "posenet -> fusion", "replay -> detector", "detector -> fusion"} <= set(stages)
