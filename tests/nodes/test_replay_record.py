"""Replay and record on a real bus: round trips, lock-step, damage, time windows."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from nodes.bus.messages import GeoFix, Header, Hop, Pose
from nodes.bus.pubsub import Delivery, Publisher, Subscriber
from nodes.record import Recorder, RecordParams
from nodes.replay import Replay, ReplayParams
from nodes.runtime import Node, NodeRunner
from perception.drives import CameraInfo, DriveMetadata, DriveReader, DriveWriter

T0_NS = 1_700_000_000_000_000_000
FRAME_NS = 100_000_000  # 10 Hz


def write_drive(path, frames: int = 20, corrupt: tuple[int, ...] = ()) -> str:
    with DriveWriter(path, DriveMetadata(source="test", camera=CameraInfo(64, 48, 50.0, 50.0, 32.0, 24.0))) as w:
        for i in range(frames):
            t = T0_NS + i * FRAME_NS
            if i in corrupt:
                w.add_image(t, jpeg=b"\xff\xd8\xff garbage that is no JPEG")
            else:
                w.add_image(t, np.full((48, 64, 3), (i * 10) % 256, np.uint8))
            w.add_gps(t, lat_deg=34.05 + i * 1e-5, lon_deg=-118.24, heading_deg=5.0, horizontal_std_m=0.2,
                      speed_mps=1.1)
            w.add_odometry(t + FRAME_NS // 2, speed_mps=1.1, yaw_rate_radps=0.01)
    return str(path)


class FrameAnswerer(Node):
    """A stand-in perception node: answers each camera frame with a posenet/fix of the same stamp,
    taking ``delay_s`` per frame (slower than the camera)."""

    name = "answerer"
    subscribes = {"camera/image": Delivery.LATEST}
    publishes = ("posenet/fix",)

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.seen: list[int] = []
        self.means: list[float] = []

    def on_message(self, topic, msg, recv_ns):
        import cv2

        time.sleep(self.delay_s)
        image = cv2.imdecode(msg.data, cv2.IMREAD_COLOR)
        self.seen.append(msg.header.stamp_ns)
        self.means.append(float(image.mean()))
        # the mean pixel (0..255) carried as a latitude within [-90, 90] (a fix beyond is rejected at decode)
        return [("posenet/fix", GeoFix(Header(stamp_ns=msg.header.stamp_ns), lat_deg=float(image.mean()) / 4,
                                       lon_deg=0.0))]


def _spin(runner: NodeRunner, duration_s: float) -> threading.Thread:
    thread = threading.Thread(target=runner.spin, kwargs={"duration_s": duration_s}, daemon=True)
    thread.start()
    return thread


def test_replay_then_record_gives_the_same_messages(bus_config, tmp_path):
    source = write_drive(tmp_path / "a.mcap")
    recorder = Recorder(RecordParams(output=str(tmp_path / "b.mcap"), topics=["camera/image", "gps/fix", "odometry"]))
    rec_runner = NodeRunner(recorder, config=bus_config)
    rec_thread = _spin(rec_runner, 30)
    replay = Replay(ReplayParams(drive=source, rate=0, start_delay_s=0.5))
    NodeRunner(replay, config=bus_config).spin(duration_s=20)
    time.sleep(0.5)
    rec_runner.stop()
    rec_thread.join()
    rec_runner.close()
    a, b = DriveReader(source), DriveReader(tmp_path / "b.mcap")
    for topic in ("camera/image", "gps/fix", "odometry"):
        assert b.channels[topic].message_count == a.channels[topic].message_count, topic
    assert [f.data.tobytes() for f in a.images()] == [f.data.tobytes() for f in b.images()]  # JPEG untouched
    for topic in ("camera/image", "gps/fix", "odometry"):  # every field of every record, but the trace
        assert [_fields(m) for m in a.read(topic)] == [_fields(m) for m in b.read(topic)], topic
    assert b.camera().fx_px == 50.0


def _fields(msg) -> str:
    """A record's fields as comparable text (arrays by dtype, shape and bytes), without the header trace."""
    import msgspec

    def plain(value):
        if isinstance(value, np.ndarray):
            return (value.dtype.str, value.shape, value.tobytes().hex())
        if isinstance(value, msgspec.Struct):
            return {k: plain(v) for k, v in msgspec.structs.asdict(value).items() if k != "trace"}
        return value
    return repr(plain(msg))


def _lockstep_run(bus_config, drive: str, delay_s: float) -> tuple[FrameAnswerer, Replay, dict[int, float]]:
    answerer = FrameAnswerer(delay_s)
    ans_runner = NodeRunner(answerer, config=bus_config)
    ans_thread = _spin(ans_runner, 60)
    fixes: dict[int, float] = {}  # frame stamp -> output (a frame republished after a timeout counts once)
    with Subscriber("posenet/fix", config=bus_config) as sub:
        replay = Replay(ReplayParams(drive=drive, lockstep=True, lockstep_topics=["posenet/fix"],
                                     lockstep_timeout_s=2.0, start_delay_s=0.3))
        runner = NodeRunner(replay, config=bus_config)
        runner.spin(duration_s=60)
        runner.close()
        while (msg := sub.recv(timeout_s=0.3)) is not None:
            fixes[msg.header.stamp_ns] = msg.lat_deg
    ans_runner.stop()
    ans_thread.join()
    ans_runner.close()
    return answerer, replay, fixes


def test_lockstep_processes_every_frame_and_is_deterministic(bus_config, tmp_path):
    drive = write_drive(tmp_path / "a.mcap", frames=15)
    # a consumer 3x slower than the drive's 10 Hz would drop frames in real time; lock-step waits for it
    first, replay, fixes1 = _lockstep_run(bus_config, drive, delay_s=0.03)
    assert replay.is_finished() and replay.lockstep_gave_up == 0
    assert sorted(set(first.seen)) == [T0_NS + i * FRAME_NS for i in range(15)]
    second, _, fixes2 = _lockstep_run(bus_config, drive, delay_s=0.0)
    assert fixes1 == fixes2 and len(fixes1) == 15


def test_corrupt_jpeg_is_skipped_counted_and_replay_goes_on(bus_config, tmp_path):
    drive = write_drive(tmp_path / "a.mcap", frames=10, corrupt=(3, 7))
    with Subscriber("camera/image", config=bus_config) as sub:
        replay = Replay(ReplayParams(drive=drive, rate=0, start_delay_s=0.3))
        runner = NodeRunner(replay, config=bus_config)
        runner.spin(duration_s=20)
        stamps = []
        while (msg := sub.recv(timeout_s=0.3)) is not None:
            stamps.append(msg.header.stamp_ns)
        diag = runner.diagnostics_message(1.0)
        runner.close()
    assert replay.skipped_corrupt == 2
    assert stamps == [T0_NS + i * FRAME_NS for i in range(10) if i not in (3, 7)]
    assert "corrupt-records" in diag.errors and diag.status == "warn"


def test_real_time_rate_window_and_topic_filter(bus_config, tmp_path):
    drive = write_drive(tmp_path / "a.mcap", frames=30)  # 3 s of drive
    with Subscriber("gps/fix", config=bus_config) as gps, Subscriber("camera/image", config=bus_config) as cam:
        replay = Replay(ReplayParams(drive=drive, rate=2.0, start_s=1.0, end_s=2.0, topics=["gps/fix"],
                                     start_delay_s=0.3))
        t0 = time.monotonic()
        NodeRunner(replay, config=bus_config).spin(duration_s=20)
        elapsed = time.monotonic() - t0
        got = []
        while (msg := gps.recv(timeout_s=0.3)) is not None:
            got.append(msg)
        assert cam.recv(timeout_s=0.2) is None  # filtered out
    assert [m.header.stamp_ns for m in got] == [T0_NS + i * FRAME_NS for i in range(10, 20)]
    assert 0.3 + 0.9 / 2 - 0.1 <= elapsed <= 0.3 + 0.9 / 2 + 0.6  # 0.9 s of drive at 2x
    assert got[0].heading_deg == pytest.approx(5.0) and got[0].cov_enu_m2[0] == pytest.approx(0.04)


def test_loop_starts_over(bus_config, tmp_path):
    drive = write_drive(tmp_path / "a.mcap", frames=5)
    with Subscriber("camera/image", config=bus_config) as sub:
        replay = Replay(ReplayParams(drive=drive, rate=0, loop=True, topics=["camera/image"], start_delay_s=0.3))
        runner = NodeRunner(replay, config=bus_config)
        thread = _spin(runner, 1.5)
        stamps = []
        while (msg := sub.recv(timeout_s=0.5)) is not None and len(stamps) < 12:
            stamps.append(msg.header.stamp_ns)
        thread.join()
        runner.close()
    assert stamps[:12] == [T0_NS + (i % 5) * FRAME_NS for i in range(12)]


def test_recorder_loses_nothing(bus_config, tmp_path):
    out = tmp_path / "rec.mcap"
    recorder = Recorder(RecordParams(output=str(out), topics=["localization/pose", "posenet/fix"]))
    runner = NodeRunner(recorder, config=bus_config)
    thread = _spin(runner, 60)
    n = 2000
    with Publisher("localization/pose", config=bus_config) as poses, \
            Publisher("posenet/fix", config=bus_config) as fixes:
        assert poses.wait_for_subscribers(1, 5) and fixes.wait_for_subscribers(1, 5)
        for i in range(n):
            stamp = T0_NS + i * 1_000_000
            poses.publish(Pose(Header(stamp_ns=stamp), lat_deg=34.0 + i * 1e-6, lon_deg=-118.0,
                               cov_enu_m2=(2.0, 0.1, 0.1, 3.0), status="tracking", valid=True))
            if i % 2 == 0:
                fixes.publish(GeoFix(Header(stamp_ns=stamp), lat_deg=34.0, lon_deg=-118.0, source="posenet-test"))
            if i % 200 == 199:
                time.sleep(0.01)  # bursts at ~20 kHz, far above any real topic's rate
        time.sleep(1.5)
    runner.stop()
    thread.join()
    runner.close()
    reader = DriveReader(out)
    assert not reader.truncated
    assert reader.channels["localization/pose"].message_count == n
    assert reader.channels["posenet/fix"].message_count == n // 2
    last = list(reader.fixes("localization/pose"))[-1]
    assert last.cov_enu_m2 == (2.0, 0.1, 0.1, 3.0) and last.status == "tracking"


def test_replay_rejects_bad_parameters(tmp_path):
    with pytest.raises(ValueError, match="'drive'"):
        Replay(ReplayParams())
    with pytest.raises(ValueError, match="cannot be replayed"):
        Replay(ReplayParams(drive=write_drive(tmp_path / "a.mcap", 2), topics=["diagnostics"]))
    with pytest.raises(OSError, match="missing.mcap: no such drive file"):
        Replay(ReplayParams(drive=str(tmp_path / "missing.mcap")))
    # bounds declared on the parameters hold for parameters built in code too (the CLI builds them)
    with pytest.raises(ValueError, match="rate"):
        Replay(ReplayParams(drive=write_drive(tmp_path / "b.mcap", 2), rate=-2.0))


def test_replay_command_rejects_a_negative_rate(tmp_path):
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "replay", write_drive(tmp_path / "a.mcap", 2),
                          "--rate", "-2"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "rate" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("stop_signal", ["SIGINT", "SIGKILL"])
def test_record_command_finishes_on_sigint_and_survives_sigkill(bus_config, processes, tmp_path, stop_signal):
    import signal

    out = tmp_path / "rec.mcap"
    proc = processes.start("-m", "nodes.cli", "record", "-o", str(out), "--topics", "localization/pose")
    with Publisher("localization/pose", config=bus_config) as pub:
        assert pub.wait_for_subscribers(1, 20), "the recorder never subscribed"
        for i in range(300):
            pub.publish(Pose(Header(stamp_ns=T0_NS + i * 50_000_000), lat_deg=34.0, lon_deg=-118.0))
            time.sleep(0.005)
        time.sleep(1.5)  # > the recorder's flush interval: chunks on disk before a SIGKILL
    proc.send_signal(getattr(signal, stop_signal))
    proc.wait(timeout=10)
    reader = DriveReader(out)
    count = reader.channels["localization/pose"].message_count
    if stop_signal == "SIGINT":
        assert proc.returncode == 0 and not reader.truncated and count == 300
    else:
        assert reader.truncated and 0 < count <= 300  # readable up to its last complete chunk


def test_lockstep_frame_goes_out_with_what_shares_its_stamp(tmp_path):
    """A lock-step step publishes the frame and everything stamped with it (its GPS here): a node merging
    inputs by stamp (fusion) then knows at once that nothing older is coming and takes the frame's fix,
    instead of holding it until the next step or max_delay_s."""
    replay = Replay(ReplayParams(drive=write_drive(tmp_path / "d.mcap", frames=3), lockstep=True))
    steps = []
    while batch := replay.next_frame():
        steps.append([(topic, (msg.header.stamp_ns - T0_NS) // 1_000_000) for topic, msg in batch])
    assert steps == [
        [("camera/image", 0), ("gps/fix", 0)],
        [("odometry", 50), ("camera/image", 100), ("gps/fix", 100)],
        [("odometry", 150), ("camera/image", 200), ("gps/fix", 200)],
        [("odometry", 250)],
    ]
    assert replay.frames_published == 3
    # ticks only start lock-step and time out unanswered frames: no 1 kHz wake-ups beside the graph
    assert replay.tick_hz() <= 100
    replay.close()


# -- looping (--loop): every pass a stream of its own, answered frame by frame ----------------------

def _by_incarnation(replay: Replay, step) -> dict[tuple[int, str], list[int]]:
    """Drive ``step()`` (one handler call) until the replay has looped twice and a few frames more; the
    stamps it returns per (stream epoch after the call, topic): what the runner publishes under one
    incarnation (it restarts the streams before publishing a call's outputs when the epoch moved)."""
    streams: dict[tuple[int, str], list[int]] = {}
    for _ in range(200):
        out = step()
        for topic, msg in out:
            streams.setdefault((replay.stream_epoch, topic), []).append(msg.header.stamp_ns)
        if replay.loops >= 2 and replay.frames_published >= 2 * 20 + 3:
            break
    return streams


@pytest.mark.parametrize("lockstep", [False, True])
def test_loop_tail_goes_out_before_the_new_incarnation(tmp_path, lockstep):
    """The messages after the drive's last frame (odometry at +50 ms) go out in the pass's incarnation, and
    the new incarnation starts with the new pass: within one incarnation no stamp goes back, which a
    subscriber would reject (``stamp_backwards``)."""
    replay = Replay(ReplayParams(drive=write_drive(tmp_path / "d.mcap", frames=20), lockstep=lockstep, loop=True,
                                 rate=0, start_delay_s=0))
    streams = _by_incarnation(replay, replay.next_frame if lockstep else lambda: replay.on_tick(0))
    assert replay.loops >= 2
    for (epoch, topic), stamps in streams.items():
        assert stamps == sorted(stamps), f"{topic} goes back within incarnation {epoch}"
    for epoch in (0, 1):  # whole passes: 20 frames, 20 fixes and the odometry, tail included
        assert streams[(epoch, "camera/image")] == [T0_NS + i * FRAME_NS for i in range(20)]
        assert streams[(epoch, "odometry")][-1] == T0_NS + 19 * FRAME_NS + FRAME_NS // 2
    replay.close()


def _answer(replay: Replay, stamp_ns: int, incarnation: int):
    fix = GeoFix(Header(stamp_ns=stamp_ns, incarnation=incarnation, trace=[Hop("posenet", 0, 0)]), lat_deg=0.0,
                 lon_deg=0.0)
    return replay.on_message("posenet/fix", fix, 0)


def test_lockstep_loop_ignores_answers_from_the_previous_pass(tmp_path):
    """An answer of the previous pass arriving after the loop restarted (a frame answered twice after a
    retry, a slower lock-step topic) is stamped late in the drive: taken as an answer, the new pass's
    frames would count as answered at once. Answers from the answerers' old incarnations are ignored."""
    replay = Replay(ReplayParams(drive=write_drive(tmp_path / "d.mcap", frames=3), lockstep=True, loop=True))
    assert [t for t, _ in replay.next_frame()] == ["camera/image", "gps/fix"]
    for i in range(3):  # pass 1, answered by the posenet node's incarnation 7; then the tail
        out = _answer(replay, T0_NS + i * FRAME_NS, 7)
    assert [t for t, _ in out] == ["odometry"] and replay.loops == 0
    first = replay.next_frame()  # the end: the loop restarts and the new pass's first frame goes out
    assert replay.loops == 1 and replay.stream_epoch == 1 and first[0][1].header.stamp_ns == T0_NS
    assert _answer(replay, T0_NS + 2 * FRAME_NS, 7) == ()  # late, from the old incarnation
    assert replay.stale_answers == 1
    out = _answer(replay, T0_NS, 8)  # the posenet node's new incarnation answers frame 0 of pass 2
    assert [(t, m.header.stamp_ns) for t, m in out if t == "camera/image"] == [("camera/image", T0_NS + FRAME_NS)]
    replay.close()


def test_lockstep_loop_answers_every_frame_of_every_pass(bus_config, tmp_path):
    """`streetloc replay --lockstep --loop`: the answering node sees the replay start over, starts a new
    incarnation of its own output, and every frame of each pass is answered and reaches a subscriber."""
    drive = write_drive(tmp_path / "a.mcap", frames=20)  # 1.95 s: a loop goes back > 1 s
    answerer = FrameAnswerer(0.0)
    ans_runner = NodeRunner(answerer, config=bus_config)
    ans_thread = _spin(ans_runner, 60)
    with Subscriber("posenet/fix", config=bus_config) as sub:
        replay = Replay(ReplayParams(drive=drive, lockstep=True, loop=True, lockstep_topics=["posenet/fix"],
                                     lockstep_timeout_s=2.0, start_delay_s=0.3))
        runner = NodeRunner(replay, config=bus_config)
        thread = _spin(runner, 60)
        deadline = time.monotonic() + 50
        while replay.frames_published < 2 * 20 + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        runner.stop()
        thread.join()
        runner.close()
        stamps = []
        while (msg := sub.recv(timeout_s=0.3)) is not None:
            stamps.append(msg.header.stamp_ns)
        rejected = dict(sub.rejected)
    ans_runner.stop()
    ans_thread.join()
    ans_runner.close()
    frames = [T0_NS + i * FRAME_NS for i in range(20)]
    assert replay.loops >= 2 and replay.lockstep_gave_up == 0
    assert rejected == {}, "no answer of a later pass is rejected as going back"
    assert stamps[:40] == frames + frames, "every frame of two passes answered once, in order"
    assert ans_runner.inputs_went_back == replay.loops
    assert sub.restarts >= 2  # each pass's answers under a new incarnation of the answering node
