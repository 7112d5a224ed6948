"""Landmarks from a map: the map (GeoJSON points with OpenStreetMap tags), the camera measurement of a
detected sign or traffic light, and its association with the map. Numpy only; the filter
(`localization.filter.PoseFilter`, kind ``LANDMARKS``) applies the result. docs/landmarks.md has the
format, the choices and the figures.

**The map** is a GeoJSON FeatureCollection of Points (lon, lat in WGS84). A feature's ``properties``
are OpenStreetMap tags: ``highway=traffic_signals`` (a signal head), ``traffic_sign=*`` (a sign plate),
``highway=street_lamp``, ``man_made=utility_pole`` (or ``power=pole``); ``height`` (top above the ground,
m), ``min_height`` (bottom of the detectable face, m), and the project's own ``streetloc:width_m``,
``streetloc:height_m`` (the face's size, m) and ``streetloc:position_std_m`` (how well the point is
known, m; also as the collection's ``properties``, for every feature without its own). Missing sizes take the kind's typical size with a wide spread (``KIND_DEFAULTS``), so an
export of OpenStreetMap loads as it is. Features of other kinds are skipped and counted.

**The measurement** of one box (pixel centre u, v and pixel height h of a detected sign/light in a
camera looking along the robot's heading, level, ``camera_height_m`` above the road), against landmark
j at depth d (metres along the optical axis), lateral offset x (right +) and face centre height c::

    z = [ (u - cx) / fx,          bearing: the strong part (1 px is 0.25 deg at fx 228)
          (v - cy) / fy,          elevation: tells a mast-arm head (5 m) from a post head (3 m) or a sign
          log(fy * H_j / h) ]     log depth from the known face height H_j: weak (1 px of a 4 px box: 25 %)
    h_j(x) = [ x / d, (camera_height_m - c) / d, log d ]

R = diag((s_u / fx)^2, (s_v / fy)^2 + tan(pitch_std)^2, (s_h / h)^2 + r_h^2 + size_rel_std^2), with the
box's pixel noise s and relative height noise r_h (``LandmarkParams``, measured on the shipped detector) and the map's own position spread added through the landmark's
Jacobian. Depth rather than range: a level pinhole images a vertical extent H at depth d as fy H / d
exactly, whatever the bearing. The log makes the depth error of a small box symmetric (h = 3 +- 1 px is
a depth of 0.75x .. 1.5x).

**Association: JCBB** (joint compatibility branch and bound, Neira & Tardos 2001) over the sign boxes
of one frame and the map landmarks in view (in the field of view, in range, big enough to be detected).
Nearest neighbour pairs each box alone, and the city is full of look-alikes: a signal head has a twin
on the mast arm 6-9 m away and eight siblings per intersection, signs of one kind look the same. JCBB
accepts a set of pairings only when they fit one pose *together* (the stacked innovation against the
joint covariance, which shares the pose error), and prefers more pairings: two boxes that each fit a
look-alike alone rarely fit the same wrong pose. With at most ``max_boxes`` boxes and a few candidates
each the search is small. On top, an **ambiguity rule**: every jointly compatible hypothesis with as
many pairings as the best and a joint NIS within ``ambiguity_nis`` of it is kept, and only pairings they
all share are used; a box whose landmark is not unique is dropped (counted as gated), not guessed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from localization.geodesy import LocalFrame

LANDMARKS = "landmarks"  # the measurement kind of `PoseFilter.handle`

# Kinds of landmark and the OSM tags that make them.
TRAFFIC_SIGNALS = "traffic_signals"
TRAFFIC_SIGN = "traffic_sign"
STREET_LAMP = "street_lamp"
UTILITY_POLE = "utility_pole"
DETECTED_KINDS = (TRAFFIC_SIGNALS, TRAFFIC_SIGN)  # what the detector's `sign` class boxes

# Chi-square quantiles, p = 0.999: 3 dof (one box against one landmark).
CHI2_3DOF_999 = 16.27


@dataclass(frozen=True)
class KindDefaults:
    """A kind's typical face (m) where the map does not say: width, height, bottom above the ground, and
    the 1-sigma spreads that go with guessing (face height relative, bottom in m, position in m)."""

    width_m: float
    height_m: float
    bottom_m: float
    size_rel_std: float
    bottom_std_m: float
    position_std_m: float


# Real-street values: a 3-lamp 12-inch signal head is about 0.35 x 1.05 m, post-mounted from 2.6 m,
# mast-arm heads near 5 m (hence the 1.5 m spread); US signs are 0.6-0.9 m, mounted from 2.1 m. An OSM
# traffic_signals node usually sits on the road at the stop line, metres from the heads: 3 m.
KIND_DEFAULTS = {
    TRAFFIC_SIGNALS: KindDefaults(0.35, 1.05, 2.6, 0.1, 1.5, 3.0),
    TRAFFIC_SIGN: KindDefaults(0.75, 0.75, 2.1, 0.3, 0.5, 3.0),
    STREET_LAMP: KindDefaults(0.2, 8.0, 0.0, 0.2, 0.5, 2.0),
    UTILITY_POLE: KindDefaults(0.3, 10.0, 0.0, 0.2, 0.5, 2.0),
}
KNOWN_SIZE_REL_STD = 0.02  # face size given by the map (streetloc:height_m)
KNOWN_BOTTOM_STD_M = 0.05  # min_height given by the map
DEFAULT_POSITION_STD_M = 1.0  # streetloc:position_std_m missing on a kind without a default


@dataclass(frozen=True)
class Landmark:
    """One fixed object of the map. ``bottom_m``/``top_m``: its detectable face above the ground (m);
    ``width_m``: the face's width; the ``*_std`` fields: how well the map knows them (1-sigma)."""

    id: str
    kind: str
    lat_deg: float
    lon_deg: float
    bottom_m: float
    top_m: float
    width_m: float
    position_std_m: float
    size_rel_std: float
    bottom_std_m: float
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def face_height_m(self) -> float:
        return self.top_m - self.bottom_m


def landmark(id: str, kind: str, lat_deg: float, lon_deg: float, *, tags: Mapping[str, Any],  # noqa: A002
             width_m: float, height_m: float, bottom_m: float, position_std_m: float) -> Landmark:
    """A landmark whose size and position the map knows (a synthetic city, a surveyed map)."""
    return Landmark(id, kind, float(lat_deg), float(lon_deg), float(bottom_m), float(bottom_m + height_m),
                    float(width_m), float(position_std_m), KNOWN_SIZE_REL_STD, KNOWN_BOTTOM_STD_M,
                    {k: str(v) for k, v in tags.items()})


def kind_of(tags: Mapping[str, Any]) -> str | None:
    """The landmark kind that OSM ``tags`` describe, None for anything else."""
    highway = str(tags.get("highway", ""))
    if highway == "traffic_signals":
        return TRAFFIC_SIGNALS
    if "traffic_sign" in tags or highway in ("stop", "give_way"):
        return TRAFFIC_SIGN
    if highway == "street_lamp":
        return STREET_LAMP
    if str(tags.get("man_made", "")) == "utility_pole" or str(tags.get("power", "")) == "pole":
        return UTILITY_POLE
    return None


def _number(path: str, where: str, props: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    if key not in props:
        return None
    raw = props[key]
    text = str(raw).strip().removesuffix(" m").strip() if isinstance(raw, str) else raw
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {where}: field properties.{key}={raw!r} is not a number of metres") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{path}: {where}: field properties.{key}={raw!r} is outside [{lo:g}, {hi:g}] m")
    return value


@dataclass
class LandmarkMap:
    """The landmarks of a map file (``load``) or of a synthetic city (`sim_data.landmarks`)."""

    landmarks: list[Landmark]
    source: str = ""
    skipped: int = 0  # features of other kinds (an OSM export holds more than landmarks)

    def __len__(self) -> int:
        return len(self.landmarks)

    @classmethod
    def load(cls, path: str | Path) -> LandmarkMap:
        """Read a GeoJSON FeatureCollection of Points; ValueError of one line naming the file, the
        feature (index and id) and the field when something is wrong."""
        path = str(path)
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the map ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None
        return cls.from_geojson(doc, path)

    @classmethod
    def from_geojson(cls, doc: Any, path: str = "<map>") -> LandmarkMap:
        if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
            raise ValueError(f"{path}: field type={doc.get('type') if isinstance(doc, dict) else doc!r}: "
                             "expected a GeoJSON FeatureCollection")
        features = doc.get("features")
        if not isinstance(features, list):
            raise ValueError(f"{path}: field features must be a list of GeoJSON features")
        # The collection's own accuracy (a foreign member, RFC 7946 6.1): the position std of every feature
        # that does not give one; without either, the kind's conservative default (3 m for OSM's nodes).
        coll = doc.get("properties") or {}
        if not isinstance(coll, dict):
            raise ValueError(f"{path}: field properties must be an object")
        coll_std = _number(path, "the collection", coll, "streetloc:position_std_m", 0.0, 1000.0)
        out, skipped, seen = [], 0, set()
        for k, feat in enumerate(features):
            where = f"feature {k}"
            if not isinstance(feat, dict) or feat.get("type") != "Feature":
                raise ValueError(f"{path}: {where}: field type must be 'Feature'")
            props = feat.get("properties") or {}
            if not isinstance(props, dict):
                raise ValueError(f"{path}: {where}: field properties must be an object of tags")
            fid = str(feat.get("id", props.get("@id", props.get("id", f"#{k}"))))
            where = f"feature {k} (id {fid})"
            kind = kind_of(props)
            if kind is None:
                skipped += 1
                continue
            geom = feat.get("geometry")
            if not isinstance(geom, dict) or geom.get("type") != "Point":
                got = geom.get("type") if isinstance(geom, dict) else geom
                raise ValueError(f"{path}: {where}: field geometry.type={got!r}: landmarks are Points")
            coords = geom.get("coordinates")
            if (not isinstance(coords, list) or len(coords) < 2
                    or not all(isinstance(c, int | float) and math.isfinite(c) for c in coords[:2])):
                raise ValueError(f"{path}: {where}: field geometry.coordinates={coords!r}: expected [lon, lat]")
            lon, lat = float(coords[0]), float(coords[1])
            if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
                raise ValueError(f"{path}: {where}: field geometry.coordinates={coords!r}: [lon, lat] out of range")
            if fid in seen:
                raise ValueError(f"{path}: {where}: field id={fid!r} is used twice")
            seen.add(fid)
            d = KIND_DEFAULTS[kind]
            top = _number(path, where, props, "height", 0.0, 200.0)
            bottom = _number(path, where, props, "min_height", 0.0, 200.0)
            width = _number(path, where, props, "streetloc:width_m", 0.01, 50.0)
            face = _number(path, where, props, "streetloc:height_m", 0.01, 200.0)
            std = _number(path, where, props, "streetloc:position_std_m", 0.0, 1000.0)
            std = coll_std if std is None else std
            size_rel_std = KNOWN_SIZE_REL_STD if face is not None else d.size_rel_std
            if face is None:
                face = (top - bottom) if top is not None and bottom is not None and top > bottom else d.height_m
            bottom_std = KNOWN_BOTTOM_STD_M if bottom is not None else d.bottom_std_m
            if bottom is None:
                bottom = top - face if top is not None and top > face and kind in DETECTED_KINDS else d.bottom_m
            out.append(Landmark(fid, kind, lat, lon, bottom, bottom + face, d.width_m if width is None else width,
                                d.position_std_m if std is None else std, size_rel_std, bottom_std,
                                {str(key): str(v) for key, v in props.items()}))
        return cls(out, path, skipped)

    def to_geojson(self) -> dict:
        """The map as a GeoJSON FeatureCollection (what ``load`` reads back)."""
        return {"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": lm.id, "geometry": {"type": "Point", "coordinates": [lm.lon_deg, lm.lat_deg]},
             "properties": dict(lm.tags)} for lm in self.landmarks]}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for lm in self.landmarks:
            out[lm.kind] = out.get(lm.kind, 0) + 1
        return out

    def in_frame(self, frame: LocalFrame) -> EnuLandmarks:
        """The detectable landmarks (``DETECTED_KINDS``) in ``frame``'s ENU metres."""
        lms = [lm for lm in self.landmarks if lm.kind in DETECTED_KINDS]
        e, n, _ = frame.to_enu(np.array([lm.lat_deg for lm in lms], float), np.array([lm.lon_deg for lm in lms], float))
        return EnuLandmarks(
            ids=tuple(lm.id for lm in lms), kinds=tuple(lm.kind for lm in lms),
            east_m=np.atleast_1d(np.asarray(e, float)), north_m=np.atleast_1d(np.asarray(n, float)),
            centre_up_m=np.array([(lm.bottom_m + lm.top_m) / 2 for lm in lms], float),
            face_height_m=np.array([lm.face_height_m for lm in lms], float),
            width_m=np.array([lm.width_m for lm in lms], float),
            position_std_m=np.array([lm.position_std_m for lm in lms], float),
            size_rel_std=np.array([lm.size_rel_std for lm in lms], float),
            up_std_m=np.array([lm.bottom_std_m for lm in lms], float))


@dataclass(frozen=True)
class EnuLandmarks:
    """Detectable landmarks in a filter's ENU frame, struct of arrays (float64 [M] each)."""

    ids: tuple[str, ...]
    kinds: tuple[str, ...]
    east_m: np.ndarray
    north_m: np.ndarray
    centre_up_m: np.ndarray  # face centre above the ground
    face_height_m: np.ndarray
    width_m: np.ndarray
    position_std_m: np.ndarray
    size_rel_std: np.ndarray
    up_std_m: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


# ---------------------------------------------------------------------------------------------- measurement


class Pinhole(NamedTuple):
    """The camera of the boxes (pixels): focal lengths, principal point, image size, OpenCV plumb_bob
    distortion (k1, k2, p1, p2, k3; empty: none). Looks along the robot's heading, level."""

    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float
    width_px: int
    height_px: int
    distortion: tuple[float, ...] = ()

    @classmethod
    def from_hfov(cls, width_px: int, height_px: int, hfov_deg: float) -> Pinhole:
        fx = (width_px / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(fx, fx, width_px / 2.0, height_px / 2.0, int(width_px), int(height_px))

    def normalized(self, u_px: np.ndarray, v_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates -> undistorted normalized image coordinates (x/z, y/z)."""
        x = (np.asarray(u_px, float) - self.cx_px) / self.fx_px
        y = (np.asarray(v_px, float) - self.cy_px) / self.fy_px
        k = tuple(self.distortion) + (0.0,) * max(0, 5 - len(self.distortion))
        if not any(k[:5]):
            return x, y
        k1, k2, p1, p2, k3 = k[:5]
        xd, yd = x, y
        for _ in range(10):  # fixed-point inversion of the plumb_bob model (as cv2.undistortPoints)
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2**3
            dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            x, y = (xd - dx) / radial, (yd - dy) / radial
        return x, y


@dataclass(frozen=True)
class LandmarkParams:
    """The camera measurement's noise and the association's limits."""

    # Box noise of the shipped detector against the truth (sign boxes 6-20 px tall, validation drives
    # s601 day + s603 night, docs/landmarks.md): centre u 0.55-0.8 px, v 1.0-1.3 px, height 1.0-2.5 px,
    # 13-17 % of the height.
    box_centre_std_px: float = 1.0  # 1-sigma of a box centre, px (each axis)
    box_height_std_px: float = 1.0  # 1-sigma of a box's height, px, plus ...
    box_height_rel_std: float = 0.15  # ... this share of the height (the detector's boxes scale their error)
    pitch_std_deg: float = 0.5  # the camera's pitch wobble (braking, bumps): widens the elevation
    camera_height_m: float = 1.5  # optical centre above the road
    min_box_height_px: float = 3.0  # smaller boxes (and landmarks predicted smaller) are not used
    border_px: float = 1.0  # boxes this close to the image edge are cut off: not used
    max_depth_m: float = 80.0  # landmarks farther ahead are not candidates
    min_depth_m: float = 2.0
    max_boxes: int = 6  # largest boxes of a frame used at most (the search grows with them)
    max_candidates: int = 4  # most compatible landmarks per box kept for the joint search
    gate_chi2: float = CHI2_3DOF_999  # one box against one landmark, squared Mahalanobis distance
    joint_p: float = 0.999  # joint compatibility of a hypothesis, chi-square quantile
    ambiguity_nis: float = 6.0  # hypotheses within this joint NIS of the best count as just as good
    max_position_std_m: float = 5.0  # no landmark updates while the pose is vaguer (look-alikes in reach)
    min_map_std_m: float = 0.5  # a map's position std is taken as at least this when associating, and in the
    #   update unless the map's own (declared) std is trusted for a pairing: docs/landmarks.md, "Trusting the
    #   map's accuracy". With 0.5 the synthetic map's 0.05 m went unused (oracle: 0.130 -> 0.130 m; 0.107 trusted)
    trust_map_below_std_m: float = 0.45  # ... trusted only while the pose's position std is under this (the
    #   fixes can then check the map: a landmark 2 m off is outside the gate); under min_position_std_m, so
    #   that landmark updates never make the pose tight enough to trust landmarks themselves ...
    trust_gate_chi2: float = 6.25  # ... and only for a pairing whose NIS with the declared std is under this
    #   (3 dof, p = 0.9; a tight pairing that passes at NIS c moves the pose by ~sqrt(c) of its std: 11.34 let a
    #   map displaced 2 m take a 0.3 m-std track 2.6 m off, 6.25 1.3 m); a landmark that fails is disputed (the
    #   floor, for good)
    # When the filter applies a frame's pairings (`PoseFilter._update_landmarks`; docs/landmarks.md,
    # "Over-counting and wrong streets"): the held-out ablation showed landmarks keeping a wrong or biased
    # track confident. Landmarks only sharpen a track that the fixes currently confirm ...
    max_fix_age_s: float = 1.0  # ... a PoseNet fix accepted at most this long ago
    candidate_margin_llr: float = 3.0  # ... no candidate track within this log-likelihood ratio (nats;
    #   0: s607 held a competing candidate off, max 8.5 -> 17.8 m; 3 and 6 both fix it, 3 keeps more updates)
    min_pairs: int = 2  # pairings a frame needs; a lone box (look-alikes: 8 heads per intersection) ...
    single_gate_chi2: float = 6.25  # ... is used only with NIS under this (3 dof, p = 0.9)
    decorrelation_m: float = 3.0  # a landmark seen again within this distance travelled shares its error
    #   (the same box bias, the same pitch): its R is inflated by decorrelation_m / distance since its last use
    #   ... With the place PoseNet's 0.1-0.3 m fixes, 3 m makes landmarks lower the fused median instead of
    #   raising it (validation s604, s605, s608, s611, s614, s619: see docs/landmarks.md, "Round 6"). Off
    #   (0) before: with the regression PoseNet 3 m and 10 m raised the median (0.92 -> 1.07 / 1.26 m)
    max_reuse_inflation: float = 20.0  # ... by at most this factor
    min_position_std_m: float = 0.5  # landmark updates never take the position std below this (m)
    nis_window: int = 20  # consistency: the last this many landmark updates' NIS per dof ...
    max_mean_nis: float = 2.0  # ... averaging over this (the noise model is not true there: a biased
    suspend_s: float = 10.0  # track or a wrong map) suspend landmarks for this long


class BoxObservation(NamedTuple):
    """One detected sign/light box: centre and size in pixels (the image's own, distorted)."""

    u_px: float
    v_px: float
    width_px: float
    height_px: float


def boxes_to_observations(boxes_xyxy_px: np.ndarray, camera: Pinhole, params: LandmarkParams) -> list[BoxObservation]:
    """Usable boxes (float [N, 4] x1 y1 x2 y2 px) as observations, largest first: boxes cut off by the
    image edge (their size and centre are wrong) and boxes under ``min_box_height_px`` are left out, and
    so is a box whose centre lies inside a larger one (widened by half its width): the detector boxes a small head twice now and then
    (two boxes 1-2 px apart overlap less than its NMS threshold), and two boxes of one landmark would
    make every pairing look ambiguous."""
    b = np.asarray(boxes_xyxy_px, float).reshape(-1, 4)
    keep = ((b[:, 0] >= params.border_px) & (b[:, 2] <= camera.width_px - params.border_px)
            & (b[:, 1] >= params.border_px) & (b[:, 3] <= camera.height_px - params.border_px)
            & (b[:, 3] - b[:, 1] >= params.min_box_height_px) & np.all(np.isfinite(b), axis=1))
    b = b[keep]
    b = b[np.argsort(-(b[:, 3] - b[:, 1]), kind="stable")]
    kept: list[np.ndarray] = []
    for box in b:
        u, v = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        # inside a kept box, widened by half its width (a thin housing's twin box sits beside it)
        if not any(k[0] - 1 - (k[2] - k[0]) / 2 <= u <= k[2] + 1 + (k[2] - k[0]) / 2 and k[1] - 1 <= v <= k[3] + 1
                   for k in kept):
            kept.append(box)
    return [BoxObservation(float((x1 + x2) / 2), float((y1 + y2) / 2), float(x2 - x1), float(y2 - y1))
            for x1, y1, x2, y2 in kept[: params.max_boxes]]


class LandmarkObservation(NamedTuple):
    """The filter's landmark measurement: one frame's sign boxes, the camera, the map in the filter's
    ENU frame and the parameters (carried along so the filter needs no map of its own)."""

    boxes: Sequence[BoxObservation]
    camera: Pinhole
    landmarks: EnuLandmarks
    params: LandmarkParams = LandmarkParams()


def check_landmark_observation(m: Any) -> str | None:
    """Why ``m`` cannot be used as a landmark measurement, or None."""
    if not isinstance(m, LandmarkObservation):
        return f"{LANDMARKS}: expected LandmarkObservation, got {type(m).__name__}"
    for k, b in enumerate(m.boxes):
        if not all(math.isfinite(v) for v in b) or b.height_px <= 0:
            return f"{LANDMARKS}: box {k} {tuple(b)!r} is not a finite box with a positive height"
    return None


@dataclass
class Association:
    """What one frame's boxes told: pairs (box index, landmark index), the stacked innovation y [3k],
    its Jacobian H [3k, 3] w.r.t. (east_m, north_m, yaw_rad) and noise R [3k, 3k] (box noise + the map's
    spread); boxes that had landmarks in view but no (unique) pairing; the joint NIS at association (with
    the map's spread at least ``min_map_std_m``)."""

    pairs: list[tuple[int, int]]
    y: np.ndarray
    H: np.ndarray
    R: np.ndarray
    unpaired: int = 0
    ambiguous: int = 0
    nis: float = 0.0
    disputed: list[str] = field(default_factory=list)  # landmark ids whose declared spread did not check out


def chi2_quantile(dof: int, p: float) -> float:
    """Chi-square quantile (Wilson-Hilferty; within 1 % of scipy for p = 0.999, dof >= 3)."""
    z = {0.99: 2.326, 0.995: 2.576, 0.999: 3.090, 0.9999: 3.719}.get(round(p, 4))
    if z is None:
        raise ValueError(f"chi2_quantile: p={p} is not one of 0.99, 0.995, 0.999, 0.9999")
    a = 2.0 / (9.0 * dof)
    return dof * (1.0 - a + z * math.sqrt(a)) ** 3


def _in_view(pose: np.ndarray, lm: EnuLandmarks, camera: Pinhole, p: LandmarkParams) -> np.ndarray:
    """Indices of the landmarks a camera at ``pose`` (east_m, north_m, yaw_rad) may see: in range, inside
    the image (with a 10 % margin for the pose's error), predicted at least half ``min_box_height_px``."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    de, dn = lm.east_m - pose[0], lm.north_m - pose[1]
    d = de * c + dn * s
    x = de * s - dn * c
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = ((d >= p.min_depth_m) & (d <= p.max_depth_m)
              & (np.abs(x / d) <= 1.1 * (camera.width_px / 2) / camera.fx_px)
              & (np.abs((p.camera_height_m - lm.centre_up_m) / d) <= 1.1 * (camera.height_px / 2) / camera.fy_px)
              & (camera.fy_px * lm.face_height_m / d >= 0.5 * p.min_box_height_px))
    return np.flatnonzero(ok)


def expected_boxes(pose: np.ndarray, lm: EnuLandmarks, camera: Pinhole, p: LandmarkParams
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Where the landmarks in view from ``pose`` (east_m, north_m, yaw_rad) appear: boxes float64 [K, 4]
    (x1, y1, x2, y2 px, undistorted; a face seen square-on) and the landmark indices [K]. For plots,
    simulations and tests."""
    view = _in_view(np.asarray(pose, float), lm, camera, p)
    c, s = math.cos(pose[2]), math.sin(pose[2])
    de, dn = lm.east_m[view] - pose[0], lm.north_m[view] - pose[1]
    d, x = de * c + dn * s, de * s - dn * c
    u = camera.cx_px + camera.fx_px * x / d
    half_w = camera.fx_px * lm.width_m[view] / d / 2
    top = camera.cy_px + camera.fy_px * (p.camera_height_m - lm.centre_up_m[view] - lm.face_height_m[view] / 2) / d
    bottom = camera.cy_px + camera.fy_px * (p.camera_height_m - lm.centre_up_m[view] + lm.face_height_m[view] / 2) / d
    return np.stack([u - half_w, top, u + half_w, bottom], -1).reshape(-1, 4), view


def _pair_models(pose: np.ndarray, lm: EnuLandmarks, view: np.ndarray, boxes: list[BoxObservation],
                 camera: Pinhole, p: LandmarkParams, map_inflation: np.ndarray, min_map_std_m: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every box against every landmark of ``view`` (indices [V]) seen from ``pose`` (east_m, north_m,
    yaw_rad): innovations y [B, V, 3], Jacobians H [V, 3, 3] w.r.t. (east, north, yaw), noise R [B, V, 3, 3].
    The map's own spread enters R through the landmark's Jacobian, times ``map_inflation`` [V] (a
    landmark's map error is the same every time it is seen)."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    de, dn = lm.east_m[view] - pose[0], lm.north_m[view] - pose[1]
    d = de * c + dn * s  # depth along the optical axis [V]
    x = de * s - dn * c  # to the right [V]
    k = p.camera_height_m - lm.centre_up_m[view]
    h_pred = np.stack([x / d, k / d, np.log(d)], -1)  # [V, 3]
    xn, yn = camera.normalized(np.array([b.u_px for b in boxes]), np.array([b.v_px for b in boxes]))
    h_px = np.array([b.height_px for b in boxes])
    z = np.empty((len(boxes), len(view), 3))
    z[..., 0], z[..., 1] = xn[:, None], yn[:, None]
    z[..., 2] = np.log(camera.fy_px * lm.face_height_m[view][None, :] / h_px[:, None])
    y = z - h_pred[None]
    # d(d)/d(e, n, yaw) = (-c, -s, -x); d(x)/d(e, n, yaw) = (-s, c, d)
    dd = np.stack([np.full_like(d, -c), np.full_like(d, -s), -x], -1)  # [V, 3]
    dx = np.stack([np.full_like(d, -s), np.full_like(d, c), d], -1)
    H = np.stack([dx / d[:, None] - (x / d**2)[:, None] * dd, -(k / d**2)[:, None] * dd, dd / d[:, None]], 1)
    Hl = -H[:, :, :2]  # the landmark's position enters as minus the robot's
    std = np.maximum(lm.position_std_m[view], min_map_std_m)
    R_map = Hl @ Hl.transpose(0, 2, 1) * (std**2 * map_inflation)[:, None, None]  # [V, 3, 3]
    R_map[:, 1, 1] += (lm.up_std_m[view] / d) ** 2 * map_inflation
    R_map[:, 2, 2] += lm.size_rel_std[view] ** 2 * map_inflation
    R = np.broadcast_to(R_map, (len(boxes), *R_map.shape)).copy()
    R[..., 0, 0] += (p.box_centre_std_px / camera.fx_px) ** 2
    R[..., 1, 1] += (p.box_centre_std_px / camera.fy_px) ** 2 + math.tan(math.radians(p.pitch_std_deg)) ** 2
    R[..., 2, 2] += ((p.box_height_std_px / h_px) ** 2 + p.box_height_rel_std**2)[:, None]
    return y, H, R


def associate(pose: np.ndarray, P: np.ndarray, m: LandmarkObservation,
              uses: Mapping[str, int] | None = None, disputed: frozenset[str] | set[str] = frozenset()
              ) -> Association:
    """JCBB of one frame's boxes with the map landmarks in view from ``pose`` (east_m, north_m, yaw_rad)
    with covariance ``P`` [3, 3], plus the ambiguity rule (module docstring). ``uses``: how often each
    landmark (id) was used lately; its map spread counts ``1 + uses`` times (its error does not average
    out over frames: n looks at one misplaced landmark are worth one).

    The association takes the map's spread as at least ``min_map_std_m``. The returned R then uses the
    map's own (declared) spread for each pairing that checks out (``_trusted``): the pose's std is under
    ``trust_map_below_std_m``, the landmark is not in ``disputed``, and the pairing's NIS with the declared
    spread is under ``trust_gate_chi2``; ``Association.disputed`` lists the landmarks (ids) that failed
    that last test."""
    p, lm, boxes = m.params, m.landmarks, list(m.boxes)
    pose = np.asarray(pose, float)
    empty = Association([], np.zeros(0), np.zeros((0, 3)), np.zeros((0, 0)))
    if not boxes or not len(lm):
        return empty
    view = _in_view(pose, lm, m.camera, p)
    if not len(view):
        return empty
    uses = uses or {}
    inflation = np.array([1.0 + uses.get(lm.ids[j], 0) for j in view])
    Y, Hs, Rs = _pair_models(pose, lm, view, boxes, m.camera, p, inflation, p.min_map_std_m)
    S = (Hs @ P @ Hs.transpose(0, 2, 1))[None] + Rs  # [B, V, 3, 3]
    d2 = np.einsum("bvi,bvi->bv", Y, np.linalg.solve(S, Y[..., None])[..., 0])
    models: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    candidates: list[list[int]] = []
    for i in range(len(boxes)):
        order = [v for v in np.argsort(d2[i], kind="stable") if d2[i, v] <= p.gate_chi2][: p.max_candidates]
        for v in order:
            models[(i, int(view[v]))] = (Y[i, v], Hs[v], Rs[i, v])
        candidates.append([int(view[v]) for v in order])
    any_in_view = [True] * len(boxes)

    def joint_nis(pairs: list[tuple[int, int]]) -> float:
        y = np.concatenate([models[q][0] for q in pairs])
        H = np.vstack([models[q][1] for q in pairs])
        R = _block_diag([models[q][2] for q in pairs])
        S = H @ P @ H.T + R
        return float(y @ np.linalg.solve(S, y))

    # Branch and bound over the boxes: each takes one of its candidates (unused so far) or none. Keep every
    # jointly compatible hypothesis with the most pairings (for the ambiguity rule), pruning branches that
    # cannot reach that many.
    best_n = 0
    hyps: list[tuple[float, list[tuple[int, int]]]] = []
    budget = [4000]  # joint tests at most (a frame's worth of CPU)

    def search(i: int, pairs: list[tuple[int, int]], nis: float) -> None:
        nonlocal best_n, hyps
        if budget[0] <= 0:
            return
        remaining = sum(1 for k in range(i, len(boxes)) if candidates[k])
        if len(pairs) + remaining < best_n:
            return
        if i == len(boxes):
            if len(pairs) > best_n:
                best_n, hyps = len(pairs), []
            if len(pairs) == best_n and pairs:
                hyps.append((nis, list(pairs)))
            return
        used = {j for _, j in pairs}
        for j in candidates[i]:
            if j in used:
                continue
            trial = [*pairs, (i, j)]
            budget[0] -= 1
            t = joint_nis(trial)
            if t <= chi2_quantile(3 * len(trial), p.joint_p):
                search(i + 1, trial, t)
        search(i + 1, pairs, nis)  # box i from no landmark of the map (a missing one, a false box)

    search(0, [], 0.0)
    unpaired_boxes = sum(any_in_view)
    if not hyps:
        return Association([], np.zeros(0), np.zeros((0, 3)), np.zeros((0, 0)), unpaired=unpaired_boxes)
    nis_best = min(h[0] for h in hyps)
    close = [set(h[1]) for h in hyps if h[0] <= nis_best + p.ambiguity_nis]
    best = min(hyps, key=lambda h: h[0])[1]
    shared = [q for q in best if all(q in c for c in close)]
    ambiguous = len(best) - len(shared)
    if not shared:
        return Association([], np.zeros(0), np.zeros((0, 3)), np.zeros((0, 0)), unpaired=unpaired_boxes,
                           ambiguous=ambiguous)
    nis = joint_nis(shared)
    newly_disputed = _trusted(pose, P, m, shared, models, inflation_of=dict(zip(view.tolist(), inflation, strict=True)),
                              disputed=disputed)
    y = np.concatenate([models[q][0] for q in shared])
    H = np.vstack([models[q][1] for q in shared])
    R = _block_diag([models[q][2] for q in shared])
    return Association(shared, y, H, R, unpaired=unpaired_boxes - len(shared), ambiguous=ambiguous,
                       nis=nis, disputed=newly_disputed)


def _trusted(pose: np.ndarray, P: np.ndarray, m: LandmarkObservation, pairs: list[tuple[int, int]],
             models: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]], *,
             inflation_of: Mapping[int, float], disputed: frozenset[str] | set[str]) -> list[str]:
    """Replace, in ``models``, the R of each of ``pairs`` (box, landmark index) by its R with the map's
    declared spread where that is trusted (``associate``); the landmark ids that fail the NIS test."""
    p, lm = m.params, m.landmarks
    pose_std_m = math.sqrt(max(float(np.linalg.eigvalsh(np.asarray(P, float)[:2, :2])[-1]), 0.0))
    if pose_std_m >= p.trust_map_below_std_m:
        return []
    out = []
    for i, j in pairs:
        if lm.ids[j] in disputed or lm.position_std_m[j] >= p.min_map_std_m:
            continue
        view = np.array([j])
        y, H, R = _pair_models(pose, lm, view, [m.boxes[i]], m.camera, p, np.array([inflation_of[j]]), 0.0)
        y, H, R = y[0, 0], H[0], R[0, 0]
        S = H @ P @ H.T + R  # S = H P H' + R
        if float(y @ np.linalg.solve(S, y)) <= p.trust_gate_chi2:
            models[(i, j)] = (models[(i, j)][0], models[(i, j)][1], R)
        else:
            out.append(lm.ids[j])
    return out


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    n = sum(b.shape[0] for b in blocks)
    out = np.zeros((n, n))
    k = 0
    for b in blocks:
        out[k:k + b.shape[0], k:k + b.shape[0]] = b
        k += b.shape[0]
    return out
