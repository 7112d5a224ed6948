"""Type-level bounds of every field of the message records (`perception.drives.messages`): the values a
record can possibly hold, checked where records come in from outside (the bus codec, at decode; the drive
reader may call ``check_record`` too). A record outside them is rejected as a whole with a reason, never
half-used: NaN, inf or 1e308 where a position is expected, lat 95, a stamp beyond int64, a 2-million
entry list.

One table per record type, next to the records and in the same layer (numpy only, no ``nodes``), so that
the bus and the drive reader read the same bounds. ``tests/perception/test_bounds.py`` fails when a record
gains a field without a bound here. docs/wire_format.md ("Limits") lists them for other languages.

Reasons (``FieldError.reason``, also the diagnostics counter ``decode:<topic>:<reason>``):

- ``non_finite``: NaN or +-inf where a finite number is required (NaN is allowed only where the record
  documents it as "unknown": a GeoFix/FixHypothesis covariance entry, and a GeoFix's position and heading
  when the fix says ``valid=False``);
- ``out_of_range``: a finite number or an integer outside its interval (lat outside [-90, 90], a stamp
  outside [0, 2**63 - 1], a negative variance or count);
- ``too_long``: a string or list longer than its limit;
- ``unknown_value``: a string that must be one of a few values (a pose status) is not;
- ``shape``: arrays that do not fit together (a bgr8 image whose pixels are not height x width x 3,
  Detections whose boxes, ids and scores differ in count).

Stamps: ``stamp_ns`` must lie in [0, 2**63 - 1] here (a record on its own cannot know the time); the bus
adds the checks that need a clock and a history (not more than ``STAMP_MAX_AHEAD_NS`` ahead of the
receiver's wall clock, never earlier than the previous stamp of the same publisher incarnation: see
``nodes.bus.pubsub.Subscriber``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from perception.drives.messages import (
    CameraInfo,
    Detections,
    Diagnostics,
    FixHypothesis,
    GeoFix,
    Header,
    Hop,
    Image,
    Odometry,
    Pose,
    PoseStatus,
    Segmentation,
    TopicStats,
)

INT64_MAX = 2**63 - 1
STAMP_MIN_NS = 0  # the Unix epoch: recorded drives replay with their own (past) stamps, so no later floor
STAMP_MAX_NS = INT64_MAX  # what MCAP, numpy int64 and datetime arithmetic of the tools can hold
# How far ahead of the receiver's wall clock a stamp may be (clock skew between machines of one graph;
# NTP keeps it far below). Checked by the bus subscriber, which has a clock.
STAMP_MAX_AHEAD_NS = 600 * 1_000_000_000
MAX_NAME_CHARS = 256  # node, topic, source, model and frame names, class names
MAX_TEXT_CHARS = 4096  # free text: reasons, last errors
MAX_TRACE_HOPS = 64
MAX_LIST_ITEMS = 65536  # class names/fractions, hypotheses, topics of a node, error kinds (the envelope limit bounds them too)
MAX_IMAGE_SIDE_PX = 1 << 20  # a side beyond a million pixels is no camera
MAX_ABS_M = 1e7  # altitudes and lengths, m
MAX_ABS_MPS = 1e4  # speeds, m/s
MAX_ABS_RADPS = 1e3  # yaw rates, rad/s
MAX_VARIANCE_M2 = 1e14  # (10^7 m)^2: larger is "anywhere on Earth" and should say so another way
IMAGE_ENCODINGS = ("bgr8", "mono8", "jpeg", "png")


class FieldError(ValueError):
    """A record field outside its bounds. ``reason`` is one of the module's reasons, ``field`` the path
    (``header.stamp_ns``, ``hypotheses[2].weight``), ``value`` the offending value (shortened)."""

    def __init__(self, reason: str, field: str, value: Any, expected: str) -> None:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}={shown} {expected}")
        self.reason = reason
        self.field = field
        self.value = value


# -- field kinds ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Real:
    """A float in [lo, hi]; ``nan``: NaN allowed (documented "unknown"); ``optional``: None allowed."""

    lo: float
    hi: float
    nan: bool = False
    optional: bool = False

    def doc(self) -> str:
        text = f"finite, [{self.lo:g}, {self.hi:g}]"
        return text + (", or NaN (unknown)" if self.nan else "") + (", or nil" if self.optional else "")


@dataclass(frozen=True)
class Int:
    lo: int
    hi: int

    def doc(self) -> str:
        return f"integer in [{self.lo}, {'2**63-1' if self.hi == INT64_MAX else self.hi}]"


@dataclass(frozen=True)
class Text:
    max_chars: int
    choices: tuple[str, ...] = ()

    def doc(self) -> str:
        return f"one of {', '.join(self.choices)}" if self.choices else f"at most {self.max_chars} characters"


@dataclass(frozen=True)
class Reals:
    """A tuple of floats, each in [lo, hi] (NaN if ``nan``); length at most ``max_items``."""

    lo: float
    hi: float
    max_items: int
    nan: bool = False

    def doc(self) -> str:
        return (f"at most {self.max_items} numbers, each finite in [{self.lo:g}, {self.hi:g}]"
                + (" or NaN (unknown)" if self.nan else ""))


@dataclass(frozen=True)
class Items:
    """A list (or dict: its keys and values) of at most ``max_items``, each checked by ``item``."""

    max_items: int
    item: Any = None  # a kind above, a record type, or None (bool items: the type is check enough)
    key: Any = None  # dicts: the kind of the keys

    def doc(self) -> str:
        return f"at most {self.max_items} items"


@dataclass(frozen=True)
class Array:
    """An ndarray field (its own frame on the bus); ``ndim`` allowed numbers of dimensions."""

    ndim: tuple[int, ...]
    max_side: int = 1 << 30

    def doc(self) -> str:
        return f"{' or '.join(str(n) for n in self.ndim)}-D array, each side at most {self.max_side}"


@dataclass(frozen=True)
class Record:
    """A nested record (checked by its own table); ``optional``: None allowed."""

    optional: bool = False

    def doc(self) -> str:
        return "record" + (" or nil" if self.optional else "")


@dataclass(frozen=True)
class Flag:
    """A bool: msgspec's typed decode already rejects anything else."""

    def doc(self) -> str:
        return "bool"


# -- the bounds -----------------------------------------------------------------------------------

_NS = Int(0, INT64_MAX)
_COUNT = Int(0, INT64_MAX)
_NAME = Text(MAX_NAME_CHARS)
_LAT = Real(-90.0, 90.0)
_LON = Real(-180.0, 180.0)
_HEADING = Real(0.0, 360.0)
_STD_DEG = Real(0.0, 360.0)
_ALT = Real(-MAX_ABS_M, MAX_ABS_M)
_COV_UNKNOWN_OK = Reals(-MAX_VARIANCE_M2, MAX_VARIANCE_M2, 4, nan=True)
_COV = Reals(-MAX_VARIANCE_M2, MAX_VARIANCE_M2, 4)

BOUNDS: dict[type, dict[str, Any]] = {
    Hop: {"node": _NAME, "recv_ns": _NS, "pub_ns": _NS},
    Header: {"stamp_ns": Int(STAMP_MIN_NS, STAMP_MAX_NS), "seq": _COUNT, "frame_id": _NAME,
             "trace": Items(MAX_TRACE_HOPS, Hop), "incarnation": Int(0, 2**32 - 1)},
    CameraInfo: {"width_px": Int(1, MAX_IMAGE_SIDE_PX), "height_px": Int(1, MAX_IMAGE_SIDE_PX),
                 "fx_px": Real(1e-6, 1e7), "fy_px": Real(1e-6, 1e7), "cx_px": Real(-1e7, 1e7),
                 "cy_px": Real(-1e7, 1e7), "distortion_model": _NAME, "distortion": Reals(-1e6, 1e6, 16)},
    Image: {"header": Record(), "width_px": Int(1, MAX_IMAGE_SIDE_PX), "height_px": Int(1, MAX_IMAGE_SIDE_PX),
            "encoding": Text(32, IMAGE_ENCODINGS), "data": Array((1, 2, 3), 1 << 30),
            "intrinsics": Record(optional=True)},
    FixHypothesis: {"lat_deg": _LAT, "lon_deg": _LON, "weight": Real(0.0, 1.0), "cov_enu_m2": _COV_UNKNOWN_OK,
                    "heading_deg": Real(0.0, 360.0, optional=True),
                    "heading_std_deg": Real(0.0, 360.0, optional=True)},
    GeoFix: {"header": Record(), "lat_deg": Real(-90.0, 90.0, nan=True), "lon_deg": Real(-180.0, 180.0, nan=True),
             "alt_m": Real(-MAX_ABS_M, MAX_ABS_M, nan=True), "heading_deg": Real(0.0, 360.0, nan=True, optional=True),
             "cov_enu_m2": _COV_UNKNOWN_OK, "heading_std_deg": Real(0.0, 360.0, nan=True, optional=True),
             "speed_mps": Real(-MAX_ABS_MPS, MAX_ABS_MPS, nan=True, optional=True), "source": _NAME,
             "valid": Flag(), "reason": Text(MAX_TEXT_CHARS), "hypotheses": Items(MAX_LIST_ITEMS, FixHypothesis)},
    Detections: {"header": Record(), "boxes_xyxy_px": Array((2,)), "class_ids": Array((1,)), "scores": Array((1,)),
                 "class_names": Items(MAX_LIST_ITEMS, _NAME), "image_width_px": Int(0, MAX_IMAGE_SIDE_PX),
                 "image_height_px": Int(0, MAX_IMAGE_SIDE_PX), "model_id": _NAME, "valid": Flag(),
                 "intrinsics": Record(optional=True)},
    Segmentation: {"header": Record(), "label_mask": Array((2,), MAX_IMAGE_SIDE_PX),
                   "class_names": Items(MAX_LIST_ITEMS, _NAME),
                   "class_fractions": Items(MAX_LIST_ITEMS, Real(0.0, 1.0)), "model_id": _NAME, "valid": Flag()},
    Odometry: {"header": Record(), "speed_mps": Real(-MAX_ABS_MPS, MAX_ABS_MPS),
               "yaw_rate_radps": Real(-MAX_ABS_RADPS, MAX_ABS_RADPS),
               "speed_std_mps": Real(0.0, MAX_ABS_MPS, optional=True),
               "yaw_rate_std_radps": Real(0.0, MAX_ABS_RADPS, optional=True), "valid": Flag()},
    Pose: {"header": Record(), "lat_deg": _LAT, "lon_deg": _LON, "alt_m": _ALT, "heading_deg": _HEADING,
           "speed_mps": Real(-MAX_ABS_MPS, MAX_ABS_MPS), "velocity_enu_mps": Reals(-MAX_ABS_MPS, MAX_ABS_MPS, 2),
           "yaw_rate_radps": Real(-MAX_ABS_RADPS, MAX_ABS_RADPS), "cov_enu_m2": _COV,
           "heading_std_deg": _STD_DEG, "speed_std_mps": Real(0.0, MAX_ABS_MPS),
           "status": Text(32, (PoseStatus.INITIALIZING, PoseStatus.TRACKING, PoseStatus.DEGRADED, PoseStatus.LOST)),
           "inputs_used": Items(MAX_LIST_ITEMS, _NAME), "valid": Flag(), "reason": Text(MAX_TEXT_CHARS),
           "inputs_gated": Items(MAX_LIST_ITEMS, _NAME), "landmarks_used": _COUNT,
           "landmark_ids": Items(MAX_LIST_ITEMS, _NAME), "fix_trust": Real(0.0, 1.0),
           "fix_trust_reason": Text(MAX_NAME_CHARS)},
    TopicStats: {"topic": _NAME, "direction": Text(8, ("in", "out")), "count": _COUNT,
                 "rate_hz": Real(0.0, 1e9), "dropped": _COUNT},
    Diagnostics: {"header": Record(), "node": _NAME, "pid": Int(0, 2**31 - 1), "uptime_s": Real(0.0, 1e10),
                  "status": Text(8, ("ok", "warn", "error")), "topics": Items(MAX_LIST_ITEMS, TopicStats),
                  "latency_ms_p50": Real(0.0, 1e9), "latency_ms_max": Real(0.0, 1e9),
                  "errors": Items(MAX_LIST_ITEMS, _COUNT, key=_NAME), "last_error": Text(MAX_TEXT_CHARS),
                  "restarts": _COUNT, "ready": Flag()},
}


# -- checking ----------------------------------------------------------------------------------------

def _real(kind: Real, path: str, value: Any) -> None:
    if value is None:
        if not kind.optional:
            raise FieldError("out_of_range", path, value, "is nil, a number is required")
        return
    if not math.isfinite(value):
        if value != value and kind.nan:
            return
        raise FieldError("non_finite", path, value, f"is not finite ({kind.doc()})")
    if not kind.lo <= value <= kind.hi:
        raise FieldError("out_of_range", path, value, f"outside [{kind.lo:g}, {kind.hi:g}]")


def _check_value(kind: Any, path: str, value: Any) -> None:
    if isinstance(kind, Real):
        _real(kind, path, value)
    elif isinstance(kind, Int):
        if not kind.lo <= value <= kind.hi:
            raise FieldError("out_of_range", path, value, f"outside {kind.doc()}")
    elif isinstance(kind, Text):
        if kind.choices:
            if value not in kind.choices:
                raise FieldError("unknown_value", path, value, f"is not {kind.doc()}")
        elif len(value) > kind.max_chars:
            raise FieldError("too_long", path, f"{len(value)} characters", f"over {kind.max_chars}")
    elif isinstance(kind, Reals):
        if len(value) > kind.max_items:
            raise FieldError("too_long", path, f"{len(value)} items", f"over {kind.max_items}")
        scalar = Real(kind.lo, kind.hi, kind.nan)
        for i, x in enumerate(value):
            _real(scalar, f"{path}[{i}]", x)
    elif isinstance(kind, Items):
        if len(value) > kind.max_items:
            raise FieldError("too_long", path, f"{len(value)} items", f"over {kind.max_items}")
        if isinstance(value, dict):
            for k, v in value.items():
                _check_value(kind.key, f"{path}[{str(k)[:40]!r}]", k)
                _check_value(kind.item, f"{path}[{str(k)[:40]!r}]", v)
        elif kind.item is not None:
            for i, x in enumerate(value):
                _check_value(kind.item, f"{path}[{i}]", x)
    elif isinstance(kind, Array):
        if value.ndim not in kind.ndim:
            raise FieldError("shape", path, f"shape {list(value.shape)}", f"is not {kind.doc()}")
        if value.ndim and max(value.shape) > kind.max_side:
            raise FieldError("shape", path, f"shape {list(value.shape)}", f"is not {kind.doc()}")
    elif isinstance(kind, Record):
        if value is None:
            if not kind.optional:
                raise FieldError("out_of_range", path, value, "is nil, a record is required")
            return
        _check_struct(value, path + ".")
    elif isinstance(kind, type):  # list items that are records
        _check_struct(value, path + ".")
    elif isinstance(kind, Flag):
        pass


def _check_struct(msg: msgspec.Struct, prefix: str = "") -> None:
    """The reference check of one record (slow, simple): the compiled checkers below fall back to it."""
    for name, kind in BOUNDS[type(msg)].items():
        _check_value(kind, prefix + name, getattr(msg, name))
    extra = _EXTRA.get(type(msg))
    if extra is not None:
        extra(msg, prefix)


# -- compiled checkers: the same bounds, fast on values that are within them ------------------------
# Every message of the bus is checked, so the common case (all within) costs one chained comparison per
# number; anything that does not pass that fast test goes to ``_check_value``, which decides (raises, or
# accepts a NaN or nil the bounds allow). Same verdicts, a fraction of the time.

_Checker = Callable[[Any, str], None]
_STRUCT_CHECKERS: dict[type, Callable[[Any, str], None]] = {}


def _field_checker(name: str, kind: Any) -> _Checker | None:
    slow = _check_value
    if isinstance(kind, (Real, Int)):
        lo, hi = kind.lo, kind.hi
        optional, nan = getattr(kind, "optional", False), getattr(kind, "nan", False)

        def number(v: Any, prefix: str) -> None:
            if v is None:
                if optional:
                    return
            elif lo <= v <= hi or (nan and v != v):  # NaN fails the comparison, equals nothing
                return
            slow(kind, prefix + name, v)
        return number
    if isinstance(kind, Text):
        choices, most = frozenset(kind.choices), kind.max_chars

        def text(v: Any, prefix: str) -> None:
            if (v not in choices) if choices else (len(v) > most):
                slow(kind, prefix + name, v)
        return text
    if isinstance(kind, Reals):
        lo, hi, most, nan = kind.lo, kind.hi, kind.max_items, kind.nan

        def reals(v: Any, prefix: str) -> None:
            if len(v) > most:
                slow(kind, prefix + name, v)
            for x in v:
                if not (lo <= x <= hi or (nan and x != x)):
                    slow(kind, prefix + name, v)
                    return
        return reals
    if isinstance(kind, Items):
        most = kind.max_items
        if isinstance(kind.item, type):
            item_cls = kind.item

            def records(v: Any, prefix: str) -> None:
                if len(v) > most:
                    slow(kind, prefix + name, v)
                check = _struct_checker(item_cls)
                for i, x in enumerate(v):
                    check(x, f"{prefix}{name}[{i}].")
            return records
        item_check = _field_checker("", kind.item) if kind.item is not None else None
        key_check = _field_checker("", kind.key) if kind.key is not None else None

        def items(v: Any, prefix: str) -> None:
            if len(v) > most:
                slow(kind, prefix + name, v)
            if isinstance(v, dict):
                for k, x in v.items():
                    if key_check is not None:
                        key_check(k, f"{prefix}{name}[{str(k)[:40]!r}]")
                    if item_check is not None:
                        item_check(x, f"{prefix}{name}[{str(k)[:40]!r}]")
            elif item_check is not None:
                for i, x in enumerate(v):
                    item_check(x, f"{prefix}{name}[{i}]")
        return items
    if isinstance(kind, Array):
        ndims, side = kind.ndim, kind.max_side

        def array(v: Any, prefix: str) -> None:
            if v.ndim not in ndims or (v.ndim and max(v.shape) > side):
                slow(kind, prefix + name, v)
        return array
    if isinstance(kind, Record):
        optional = kind.optional

        def record(v: Any, prefix: str) -> None:
            if v is None:
                if not optional:
                    slow(kind, prefix + name, v)
                return
            _struct_checker(type(v))(v, prefix + name + ".")
        return record
    return None  # Flag: msgspec's typed decode is check enough


def _struct_checker(cls: type) -> Callable[[Any, str], None]:
    """One straight-line function per record (generated source: a chained comparison per number, no
    loop or call per field), the other kinds through their ``_field_checker``."""
    checker = _STRUCT_CHECKERS.get(cls)
    if checker is not None:
        return checker
    env: dict[str, Any] = {"slow": _check_value, "extra": _EXTRA.get(cls)}
    lines = ["def check(m, prefix):"]
    for i, (name, kind) in enumerate(BOUNDS[cls].items()):
        env[f"k{i}"] = kind
        fail = f"slow(k{i}, prefix + {name!r}, v)"
        if isinstance(kind, (Real, Int)):
            env[f"lo{i}"], env[f"hi{i}"] = kind.lo, kind.hi
            lines.append(f"    v = m.{name}")
            test = f"lo{i} <= v <= hi{i}"
            if getattr(kind, "nan", False):
                test += " or v != v"
            if getattr(kind, "optional", False):
                lines.append(f"    if v is not None and not ({test}): {fail}")
            else:
                lines.append(f"    if v is None or not ({test}): {fail}")
        elif isinstance(kind, Text):
            lines.append(f"    v = m.{name}")
            if kind.choices:
                env[f"c{i}"] = frozenset(kind.choices)
                lines.append(f"    if v not in c{i}: {fail}")
            else:
                lines.append(f"    if len(v) > {kind.max_chars}: {fail}")
        elif isinstance(kind, Flag):
            continue
        else:
            env[f"f{i}"] = _field_checker(name, kind)
            lines.append(f"    f{i}(m.{name}, prefix)")
    lines.append("    if extra is not None: extra(m, prefix)")
    exec("\n".join(lines), env)  # noqa: S102 - source built above from the bounds table only
    check = env["check"]
    _STRUCT_CHECKERS[cls] = check
    return check


# -- checks across fields -------------------------------------------------------------------------

def _image(msg: Image, prefix: str) -> None:
    shape = tuple(msg.data.shape)
    want = {"bgr8": (msg.height_px, msg.width_px, 3), "mono8": (msg.height_px, msg.width_px)}.get(msg.encoding)
    if want is not None and shape != want:
        raise FieldError("shape", prefix + "data", f"shape {list(shape)}",
                         f"is not {list(want)} ({msg.encoding} of {msg.width_px}x{msg.height_px} px)")
    if want is None and (len(shape) != 1 or shape[0] == 0):
        raise FieldError("shape", prefix + "data", f"shape {list(shape)}",
                         f"is not the non-empty 1-D file bytes of a {msg.encoding} image")


def _geofix(msg: GeoFix, prefix: str) -> None:
    # NaN position or heading only on a fix that says it is not to be trusted (a model's non-finite output)
    if msg.valid:
        for name in ("lat_deg", "lon_deg", "alt_m", "heading_deg", "heading_std_deg", "speed_mps"):
            value = getattr(msg, name)
            if value is not None and value != value:
                raise FieldError("non_finite", prefix + name, value, "is NaN on a fix with valid=true")
    _variances(msg.cov_enu_m2, prefix + "cov_enu_m2")


def _hypothesis(msg: FixHypothesis, prefix: str) -> None:
    _variances(msg.cov_enu_m2, prefix + "cov_enu_m2")


def _pose(msg: Pose, prefix: str) -> None:
    _variances(msg.cov_enu_m2, prefix + "cov_enu_m2")


def _variances(cov: tuple[float, ...], path: str) -> None:
    if len(cov) != 4:
        raise FieldError("shape", path, cov, "is not 4 numbers (2x2 row-major)")
    for i in (0, 3):
        if cov[i] < 0.0:  # NaN compares False: unknown stays allowed where the table allows it
            raise FieldError("out_of_range", f"{path}[{i}]", cov[i], "is a negative variance")


def _detections(msg: Detections, prefix: str) -> None:
    n = msg.boxes_xyxy_px.shape[0]
    if msg.boxes_xyxy_px.shape != (n, 4) or msg.class_ids.shape != (n,) or msg.scores.shape != (n,):
        raise FieldError("shape", prefix + "boxes_xyxy_px", f"shapes {list(msg.boxes_xyxy_px.shape)}, "
                         f"{list(msg.class_ids.shape)}, {list(msg.scores.shape)}",
                         "are not [N, 4], [N], [N] of one N")
    if n and msg.boxes_xyxy_px.dtype.kind == "f" and not np.isfinite(msg.boxes_xyxy_px).all():
        raise FieldError("non_finite", prefix + "boxes_xyxy_px", "a NaN or inf", "in the boxes")
    if n and msg.scores.dtype.kind == "f" and not (np.isfinite(msg.scores).all()
                                                   and msg.scores.min() >= 0 and msg.scores.max() <= 1):
        raise FieldError("out_of_range", prefix + "scores", "a score", "outside [0, 1] or not finite")


_EXTRA: dict[type, Callable[[Any, str], None]] = {
    Image: _image, GeoFix: _geofix, FixHypothesis: _hypothesis, Pose: _pose, Detections: _detections,
}


def check_record(msg: msgspec.Struct) -> None:
    """Raise ``FieldError`` (reason, field path, value) when any field of ``msg`` (a record of
    `perception.drives.messages`, nested records included) is outside its bounds; return None otherwise."""
    if type(msg) not in BOUNDS:
        raise TypeError(f"no bounds for {type(msg).__name__}")
    _struct_checker(type(msg))(msg, "")


def bounds_table() -> list[tuple[str, str, str]]:
    """(record, field, bound in words) for every field: the table of docs/wire_format.md "Limits"."""
    return [(cls.__name__, name, kind.doc()) for cls, fields in BOUNDS.items() for name, kind in fields.items()]


def bounds_markdown() -> str:
    """The bounds as the markdown table of docs/wire_format.md ("Limits"); a test keeps the two in step.
    Regenerate: ``python -c "from perception.drives.bounds import bounds_markdown; print(bounds_markdown())"``."""
    lines = ["| record | field bounds |", "|---|---|"]
    for cls, fields in BOUNDS.items():
        lines.append(f"| {cls.__name__} | " + "; ".join(f"`{name}` {kind.doc()}" for name, kind in fields.items()) + " |")
    return "\n".join(lines)
