"""Record bus topics into a drive (MCAP), losing nothing.

Subscribes with every-message delivery to the chosen topics (default: every topic the topic table
marks ``recorded`` that a drive can hold) and writes each message as it arrives, in its own channel.
The header traces, which a drive's channels do not hold, go into the metadata record ``streetloc.traces``
at the end (the newest ``MAX_TRACES`` per topic): `nodes.latency` reads them (``streetloc topic latency
TOPIC --run RUN.mcap``). Chunks are closed at least every ``flush_interval_s``, so a recorder killed with SIGKILL leaves a file
readable up to its last complete chunk; SIGINT/SIGTERM finish an indexed file.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Annotated

import msgspec

from nodes.bus.pubsub import Delivery
from nodes.bus.topics import get_topic
from nodes.latency import TRACES_RECORD, Traced, encode_traces
from nodes.runtime import Node, Outputs, node_main
from perception.drives import DriveMetadata, DriveWriter
from perception.drives.topics import drive_topic, recorded_topics

log = logging.getLogger("streetloc.record")
MAX_TRACES = 20_000  # header traces kept per topic (the newest): a few MB of metadata at most


def default_record_topics() -> list[str]:
    return recorded_topics()


class RecordParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    output: Annotated[str, msgspec.Meta(description="the .mcap file to write (overwritten)")] = ""
    topics: Annotated[list[str], msgspec.Meta(description="topics to record (default: the table's recorded ones)")] = []
    source: Annotated[str, msgspec.Meta(description="free text stored as the drive's source")] = "streetloc record"
    flush_interval_s: Annotated[float, msgspec.Meta(gt=0, description="close a chunk at least this often")] = 1.0


class Recorder(Node):
    """Writes every message of its topics into a drive file."""

    name = "record"
    Params = RecordParams

    @classmethod
    def declared_topics(cls, params: msgspec.Struct):
        assert isinstance(params, RecordParams)
        topics = params.topics or default_record_topics()
        for topic in topics:
            get_topic(topic)
            try:
                drive_topic(topic)
            except ValueError as exc:
                raise ValueError(f"record: {exc}") from None
        # BUFFERED: a disk stall fills memory for a moment instead of dropping messages
        return {t: Delivery.BUFFERED for t in topics}, ()

    def __init__(self, params: RecordParams | None = None) -> None:
        super().__init__(params)
        p: RecordParams = self.params
        if not p.output:
            raise ValueError("record: parameter 'output' (the .mcap file) is required")
        self.subscribes, self.publishes = self.declared_topics(p)
        self.writer = DriveWriter(p.output, DriveMetadata(source=p.source), flush_interval_s=p.flush_interval_s)
        self.written: dict[str, int] = {t: 0 for t in self.subscribes}
        self.traces: dict[str, deque[Traced]] = {t: deque(maxlen=MAX_TRACES) for t in self.subscribes}

    def on_message(self, topic: str, msg: msgspec.Struct, recv_ns: int) -> Outputs:
        # The writer stores the first frame's intrinsics as camera/calibration. ValueError (a record the
        # drive cannot hold): counted by the runtime, recording goes on.
        self.writer.write(topic, msg)
        self.written[topic] += 1
        header = msg.header  # type: ignore[attr-defined]
        if header.trace:
            self.traces[topic].append(Traced(topic, header.stamp_ns, tuple(header.trace)))
        return ()

    def close(self) -> None:
        traced = [t for q in self.traces.values() for t in q]
        if traced:
            self.writer.add_metadata(TRACES_RECORD, encode_traces(traced))
        self.writer.close()
        log.info("wrote %s: %s", self.params.output, ", ".join(f"{t} {n}" for t, n in self.written.items()))

if __name__ == "__main__":
    raise SystemExit(node_main(Recorder))
