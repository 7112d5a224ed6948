"""DriveReader: a drive's metadata, channels, and its messages by topic and time, decoded on demand into
the records the bus carries (`perception.drives.messages`), by the topic table's conversions.

Reading goes through the ``mcap`` library: ``make_reader(f).iter_messages`` over the file's summary
(chunks that hold none of the wanted topics or times are skipped) with chunk CRC checks. Images come
back as ``Image`` records holding their JPEG bytes (width and height read from the JPEG header) unless
``decode=True``, which turns them into ``bgr8`` Images. Protobuf messages are parsed with the Foxglove
classes the topic table names (``foxglove_schemas_protobuf``), not with mcap-protobuf-support's
``DecoderFactory``, which would build the same classes again from each file's schema bytes.

The fallback, for what the library cannot do (it raises, and a drive should still be read). Measured with
mcap 1.6.0: on a drive cut in half, ``get_summary`` and ``iter_messages`` both raise
``RecordLengthLimitExceeded`` (the "footer" read is JPEG bytes) and give 0 messages; on a chunk whose CRC
fails, ``iter_messages`` raises ``CRCValidationError`` and ends.
- a file without a valid footer and summary (recorder killed with SIGKILL, copy cut short) is walked
  record by record up to its last complete record; `DriveReader.truncated` says so. The walk reads
  record headers only; the records themselves are parsed by the library (``Chunk.read``,
  ``breakup_chunk``), and the chunks are then read one at a time, merged by stamp;
- a chunk whose CRC or decompression fails is skipped and counted in `DriveReader.errors`, and reading
  goes on with the next chunk (the library stops the whole iteration there).
Frames whose bytes are not a JPEG (or do not decode, with ``decode=True``) are skipped by
`DriveReader.images` / `DriveReader.frames` and counted in ``errors.corrupt_frames``; iteration goes on.
"""

from __future__ import annotations

import dataclasses
import heapq
import io
import json
import math
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import msgspec
import numpy as np
from mcap.data_stream import ReadDataStream
from mcap.reader import SeekingReader
from mcap.records import Channel, Chunk, Message, MessageIndex, Metadata, Schema
from mcap.stream_reader import breakup_chunk

from .conversions import CorruptRecord, DecodeContext, decode
from .messages import CameraInfo, Detections, GeoFix, Header, Image, Odometry, Pose, Segmentation
from .metadata import DriveMetadata
from .topics import (
    CALIBRATION_TOPIC,
    CAMERA_TOPIC,
    GPS_FRAME_ID,
    GPS_TOPIC,
    ODOMETRY_TOPIC,
    TOPICS,
    TRUTH_BOXES_TOPIC,
    TRUTH_SEGMENTATION_TOPIC,
    get_topic,
)
from .track import Track

_MAGIC = b"\x89MCAP0\r\n"
_OP_CHANNEL, _OP_SCHEMA, _OP_CHUNK, _OP_METADATA, _OP_DATA_END, _OP_FOOTER = 0x04, 0x03, 0x06, 0x0C, 0x0F, 0x02
_RECORD_HEADER = struct.Struct("<BQ")  # opcode, length
# MCAP stamps are uint64, ours int64 ns (numpy arrays, datetime64[ns]: up to the year 2262). A record
# stamped beyond (2**64-1 from a broken clock or a hostile publisher) is skipped and counted as
# undecodable, and left out of the drive's time span, instead of overflowing whatever reads it.
MAX_STAMP_NS = 2**63 - 1


# ---------------------------------------------------------------------------------------------- records


class RawMessage(NamedTuple):
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
class Frame:
    """A camera frame with the GPS fix at its time (interpolated or nearest; None when too far)."""

    image: Image
    gps: GeoFix | None
    gps_interpolated: bool = False  # the fix was interpolated between two stored fixes

    @property
    def stamp_ns(self) -> int:
        return self.image.header.stamp_ns


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


class _Chunk(NamedTuple):
    offset: int  # of the chunk record in the file
    start_ns: int
    end_ns: int
    channel_ids: frozenset[int] | None  # None: unknown (no message index)
    index_offsets: dict[int, int]  # channel id -> offset of its message index record


# ---------------------------------------------------------------------------------------------- reader


class DriveReader:
    """Read a drive file.

    >>> with DriveReader("drive.mcap") as drive:
    ...     drive.metadata.geo_origin, drive.truncated, drive.channels[CAMERA_TOPIC].message_count
    ...     for frame in drive.frames():          # Image (JPEG bytes) + GPS interpolated at the frame time
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
        self._channels: dict[int, Channel] = {}
        self._chunks: list[_Chunk] = []
        self._metadata_records: dict[str, dict[str, str]] = {}
        self._channel_counts: dict[int, int] = {}
        self._channel_spans: dict[int, tuple[int, int]] | None = None
        self._mcap: SeekingReader | None = None
        try:
            head = self._file.read(len(_MAGIC))
            if head != _MAGIC:
                raise ValueError(f"{self.path}: not an MCAP drive (first bytes {head[:8]!r}, want MCAP magic)")
            if not self._read_summary():
                self._scan()
        except BaseException:
            self._file.close()
            raise
        self._topic_ids: dict[str, list[int]] = {}
        for channel in self._channels.values():
            self._topic_ids.setdefault(channel.topic, []).append(channel.id)
        self.metadata = DriveMetadata.from_records(self._metadata_records)
        self._gps_cache: dict[str, Track] = {}
        self._contexts: dict[str, DecodeContext] = {}
        self._camera: CameraInfo | None | bool = False  # False: not looked up yet

    # ------------------------------------------------------------------------------------------ opening

    def _read_summary(self) -> bool:
        """Index from the library's summary; False when the file has none (then it is scanned)."""
        try:
            self._file.seek(0)
            reader = SeekingReader(self._file, validate_crcs=self.validate_crcs)
            summary = reader.get_summary()
            if summary is None:
                return False
            metadata = list(reader.iter_metadata())
        except Exception:  # noqa: BLE001 - any damage at the end of the file: fall back to the scan
            return False
        self._mcap = reader
        self._schemas = {s.id: s.name for s in summary.schemas.values()}
        self._channels = dict(summary.channels)
        for ci in summary.chunk_indexes:
            ids = frozenset(ci.message_index_offsets) if ci.message_index_offsets else None
            self._chunks.append(_Chunk(ci.chunk_start_offset, ci.message_start_time, ci.message_end_time, ids,
                                       dict(ci.message_index_offsets)))
        for record in metadata:
            self._metadata_records[record.name] = dict(record.metadata)
        if summary.statistics is not None:
            self._channel_counts = dict(summary.statistics.channel_message_counts)
        self.has_summary = True
        return True

    def _scan(self) -> None:
        """The fallback: walk the data section's records (no summary), learn schemas, channels, metadata
        and where each chunk lies, up to the first incomplete record."""
        self.truncated = True
        self._channel_spans = {}
        pos = len(_MAGIC)
        while pos + 9 <= self._size:
            self._file.seek(pos)
            opcode, length = _RECORD_HEADER.unpack(self._file.read(9))
            end = pos + 9 + length
            if end > self._size:
                break  # cut off inside this record
            if opcode in (_OP_DATA_END, _OP_FOOTER):
                self.truncated = False  # data section complete, only the summary is missing
                break
            if opcode == _OP_CHUNK:
                self._scan_chunk(pos)
            elif opcode in (_OP_METADATA, _OP_SCHEMA, _OP_CHANNEL):
                record = {_OP_METADATA: Metadata, _OP_SCHEMA: Schema, _OP_CHANNEL: Channel}[opcode].read(
                    ReadDataStream(io.BytesIO(self._file.read(length))))
                self._learn(record)
            pos = end

    def _scan_chunk(self, offset: int) -> None:
        records = self._chunk_records(offset)
        if records is None:
            return
        ids: set[int] = set()
        start_ns, end_ns = None, None
        spans = self._channel_spans
        assert spans is not None
        for record in records:
            if isinstance(record, Message):
                cid, t = record.channel_id, record.log_time
                ids.add(cid)
                self._channel_counts[cid] = self._channel_counts.get(cid, 0) + 1
                if t > MAX_STAMP_NS:
                    continue  # out of range: skipped when read (see MAX_STAMP_NS)
                first, last = spans.get(cid, (t, t))
                spans[cid] = (min(first, t), max(last, t))
                start_ns = t if start_ns is None else min(start_ns, t)
                end_ns = t if end_ns is None else max(end_ns, t)
            else:
                self._learn(record)
        if start_ns is not None:
            self._chunks.append(_Chunk(offset, start_ns, end_ns, frozenset(ids), {}))  # type: ignore[arg-type]

    def _learn(self, record: object) -> None:
        if isinstance(record, Schema):
            self._schemas[record.id] = record.name
        elif isinstance(record, Channel):
            self._channels[record.id] = record
        elif isinstance(record, Metadata):
            self._metadata_records[record.name] = dict(record.metadata)

    def _chunk_records(self, offset: int) -> list | None:
        """The records of the chunk at ``offset`` (library-parsed); None, counted, when it is damaged."""
        try:
            self._file.seek(offset + 9)
            chunk = Chunk.read(ReadDataStream(self._file))
            return breakup_chunk(chunk, validate_crc=self.validate_crcs)
        except Exception as exc:  # noqa: BLE001 - CRC mismatch, zstd/lz4 errors, records cut short
            self.errors.note("corrupt_chunks", f"chunk at byte {offset}: {exc}")
            return None

    # ------------------------------------------------------------------------------------------ queries

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DriveReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def metadata_record(self, name: str) -> dict[str, str] | None:
        """The MCAP metadata record ``name`` as written (string -> string), None when the file has none
        (e.g. ``streetloc.traces``, the header traces a recorder keeps: ``nodes/latency.py``)."""
        record = self._metadata_records.get(name)
        return None if record is None else dict(record)

    @property
    def topics(self) -> list[str]:
        return sorted(self._topic_ids)

    @property
    def channels(self) -> dict[str, ChannelInfo]:
        """Each topic with its schema, message count and first/last stamp."""
        spans_by_id = self._spans()
        out: dict[str, ChannelInfo] = {}
        for topic, ids in sorted(self._topic_ids.items()):
            count = sum(self._channel_counts.get(i, 0) for i in ids)
            spans = [spans_by_id[i] for i in ids if i in spans_by_id]
            first = min(s[0] for s in spans) if spans else None
            last = max(s[1] for s in spans) if spans else None
            channel = self._channels[ids[0]]
            out[topic] = ChannelInfo(topic, self._schemas.get(channel.schema_id, ""), channel.message_encoding,
                                     count, first, last, dict(channel.metadata))
        return out

    def _spans(self) -> dict[int, tuple[int, int]]:
        """Per-channel first/last stamps from the message index records (small; no chunk is read)."""
        if self._channel_spans is not None:
            return self._channel_spans
        spans: dict[int, tuple[int, int]] = {}
        for chunk in self._chunks:
            if not chunk.index_offsets:  # another writer's chunk without message indexes: read it
                for record in self._chunk_records(chunk.offset) or ():
                    if isinstance(record, Message) and record.log_time <= MAX_STAMP_NS:
                        t = record.log_time
                        first, last = spans.get(record.channel_id, (t, t))
                        spans[record.channel_id] = (min(first, t), max(last, t))
                continue
            for channel_id, offset in chunk.index_offsets.items():
                self._file.seek(offset + 9)
                index = MessageIndex.read(ReadDataStream(self._file))
                if not index.records:
                    continue
                times = [t for t, _ in index.records if t <= MAX_STAMP_NS]
                if not times:
                    continue
                old = spans.get(channel_id)
                first, last = min(times), max(times)
                spans[channel_id] = (first, last) if old is None else (min(old[0], first), max(old[1], last))
        self._channel_spans = spans
        return spans

    @property
    def start_ns(self) -> int | None:
        if any(c.end_ns > MAX_STAMP_NS for c in self._chunks):  # the chunk bounds include a bad stamp
            return min((first for first, _ in self._spans().values()), default=None)
        return min((c.start_ns for c in self._chunks), default=None)

    @property
    def end_ns(self) -> int | None:
        if any(c.end_ns > MAX_STAMP_NS for c in self._chunks):
            return max((last for _, last in self._spans().values()), default=None)
        return max((c.end_ns for c in self._chunks), default=None)

    @property
    def duration_s(self) -> float:
        if self.start_ns is None or self.end_ns is None:
            return 0.0
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def message_count(self) -> int:
        return sum(self._channel_counts.values())

    def damage(self) -> str:
        """One line saying what is wrong with the drive so far (truncated, chunks, frames and messages
        skipped, with counts), for a warning; "" for an intact drive. Counts of ``errors`` grow as the
        drive is read: call it after reading for the whole figure."""
        parts = []
        if self.truncated:
            frames = sum(self._channel_counts.get(i, 0) for i in self._topic_ids.get(CAMERA_TOPIC, ()))
            parts.append(f"truncated (cut off mid-write): {self.message_count} messages ({frames} frames, "
                         f"{self.duration_s:.1f} s) read up to its last complete chunk")
        e = self.errors
        skipped = [f"{n} {what}" for n, what in ((e.corrupt_chunks, "corrupt chunks"),
                                                  (e.corrupt_frames, "corrupt frames"),
                                                  (e.undecodable_messages, "undecodable messages")) if n]
        if skipped:
            parts.append("skipped " + ", ".join(skipped))
        return f"{self.path}: " + "; ".join(parts) if parts else ""

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
            topics = [t for t in topics if t in self._topic_ids]
            wanted = {i for t in topics for i in self._topic_ids[t]}
            if not wanted:
                return
        if self._mcap is None:
            yield from self._chunkwise(wanted, start_ns, end_ns, None)
            return
        schemas = self._schemas
        last_t, given = -1, []  # stamp of the last message given, and (channel id, sequence) of those at it
        try:
            for schema, channel, message in self._mcap.iter_messages(topics, starting_at=start_ns, ending_before=end_ns):
                t = message.log_time
                if t > MAX_STAMP_NS:
                    self._out_of_range(channel.topic, t)
                    continue
                if t != last_t:
                    last_t, given = t, []
                given.append((message.channel_id, message.sequence))
                yield RawMessage(channel.topic, t, message.sequence,
                                 schemas.get(channel.schema_id, "") if schema is None else schema.name, message.data)
        except Exception:  # noqa: BLE001 - CRC, zstd, lz4, cut records: the library stops iterating there
            # Go on chunk by chunk, skipping the damaged ones (counted) and what was already given.
            yield from self._chunkwise(wanted, start_ns, end_ns, (last_t, set(given)))

    def _chunkwise(
        self,
        wanted: set[int] | None,
        start_ns: int | None,
        end_ns: int | None,
        given: tuple[int, set[tuple[int, int]]] | None,
    ) -> Iterator[RawMessage]:
        """Merge the chunks by stamp: a chunk is opened once the queue's head reaches its start time, so
        memory holds one chunk (or the few that overlap in time) at once."""
        chunks = sorted(
            (c for c in self._chunks
             if (start_ns is None or c.end_ns >= start_ns) and (end_ns is None or c.start_ns < end_ns)
             and (given is None or c.end_ns >= given[0])
             and (wanted is None or c.channel_ids is None or not wanted.isdisjoint(c.channel_ids))),
            key=lambda c: (c.start_ns, c.offset),
        )
        heap: list[tuple[int, int, int, Message]] = []
        next_chunk = 0
        while True:
            while next_chunk < len(chunks) and (not heap or chunks[next_chunk].start_ns <= heap[0][0]):
                for index, record in enumerate(self._chunk_records(chunks[next_chunk].offset) or ()):
                    if not isinstance(record, Message):
                        self._learn(record)
                        continue
                    t = record.log_time
                    if ((wanted is not None and record.channel_id not in wanted)
                            or (start_ns is not None and t < start_ns) or (end_ns is not None and t >= end_ns)):
                        continue
                    if given is not None and (t < given[0] or (t == given[0]
                                                               and (record.channel_id, record.sequence) in given[1])):
                        continue
                    heapq.heappush(heap, (t, next_chunk, index, record))
                next_chunk += 1
            if not heap:
                return
            t, _, _, record = heapq.heappop(heap)
            channel = self._channels.get(record.channel_id)
            if channel is None:
                continue  # channel record lost with a damaged chunk
            if t > MAX_STAMP_NS:
                self._out_of_range(channel.topic, t)
                continue
            yield RawMessage(channel.topic, t, record.sequence, self._schemas.get(channel.schema_id, ""), record.data)

    def _out_of_range(self, topic: str, stamp_ns: int) -> None:
        self.errors.note("undecodable_messages", f"{topic}: stamp_ns={stamp_ns} is out of range "
                                                 f"(> {MAX_STAMP_NS}, the year 2262); skipped")

    # ------------------------------------------------------------------------------------------ decoding

    def _context(self, topic: str) -> DecodeContext:
        ctx = self._contexts.get(topic)
        if ctx is None:
            ids = self._topic_ids.get(topic)
            meta = dict(self._channels[ids[0]].metadata) if ids else {}
            camera = self.camera() if topic not in TOPICS or TOPICS[topic].conversion == "image" else None
            ctx = self._contexts[topic] = DecodeContext(camera=camera, channel_metadata=meta)
        return ctx

    def read(
        self, topic: str, *, start_ns: int | None = None, end_ns: int | None = None, like: str | None = None
    ) -> Iterator[msgspec.Struct]:
        """The records of ``topic`` in stamp order, decoded by the topic table's conversion (the records
        the bus carries). A topic the table does not know (another tool's drive) is decoded like the
        table's topic ``like``. A message that does not decode is skipped and counted (``errors``); a
        channel whose schema is not the table's raises ValueError."""
        if topic in TOPICS or like is None:
            entry = get_topic(topic)
        else:
            entry = dataclasses.replace(get_topic(like), name=topic)
        kind = "corrupt_frames" if entry.conversion == "image" else "undecodable_messages"
        ctx = self._context(topic) if topic in self._topic_ids else DecodeContext()
        for message in self.messages(topic, start_ns=start_ns, end_ns=end_ns):
            try:
                yield decode(entry, message.schema_name, message.stamp_ns, message.sequence, message.data, ctx)
            except CorruptRecord as exc:
                self.errors.note(kind, f"{topic}: {exc}")
            except ValueError as exc:
                raise ValueError(f"{self.path}: {exc}") from None

    def images(
        self,
        topic: str = CAMERA_TOPIC,
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        decode: bool = False,
    ) -> Iterator[Image]:
        """Camera frames in time order, as stored (JPEG bytes checked for start and end markers only)
        or, with ``decode``, decoded into ``bgr8`` Images. Broken frames are skipped and counted in
        ``errors.corrupt_frames``."""
        for image in self.read(topic, start_ns=start_ns, end_ns=end_ns, like=CAMERA_TOPIC):
            assert isinstance(image, Image)
            if decode and image.encoding != "bgr8":
                try:
                    pixels = image.to_bgr()
                except ValueError as exc:
                    self.errors.note("corrupt_frames", f"{topic}: {exc}")
                    continue
                image = msgspec.structs.replace(image, encoding="bgr8", data=pixels)
            yield image

    def fixes(
        self, topic: str = GPS_TOPIC, *, start_ns: int | None = None, end_ns: int | None = None
    ) -> Iterator[GeoFix | Pose]:
        """Fixes of a LocationFix channel: GeoFix on ``gps/fix`` and ``posenet/fix``, Pose on
        ``localization/pose``."""
        yield from self.read(topic, start_ns=start_ns, end_ns=end_ns, like=GPS_TOPIC)  # type: ignore[misc]

    def odometry(
        self, topic: str = ODOMETRY_TOPIC, *, start_ns: int | None = None, end_ns: int | None = None
    ) -> Iterator[Odometry]:
        """Odometry: forward speed (m/s) and yaw rate (rad/s, counter-clockwise positive)."""
        yield from self.read(topic, start_ns=start_ns, end_ns=end_ns, like=ODOMETRY_TOPIC)  # type: ignore[misc]

    def boxes(
        self, topic: str = TRUTH_BOXES_TOPIC, *, start_ns: int | None = None, end_ns: int | None = None
    ) -> Iterator[Detections]:
        """Box sets (ground truth by default; ``perception/detections`` for a detector's)."""
        yield from self.read(topic, start_ns=start_ns, end_ns=end_ns, like=TRUTH_BOXES_TOPIC)  # type: ignore[misc]

    def label_masks(
        self, topic: str = TRUTH_SEGMENTATION_TOPIC, *, start_ns: int | None = None, end_ns: int | None = None
    ) -> Iterator[Segmentation]:
        """Label masks (ground truth by default), with the class table from the channel metadata."""
        yield from self.read(topic, start_ns=start_ns, end_ns=end_ns, like=TRUTH_SEGMENTATION_TOPIC)  # type: ignore[misc]

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
                [f.header.stamp_ns for f in fixes], [f.lat_deg for f in fixes], [f.lon_deg for f in fixes],
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
            decode: also decode each image (``bgr8`` Images).

        Frames beyond the GPS track or across a gap get ``gps=None``; broken frames are skipped and
        counted in ``errors.corrupt_frames``.
        """
        if gps not in ("interpolate", "nearest", "none"):
            raise ValueError(f"gps={gps!r} is not 'interpolate', 'nearest' or 'none'")
        track = self.track(gps_topic) if gps != "none" and gps_topic in self._topic_ids else Track.empty()
        for image in self.images(topic, start_ns=start_ns, end_ns=end_ns, decode=decode):
            fix, interpolated = (self._fix_at(track, image.header.stamp_ns, gps, max_gap_s) if len(track)
                                 else (None, False))
            yield Frame(image, fix, interpolated)

    @staticmethod
    def _fix_at(track: Track, stamp_ns: int, mode: str, max_gap_s: float) -> tuple[GeoFix | None, bool]:
        stamps = track.stamp_ns
        i = int(np.searchsorted(stamps, stamp_ns, side="left"))
        if i < len(stamps) and stamps[i] == stamp_ns:
            mode, nearest = "exact", i
        elif mode == "nearest":
            candidates = [j for j in (i - 1, i) if 0 <= j < len(stamps)]
            nearest = min(candidates, key=lambda j: abs(int(stamps[j]) - stamp_ns))
            if abs(int(stamps[nearest]) - stamp_ns) > max_gap_s * 1e9:
                return None, False
        else:
            if i == 0 or i == len(stamps) or (stamps[i] - stamps[i - 1]) > max_gap_s * 1e9:
                return None, False

        def fix(stamp: int, lat: float, lon: float, alt: float, heading: float, speed: float, std: float) -> GeoFix:
            return GeoFix(Header(stamp, frame_id=GPS_FRAME_ID), lat, lon, alt,
                          None if math.isnan(heading) else heading, (std * std, 0.0, 0.0, std * std),
                          speed_mps=None if math.isnan(speed) else speed)

        if mode in ("exact", "nearest"):
            j = nearest
            return fix(stamp_ns if mode == "exact" else int(stamps[j]), float(track.lat_deg[j]),
                       float(track.lon_deg[j]), float(track.alt_m[j]), float(track.heading_deg[j]),
                       float(track.speed_mps[j]), float(track.horizontal_std_m[j])), False
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
            heading = hb if math.isnan(ha) else ha
        else:
            heading = (ha + w * ((hb - ha + 180.0) % 360.0 - 180.0)) % 360.0  # along the shorter arc
        return fix(stamp_ns, lerp(track.lat_deg), lerp(track.lon_deg), lerp(track.alt_m), heading,
                   lerp(track.speed_mps), lerp(track.horizontal_std_m)), True

    def camera(self) -> CameraInfo | None:
        """The drive's intrinsics: from the metadata, else from the first calibration message."""
        if self._camera is False:
            camera = self.metadata.camera
            if camera is None and CALIBRATION_TOPIC in self._topic_ids:
                camera = next(iter(self.read(CALIBRATION_TOPIC)), None)  # type: ignore[arg-type]
            self._camera = camera
        return self._camera  # type: ignore[return-value]

    def frame_size(self, topic: str = CAMERA_TOPIC) -> tuple[int, int] | None:
        """(width_px, height_px) of the first readable frame, None without frames."""
        for frame in self.images(topic):
            if frame.width_px and frame.height_px:
                return frame.width_px, frame.height_px
        return None

    def image_stamps(self, topic: str = CAMERA_TOPIC) -> Sequence[int]:
        """Stamps of every frame (reads no image data beyond each record's header)."""
        return [m.stamp_ns for m in self.messages(topic)]
