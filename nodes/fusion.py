"""The fusion node: ``posenet/fix`` + ``odometry`` (+ ``gps/fix`` when enabled) in, ``localization/pose`` out.

With a landmark map (``map``, docs/landmarks.md) it also takes ``perception/detections``: sign/light boxes
become the filter's ``landmarks`` measurement (bearing, elevation and depth to JCBB-matched map landmarks),
and each pose says how many landmarks it used (``landmarks_used``, ``landmark_ids``).

A thin shell around the pure `localization.filter.PoseFilter` (openpilot locationd's shape): it turns bus
messages into measurements in a local ENU frame, hands them to the filter in capture-time order, and turns
the filter's estimate into ``Pose`` records. All the estimation lives in the filter; this module only
converts, counts and paces.

Inputs are merged by stamp (``nodes.clock.StampMerge``, ``late="deliver"``: the filter re-runs from a
late stamp within its ``history_s``). In a replay the node runs on the graph clock. When the inputs start
over in time (a replay looping, ``--loop``: a new publisher incarnation stamped earlier), the runtime
delivers what was held, starts the merger and the graph clock over, and the node restarts its filter
(``on_input_restart``): the poses of the next pass come under a new incarnation of ``localization/pose``,
from a filter initialised again on its fixes.

Outputs:

* one pose at ``tick_hz`` on the graph clock (default 20 Hz), predicted from the last measurement to the
  tick's time: the steady stream a planner or the NMEA node reads;
* one pose at each PoseNet fix's stamp (``pose_on_fix``): the per-frame answer, which a lock-step replay
  waits for on ``posenet/fix`` anyway (see ``nodes.clock``) and `streetloc eval` scores frame by frame.

Every pose says the filter's status and why (``status``, ``reason``), the inputs used and gated since the
previous pose (topic names; ``posenet/fix:heading`` when only a fix's heading was gated), whether it is
usable (``valid``: TRACKING or DEGRADED), and carries the header traces of the newest fix the filter took
(used or gated) and of its other non-odometry inputs, joined with the fix's last (``nodes.latency``), so
camera -> pose latency can be read off any pose (``trace[-1].pub_ns - stamp_ns`` of a per-fix pose) and
``streetloc topic latency localization/pose`` times every hop.

The ENU frame is anchored at the first usable fix (no pose is published before one: there is nothing to
say where). A fix marked ``valid=False`` by its source is skipped and counted by its reason; a fix or
odometry message with NaN/inf values is rejected by the filter and counted (``counters``, and the
diagnostics' ``errors`` as ``reject:<topic>``); the node keeps running.

Scene context (``context`` set: docs/context.md): the node also subscribes to ``perception/segmentation``
and ``perception/detections``, matches each fix to the frame's context by ``stamp_ns``, and multiplies the
fix's covariance by what `localization.context.ContextModel` says (a doubtful view pulls the estimate
less); every pose carries the trust of the newest fix and why (``fix_trust``, ``fix_trust_reason``).

    python -m nodes.fusion --param tick_hz=20 --param use_gps=false
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Annotated

import msgspec
import numpy as np

from localization.context import (
    ContextModel,
    FixTrust,
    detection_features,
    fix_features,
    segmentation_features,
)
from localization.filter import FilterParams, FusedPose, PoseFilter
from localization.geodesy import GeoOrigin, LocalFrame
from localization.landmarks import (
    LANDMARKS,
    LandmarkMap,
    LandmarkObservation,
    LandmarkParams,
    Pinhole,
    boxes_to_observations,
)
from localization.measurements import (
    GPS,
    ODOMETRY,
    POSENET,
    FixMeasurement,
    Hypothesis,
    OdometryMeasurement,
)
from nodes.bus.messages import Detections, GeoFix, Header, Hop, Odometry, Pose, Segmentation
from nodes.bus.pubsub import Delivery
from nodes.clock import StampMerge
from nodes.latency import join_traces
from nodes.runtime import Node, Outputs, node_main
from perception.classes import CLASS_NAMES, SIGN
from perception.drives.topics import (
    DETECTIONS_TOPIC,
    GPS_TOPIC,
    ODOMETRY_TOPIC,
    POSE_TOPIC,
    POSENET_TOPIC,
    SEGMENTATION_TOPIC,
)

log = logging.getLogger("streetloc.fusion")

KIND_TOPIC = {POSENET: POSENET_TOPIC, ODOMETRY: ODOMETRY_TOPIC, GPS: GPS_TOPIC, LANDMARKS: DETECTIONS_TOPIC}
TOPIC_KIND = {t: k for k, t in KIND_TOPIC.items()}
_DEFAULT_FILTER = FilterParams()
_DEFAULT_LANDMARKS = LandmarkParams()


class FusionParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tick_hz: Annotated[float, msgspec.Meta(
        ge=0, le=1000, description="rate of the steady pose stream, Hz, on the graph clock; 0: poses only "
                                   "at fixes")] = 20.0
    pose_on_fix: Annotated[bool, msgspec.Meta(
        description="also publish a pose at each PoseNet fix's stamp (the per-frame answer)")] = True
    use_odometry: Annotated[bool, msgspec.Meta(
        description="subscribe to odometry (wheel speed + gyro); false for a camera-only robot, whose "
                    "inputs would otherwise wait max_delay_s for odometry that never comes")] = True
    use_gps: Annotated[bool, msgspec.Meta(
        description="subscribe to gps/fix and fuse it (a part-time receiver); false in a replay, where "
                    "gps/fix is the ground truth")] = False
    gps_std_m: Annotated[float, msgspec.Meta(
        gt=0, description="1-sigma per axis of a GPS fix that carries no covariance, m")] = 5.0
    use_flagged: Annotated[list[str], msgspec.Meta(
        description="fixes flagged invalid (valid=false) only for these reasons are used anyway, e.g. "
                    "[\"out_of_area\"] when the area check misfires; the gate still judges them")] = []
    max_delay_s: Annotated[float, msgspec.Meta(
        ge=0, le=10, description="wall time an input waits for the other inputs to catch up with its stamp, "
                                 "s (the latency accepted to get inputs in capture-time order)")] = 0.1
    max_hypotheses: Annotated[int, msgspec.Meta(
        ge=1, le=64, description="hypotheses of a fix used at most (best first)")] = _DEFAULT_FILTER.max_hypotheses
    mixture: Annotated[str, msgspec.Meta(
        pattern="^(max|moment_match)$",
        description="how hypotheses inside the gate combine: max (max-mixture) or moment_match (PDA)")] = (
        _DEFAULT_FILTER.mixture)
    gate_posenet_chi2: Annotated[float, msgspec.Meta(
        gt=0, description="Mahalanobis gate of a PoseNet position, squared distance (chi2 2 dof; "
                          "13.82: p = 0.999)")] = _DEFAULT_FILTER.gate_posenet_chi2
    gate_gps_chi2: Annotated[float, msgspec.Meta(
        gt=0, description="Mahalanobis gate of a GPS position, squared distance (chi2 2 dof)")] = (
        _DEFAULT_FILTER.gate_gps_chi2)
    fix_decorrelation_m: Annotated[float, msgspec.Meta(
        ge=0, description="fixes closer together than this (distance travelled), m, share their error: "
                          "their covariance is inflated")] = _DEFAULT_FILTER.fix_decorrelation_m
    evidence_decorrelation_m: Annotated[float, msgspec.Meta(
        ge=0, description="a fix's evidence for or against a candidate track (another street) counts by the "
                          "distance travelled since the previous fix / this, m (at most 1)")] = (
        _DEFAULT_FILTER.evidence_decorrelation_m)
    fix_cov_scale: Annotated[float, msgspec.Meta(
        gt=0, description="every hypothesis's covariance times this (errors along a street are correlated; "
                          "tuned on validation drives for 95 % ellipse coverage)")] = _DEFAULT_FILTER.fix_cov_scale
    position_std_m_per_sqrt_s: Annotated[float, msgspec.Meta(
        ge=0, description="process noise of the position (unmodelled sideways motion), m/sqrt(s)")] = (
        _DEFAULT_FILTER.position_std_m_per_sqrt_s)
    init_confirm_m: Annotated[float, msgspec.Meta(
        ge=0, description="after the first fixes agree, distance driven on that track (with no other street "
                          "likelier) before the pose is valid, m: a wrong first street is not reported")] = (
        _DEFAULT_FILTER.init_confirm_m)
    spawn_min_fixes: Annotated[int, msgspec.Meta(
        ge=2, description="gated but mutually consistent fixes that start a candidate track (another street)")] = (
        _DEFAULT_FILTER.spawn_min_fixes)
    switch_llr: Annotated[float, msgspec.Meta(
        ge=0, description="a candidate track this much likelier than the estimate (log-likelihood ratio, nats) "
                          "replaces it: a relocalisation (a kidnap, a wrong street)")] = _DEFAULT_FILTER.switch_llr
    lost_llr: Annotated[float, msgspec.Meta(
        ge=0, description="a candidate track this much likelier: status LOST until one wins, nats")] = (
        _DEFAULT_FILTER.lost_llr)
    unsupported_lost_llr: Annotated[float, msgspec.Meta(
        ge=0, description="an estimate that has accepted no fix for degraded_after_s is LOST (not DEGRADED) once a "
                          "candidate track is this much likelier, nats (inf: off)")] = _DEFAULT_FILTER.unsupported_lost_llr
    rival_spread_llr: Annotated[float, msgspec.Meta(
        ge=0, description="candidate tracks within this many nats of the estimate widen the reported covariance "
                          "by their spread (a mixture's covariance about the estimate), nats; 0: off")] = (
        _DEFAULT_FILTER.rival_spread_llr)
    lost_min_fixes: Annotated[int, msgspec.Meta(
        ge=1, description="a chain of this many consistent gated fixes, none accepted since it began, makes "
                          "the status LOST")] = (
        _DEFAULT_FILTER.lost_min_fixes)
    degraded_after_s: Annotated[float, msgspec.Meta(
        ge=0, description="no fix accepted for this long: status DEGRADED, s")] = _DEFAULT_FILTER.degraded_after_s
    degraded_std_m: Annotated[float, msgspec.Meta(
        ge=0, description="position std (largest axis) over this: DEGRADED, m")] = _DEFAULT_FILTER.degraded_std_m
    lost_std_m: Annotated[float, msgspec.Meta(
        ge=0, description="position std (largest axis) over this: LOST, m")] = _DEFAULT_FILTER.lost_std_m
    history_s: Annotated[float, msgspec.Meta(
        ge=0, le=60, description="late inputs up to this much older than the newest are re-ordered, s; "
                                 "older ones are rejected and counted")] = _DEFAULT_FILTER.history_s
    odometry_speed_std_mps: Annotated[float, msgspec.Meta(
        gt=0, description="white noise of the wheel speed, m/s (its scale error is estimated)")] = (
        _DEFAULT_FILTER.odometry_speed_std_mps)
    odometry_yaw_rate_std_radps: Annotated[float, msgspec.Meta(
        gt=0, description="white noise of the gyro, rad/s (its bias is estimated)")] = (
        _DEFAULT_FILTER.odometry_yaw_rate_std_radps)
    # --- landmarks from a map (docs/landmarks.md): detected signs/lights matched to map landmarks
    map: Annotated[str, msgspec.Meta(
        description="landmark map, GeoJSON points with OSM tags (`streetloc sim --export-map`); subscribes to "
                    "perception/detections when set; \"\" = no map")] = ""
    map_hfov_deg: Annotated[float, msgspec.Meta(
        gt=1, lt=179, description="horizontal field of view of the camera, deg, for detections that carry no "
                                  "intrinsics")] = 70.0
    camera_height_m: Annotated[float, msgspec.Meta(
        gt=0, le=10, description="the camera's optical centre above the road, m (the elevation of a landmark)")] = 1.5
    landmark_box_std_px: Annotated[float, msgspec.Meta(
        gt=0, le=100, description="1-sigma of a detected box's centre and height, px")] = _DEFAULT_LANDMARKS.box_centre_std_px
    landmark_pitch_std_deg: Annotated[float, msgspec.Meta(
        ge=0, le=45, description="the camera's pitch wobble, deg (braking, bumps): widens landmark elevations")] = (
        _DEFAULT_LANDMARKS.pitch_std_deg)

    def landmark_params(self) -> LandmarkParams:
        return LandmarkParams(box_centre_std_px=self.landmark_box_std_px, box_height_std_px=self.landmark_box_std_px,
                              pitch_std_deg=self.landmark_pitch_std_deg, camera_height_m=self.camera_height_m)

    # --- scene context -> fix trust (docs/context.md)
    context: Annotated[str, msgspec.Meta(
        description="scene-context trust model: a JSON file (streetloc train context), \"default\" (the "
                    "shipped perception/weights/context_synthetic_city.json) or \"\" (off); on, the node also "
                    "subscribes to perception/segmentation and perception/detections")] = ""
    context_max_delay_s: Annotated[float, msgspec.Meta(
        ge=0, le=10, description="with context on: wall time a fix waits at most for its frame's mask and "
                                 "boxes (the inputs' max_delay_s is raised to this), s; a fix whose context "
                                 "has not come is used with trust 1, reason \"no context\"")] = 0.5

    def filter_params(self) -> FilterParams:
        """The filter's parameters: these values, the filter's defaults for the rest."""
        shared = {name: getattr(self, name) for name in (
            "max_hypotheses", "mixture", "gate_posenet_chi2", "gate_gps_chi2", "fix_decorrelation_m",
            "evidence_decorrelation_m",
            "fix_cov_scale", "position_std_m_per_sqrt_s", "init_confirm_m", "spawn_min_fixes", "switch_llr", "lost_llr",
            "unsupported_lost_llr", "rival_spread_llr",
            "lost_min_fixes", "degraded_after_s", "degraded_std_m", "lost_std_m", "history_s", "odometry_speed_std_mps", "odometry_yaw_rate_std_radps", "use_gps")}
        return FilterParams(**shared)


def fix_measurement(fix: GeoFix, frame: LocalFrame, *, default_std_m: float | None = None) -> FixMeasurement:
    """A bus ``GeoFix`` as the filter's mixture of hypotheses in ``frame``'s ENU.

    Uses ``fix.hypotheses`` (best first) when present, else the top-level fix as one hypothesis. A
    hypothesis without a covariance (NaN) takes the fix's; a fix without one takes ``default_std_m`` per
    axis (a GPS receiver) or keeps NaN, which the filter rejects as invalid. A hypothesis without a
    heading takes the fix's (with its std)."""
    top_cov = np.asarray(fix.cov_enu_m2, float).reshape(2, 2)
    if not np.all(np.isfinite(top_cov)) and default_std_m is not None:
        top_cov = np.eye(2) * default_std_m**2
    top_heading_std = fix.heading_std_deg if fix.heading_std_deg is not None else 180.0
    entries = fix.hypotheses or [None]
    lats = np.array([fix.lat_deg if h is None else h.lat_deg for h in entries], float)
    lons = np.array([fix.lon_deg if h is None else h.lon_deg for h in entries], float)
    east, north, _ = frame.to_enu(lats, lons)
    out = []
    for k, h in enumerate(entries):
        cov, heading, heading_std, weight = top_cov, fix.heading_deg, top_heading_std, 1.0
        if h is not None:
            own = np.asarray(h.cov_enu_m2, float).reshape(2, 2)
            cov = own if np.all(np.isfinite(own)) else top_cov
            if h.heading_deg is not None:
                heading = h.heading_deg
                heading_std = h.heading_std_deg if h.heading_std_deg is not None else top_heading_std
            weight = h.weight
        out.append(Hypothesis(float(east[k]), float(north[k]), heading, cov, float(heading_std), float(weight)))
    return FixMeasurement(out)


def _finite_position(fix: GeoFix) -> bool:
    return math.isfinite(fix.lat_deg) and math.isfinite(fix.lon_deg) and -90 <= fix.lat_deg <= 90 \
        and -180 <= fix.lon_deg <= 180


class FusionNode(Node):
    """Fuses PoseNet fixes, odometry and (optionally) GPS into ``localization/pose``."""

    name = "fusion"
    Params = FusionParams
    subscribes = {ODOMETRY_TOPIC: Delivery.EVERY, POSENET_TOPIC: Delivery.EVERY}
    publishes = (POSE_TOPIC,)

    @classmethod
    def declared_topics(cls, params: msgspec.Struct):
        assert isinstance(params, FusionParams)
        # odometry first: at equal stamps the merger hands over odometry before the fix (as fusion_eval)
        subs = {ODOMETRY_TOPIC: Delivery.EVERY} if params.use_odometry else {}
        if params.map:  # before the fix: at one stamp the frame's landmarks go into the pose at that fix
            subs[DETECTIONS_TOPIC] = Delivery.EVERY
        if params.context:  # before the fix: at equal stamps the merger hands a frame's context over first
            subs.update({SEGMENTATION_TOPIC: Delivery.EVERY, DETECTIONS_TOPIC: Delivery.EVERY})
        subs[POSENET_TOPIC] = Delivery.EVERY
        if params.use_gps:
            subs[GPS_TOPIC] = Delivery.EVERY
        return subs, cls.publishes

    def __init__(self, params: FusionParams | None = None) -> None:
        super().__init__(params)
        p: FusionParams = self.params
        self.subscribes, self.publishes = self.declared_topics(p)
        self.context = SceneContext(p.context) if p.context else None
        max_delay_s = max(p.max_delay_s, p.context_max_delay_s) if self.context else p.max_delay_s
        self.merge_inputs_by_stamp = StampMerge(max_delay_s=max_delay_s, late="deliver")
        self._trust = FixTrust(reason="")  # of the newest fix handed to the filter ("" : no context model)
        self.filter = PoseFilter(p.filter_params())
        self.frame: LocalFrame | None = None
        self.skipped: dict[str, int] = {}  # "<topic>:<reason>" -> inputs skipped before the filter
        # header trace of the newest message of each non-odometry input handed to the filter, the newest
        # input last: a pose carries them joined (nodes/latency.py), so that every hop to it can be timed
        self._traces: dict[str, tuple[int, list[Hop]]] = {}
        self._errors: list[tuple[str, str]] = []
        self.poses_out = 0
        self.input_restarts = 0  # times the inputs started over in time (a looping replay): filter restarted
        self._past_counters: dict[str, int] = {}  # the filter's counters before those restarts
        self._past_relocalisations = 0
        # landmarks: the map (a bad file stops the node with one line naming file, feature and field)
        self.landmark_map = LandmarkMap.load(p.map) if p.map else None
        self._landmark_params = p.landmark_params()
        self._enu_landmarks = None  # the map in self.frame, made with the first detections after it
        if self.landmark_map is not None:
            log.info("map %s: %s (%d other features skipped)", p.map, self.landmark_map.counts(),
                     self.landmark_map.skipped)

    @property
    def counters(self) -> dict[str, int]:
        """Inputs not used, by why: skipped here (``<topic>:<reason>``) or rejected by the filter
        (``invalid:<kind>``, ``too_old:<kind>``, ``future:<kind>``, ``disabled:<kind>``)."""
        filter_counters = dict(self._past_counters)
        for key, n in self.filter.counters.items():
            filter_counters[key] = filter_counters.get(key, 0) + n
        return {**self.skipped, **filter_counters}

    @property
    def relocalisations(self) -> int:
        """Relocalisations of the filter, over its restarts."""
        return self._past_relocalisations + self.filter.relocalisations

    def on_input_restart(self, topic: str) -> None:
        """The inputs start over in time (a replay looping to its drive's start; the shell then restarts the
        pose stream as a new incarnation): a new filter, initialised again from the next fixes, and a new
        ENU frame anchored at the next usable fix; the traces, fix trust and frame context of the previous
        pass are forgotten. Counters add up over restarts."""
        for key, n in self.filter.counters.items():
            self._past_counters[key] = self._past_counters.get(key, 0) + n
        self._past_relocalisations += self.filter.relocalisations
        self.filter = PoseFilter(self.params.filter_params())
        self.frame = None
        self._enu_landmarks = None
        self._traces = {}
        self._trust = FixTrust(reason="")
        if self.context is not None:
            self.context.clear()
        self.input_restarts += 1
        log.info("fusion: %s started over in time: filter restarted (%d restart%s)", topic, self.input_restarts,
                 "" if self.input_restarts == 1 else "s")

    def tick_hz(self) -> float:
        return float(self.params.tick_hz)

    def take_errors(self) -> list[tuple[str, str]]:
        errors, self._errors = self._errors, []
        return errors

    def _skip(self, topic: str, reason: str) -> Outputs:
        key = f"{topic}:{reason or 'invalid'}"
        self.skipped[key] = self.skipped.get(key, 0) + 1
        return ()

    def on_message(self, topic: str, msg: msgspec.Struct, recv_ns: int) -> Outputs:
        stamp_ns = msg.header.stamp_ns  # type: ignore[attr-defined]
        if isinstance(msg, (Segmentation, Detections)):
            if self.context is not None:  # a frame's scene, for the trust of its fix (docs/context.md)
                self.context.add(msg)
                self._note_trace(topic, msg)
            if isinstance(msg, Detections) and self.landmark_map is not None:
                return self._on_detections(topic, stamp_ns, msg)
            return ()
        kind = TOPIC_KIND[topic]
        if isinstance(msg, Odometry):
            if not msg.valid:
                return self._skip(topic, "not_valid")
            outcome = self.filter.handle(ODOMETRY, stamp_ns, OdometryMeasurement(msg.speed_mps, msg.yaw_rate_radps))
        else:
            assert isinstance(msg, GeoFix)
            reasons = [r.strip() or "not_valid" for r in (msg.reason or "not_valid").split(",")]
            if not msg.valid and not set(reasons) <= set(self.params.use_flagged):
                for reason in reasons:  # the source says do not trust it (black frame, out of area)
                    self._skip(topic, reason)
                return ()
            if self.frame is None:
                if not _finite_position(msg):
                    outcome = self.filter.handle(kind, stamp_ns, FixMeasurement([]))  # counted as invalid
                    return self._rejected(topic, outcome)
                self.frame = LocalFrame(GeoOrigin(msg.lat_deg, msg.lon_deg))
                log.info("ENU frame at the first fix: %.7f, %.7f", msg.lat_deg, msg.lon_deg)
            measurement = fix_measurement(msg, self.frame, default_std_m=self.params.gps_std_m if kind == GPS else None)
            if kind == POSENET and self.context is not None:
                self._trust = self.context.trust(msg)
                measurement = measurement._replace(noise_scale=self._trust.inflation)
            outcome = self.filter.handle(kind, stamp_ns, measurement)
        if outcome.startswith("rejected"):
            return self._rejected(topic, outcome)
        if kind != ODOMETRY:  # the camera (or receiver) path: what pose latency is measured along
            self._note_trace(topic, msg)
        if kind == POSENET and self.params.pose_on_fix and self.frame is not None:
            return [(POSE_TOPIC, self._pose(max(stamp_ns, self.filter.stamp_ns or stamp_ns)))]
        return ()

    def _note_trace(self, topic: str, msg: msgspec.Struct) -> None:
        """Keep ``msg``'s trace as its topic's newest (after the others: it caused what comes next); inputs
        older than ``history_s`` than it are dropped from the poses' traces."""
        stamp_ns = msg.header.stamp_ns  # type: ignore[attr-defined]
        self._traces.pop(topic, None)
        self._traces[topic] = (stamp_ns, list(msg.header.trace))  # type: ignore[attr-defined]
        oldest_ns = stamp_ns - int(self.params.history_s * 1e9)
        self._traces = {t: v for t, v in self._traces.items() if v[0] >= oldest_ns}

    def _on_detections(self, topic: str, stamp_ns: int, msg: Detections) -> Outputs:
        """A frame's sign/light boxes -> the filter's landmark measurement (docs/landmarks.md)."""
        if not msg.valid:
            return self._skip(topic, "not_valid")
        if self.frame is None or self.landmark_map is None:
            return self._skip(topic, "no_fix_yet")  # no ENU frame to put the map in
        if self._enu_landmarks is None:
            self._enu_landmarks = self.landmark_map.in_frame(self.frame)
        camera = _pinhole(msg, self.params.map_hfov_deg)
        if camera is None:
            return self._skip(topic, "no_image_size")
        names = msg.class_names or list(CLASS_NAMES)
        ids = np.asarray(msg.class_ids).reshape(-1)
        is_sign = np.array([0 <= int(i) < len(names) and names[int(i)] == CLASS_NAMES[SIGN] for i in ids], bool)
        boxes = np.asarray(msg.boxes_xyxy_px, np.float64).reshape(-1, 4)[is_sign]
        obs = boxes_to_observations(boxes, camera, self._landmark_params)
        if not obs:
            return ()
        outcome = self.filter.handle(LANDMARKS, stamp_ns, LandmarkObservation(obs, camera, self._enu_landmarks,
                                                                              self._landmark_params))
        if outcome.startswith("rejected"):
            return self._rejected(topic, outcome)
        self._note_trace(topic, msg)  # the detector's hop reaches the poses' traces (nodes/latency.py)
        return ()

    def _rejected(self, topic: str, outcome: str) -> Outputs:
        self._errors.append((f"reject:{topic}", f"{outcome}: {self.filter.last_rejection}"))
        return ()

    def on_tick(self, now_ns: int) -> Outputs:
        if self.frame is None or self.filter.stamp_ns is None:
            return ()  # no fix yet: no frame to say where
        return [(POSE_TOPIC, self._pose(max(now_ns, self.filter.stamp_ns)))]

    def _pose(self, stamp_ns: int) -> Pose:
        fused = self.filter.pose(stamp_ns)
        self.poses_out += 1
        pose = pose_message(fused, self.frame, join_traces([trace for _, trace in self._traces.values()]))
        pose.fix_trust, pose.fix_trust_reason = self._trust.trust, self._trust.reason
        return pose

    def close(self) -> None:
        log.info("fusion: %d poses out, %d relocalisations, %d input restarts, not used: %s%s", self.poses_out,
                 self.relocalisations, self.input_restarts, self.counters or "none",
                 f", {self.context.missing} fixes without context" if self.context else "")


class SceneContext:
    """A frame's context (segmenter fractions, detector boxes) by ``stamp_ns``, and the model that turns it
    into a fix's trust. Keeps the newest ``keep`` frames' context (a fix arrives within a few frames)."""

    def __init__(self, spec: str, keep: int = 64) -> None:
        self.path = default_context_path() if spec == "default" else Path(spec)
        self.model = ContextModel.load(self.path)  # ValueError in one line: the node refuses to start
        self.keep = keep
        self._by_stamp: dict[int, dict[str, float]] = {}
        self.missing = 0  # fixes with no context at their stamp

    def add(self, msg: Segmentation | Detections) -> None:
        if not msg.valid:
            return
        if isinstance(msg, Segmentation):
            feats = segmentation_features(msg.class_names, msg.class_fractions)
        else:
            feats = detection_features(msg.class_names, msg.class_ids, msg.boxes_xyxy_px, msg.image_width_px,
                                       msg.image_height_px)
        self._by_stamp.setdefault(msg.header.stamp_ns, {}).update(feats)
        while len(self._by_stamp) > self.keep:
            del self._by_stamp[min(self._by_stamp)]

    def clear(self) -> None:
        """Forget every frame's context (the inputs started over in time)."""
        self._by_stamp.clear()

    def trust(self, fix: GeoFix) -> FixTrust:
        """The fix's trust from its frame's context (the segmentation is needed; boxes that did not come
        count as the model's average); trust 1, "no context" without one."""
        scene = self._by_stamp.get(fix.header.stamp_ns)
        if scene is None or "seg_sky" not in scene:
            self.missing += 1
            return FixTrust()
        top_weight = fix.hypotheses[0].weight if fix.hypotheses else 1.0
        return self.model.assess({**scene, **fix_features(fix.cov_enu_m2, top_weight)})


def default_context_path() -> Path:
    """The shipped model: perception/weights/context_synthetic_city.json (found without importing torch)."""
    spec = importlib.util.find_spec("perception")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "context_synthetic_city.json"


def _pinhole(msg: Detections, hfov_deg: float) -> Pinhole | None:
    """The camera of a Detections message: its intrinsics (scaled to the image), else a centred pinhole of
    ``hfov_deg``; None without an image size."""
    w, h = msg.image_width_px, msg.image_height_px
    cam = msg.intrinsics
    if cam is not None:
        if (w, h) != (0, 0) and (w, h) != (cam.width_px, cam.height_px):
            cam = cam.scaled(w, h)
        return Pinhole(cam.fx_px, cam.fy_px, cam.cx_px, cam.cy_px, cam.width_px, cam.height_px, tuple(cam.distortion))
    if w <= 0 or h <= 0:
        return None
    return Pinhole.from_hfov(w, h, hfov_deg)


def _topics(counts: dict[str, int]) -> list[str]:
    out = []
    for kind in sorted(counts):
        base, _, part = kind.partition("_")
        topic = KIND_TOPIC.get(base, base)
        out.append(f"{topic}:{part}" if part else topic)
    return out


def pose_message(fused: FusedPose, frame: LocalFrame | None, trace: list[Hop]) -> Pose:
    """The filter's estimate as the bus ``Pose`` (lat/lon from ``frame``)."""
    lat, lon = fused.lat_deg, fused.lon_deg
    if frame is not None:
        la, lo, _ = frame.to_geodetic(fused.east_m, fused.north_m)
        lat, lon = float(la), float(lo)
    return Pose(
        header=Header(stamp_ns=int(fused.stamp_ns), frame_id="enu", trace=list(trace)),
        lat_deg=lat, lon_deg=lon, heading_deg=fused.heading_deg, speed_mps=fused.speed_mps,
        velocity_enu_mps=fused.velocity_enu_mps, yaw_rate_radps=fused.yaw_rate_radps,
        cov_enu_m2=fused.cov_enu_m2, heading_std_deg=fused.heading_std_deg, speed_std_mps=fused.speed_std_mps,
        status=fused.status, reason=fused.reason, inputs_used=_topics(fused.inputs_used),
        inputs_gated=_topics(fused.inputs_gated), valid=fused.valid,
        landmarks_used=int(fused.inputs_used.get(LANDMARKS, 0)), landmark_ids=list(fused.landmark_ids))


NODE = FusionNode

if __name__ == "__main__":
    raise SystemExit(node_main(FusionNode))
