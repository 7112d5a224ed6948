"""Replay a recorded drive onto the bus: camera frames, GPS (ground truth, ``gps/fix``) and odometry.

Modes:
- real time (``rate=1``), faster or slower (``rate=N``), or as fast as possible (``rate=0``); slow
  consumers drop frames exactly as on a robot;
- lock-step (``lockstep=true``): publish a camera frame with everything stamped up to it (the odometry and
  GPS taken with it too), wait until every ``lockstep_topics`` topic has published a message stamped at or
  after that frame (the pipeline has finished with it), then go on.
  Every frame is processed, and two runs give identical outputs. A frame nobody answers within
  ``lockstep_timeout_s`` is published again (the graph may still be starting), then given up and counted.

Looping (``loop=true``): at the end of the drive (window) the replay starts over under a new publisher
incarnation (docs/wire_format.md, "Header"), after the pass's last messages went out in the old one. The
stamps go back; every node downstream sees its input's publisher restart with earlier stamps and starts a
new incarnation of its own outputs (``nodes.runtime``, ``Node.restarts_with_inputs``; fusion restarts its
filter), so each pass reaches every subscriber as a stream of its own. In lock-step, answers from the
answerers' incarnations of the previous pass that arrive after the restart are not taken as answers
(``stale_answers``): every frame of every pass waits for its own answer.

Messages keep their recorded capture time ``stamp_ns``, so that poses can be scored against the drive's
GPS; the replay's hop in each header trace carries the wall-clock publish time.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Annotated

import msgspec

from nodes.bus.pubsub import Delivery
from nodes.bus.topics import TOPICS
from nodes.runtime import Node, Outputs, node_main
from perception.drives import DriveReader
from perception.drives.conversions import CorruptRecord, DecodeContext, decode
from perception.drives.topics import CAMERA_TOPIC, POSENET_TOPIC, replayed_topics

# every bus topic a drive can hold can be replayed
REPLAYABLE_TOPICS = tuple(t.name for t in TOPICS.values() if t.in_drive)

log = logging.getLogger("streetloc.replay")
_MAX_ANSWERERS = 256  # (topic, node, incarnation) of lock-step answers remembered per pass, at most
_LOCKSTEP_RETRIES = 3  # republish an unanswered frame this many times before giving up on it


class ReplayParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    drive: Annotated[str, msgspec.Meta(description="the .mcap drive to replay")] = ""
    rate: Annotated[float, msgspec.Meta(ge=0, description="speed factor: 1 real time, 0 as fast as possible")] = 1.0
    lockstep: Annotated[bool, msgspec.Meta(description="wait for the graph to finish each frame")] = False
    lockstep_topics: Annotated[list[str], msgspec.Meta(
        description="topics whose message stamped >= a frame means the frame is done")] = msgspec.field(
        default_factory=lambda: [POSENET_TOPIC])
    lockstep_timeout_s: Annotated[float, msgspec.Meta(gt=0, description="wait per frame before retrying")] = 5.0
    start_s: Annotated[float, msgspec.Meta(ge=0, description="skip this much of the drive's start")] = 0.0
    end_s: Annotated[float, msgspec.Meta(ge=0, description="stop this far into the drive (0: the end)")] = 0.0
    loop: Annotated[bool, msgspec.Meta(description="start over at the end")] = False
    topics: Annotated[list[str], msgspec.Meta(description="drive channels to publish")] = msgspec.field(
        default_factory=replayed_topics)
    start_delay_s: Annotated[float, msgspec.Meta(
        ge=0, description="wait for subscribers to connect, s (with --launch: after the graph is ready)")] = 1.0


def _check_topics(params: ReplayParams) -> None:
    for topic in params.topics:
        if topic not in REPLAYABLE_TOPICS:
            raise ValueError(f"replay: topic {topic!r} cannot be replayed; choose from {', '.join(REPLAYABLE_TOPICS)}")
    if params.end_s and params.end_s <= params.start_s:
        raise ValueError(f"replay: end_s={params.end_s} is not after start_s={params.start_s}")


class Replay(Node):
    """Publishes a drive's camera, GPS and odometry channels in time order."""

    name = "replay"
    Params = ReplayParams
    restarts_with_inputs = False  # its inputs are answers to what it published, not the source of its outputs

    @classmethod
    def declared_topics(cls, params: msgspec.Struct):
        assert isinstance(params, ReplayParams)
        _check_topics(params)
        subscribes = {t: Delivery.EVERY for t in params.lockstep_topics} if params.lockstep else {}
        return subscribes, tuple(params.topics)

    def __init__(self, params: ReplayParams | None = None) -> None:
        super().__init__(params)
        p: ReplayParams = self.params
        if not p.drive:
            raise ValueError("replay: parameter 'drive' (the .mcap file) is required")
        self.subscribes, self.publishes = self.declared_topics(p)
        self.reader = DriveReader(p.drive)
        if self.reader.start_ns is None:
            raise ValueError(f"{p.drive}: the drive holds no messages")
        self._contexts = {t: DecodeContext(self.reader.camera() if t == CAMERA_TOPIC else None,
                                           self.reader.channels[t].metadata if t in self.reader.topics else {})
                          for t in self.publishes}
        self.first_ns = self.reader.start_ns + int(p.start_s * 1e9)
        if self.reader.end_ns is not None and self.first_ns > self.reader.end_ns:
            raise ValueError(f"replay: start_s={p.start_s:g} is past the end of {p.drive} "
                             f"({self.reader.duration_s:.1f} s long)")
        self.last_ns = self.reader.start_ns + int(p.end_s * 1e9) if p.end_s else None
        self.skipped_corrupt = 0
        self.frames_published = 0
        self.lockstep_gave_up = 0
        self.last_corrupt = ""
        self.loops = 0  # times the drive started over (``loop``)
        self.stale_answers = 0  # lock-step answers from before a loop's restart, not taken as answers
        # lock-step answerers (topic, node, incarnation) heard in this pass, and those of the previous one
        self._answerers: set[tuple[str, str, int]] = set()
        self._stale_answerers: set[tuple[str, str, int]] = set()
        self._finished = False
        self._start_wall: float | None = None  # the first tick + start_delay_s: counted once the sockets exist
        self._restart()

    # -- iteration over the drive ------------------------------------------------------------------
    def _restart(self) -> None:
        self._messages = self.reader.messages(self.publishes, start_ns=self.first_ns, end_ns=self.last_ns)
        self._pending = deque()
        self._t0_wall: float | None = None
        self._waiting_stamp: int | None = None
        self._acked: dict[str, int] = {}

    def _next_raw(self):
        for raw in self._messages:
            return raw
        return None

    def _peek(self):
        if not self._pending:
            raw = self._next_raw()
            if raw is None:
                return None
            self._pending.append(raw)
        return self._pending[0]

    def _convert(self, raw) -> list[tuple[str, msgspec.Struct]]:
        """The bus message of a record; nothing for a corrupt one, which is counted and reported in
        diagnostics (the replay goes on)."""
        try:
            msg = decode(TOPICS[raw.topic], raw.schema_name, raw.stamp_ns, raw.sequence, raw.data,
                         self._contexts[raw.topic])
            msg.header.seq = 0  # type: ignore[attr-defined]  # the publisher numbers what it sends
            return [(raw.topic, msg)]
        except CorruptRecord as exc:
            self.skipped_corrupt += 1
            self.last_corrupt = str(exc)
            if self.skipped_corrupt == 1:
                log.warning("skipping corrupt record: %s (further ones are counted in diagnostics)", exc)
            return []

    def _at_end(self) -> Outputs:
        """The end of the drive (window): start over (``loop``) or finish. Called only once everything of
        the pass has been returned, so that the tail is published in the pass's own incarnation and the
        new incarnation starts with the new pass."""
        if self.params.loop:
            self._restart()
            self.loops += 1
            log.info("end of %s: starting over (pass %d, a new incarnation)", self.params.drive, self.loops + 1)
            self.stream_epoch += 1  # stamps start over: a new publisher incarnation, not a clock going back
            # Answers still on their way belong to the previous pass (its last frames, a frame republished
            # after a timeout, an answer stamped after the last frame): stamped late in the drive, they would
            # count as answers to the new pass's frames at once. The answerers start a new incarnation when
            # they see the new pass (nodes.runtime, ``restarts_with_inputs``): until then, what their old
            # incarnations send is not an answer.
            self._stale_answerers, self._answerers = self._answerers, set()
            return ()
        self._finished = True
        return ()

    # -- handlers ----------------------------------------------------------------------------------
    def tick_hz(self) -> float:
        # real time: 1 ms scheduling resolution; lock-step is driven by the answers, the ticks only start
        # it and time out unanswered frames (a 1 kHz ticker costs CPU the graph's nodes need)
        return 50.0 if self.params.lockstep else 1000.0

    def on_tick(self, now_ns: int) -> Outputs:
        now = time.monotonic()
        if self._start_wall is None:
            self._start_wall = now + self.params.start_delay_s
        if now < self._start_wall or self._finished:
            return ()
        if self.params.lockstep:
            return self._lockstep_tick(now)
        out: list[tuple[str, msgspec.Struct]] = []
        budget = 200  # messages per tick at most, so diagnostics and signals stay responsive
        while budget:
            raw = self._peek()
            if raw is None:  # the tail goes out first; the end (a loop's new incarnation) on the next tick
                return out if out else self._at_end()
            if self._t0_wall is None:
                self._t0_wall, self._t0_stamp = now, raw.stamp_ns
            if self.params.rate > 0:
                due = self._t0_wall + (raw.stamp_ns - self._t0_stamp) / 1e9 / self.params.rate
                if due > now:
                    break
            self._pending.popleft()
            budget -= 1
            converted = self._convert(raw)
            out.extend(converted)
            if converted and raw.topic == CAMERA_TOPIC:
                self.frames_published += 1
        return out

    def next_frame(self) -> list[tuple[str, msgspec.Struct]]:
        """Everything up to and including the next camera frame, and after it what shares the frame's
        stamp (odometry, GPS taken with the frame), in drive order: what lock-step publishes for one frame
        (empty at the end of the drive). The frame's stamp becomes the one waited for. With the frame's
        own odometry sent with it, a node that merges its inputs by stamp (fusion) takes the frame's fix
        at once, instead of holding it until the next frame's messages (or ``max_delay_s``) show that
        nothing older is coming."""
        out: list[tuple[str, msgspec.Struct]] = []
        self._waiting_stamp = None
        looped = False
        while True:
            raw = self._peek()
            if raw is None:
                # the end, found on the call after the last frame's; with messages after the last frame,
                # they go out first (in the pass's incarnation) and the end comes on the next call
                if self._waiting_stamp is None and not out and not looped:
                    self._at_end()
                    if self.params.loop:  # the new pass's first frame at once
                        looped = True
                        continue
                return out
            if self._waiting_stamp is not None and (raw.topic == CAMERA_TOPIC or raw.stamp_ns > self._waiting_stamp):
                return out  # the frame and everything stamped with it are out
            self._pending.popleft()
            converted = self._convert(raw)
            out.extend(converted)
            if converted and raw.topic == CAMERA_TOPIC:
                self.frames_published += 1
                self._waiting_stamp = raw.stamp_ns
                self._waiting_frame = converted
                self._waiting_since = time.monotonic()
                self._retries = 0

    def _lockstep_tick(self, now: float) -> Outputs:
        if self._waiting_stamp is None:
            return self.next_frame()
        if now - self._waiting_since < self.params.lockstep_timeout_s:
            return ()
        if self._retries < _LOCKSTEP_RETRIES:
            self._retries += 1
            self._waiting_since = now
            return list(self._waiting_frame)
        self.lockstep_gave_up += 1
        self._waiting_stamp = None
        return self.next_frame()

    def on_message(self, topic: str, msg: msgspec.Struct, recv_ns: int) -> Outputs:
        header = msg.header  # type: ignore[attr-defined]
        answerer = (topic, header.trace[-1].node if header.trace else "", header.incarnation)
        if answerer in self._stale_answerers:  # from before the loop restarted: not an answer to this pass
            self.stale_answers += 1
            return ()
        if len(self._answerers) < _MAX_ANSWERERS:
            self._answerers.add(answerer)
        stamp = header.stamp_ns
        self._acked[topic] = max(stamp, self._acked.get(topic, 0))
        if self._waiting_stamp is None:
            return ()
        if all(self._acked.get(t, -1) >= self._waiting_stamp for t in self.params.lockstep_topics):
            self._waiting_stamp = None
            return self.next_frame()
        return ()

    def is_finished(self) -> bool:
        # in lock-step, the last frame must be answered (or given up) before the replay ends
        return self._finished and self._waiting_stamp is None

    def health(self) -> dict[str, str]:
        problems = {}
        if self.skipped_corrupt:
            problems["corrupt-records"] = (f"{self.skipped_corrupt} corrupt records skipped in {self.params.drive}, "
                                           f"last: {self.last_corrupt}")
        if self.lockstep_gave_up:
            problems["lockstep-timeout"] = f"{self.lockstep_gave_up} frames got no answer on {self.params.lockstep_topics}"
        return problems

    def close(self) -> None:
        self.reader.close()


if __name__ == "__main__":
    raise SystemExit(node_main(Replay))
