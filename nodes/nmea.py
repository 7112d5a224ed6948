"""The NMEA node: ``localization/pose`` in, NMEA-0183 sentences out, for software that expects a GPS
receiver (gpsd, autopilots, loggers).

Per pose (at most ``rate_hz`` sets a second of pose time) it sends one epoch: GGA (position, fix
quality, HDOP), RMC (validity, speed, course), HDT (true heading, when its std is under
``max_heading_std_deg``) and GST (the 1-sigma error ellipse), written by `localization.nmea`.

What the fix quality says (the pose's status, honestly):

======================  ==============  ================  ===========================
pose                    GGA quality     RMC status/mode   meaning for a GPS consumer
======================  ==============  ================  ===========================
TRACKING                1 (GPS fix)     A / A             a fix to use
DEGRADED                6 (estimated)   A / E             dead reckoning, std growing
LOST, INITIALIZING      0 (invalid)     V / N             no fix
======================  ==============  ================  ===========================

HDOP is the horizontal 1-sigma radius (sqrt of the trace of ``cov_enu_m2``) divided by ``uere_m``, so
a consumer that multiplies HDOP by its user-equivalent range error (gpsd's default is of that order)
gets the filter's figure back; GST carries the ellipse itself, which gpsd reports as ``epx``/``epy``.

Where the sentences go (either or both):

* **TCP** (``port``, default 10110, the registered port of NMEA-0183 over TCP): a server that sends every
  sentence to every connected client, as networked receivers and `gpsfake` do. gpsd reads it with
  ``gpsd -N -n tcp://127.0.0.1:10110`` (then ``cgps`` or ``gpspipe -w``); a client that cannot keep up
  (its socket buffer full) is disconnected rather than slowing the node down.
* **a file** (``file``): appended, one CRLF-terminated sentence a line. A pty made by
  ``socat -d -d pty,raw,echo=0,link=/tmp/gps0 pty,raw,echo=0,link=/tmp/gps1`` gives a serial-like device:
  ``file = "/tmp/gps0"`` here, ``gpsd -N -n /tmp/gps1`` there, for consumers that only read serial ports.

    python -m nodes.nmea --param port=10110
"""

from __future__ import annotations

import logging
import math
import socket
from typing import Annotated, TextIO

import msgspec

from localization.nmea import (
    GGA_QUALITY_ESTIMATED,
    GGA_QUALITY_GPS,
    GGA_QUALITY_INVALID,
    RMC_MODE_AUTONOMOUS,
    RMC_MODE_ESTIMATED,
    format_gga,
    format_gst,
    format_hdt,
    format_rmc,
)
from nodes.bus.messages import Pose, PoseStatus
from nodes.bus.pubsub import Delivery
from nodes.runtime import Node, Outputs, node_main
from perception.drives.topics import POSE_TOPIC

log = logging.getLogger("streetloc.nmea")
NMEA_TCP_PORT = 10110  # IANA: nmea-0183 over TCP


class NmeaParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: Annotated[str, msgspec.Meta(
        description="address the TCP server listens on (0.0.0.0: every interface)")] = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(
        ge=-1, le=65535, description="TCP port of the NMEA stream (10110: NMEA-0183 over TCP); 0: any free "
                                     "port; -1: no TCP server")] = NMEA_TCP_PORT
    file: Annotated[str, msgspec.Meta(
        description="also append the sentences to this file or pty (\"\": none)")] = ""
    rate_hz: Annotated[float, msgspec.Meta(
        ge=0, le=100, description="sentence sets per second of pose time, Hz; 0: one per pose")] = 5.0
    talker: Annotated[str, msgspec.Meta(
        pattern="^(GP|GN|GL|GA|GB)$", description="talker id of the sentences (GP: GPS)")] = "GP"
    uere_m: Annotated[float, msgspec.Meta(
        gt=0, description="user-equivalent range error, m: HDOP = horizontal 1-sigma radius / uere_m")] = 5.0
    max_heading_std_deg: Annotated[float, msgspec.Meta(
        gt=0, description="HDT is sent only while the heading std is under this, deg")] = 30.0


def fix_quality(pose: Pose) -> int:
    """GGA fix quality of a pose (see the module docstring)."""
    if not pose.valid or pose.status in (PoseStatus.LOST, PoseStatus.INITIALIZING):
        return GGA_QUALITY_INVALID
    return GGA_QUALITY_GPS if pose.status == PoseStatus.TRACKING else GGA_QUALITY_ESTIMATED


def pose_sentences(pose: Pose, params: NmeaParams | None = None) -> list[str]:
    """One epoch of sentences (GGA, RMC, HDT when the heading is good enough, GST) for ``pose``."""
    p = params or NmeaParams()
    stamp = pose.header.stamp_ns
    quality = fix_quality(pose)
    valid = quality != GGA_QUALITY_INVALID
    var_e, var_n = pose.cov_enu_m2[0], pose.cov_enu_m2[3]
    radius_m = math.sqrt(max(var_e + var_n, 0.0)) if math.isfinite(var_e + var_n) else math.inf
    hdop = min(radius_m / p.uere_m, 99.9) if valid else None
    out = [
        format_gga(stamp, pose.lat_deg, pose.lon_deg, alt_m=pose.alt_m, quality=quality, hdop=hdop, talker=p.talker),
        format_rmc(stamp, pose.lat_deg, pose.lon_deg, speed_mps=abs(pose.speed_mps) if valid else None,
                   course_deg=pose.heading_deg if valid else None, valid=valid,
                   mode=RMC_MODE_AUTONOMOUS if quality == GGA_QUALITY_GPS else RMC_MODE_ESTIMATED,
                   talker=p.talker),
    ]
    if valid and pose.heading_std_deg < p.max_heading_std_deg and math.isfinite(pose.heading_deg):
        out.append(format_hdt(pose.heading_deg, talker=p.talker))
    if math.isfinite(radius_m):
        out.append(format_gst(stamp, pose.cov_enu_m2, talker=p.talker))
    return out


class NmeaNode(Node):
    """Serves the fused pose as NMEA-0183 over TCP and/or into a file or pty."""

    name = "nmea"
    Params = NmeaParams
    subscribes = {POSE_TOPIC: Delivery.EVERY}
    publishes = ()

    def __init__(self, params: NmeaParams | None = None) -> None:
        super().__init__(params)
        p: NmeaParams = self.params
        self.server: socket.socket | None = None
        self.clients: list[socket.socket] = []
        self.port: int | None = None
        if p.port >= 0:
            server = socket.create_server((p.host, p.port), reuse_port=False)
            server.setblocking(False)
            self.server, self.port = server, server.getsockname()[1]
            log.info("NMEA-0183 on tcp://%s:%d (gpsd -N -n tcp://%s:%d)", p.host, self.port, p.host, self.port)
        self.out_file: TextIO | None = open(p.file, "a", newline="") if p.file else None  # noqa: SIM115
        self.period_ns = round(1e9 / p.rate_hz) if p.rate_hz > 0 else 0
        self.last_sent_ns: int | None = None
        self.epochs_sent = 0
        self.dropped_clients = 0

    def _accept(self) -> None:
        while self.server is not None:
            try:
                client, addr = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return
            client.setblocking(False)
            self.clients.append(client)
            log.info("NMEA client %s connected", addr)

    def on_message(self, topic: str, msg: msgspec.Struct, recv_ns: int) -> Outputs:
        assert isinstance(msg, Pose)
        stamp = msg.header.stamp_ns
        if self.last_sent_ns is not None and stamp < self.last_sent_ns + self.period_ns:
            return ()
        text = "".join(pose_sentences(msg, self.params))
        self.last_sent_ns = stamp
        self.epochs_sent += 1
        self._accept()
        data = text.encode("ascii")
        for client in list(self.clients):
            try:
                sent = client.send(data)
            except (BlockingIOError, OSError):
                sent = -1
            if sent != len(data):  # gone, or too slow to keep up: it would stall the node
                self.clients.remove(client)
                client.close()
                self.dropped_clients += 1
        if self.out_file is not None:
            self.out_file.write(text)
            self.out_file.flush()
        return ()

    def on_input_restart(self, topic: str) -> None:
        """The poses start over in time (a looping replay): pace the sentences from the next pose on, not
        from the last pass's stamps (which would hold them back for a whole pass)."""
        self.last_sent_ns = None

    def on_tick(self, now_ns: int) -> Outputs:
        self._accept()  # clients connect before the first pose too
        return ()

    def tick_hz(self) -> float:
        return 2.0 if self.server is not None else 0.0

    def close(self) -> None:
        for client in self.clients:
            client.close()
        if self.server is not None:
            self.server.close()
        if self.out_file is not None:
            self.out_file.close()
        log.info("nmea: %d epochs sent, %d slow or gone clients dropped", self.epochs_sent, self.dropped_clients)


NODE = NmeaNode

if __name__ == "__main__":
    raise SystemExit(node_main(NmeaNode))
