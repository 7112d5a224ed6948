"""DriveReader: a drive's metadata, channels, and its messages by topic and time, decoded on demand.

Reading is fast because nothing is decoded that was not asked for: chunks are located from the MCAP
summary and skipped when they hold none of the wanted topics; records are split with ``struct`` without
building intermediate objects; images come back as their JPEG bytes (width and height read from the
JPEG header) unless ``decode=True``.

Damage: a file without a valid footer and summary (recorder killed mid-write, copy cut short) is
scanned record by record up to its last complete chunk; `DriveReader.truncated` says so, and a chunk
whose CRC fails is skipped and counted in `DriveReader.errors`. Frames whose bytes are not a JPEG (or
do not decode, with ``decode=True``) are skipped by `DriveReader.images` / `DriveReader.frames` and
counted in ``errors.corrupt_frames``; iteration goes on.
"""

from __future__ import annotations

import heapq
import io
import json
import math
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf.message import Message

from . import _proto as pb
from .channels import (
    CALIBRATION_TOPIC,
    CAMERA_TOPIC,
    GPS_TOPIC,
    ODOMETRY_TOPIC,
    SCHEMA_COMPRESSED_IMAGE,
    SCHEMA_IMAGE_ANNOTATIONS,
    SCHEMA_LOCATION_FIX,
    SCHEMA_ODOMETRY,
    SCHEMA_RAW_IMAGE,
    TRUTH_BOXES_TOPIC,
    TRUTH_SEGMENTATION_TOPIC,
)
from .jpeg import decode_image, jpeg_size, looks_like_jpeg
from .metadata import CameraInfo, DriveMetadata
from .track import Track

_MAGIC = b"\x89MCAP0\r\n"
_OP_FOOTER = 0x02
_OP_SCHEMA = 0x03
_OP_CHANNEL = 0x04
_OP_MESSAGE = 0x05
_OP_CHUNK = 0x06
_OP_MESSAGE_INDEX = 0x07
_OP_METADATA = 0x0C
_OP_DATA_END = 0x0F
_FOOTER_RECORD_SIZE = 1 + 8 + 8 + 8 + 4
_MESSAGE_HEADER = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_RECORD_HEADER = struct.Struct("<BQ")  # opcode, length


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RawMessage:
    """One message as stored: ``data`` is the protobuf bytes of ``schema_name``."""

    topic: str
    stamp_ns: int  # MCAP log time = capture time
    sequence: int
    schema_name: str
    data: bytes


@dataclass(frozen=True)
class ChannelInfo:
    """A channel of the drive with its message count and time span."""

    topic: str
    schema_name: str
    message_encoding: str
    message_count: int
    first_stamp_ns: int | None
    last_stamp_ns: int | None
    metadata: dict[str, str]

    @property
    def rate_hz(self) -> float | None:
        """Mean rate: (count - 1) intervals over the time span; None below two messages."""
        if self.message_count < 2 or self.first_stamp_ns is None or self.last_stamp_ns is None:
            return None
        span_s = (self.last_stamp_ns - self.first_stamp_ns) / 1e9
        return (self.message_count - 1) / span_s if span_s > 0 else None

    @property
    def class_names(self) -> list[str] | None:
        text = self.metadata.get("class_names")
        return None if text is None else list(json.loads(text))


@dataclass
class ImageFrame:
    """A camera frame as stored. ``data`` is the JPEG/PNG file or the raw pixels (``encoding`` bgr8/
    rgb8/mono8); ``image_bgr`` is filled when the frame was read with ``decode=True``."""

    stamp_ns: int
    encoding: str  # "jpeg", "png", "bgr8", "rgb8", "mono8", ...
    width_px: int  # 0 when a compressed header does not say
    height_px: int
    data: bytes
    image_bgr: np.ndarray | None = None

    def decode(self) -> np.ndarray:
        """uint8 [H, W, 3] BGR; ValueError when the bytes are corrupt."""
        if self.image_bgr is not None:
            return self.image_bgr
        if self.encoding in ("jpeg", "png", "webp"):
            image = decode_image(self.data)
        else:
            image = _raw_to_bgr(self.data, self.width_px, self.height_px, self.encoding)
        self.image_bgr = image
        return image


@dataclass(frozen=True)
class GpsFix:
    """A position fix from a LocationFix channel (``gps/fix``, ``localization/pose``, ``posenet/fix``)."""

    stamp_ns: int
    lat_deg: float
    lon_deg: float
    alt_m: float
    heading_deg: float | None  # clockwise from north
    cov_enu_m2: tuple[float, float, float, float]  # 2x2 east/north, row-major
    heading_std_deg: float | None = None
    speed_mps: float | None = None
    status: str | None = None
    interpolated: bool = False  # True when made by interpolating between two stored fixes

    @property
    def horizontal_std_m(self) -> float:
        """1-sigma error per horizontal axis: sqrt of the mean of the east and north variances."""
        return math.sqrt(max(0.0, (self.cov_enu_m2[0] + self.cov_enu_m2[3]) / 2.0))


@dataclass(frozen=True)
class OdometrySample:
    stamp_ns: int
    speed_mps: float  # forward, body frame
    yaw_rate_radps: float  # counter-clockwise positive
    speed_std_mps: float | None = None
    yaw_rate_std_radps: float | None = None


@dataclass(frozen=True)
class BoxSet:
    """Boxes on one image: ``boxes_xyxy_px`` float32 [N, 4], ``class_ids`` int32 [N], ``scores``
    float32 [N] or None (ground truth)."""

    stamp_ns: int
    boxes_xyxy_px: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    scores: np.ndarray | None = None


@dataclass(frozen=True)
class LabelMask:
    """Per-pixel classes: ``mask`` uint8 [H, W] of indices into ``class_names``."""

    stamp_ns: int
    mask: np.ndarray
    class_names: list[str]


@dataclass
class Frame:
    """A camera frame with the GPS fix at its time (interpolated or nearest; None when too far)."""

    image: ImageFrame
    gps: GpsFix | None

    @property
    def stamp_ns(self) -> int:
        return self.image.stamp_ns


@dataclass
class ReadErrors:
    """Damage met while reading, counted rather than raised (replay goes on)."""

    corrupt_frames: int = 0
    corrupt_chunks: int = 0
    undecodable_messages: int = 0
    details: list[str] = field(default_factory=list)  # first few, for the user

    def note(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.details) < 20:
            self.details.append(text)

    @property
    def total(self) -> int:
        return self.corrupt_frames + self.corrupt_chunks + self.undecodable_messages


@dataclass(frozen=True)
class _Chunk:
    offset: int  # of the chunk record in the file
    length: int  # of the whole record, opcode and length included
    start_ns: int
    end_ns: int
    channel_ids: frozenset[int] | None  # None: unknown (no message index)


@dataclass(frozen=True)
class _Channel:
    id: int
    topic: str
    message_encoding: str
    schema_name: str
    metadata: dict[str, str]


def _raw_to_bgr(data: bytes, width: int, height: int, encoding: str) -> np.ndarray:
    import cv2

    channels = {"bgr8": 3, "rgb8": 3, "mono8": 1, "8UC3": 3, "8UC1": 1}.get(encoding)
    if channels is None or width <= 0 or height <= 0 or len(data) < width * height * channels:
        raise ValueError(f"raw image {width}x{height} {encoding!r} with {len(data)} bytes cannot be decoded")
    pixels = np.frombuffer(data, dtype=np.uint8)
    step = len(data) // height
    pixels = pixels[: step * height].reshape(height, step)[:, : width * channels]
    if channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(pixels.reshape(height, width)), cv2.COLOR_GRAY2BGR)
    image = pixels.reshape(height, width, 3)
    return np.ascontiguousarray(image[:, :, ::-1] if encoding == "rgb8" else image)


def _metadata_dict(kvs: Iterable) -> dict[str, str]:
    return {kv.key: kv.value for kv in kvs}


def _optional_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------- reader


class DriveReader:
    """Read a drive file.

    >>> with DriveReader("drive.mcap") as drive:
    ...     drive.metadata.geo_origin, drive.truncated, drive.channels["camera/image"].message_count
    ...     for frame in drive.frames():          # JPEG bytes + GPS interpolated at the frame time
    ...         ...

    Args:
        path: the ``.mcap`` file.
        validate_crcs: check each chunk's CRC (cheap next to reading; a failing chunk is skipped and
            counted in ``errors.corrupt_chunks``).
    """

    def __init__(self, path: str | os.PathLike, *, validate_crcs: bool = True) -> None:
        self.path = Path(path)
        self.validate_crcs = validate_crcs
        self.errors = ReadErrors()
        self.truncated = False  # True when the data section is cut off (recorder killed mid-write)
        self.has_summary = False  # False for truncated files, and for complete ones whose summary is lost
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path}: no such drive file") from None
        except IsADirectoryError:
            raise IsADirectoryError(f"{self.path}: is a folder, not a drive file") from None
        self._size = os.fstat(self._file.fileno()).st_size
        self._schemas: dict[int, str] = {}
        self._channels: dict[int, _Channel] = {}
        self._chunks: list[_Chunk] = []
        self._metadata_records: dict[str, dict[str, str]] = {}
        self._channel_counts: dict[int, int] = {}
        self._channel_spans: dict[int, tuple[int, int]] = {}
        self._spans_from_scan = False
        try:
            self._open()
        except BaseException:
            self._file.close()
            raise
        self._topic_ids: dict[str, list[int]] = {}
        for channel in self._channels.values():
            self._topic_ids.setdefault(channel.topic, []).append(channel.id)
        self.metadata = DriveMetadata.from_records(self._metadata_records)
        self._gps_cache: dict[str, Track] = {}

    # ------------------------------------------------------------------------------------------ opening

    def _open(self) -> None:
        head = self._file.read(len(_MAGIC))
        if head != _MAGIC:
            raise ValueError(f"{self.path}: not an MCAP drive (first bytes {head[:8]!r}, want MCAP magic)")
        if not self._read_summary():
            self._scan()

    def _read_summary(self) -> bool:
        """Index from the summary section; False when the file has none (then it is scanned)."""
        if self._size < 2 * len(_MAGIC) + _FOOTER_RECORD_SIZE:
            return False
        self._file.seek(self._size - len(_MAGIC) - _FOOTER_RECORD_SIZE)
        tail = self._file.read(_FOOTER_RECORD_SIZE + len(_MAGIC))
        if tail[-len(_MAGIC):] != _MAGIC or tail[0] != _OP_FOOTER:
            return False
        summary_start, _, _ = struct.unpack_from("<QQI", tail, 9)
        if summary_start == 0 or summary_start >= self._size:
            return False
        from mcap.reader import SeekingReader

        try:
            self._file.seek(0)
            reader = SeekingReader(self._file, validate_crcs=False)
            summary = reader.get_summary()
            if summary is None:
                return False
            metadata = list(reader.iter_metadata())
        except Exception:  # noqa: BLE001 - any damage in the summary: fall back to scanning the data
            return False
        for schema in summary.schemas.values():
            self._schemas[schema.id] = schema.name
        for channel in summary.channels.values():
            self._channels[channel.id] = _Channel(
                channel.id, channel.topic, channel.message_encoding, self._schemas.get(channel.schema_id, ""),
                dict(channel.metadata),
            )
        for ci in summary.chunk_indexes:
            ids = frozenset(ci.message_index_offsets) if ci.message_index_offsets else None
            self._chunks.append(_Chunk(ci.chunk_start_offset, ci.chunk_length, ci.message_start_time, ci.message_end_time, ids))
        self._chunk_message_index = {
            ci.chunk_start_offset: dict(ci.message_index_offsets) for ci in summary.chunk_indexes
        }
        for record in metadata:
            self._metadata_records[record.name] = dict(record.metadata)
        if summary.statistics is not None:
            self._channel_counts = dict(summary.statistics.channel_message_counts)
        self.has_summary = True
        return True

    def _scan(self) -> None:
        """Walk the data section record by record (no summary): learn schemas, channels, metadata and
        chunk positions, stopping at the first incomplete record."""
        self.truncated = True
        self._chunk_message_index = {}
        pos = len(_MAGIC)
        while True:
            if pos + 9 > self._size:
                break
            self._file.seek(pos)
            opcode, length = _RECORD_HEADER.unpack(self._file.read(9))
            end = pos + 9 + length
            if end > self._size:
                break  # cut off inside this record
            if opcode == _OP_CHUNK:
                body = self._file.read(length)
                try:
                    records, start_ns, end_ns = self._chunk_records(body)
                except ValueError as exc:
                    self.errors.note("corrupt_chunks", f"chunk at byte {pos}: {exc}")
                    pos = end
                    continue
                ids: set[int] = set()
                for rec in self._iter_chunk_records(records, learn=True):
                    channel_id, log_time = rec[0], rec[2]
                    ids.add(channel_id)
                    self._channel_counts[channel_id] = self._channel_counts.get(channel_id, 0) + 1
                    first, last = self._channel_spans.get(channel_id, (log_time, log_time))
                    self._channel_spans[channel_id] = (min(first, log_time), max(last, log_time))
                self._chunks.append(_Chunk(pos, 9 + length, start_ns, end_ns, frozenset(ids)))
            elif opcode == _OP_METADATA:
                from mcap.data_stream import ReadDataStream
                from mcap.records import Metadata

                record = Metadata.read(ReadDataStream(io.BytesIO(self._file.read(length))))
                self._metadata_records[record.name] = dict(record.metadata)
            elif opcode in (_OP_SCHEMA, _OP_CHANNEL):
                # Unchunked files keep these at top level.
                self._learn(opcode, self._file.read(length))
            elif opcode in (_OP_DATA_END, _OP_FOOTER):
                self.truncated = False  # data section complete, only the summary is missing
                break
            pos = end
        self._spans_from_scan = True

    def _learn(self, opcode: int, body: bytes | memoryview) -> None:
        from mcap.data_stream import ReadDataStream
        from mcap.records import Channel, Schema

        stream = ReadDataStream(io.BytesIO(bytes(body)))
        if opcode == _OP_SCHEMA:
            schema = Schema.read(stream)
            self._schemas[schema.id] = schema.name
        else:
            channel = Channel.read(stream)
            self._channels[channel.id] = _Channel(
                channel.id, channel.topic, channel.message_encoding, self._schemas.get(channel.schema_id, ""),
                dict(channel.metadata),
            )

    # ------------------------------------------------------------------------------------------ chunks

    def _chunk_records(self, body: bytes) -> tuple[bytes, int, int]:
        """The uncompressed records of a chunk record body (after opcode and length)."""
        try:
            start_ns, end_ns, uncompressed_size, crc = struct.unpack_from("<QQQI", body, 0)
            (comp_len,) = struct.unpack_from("<I", body, 28)
            compression = bytes(body[32 : 32 + comp_len]).decode("ascii")
            pos = 32 + comp_len
            (records_len,) = struct.unpack_from("<Q", body, pos)
        except struct.error:
            raise ValueError("chunk header is cut short") from None
        data = body[pos + 8 : pos + 8 + records_len]
        if len(data) != records_len:
            raise ValueError(f"chunk holds {len(data)} of {records_len} bytes")
        if compression == "zstd":
            import zstandard

            try:
                records = zstandard.ZstdDecompressor().decompress(data, max_output_size=uncompressed_size)
            except zstandard.ZstdError as exc:
                raise ValueError(f"zstd: {exc}") from None
        elif compression == "lz4":
            import lz4.frame

            try:
                records = lz4.frame.decompress(data)
            except RuntimeError as exc:
                raise ValueError(f"lz4: {exc}") from None
        elif compression == "":
            records = bytes(data)
        else:
            raise ValueError(f"unsupported chunk compression {compression!r}")
        if self.validate_crcs and crc != 0 and zlib.crc32(records) != crc:
            raise ValueError("CRC mismatch")
        return records, start_ns, end_ns

    def _iter_chunk_records(self, records: bytes, *, learn: bool = False) -> Iterator[tuple[int, int, int, int, int]]:
        """Yield (channel_id, sequence, log_time, data_start, data_end) for each message record."""
        pos, n = 0, len(records)
        unpack_header = _RECORD_HEADER.unpack_from
        unpack_message = _MESSAGE_HEADER.unpack_from
        while pos + 9 <= n:
            opcode, length = unpack_header(records, pos)
            body = pos + 9
            pos = body + length
            if opcode == _OP_MESSAGE:
                channel_id, sequence, log_time, _ = unpack_message(records, body)
                yield channel_id, sequence, log_time, body + 22, pos
            elif learn and opcode in (_OP_SCHEMA, _OP_CHANNEL):
                self._learn(opcode, memoryview(records)[body:pos])

    def _read_chunk(self, chunk: _Chunk) -> bytes | None:
        self._file.seek(chunk.offset + 9)
        body = self._file.read(chunk.length - 9)
        try:
            records, _, _ = self._chunk_records(body)
        except ValueError as exc:
            self.errors.note("corrupt_chunks", f"chunk at byte {chunk.offset}: {exc}")
            return None
        return records

    # ------------------------------------------------------------------------------------------ queries

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DriveReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def metadata_records(self) -> dict[str, dict[str, str]]:
        """Every MCAP metadata record, by name."""
        return {k: dict(v) for k, v in self._metadata_records.items()}

    @property
    def topics(self) -> list[str]:
        return sorted(self._topic_ids)

    @property
    def channels(self) -> dict[str, ChannelInfo]:
        """Each topic with its schema, message count and first/last stamp."""
        self._ensure_spans()
        out: dict[str, ChannelInfo] = {}
        for topic, ids in sorted(self._topic_ids.items()):
            count = sum(self._channel_counts.get(i, 0) for i in ids)
            spans = [self._channel_spans[i] for i in ids if i in self._channel_spans]
            first = min(s[0] for s in spans) if spans else None
            last = max(s[1] for s in spans) if spans else None
            channel = self._channels[ids[0]]
            out[topic] = ChannelInfo(topic, channel.schema_name, channel.message_encoding, count, first, last, channel.metadata)
        return out

    def _ensure_spans(self) -> None:
        """Per-channel first/last stamps from the message index records (small; no chunk is read)."""
        if self._spans_from_scan:
            return
        self._spans_from_scan = True
        for chunk in self._chunks:
            offsets = self._chunk_message_index.get(chunk.offset, {})
            for channel_id, offset in offsets.items():
                self._file.seek(offset)
                header = self._file.read(9)
                if len(header) < 9:
                    continue
                opcode, length = _RECORD_HEADER.unpack(header)
                if opcode != _OP_MESSAGE_INDEX:
                    continue
                body = self._file.read(length)
                (records_len,) = struct.unpack_from("<I", body, 2)
                pairs = np.frombuffer(body, dtype="<u8", count=records_len // 8, offset=6).reshape(-1, 2)
                if not len(pairs):
                    continue
                times = pairs[:, 0]
                first, last = int(times.min()), int(times.max())
                old = self._channel_spans.get(channel_id)
                self._channel_spans[channel_id] = (first, last) if old is None else (min(old[0], first), max(old[1], last))
        # Chunks without message indexes (other writers): fall back to reading their messages.
        missing = [c for c in self._chunks if not self._chunk_message_index.get(c.offset)]
        for chunk in missing:
            records = self._read_chunk(chunk)
            if records is None:
                continue
            for channel_id, _, log_time, _, _ in self._iter_chunk_records(records):
                first, last = self._channel_spans.get(channel_id, (log_time, log_time))
                self._channel_spans[channel_id] = (min(first, log_time), max(last, log_time))

    @property
    def start_ns(self) -> int | None:
        return min((c.start_ns for c in self._chunks), default=None)

    @property
    def end_ns(self) -> int | None:
        return max((c.end_ns for c in self._chunks), default=None)

    @property
    def duration_s(self) -> float:
        if self.start_ns is None or self.end_ns is None:
            return 0.0
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def message_count(self) -> int:
        return sum(self._channel_counts.values())

    def messages(
        self,
        topics: str | Iterable[str] | None = None,
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> Iterator[RawMessage]:
        """Messages of ``topics`` (all when None) with ``start_ns <= stamp_ns < end_ns``, in stamp order
        (ties in file order). Unknown topics yield nothing."""
        if isinstance(topics, str):
            topics = [topics]
        wanted: set[int] | None = None
        if topics is not None:
            wanted = {i for t in topics for i in self._topic_ids.get(t, [])}
            if not wanted:
                return
        chunks = [
            c for c in self._chunks
            if (start_ns is None or c.end_ns >= start_ns)
            and (end_ns is None or c.start_ns < end_ns)
            and (wanted is None or c.channel_ids is None or not wanted.isdisjoint(c.channel_ids))
        ]
        chunks.sort(key=lambda c: (c.start_ns, c.offset))
        channels = self._channels
        # k-way merge by stamp: a chunk is opened once the queue's head reaches its start time, so
        # memory holds one chunk (or the few that overlap in time) at once.
        heap: list[tuple[int, int, int, int, int, bytes]] = []
        next_chunk = 0
        while True:
            while next_chunk < len(chunks) and (not heap or chunks[next_chunk].start_ns <= heap[0][0]):
                records = self._read_chunk(chunks[next_chunk])
                if records is not None:
                    for channel_id, sequence, log_time, a, b in self._iter_chunk_records(records):
                        if wanted is not None and channel_id not in wanted:
                            continue
                        if (start_ns is not None and log_time < start_ns) or (end_ns is not None and log_time >= end_ns):
                            continue
                        heapq.heappush(heap, (log_time, next_chunk, a, channel_id, sequence, records[a:b]))
                next_chunk += 1
            if not heap:
                return
            log_time, _, _, channel_id, sequence, data = heapq.heappop(heap)
            channel = channels.get(channel_id)
            if channel is None:
                continue  # channel record lost with a damaged chunk
            yield RawMessage(channel.topic, log_time, sequence, channel.schema_name, data)

    # ------------------------------------------------------------------------------------------ decoding

    def decode(self, message: RawMessage) -> Message:
        """The protobuf message object (foxglove_schemas_protobuf class) of a raw message."""
        cls = pb.MESSAGE_CLASSES.get(message.schema_name)
        if cls is None:
            raise ValueError(f"{self.path}: topic {message.topic!r} has schema {message.schema_name!r}, not a known Foxglove schema")
        return cls.FromString(message.data)

    def images(
        self,
        topic: str = CAMERA_TOPIC,
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        decode: bool = False,
    ) -> Iterator[ImageFrame]:
        """Camera frames in time order. Without ``decode`` the JPEG bytes are checked for start and end
        markers only; with it they are decoded into ``image_bgr``. Broken frames are skipped and counted
        in ``errors.corrupt_frames``."""
        # A fresh protobuf message per frame: parsing into a reused upb message grows its arena with
        # every frame (measured: +256 MB over 3000 frames, and 10x slower).
        for message in self.messages(topic, start_ns=start_ns, end_ns=end_ns):
            try:
                if message.schema_name == SCHEMA_COMPRESSED_IMAGE:
                    compressed = pb.CompressedImage.FromString(message.data)
                    data = compressed.data
                    encoding = compressed.format.lower() or "jpeg"
                    size = jpeg_size(data) if encoding in ("jpeg", "jpg") else None
                    if encoding in ("jpeg", "jpg") and (size is None or not looks_like_jpeg(data)):
                        raise ValueError("not a complete JPEG (missing SOI/SOF/EOI markers)")
                    frame = ImageFrame(message.stamp_ns, "jpeg" if encoding == "jpg" else encoding,
                                       *(size or (0, 0)), data)
                elif message.schema_name == SCHEMA_RAW_IMAGE:
                    raw = pb.RawImage.FromString(message.data)
                    frame = ImageFrame(message.stamp_ns, raw.encoding, raw.width, raw.height, raw.data)
                else:
                    raise ValueError(f"schema {message.schema_name!r} is not an image")
                if decode:
                    frame.decode()
            except Exception as exc:  # noqa: BLE001 - protobuf DecodeError, cv2 failures: skip the frame
                self.errors.note("corrupt_frames", f"{topic} frame at stamp_ns={message.stamp_ns}: {exc}")
                continue
            yield frame

    def fixes(self, topic: str = GPS_TOPIC, *, start_ns: int | None = None, end_ns: int | None = None) -> Iterator[GpsFix]:
        """Fixes of a LocationFix channel (``gps/fix``, ``localization/pose``, ``posenet/fix``)."""
        for message in self.messages(topic, start_ns=start_ns, end_ns=end_ns):
            if message.schema_name != SCHEMA_LOCATION_FIX:
                raise ValueError(f"{self.path}: topic {topic!r} holds {message.schema_name}, not {SCHEMA_LOCATION_FIX}")
            try:
                proto = pb.LocationFix.FromString(message.data)
            except Exception as exc:  # noqa: BLE001 - protobuf DecodeError
                self.errors.note("undecodable_messages", f"{topic} at stamp_ns={message.stamp_ns}: {exc}")
                continue
            cov = list(proto.position_covariance)
            cov_enu = (cov[0], cov[1], cov[3], cov[4]) if len(cov) == 9 else (0.0, 0.0, 0.0, 0.0)
            extra = _metadata_dict(proto.metadata)
            speed = _optional_float(extra.get("speed_mps"))
            if speed is None and proto.HasField("velocity"):
                speed = math.hypot(proto.velocity.x, proto.velocity.y)
            yield GpsFix(
                message.stamp_ns, proto.latitude, proto.longitude, proto.altitude,
                math.degrees(proto.heading) % 360.0 if proto.HasField("heading") else None,
                cov_enu, _optional_float(extra.get("heading_std_deg")), speed, extra.get("status"),
            )

    def track(self, topic: str = GPS_TOPIC) -> Track:
        """A LocationFix channel as arrays (cached per topic)."""
        cached = self._gps_cache.get(topic)
        if cached is not None:
            return cached
        fixes = list(self.fixes(topic))
        if not fixes:
            track = Track.empty()
        else:
            track = Track(
                [f.stamp_ns for f in fixes], [f.lat_deg for f in fixes], [f.lon_deg for f in fixes],
                [f.alt_m for f in fixes], [np.nan if f.heading_deg is None else f.heading_deg for f in fixes],
                [np.nan if f.speed_mps is None else f.speed_mps for f in fixes],
                [f.horizontal_std_m for f in fixes],
            )
        self._gps_cache[topic] = track
        return track

    def frames(
        self,
        topic: str = CAMERA_TOPIC,
        *,
        gps_topic: str = GPS_TOPIC,
        gps: str = "interpolate",
        max_gap_s: float = 2.0,
        start_ns: int | None = None,
        end_ns: int | None = None,
        decode: bool = False,
    ) -> Iterator[Frame]:
        """Camera frames each with the GPS fix at its time.

        Args:
            gps: ``"interpolate"`` (linear between the two fixes around the frame, when they are at most
                ``max_gap_s`` apart), ``"nearest"`` (the closest fix within ``max_gap_s``) or ``"none"``.
            decode: also decode each image into ``frame.image.image_bgr``.

        Frames beyond the GPS track or across a gap get ``gps=None``; broken frames are skipped and
        counted in ``errors.corrupt_frames``.
        """
        if gps not in ("interpolate", "nearest", "none"):
            raise ValueError(f"gps={gps!r} is not 'interpolate', 'nearest' or 'none'")
        track = self.track(gps_topic) if gps != "none" and gps_topic in self._topic_ids else Track.empty()
        for image in self.images(topic, start_ns=start_ns, end_ns=end_ns, decode=decode):
            yield Frame(image, self._fix_at(track, image.stamp_ns, gps, max_gap_s) if len(track) else None)

    @staticmethod
    def _fix_at(track: Track, stamp_ns: int, mode: str, max_gap_s: float) -> GpsFix | None:
        stamps = track.stamp_ns
        i = int(np.searchsorted(stamps, stamp_ns, side="left"))
        if i < len(stamps) and stamps[i] == stamp_ns:
            mode, nearest = "exact", i
        elif mode == "nearest":
            candidates = [j for j in (i - 1, i) if 0 <= j < len(stamps)]
            nearest = min(candidates, key=lambda j: abs(int(stamps[j]) - stamp_ns))
            if abs(int(stamps[nearest]) - stamp_ns) > max_gap_s * 1e9:
                return None
        else:
            if i == 0 or i == len(stamps) or (stamps[i] - stamps[i - 1]) > max_gap_s * 1e9:
                return None
        if mode in ("exact", "nearest"):
            j = nearest
            heading = track.heading_deg[j]
            speed = track.speed_mps[j]
            std = track.horizontal_std_m[j]
            return GpsFix(
                stamp_ns if mode == "exact" else int(stamps[j]), float(track.lat_deg[j]), float(track.lon_deg[j]),
                float(track.alt_m[j]), None if np.isnan(heading) else float(heading),
                (std * std, 0.0, 0.0, std * std), None, None if np.isnan(speed) else float(speed),
            )
        # Scalar interpolation between fixes i-1 and i (numpy per frame costs more than the frame itself).
        a, b = i - 1, i
        w = (stamp_ns - int(stamps[a])) / (int(stamps[b]) - int(stamps[a]))

        def lerp(values: np.ndarray) -> float:
            va, vb = float(values[a]), float(values[b])
            if math.isnan(va) or math.isnan(vb):
                return vb if math.isnan(va) else va
            return va + w * (vb - va)

        ha, hb = float(track.heading_deg[a]), float(track.heading_deg[b])
        if math.isnan(ha) or math.isnan(hb):
            heading = None if math.isnan(ha) and math.isnan(hb) else (hb if math.isnan(ha) else ha)
        else:
            heading = (ha + w * ((hb - ha + 180.0) % 360.0 - 180.0)) % 360.0  # along the shorter arc
        speed = lerp(track.speed_mps)
        std = lerp(track.horizontal_std_m)
        return GpsFix(
            stamp_ns, lerp(track.lat_deg), lerp(track.lon_deg), lerp(track.alt_m), heading,
            (std * std, 0.0, 0.0, std * std), None, None if math.isnan(speed) else speed, interpolated=True,
        )

    def odometry(self, topic: str = ODOMETRY_TOPIC, *, start_ns: int | None = None, end_ns: int | None = None) -> Iterator[OdometrySample]:
        """Odometry samples: forward speed (m/s) and yaw rate (rad/s, counter-clockwise positive)."""
        for message in self.messages(topic, start_ns=start_ns, end_ns=end_ns):
            if message.schema_name != SCHEMA_ODOMETRY:
                raise ValueError(f"{self.path}: topic {topic!r} holds {message.schema_name}, not {SCHEMA_ODOMETRY}")
            proto = pb.Odometry.FromString(message.data)
            cov = list(proto.velocity_covariance)
            speed_std = math.sqrt(cov[0]) if len(cov) == 36 and cov[0] > 0 else None
            yaw_std = math.sqrt(cov[35]) if len(cov) == 36 and cov[35] > 0 else None
            yield OdometrySample(message.stamp_ns, proto.linear_velocity.x, proto.angular_velocity.z, speed_std, yaw_std)

    def boxes(self, topic: str = TRUTH_BOXES_TOPIC, *, start_ns: int | None = None, end_ns: int | None = None) -> Iterator[BoxSet]:
        """Box sets of an ImageAnnotations channel written by `DriveWriter.add_boxes` (annotations
        without a ``class_id`` are ignored)."""
        channel_table = self.channels[topic].class_names if topic in self._topic_ids else None
        for message in self.messages(topic, start_ns=start_ns, end_ns=end_ns):
            if message.schema_name != SCHEMA_IMAGE_ANNOTATIONS:
                raise ValueError(f"{self.path}: topic {topic!r} holds {message.schema_name}, not {SCHEMA_IMAGE_ANNOTATIONS}")
            proto = pb.ImageAnnotations.FromString(message.data)
            table = _metadata_dict(proto.metadata).get("class_names")
            names = json.loads(table) if table else list(channel_table or [])
            boxes, ids, scores = [], [], []
            for points in proto.points:
                meta = _metadata_dict(points.metadata)
                if "class_id" not in meta or not points.points:
                    continue
                xs = [p.x for p in points.points]
                ys = [p.y for p in points.points]
                boxes.append((min(xs), min(ys), max(xs), max(ys)))
                ids.append(int(meta["class_id"]))
                scores.append(_optional_float(meta.get("score")))
            has_scores = bool(scores) and all(s is not None for s in scores)
            yield BoxSet(
                message.stamp_ns,
                np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                np.asarray(ids, dtype=np.int32),
                names,
                np.asarray(scores, dtype=np.float32) if has_scores else None,
            )

    def label_masks(self, topic: str = TRUTH_SEGMENTATION_TOPIC, *, start_ns: int | None = None, end_ns: int | None = None) -> Iterator[LabelMask]:
        """Label masks of a mono8 RawImage channel, with the class table from the channel metadata."""
        names = (self.channels[topic].class_names or []) if topic in self._topic_ids else []
        for message in self.messages(topic, start_ns=start_ns, end_ns=end_ns):
            if message.schema_name != SCHEMA_RAW_IMAGE:
                raise ValueError(f"{self.path}: topic {topic!r} holds {message.schema_name}, not {SCHEMA_RAW_IMAGE}")
            proto = pb.RawImage.FromString(message.data)
            if proto.encoding not in ("mono8", "8UC1"):
                raise ValueError(f"{self.path}: label mask on {topic!r} is {proto.encoding!r}, not mono8")
            pixels = np.frombuffer(proto.data, dtype=np.uint8)
            step = proto.step or proto.width
            mask = pixels[: step * proto.height].reshape(proto.height, step)[:, : proto.width]
            yield LabelMask(message.stamp_ns, mask, list(names))

    def camera(self) -> CameraInfo | None:
        """The drive's intrinsics: from the metadata, else from the first calibration message."""
        if self.metadata.camera is not None:
            return self.metadata.camera
        for message in self.messages(CALIBRATION_TOPIC):
            calib = self.decode(message)
            k = list(calib.K)
            if len(k) == 9 and k[0] > 0:
                return CameraInfo(calib.width, calib.height, k[0], k[4], k[2], k[5], calib.distortion_model or "plumb_bob", tuple(calib.D))
        return None

    def frame_size(self, topic: str = CAMERA_TOPIC) -> tuple[int, int] | None:
        """(width_px, height_px) of the first readable frame, None without frames."""
        for frame in self.images(topic):
            if frame.width_px and frame.height_px:
                return frame.width_px, frame.height_px
        return None

    def image_stamps(self, topic: str = CAMERA_TOPIC) -> Sequence[int]:
        """Stamps of every frame (reads no image data beyond each record's header)."""
        return [m.stamp_ns for m in self.messages(topic)]
