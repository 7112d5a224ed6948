"""The wire codec: round trips, zero-copy arrays, and malformed input rejected with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.bus.messages import (
    SCHEMA_VERSION,
    CameraInfo,
    Detections,
    GeoFix,
    Header,
    Hop,
    Image,
    Pose,
    Segmentation,
)
from nodes.bus.topics import TOPICS
from nodes.bus.wire import Codec, DecodeError


def _image(h: int = 48, w: int = 64) -> Image:
    data = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    return Image(Header(stamp_ns=123, seq=4, frame_id="camera", trace=[Hop("cam", 1, 2)]), w, h, "bgr8",
                 data, CameraInfo(w, h, 50.0, 50.0, w / 2, h / 2))


def test_image_round_trip_keeps_pixels_header_and_intrinsics():
    codec = Codec(TOPICS["camera/image"])
    msg = _image()
    out = codec.decode([bytes(f) for f in codec.encode(msg)])
    assert np.array_equal(out.data, msg.data)
    assert out.header == msg.header
    assert out.intrinsics == msg.intrinsics


def test_arrays_are_sent_without_copy():
    codec = Codec(TOPICS["camera/image"])
    msg = _image()
    frames = codec.encode(msg)
    assert len(frames) == 3
    # the array frame is a view of the message's own buffer, not a serialised copy
    assert np.shares_memory(np.frombuffer(frames[2], np.uint8), msg.data)


def test_received_arrays_are_views_of_the_received_frames():
    import zmq

    codec = Codec(TOPICS["camera/image"])
    msg = _image()
    sent = codec.encode(msg)
    # as a Subscriber hands them over: envelope frames as bytes, array frames as zero-copy zmq.Frames
    array_frame = zmq.Frame(bytes(sent[2]))
    out = codec.decode([bytes(sent[0]), bytes(sent[1]), array_frame])
    assert np.array_equal(out.data, msg.data)
    assert np.shares_memory(out.data, np.frombuffer(array_frame.buffer, np.uint8))


def test_non_contiguous_arrays_are_sent_in_c_order():
    codec = Codec(TOPICS["camera/image"])
    msg = _image(48, 64)
    msg.data = msg.data[:, ::2]  # every other column: a strided view
    msg.width_px = 32
    out = codec.decode([bytes(memoryview(f)) for f in codec.encode(msg)])
    assert np.array_equal(out.data, msg.data)


def test_detections_and_segmentation_round_trip_several_arrays():
    det_codec = Codec(TOPICS["perception/detections"])
    det = Detections(Header(stamp_ns=1), boxes_xyxy_px=np.array([[1, 2, 3, 4]], np.float32),
                     class_ids=np.array([8], np.int32), scores=np.array([0.9], np.float32),
                     class_names=["car"])
    out = det_codec.decode(det_codec.encode(det))
    assert out.boxes_xyxy_px.tolist() == [[1, 2, 3, 4]] and out.class_ids.tolist() == [8]
    seg_codec = Codec(TOPICS["perception/segmentation"])
    seg = Segmentation(Header(stamp_ns=1), label_mask=np.eye(4, dtype=np.uint8), class_names=["a", "b"],
                       class_fractions=[0.75, 0.25])
    assert np.array_equal(seg_codec.decode(seg_codec.encode(seg)).label_mask, np.eye(4))


def test_empty_arrays_round_trip():
    codec = Codec(TOPICS["perception/detections"])
    det = Detections(Header(stamp_ns=1), boxes_xyxy_px=np.zeros((0, 4), np.float32),
                     class_ids=np.zeros(0, np.int32), scores=np.zeros(0, np.float32))
    assert codec.decode(codec.encode(det)).boxes_xyxy_px.shape == (0, 4)


def test_wrong_message_type_for_topic_is_refused_on_send():
    with pytest.raises(TypeError, match="carries Pose"):
        Codec(TOPICS["localization/pose"]).encode(GeoFix(Header(stamp_ns=1), 1.0, 2.0))


def _payload(frames, *, version=None, type_name=None, body=None) -> bytes:
    import msgspec

    v, t, b = msgspec.msgpack.decode(frames[1])
    return msgspec.msgpack.encode([v if version is None else version, t if type_name is None else type_name,
                                   b if body is None else body])


@pytest.mark.parametrize(
    ("mutate", "kind"),
    [
        (lambda f: f[:1], "frames"),
        (lambda f: [b"camera/imagex", *f[1:]], "topic"),
        (lambda f: [f[0], _payload(f, version=99), *f[2:]], "version"),
        (lambda f: [f[0], _payload(f, type_name="Pose"), *f[2:]], "type"),
        (lambda f: [f[0], b"\xc1", *f[2:]], "envelope"),
        (lambda f: [f[0], b"\x92\x01\xa5Image", *f[2:]], "envelope"),  # no body
        (lambda f: [f[0], _payload(f, body=[1, 2]), *f[2:]], "body"),
        (lambda f: f[:2], "array"),  # the array frame is missing
        (lambda f: [*f[:2], bytes(f[2])[:-1]], "array"),  # wrong size for its shape
    ],
)
def test_malformed_messages_raise_decode_error_with_reason(mutate, kind):
    codec = Codec(TOPICS["camera/image"])
    frames = [bytes(f) for f in codec.encode(_image())]
    with pytest.raises(DecodeError) as err:
        codec.decode(mutate(frames))
    assert err.value.kind == kind


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=6))
def test_fuzz_random_frames_never_escape_as_other_exceptions(frames):
    codec = Codec(TOPICS["camera/image"])
    try:
        codec.decode(frames)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=200), extra=st.lists(st.binary(max_size=32), max_size=3),
       topic=st.sampled_from(sorted(TOPICS)))
def test_fuzz_random_bodies_behind_a_valid_envelope(body, extra, topic):
    t = TOPICS[topic]
    codec = Codec(t)
    import msgspec

    # a 3-element array [version, type, <random bytes where the body map should be>]
    payload = b"\x93" + msgspec.msgpack.encode([SCHEMA_VERSION, t.type_name])[1:] + body
    try:
        codec.decode([topic.encode(), payload, *extra])
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=st.integers(-3, 8), dtype=st.sampled_from(["|u1", "<f4", "<f8", "O", "<U4", "bogus"]),
       shape=st.lists(st.integers(-2, 70), max_size=6), payload=st.binary(max_size=300))
def test_fuzz_array_references(frame, dtype, shape, payload):
    """Structurally valid bodies whose array reference lies about frame, dtype or shape."""
    import msgspec

    codec = Codec(TOPICS["camera/image"])
    frames = [bytes(f) for f in codec.encode(_image(4, 4))]
    version, type_name, body = msgspec.msgpack.decode(frames[1])
    body["data"] = {"frame": frame, "dtype": dtype, "shape": shape}
    try:
        out = codec.decode([frames[0], msgspec.msgpack.encode([version, type_name, body]), payload])
    except DecodeError:
        return
    assert out.data.nbytes == len(payload)


def test_pose_message_is_small():
    codec = Codec(TOPICS["localization/pose"])
    pose = Pose(Header(stamp_ns=1, trace=[Hop("fusion", 1, 2)]), 34.05, -118.24, valid=True)
    assert sum(len(f) for f in codec.encode(pose)) < 512
