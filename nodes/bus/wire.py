"""Encoding of messages into ZeroMQ multipart frames, and back. The layout is documented for other
languages in docs/wire_format.md; keep the two in step.

    frame 0   topic name, UTF-8 (the name in the topic table, perception.drives.topics)
    frame 1   MessagePack array [schema_version: int, type_name: str, body: map of the message's fields]
    frame 2+  raw bytes of each array field, C order; the body holds {"frame": k, "dtype", "shape"}

A pose is two frames, like the simplest bare-pyzmq [topic, payload]: every extra ZeroMQ frame costs
latency (about 14 us per frame over ipc on the benchmark machine).
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec
import numpy as np
import zmq

from nodes.bus.messages import MESSAGE_TYPES, SCHEMA_VERSION
from nodes.bus.topics import Topic
from perception.drives.bounds import FieldError, check_record

FIRST_ARRAY_FRAME = 2
# dtypes an array field may carry; anything else in a received message is rejected
ALLOWED_DTYPES = frozenset({"|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<i8", "<u8", "<f2", "<f4", "<f8", "|b1"})
_DTYPES = {name: np.dtype(name) for name in ALLOWED_DTYPES}
MAX_ARRAY_NDIM = 4
# Limits of what a receiver looks at before decoding (docs/wire_format.md, "Limits"): the MessagePack
# envelope of the largest legitimate message (a Diagnostics of a busy node, a GeoFix with its hypotheses)
# is a few kB; arrays travel in their own frames, at most one per array field (Detections: 3).
MAX_ENVELOPE_BYTES = 1 << 20
MAX_FRAMES = FIRST_ARRAY_FRAME + 8
_MAX_DETAIL_CHARS = 300


class DecodeError(ValueError):
    """A received message that cannot be decoded. ``kind`` is a short machine-readable reason, used as a
    diagnostics counter (``decode:<topic>:<kind>``):

    - the frames: ``frames`` (too few or too many), ``size`` (envelope over MAX_ENVELOPE_BYTES), ``topic``;
    - the envelope: ``envelope``, ``version``, ``type``; the body: ``body`` (not the record's fields and
      types), ``array`` (an array reference that does not match its frame);
    - decoder limits: ``depth`` (nested deeper than the decoder's recursion limit), ``memory``,
      ``overflow``, ``internal`` (any other exception of the decoder: never escapes);
    - field bounds (`perception.drives.bounds`): ``non_finite``, ``out_of_range``, ``too_long``,
      ``unknown_value``, ``shape``;
    - stamps, checked by the subscriber: ``stamp_ahead``, ``stamp_backwards``.
    """

    def __init__(self, kind: str, detail: str) -> None:
        if len(detail) > _MAX_DETAIL_CHARS:
            detail = detail[:_MAX_DETAIL_CHARS - 3] + "..."
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class Codec:
    """Encoder/decoder for one topic. Not thread-safe: use one per socket."""

    def __init__(self, topic: Topic, *, check_bounds: bool = True) -> None:
        self.topic = topic
        self.check_bounds = check_bounds  # field bounds (perception.drives.bounds) after each decode
        self._topic_frame = topic.name.encode()
        self._type_name = topic.type_name
        self._out_arrays: list[Any] = []
        self._in_frames: list[Any] = []
        self._array_failed = False
        self._encoder = msgspec.msgpack.Encoder(enc_hook=self._enc_hook)
        self._decoder = msgspec.msgpack.Decoder(topic.message_type, dec_hook=self._dec_hook)
        self._envelope_decoder = msgspec.msgpack.Decoder(tuple[int, str, msgspec.Raw])
        self._message_decoder = msgspec.msgpack.Decoder(tuple[int, str, topic.message_type], dec_hook=self._dec_hook)

    # -- encoding --------------------------------------------------------------------------------
    def _enc_hook(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            dtype = obj.dtype.str
            if dtype not in _DTYPES:
                raise TypeError(f"array dtype {obj.dtype} is not allowed on the bus")
            arr = obj if obj.flags.c_contiguous else np.ascontiguousarray(obj)
            # pyzmq takes the array's buffer as is (zero-copy); an empty one must be plain bytes
            self._out_arrays.append(arr if arr.nbytes else b"")
            return {"frame": FIRST_ARRAY_FRAME + len(self._out_arrays) - 1, "dtype": dtype, "shape": arr.shape}
        if isinstance(obj, np.generic):  # numpy scalars (np.float32 from a model) travel as plain numbers
            return obj.item()
        raise TypeError(f"cannot send objects of type {type(obj).__name__}")

    def encode(self, msg: msgspec.Struct) -> list[Any]:
        """Frames of ``msg``: bytes for the small ones, the arrays themselves (sent without a copy)."""
        if type(msg) is not self.topic.message_type:
            raise TypeError(f"topic {self.topic.name} carries {self.topic.type_name}, not {type(msg).__name__}")
        self._out_arrays = []
        payload = self._encoder.encode((SCHEMA_VERSION, self._type_name, msg))
        return [self._topic_frame, payload, *self._out_arrays]

    # -- decoding --------------------------------------------------------------------------------
    def _dec_hook(self, type_: type, obj: Any) -> Any:
        if type_ is not np.ndarray:
            raise TypeError(f"unsupported type {type_}")
        self._array_failed = True  # cleared on success; tells decode() which kind of error it was
        # Plain checks rather than msgspec.convert: this runs once per image, and a frame's worth of
        # microseconds matters on a busy robot (see BENCHMARKS.md, bus).
        if type(obj) is not dict:
            raise ValueError(f"array reference is a {type(obj).__name__}, not a map")
        index, dtype_str, shape = obj.get("frame"), obj.get("dtype"), obj.get("shape")
        if type(index) is not int or type(dtype_str) is not str or type(shape) is not list:
            raise ValueError(f"array reference {str(obj)[:120]} needs int frame, str dtype, list shape")
        dtype = _DTYPES.get(dtype_str)
        if dtype is None:
            raise ValueError(f"array dtype {dtype_str[:32]!r} not allowed")
        if len(shape) > MAX_ARRAY_NDIM:
            raise ValueError(f"array shape {str(shape)[:120]} has more than {MAX_ARRAY_NDIM} dimensions")
        expected = dtype.itemsize
        for extent in shape:
            if type(extent) is not int or extent < 0:
                raise ValueError(f"array shape {str(shape)[:120]} invalid")
            expected *= extent
        if not (FIRST_ARRAY_FRAME <= index < len(self._in_frames)):
            raise ValueError(f"array frame {index} missing (message has {len(self._in_frames)} frames)")
        buf = self._in_frames[index]
        view = buf.buffer if type(buf) is zmq.Frame else memoryview(buf)
        if view.nbytes != expected:
            raise ValueError(f"array frame {index} holds {view.nbytes} bytes, "
                             f"shape {shape} of {dtype_str} needs {expected}")
        array = np.ndarray(shape, dtype, view)  # a view of the frame (read-only), as np.frombuffer gives
        self._array_failed = False
        return array

    def decode(self, frames: list[Any]) -> msgspec.Struct:
        """Decode received frames (bytes or zmq.Frame) into the topic's record with its fields within
        their bounds. Raises DecodeError saying what was wrong, and nothing else whatever the bytes: a
        receiver counts it and goes on."""
        try:
            msg = self._decode(frames)
        except DecodeError:
            raise
        except RecursionError:
            # msgspec skips unknown fields and Raw values recursively, up to the interpreter's limit
            raise DecodeError("depth", f"{self.topic.name}: nested deeper than the decoder's limit "
                              f"({sys.getrecursionlimit()} levels)") from None
        except MemoryError:
            raise DecodeError("memory", f"{self.topic.name}: out of memory decoding the message") from None
        except OverflowError as exc:
            raise DecodeError("overflow", f"{self.topic.name}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - whatever the decoder raises must not reach the receiver
            raise DecodeError("internal", f"{self.topic.name}: {type(exc).__name__}: {exc}") from None
        if self.check_bounds:
            try:
                check_record(msg)
            except FieldError as exc:
                raise DecodeError(exc.reason, f"{self.topic.name}: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - a value the bounds code did not foresee
                raise DecodeError("internal", f"{self.topic.name}: bounds check: {type(exc).__name__}: "
                                  f"{exc}") from None
        return msg

    def _decode(self, frames: list[Any]) -> msgspec.Struct:
        if len(frames) < FIRST_ARRAY_FRAME:
            raise DecodeError("frames", f"{len(frames)} frames, need at least {FIRST_ARRAY_FRAME}")
        if len(frames) > MAX_FRAMES:
            raise DecodeError("frames", f"{len(frames)} frames, at most {MAX_FRAMES} are read")
        topic = frames[0]
        if type(topic) is zmq.Frame:
            topic = topic.bytes
        if topic != self._topic_frame:
            raise DecodeError("topic", f"frame 0 is {bytes(topic[:64])!r}, expected {self._topic_frame!r}")
        envelope = frames[1]
        if type(envelope) is zmq.Frame:
            envelope = envelope.buffer
        if len(envelope) > MAX_ENVELOPE_BYTES:
            raise DecodeError("size", f"envelope of {len(envelope)} bytes, at most {MAX_ENVELOPE_BYTES} are read")
        self._in_frames = frames
        try:
            # One pass on the common path; a message that fails it is decoded again step by step
            # (envelope, version, type, body) so that the error says which part was wrong.
            version, type_name, msg = self._message_decoder.decode(envelope)
        except (msgspec.DecodeError, msgspec.ValidationError):
            msg = None
        finally:
            self._in_frames = []
        if msg is None or version != SCHEMA_VERSION or type_name != self._type_name:
            return self._decode_diagnosing(frames, envelope)
        return msg

    def _decode_diagnosing(self, frames: list[Any], envelope: Any) -> msgspec.Struct:
        try:
            version, type_name, body = self._envelope_decoder.decode(envelope)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError("envelope", str(exc)) from None
        if version != SCHEMA_VERSION:
            raise DecodeError("version", f"schema version {version}, this build reads {SCHEMA_VERSION}")
        if type_name != self.topic.type_name:
            known = "known" if type_name in MESSAGE_TYPES else "unknown"
            raise DecodeError("type", f"{known} type {type_name[:64]!r} on {self.topic.name}, "
                                      f"expected {self.topic.type_name}")
        self._in_frames = frames
        self._array_failed = False
        try:
            return self._decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError("array" if self._array_failed else "body", str(exc)) from None
        finally:
            self._in_frames = []
