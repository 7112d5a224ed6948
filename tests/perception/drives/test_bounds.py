"""Field bounds of the message records (perception/drives/bounds.py): every field has one, impossible
values are rejected with the reason and the field, possible ones (unknown covariances included) pass."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from perception.drives.bounds import BOUNDS, FieldError, Record, _check_struct, bounds_table, check_record
from perception.drives.messages import (
    MESSAGE_TYPES,
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
    Segmentation,
)

T0 = 1_700_000_000_000_000_000


def _records(cls: type, seen: set[type]) -> None:
    if cls in seen:
        return
    seen.add(cls)
    for f in msgspec.structs.fields(cls):
        for t in _struct_types(f.type):
            _records(t, seen)


def _struct_types(tp) -> list[type]:
    args = getattr(tp, "__args__", ())
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return [tp]
    return [t for a in args for t in _struct_types(a)]


def test_every_field_of_every_record_has_a_bound():
    records: set[type] = set()
    for cls in MESSAGE_TYPES.values():
        _records(cls, records)
    assert records == set(BOUNDS), "a record without bounds, or bounds of a record that is gone"
    for cls in records:
        fields = [f.name for f in msgspec.structs.fields(cls)]
        assert list(BOUNDS[cls]) == fields, f"{cls.__name__}: bounds {list(BOUNDS[cls])} != fields {fields}"
    assert len(bounds_table()) == sum(len(f) for f in BOUNDS.values())


def _fix(**kw) -> GeoFix:
    return GeoFix(Header(stamp_ns=T0), **{"lat_deg": 55.7, "lon_deg": 13.2, **kw})


@pytest.mark.parametrize("msg, reason, field", [
    (_fix(lat_deg=math.nan), "non_finite", "lat_deg"),
    (_fix(lat_deg=math.inf), "non_finite", "lat_deg"),
    (_fix(lat_deg=1e308), "out_of_range", "lat_deg"),
    (_fix(lat_deg=95.0), "out_of_range", "lat_deg"),
    (_fix(lon_deg=-400.0), "out_of_range", "lon_deg"),
    (_fix(heading_deg=-1.0), "out_of_range", "heading_deg"),
    (_fix(cov_enu_m2=(math.inf, 0.0, 0.0, 1.0)), "non_finite", "cov_enu_m2[0]"),
    (_fix(cov_enu_m2=(-1.0, 0.0, 0.0, 1.0)), "out_of_range", "cov_enu_m2[0]"),
    (_fix(speed_mps=math.inf), "non_finite", "speed_mps"),
    (_fix(hypotheses=[FixHypothesis(55.7, 13.2, weight=1.5)]), "out_of_range", "hypotheses[0].weight"),
    (GeoFix(Header(stamp_ns=2**64 - 1), lat_deg=1.0, lon_deg=1.0), "out_of_range", "header.stamp_ns"),
    (GeoFix(Header(stamp_ns=-1), lat_deg=1.0, lon_deg=1.0), "out_of_range", "header.stamp_ns"),
    (GeoFix(Header(stamp_ns=T0, trace=[Hop("cam", -5, 0)]), lat_deg=1.0, lon_deg=1.0), "out_of_range",
     "header.trace[0].recv_ns"),
    (GeoFix(Header(stamp_ns=T0, frame_id="x" * 1000), lat_deg=1.0, lon_deg=1.0), "too_long", "header.frame_id"),
    (Pose(Header(stamp_ns=T0), 1.0, 2.0, cov_enu_m2=(math.nan, 0.0, 0.0, 1.0)), "non_finite", "cov_enu_m2[0]"),
    (Pose(Header(stamp_ns=T0), 1.0, 2.0, status="fine"), "unknown_value", "status"),
    (Odometry(Header(stamp_ns=T0), speed_mps=math.nan, yaw_rate_radps=0.0), "non_finite", "speed_mps"),
    (Odometry(Header(stamp_ns=T0), speed_mps=1.0, yaw_rate_radps=0.0, speed_std_mps=-1.0), "out_of_range",
     "speed_std_mps"),
    (Image(Header(stamp_ns=T0), 0, 0, "bgr8", np.zeros((0, 0, 3), np.uint8)), "out_of_range", "width_px"),
    (Image(Header(stamp_ns=T0), 4, 2, "bgr8", np.zeros((2, 4), np.uint8)), "shape", "data"),
    (Image(Header(stamp_ns=T0), 4, 2, "jpeg", np.zeros(0, np.uint8)), "shape", "data"),
    (Image(Header(stamp_ns=T0), 4, 2, "rgb16", np.zeros((2, 4, 3), np.uint8)), "unknown_value", "encoding"),
    (Detections(Header(stamp_ns=T0), np.zeros((2, 4), np.float32), np.zeros(3, np.int32), np.zeros(2, np.float32)),
     "shape", "boxes_xyxy_px"),
    (Detections(Header(stamp_ns=T0), np.full((1, 4), np.nan, np.float32), np.zeros(1, np.int32),
                np.zeros(1, np.float32)), "non_finite", "boxes_xyxy_px"),
    (Segmentation(Header(stamp_ns=T0), np.zeros((2, 2), np.uint8), class_fractions=[1.5]), "out_of_range",
     "class_fractions[0]"),
    (Diagnostics(Header(stamp_ns=T0), node="n", pid=1, uptime_s=1.0, status="ok", errors={"x": -1}),
     "out_of_range", "errors['x']"),
    (Diagnostics(Header(stamp_ns=T0), node="n", pid=1, uptime_s=math.nan, status="ok"), "non_finite", "uptime_s"),
])
def test_impossible_values_are_rejected_naming_reason_and_field(msg, reason, field):
    with pytest.raises(FieldError) as err:
        check_record(msg)
    assert (err.value.reason, err.value.field) == (reason, field)
    assert str(err.value).startswith(f"{field}=")
    with pytest.raises(FieldError) as ref:  # the generated fast checker and the plain one agree
        _check_struct(msg)
    assert (ref.value.reason, ref.value.field) == (reason, field)


@pytest.mark.parametrize("msg", [
    _fix(),
    _fix(cov_enu_m2=(math.nan, 0.0, 0.0, math.nan)),  # a receiver that gives no accuracy: unknown
    _fix(lat_deg=math.nan, lon_deg=math.nan, valid=False, reason="non_finite"),  # a model's NaN, flagged
    _fix(lat_deg=-90.0, lon_deg=180.0, heading_deg=360.0),
    Pose(Header(stamp_ns=0, trace=[Hop("fusion", 1, 2)]), 1.0, 2.0),
    Image(Header(stamp_ns=T0), 4, 2, "bgr8", np.zeros((2, 4, 3), np.uint8),
          CameraInfo.from_hfov(4, 2, 90.0)),
    Image(Header(stamp_ns=T0), 640, 480, "jpeg", np.zeros(100, np.uint8)),
    Detections(Header(stamp_ns=T0), np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, np.float32)),
    Odometry(Header(stamp_ns=T0), speed_mps=-2.0, yaw_rate_radps=0.3),
    Diagnostics(Header(stamp_ns=T0), node="n", pid=1, uptime_s=1.0, status="warn", errors={"decode:x:depth": 3}),
])
def test_possible_values_pass(msg):
    check_record(msg)
    _check_struct(msg)


def test_a_valid_fix_may_not_carry_nan_positions():
    with pytest.raises(FieldError, match="lat_deg=nan is NaN on a fix with valid=true"):
        check_record(_fix(lat_deg=math.nan))


def test_nested_records_are_checked_through_their_own_table():
    assert isinstance(BOUNDS[GeoFix]["header"], Record)
    with pytest.raises(FieldError) as err:
        check_record(Image(Header(stamp_ns=T0), 4, 2, "bgr8", np.zeros((2, 4, 3), np.uint8),
                           CameraInfo(4, 2, 1e9, 1.0, 0.0, 0.0)))
    assert err.value.field == "intrinsics.fx_px"


def test_docs_list_the_bounds_of_the_code():
    from pathlib import Path

    from perception.drives.bounds import bounds_markdown

    doc = (Path(__file__).resolve().parents[3] / "docs" / "wire_format.md").read_text()
    assert bounds_markdown() in doc, "regenerate the table in docs/wire_format.md (bounds_markdown's docstring)"
