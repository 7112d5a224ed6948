"""The picture of `streetloc eval --plot`: a run's tracks on a map-like ENU plot and its errors over time,
drawn with OpenCV (already a dependency; no plotting library for one figure).

Left: the truth (black), PoseNet's raw fixes (grey dots; those off the map are counted in the corner),
the fused track coloured by status (green TRACKING, orange DEGRADED, red LOST, grey INITIALIZING) with
its 95 % ellipse every 2 s (blue). Right: position error over time on a log scale, raw fixes as grey dots,
fused as a line coloured by status, the fused 95 % radius (blue, thin: the error should stay under it),
5 m and 20 m guides, and a status band along the bottom. With a landmark map (``--map``): signal heads
(dark squares) and signs (purple) of the map, and a thin magenta line from each pose to every landmark it
used; poses that used landmarks get a magenta dot either way (`landmark_marks`). Fixes the fusion gated
are crossed (red), fixes it trusted less than half for their scene (docs/context.md: the pose's ``fix_trust``) ringed (orange).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from nodes.commands.eval import CHI2_2DOF_95, JUMP_M, Track
from perception.drives.topics import POSE_TOPIC, POSENET_TOPIC

W_PX, H_PX = 1800, 900
WHITE, BLACK, GREY, LIGHT = (255, 255, 255), (0, 0, 0), (150, 150, 150), (225, 225, 225)
BLUE = (200, 110, 30)
STATUS_BGR = {"tracking": (60, 160, 40), "degraded": (0, 150, 255), "lost": (40, 40, 220),
              "initializing": (160, 160, 160)}
FONT = cv2.FONT_HERSHEY_SIMPLEX
ELLIPSE_EVERY_S = 2.0


def _nice_step(span: float, target_lines: int = 8) -> float:
    raw = span / target_lines
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


def _text(img: np.ndarray, s: str, xy: tuple[int, int], scale: float = 0.5, color=BLACK, thick: int = 1) -> None:
    cv2.putText(img, s, xy, FONT, scale, color, thick, cv2.LINE_AA)


LOW_TRUST = 0.5  # fixes the fusion trusted less than this are ringed
ORANGE, RED = (0, 140, 255), (40, 40, 220)


def fix_marks(run_path: str) -> dict[str, set[int]]:
    """Stamps of the fixes the fusion gated (its per-fix pose lists ``posenet/fix`` in ``inputs_gated``)
    and of those it trusted less than `LOW_TRUST` (``fix_trust``), from the run's per-fix poses."""
    from perception.drives import DriveReader

    gated, doubted = set(), set()
    with DriveReader(run_path) as run:
        if POSE_TOPIC not in run.topics:
            return {"gated": gated, "low_trust": doubted}
        fix_stamps = {f.header.stamp_ns for f in run.fixes(POSENET_TOPIC)} if POSENET_TOPIC in run.topics else set()
        for pose in run.fixes(POSE_TOPIC):
            s = pose.header.stamp_ns
            if s not in fix_stamps:
                continue
            if POSENET_TOPIC in pose.inputs_gated:
                gated.add(s)
            if pose.fix_trust_reason and pose.fix_trust < LOW_TRUST:
                doubted.add(s)
    return {"gated": gated, "low_trust": doubted}


def draw(path: str, tracks: dict[str, Track], truth: Track, errors: dict[str, np.ndarray], *, title: str = "",
         landmarks: LandmarkMarks | None = None, marks: dict[str, set[int]] | None = None) -> None:
    """Write the PNG to ``path`` (ValueError naming it when it cannot be written). ``marks``: `fix_marks`."""
    img = np.full((H_PX, W_PX, 3), 255, np.uint8)
    _map(img[:, : H_PX], tracks, truth, marks or {}, landmarks)
    _errors(img[:, H_PX:], tracks, errors)
    _text(img, title, (10, 18), 0.5, GREY)
    if not cv2.imwrite(str(path), img):
        raise ValueError(f"--plot {path}: could not write the PNG (folder missing or not .png?)")


def _map(img: np.ndarray, tracks: dict[str, Track], truth: Track, marks: dict[str, set[int]],
         landmarks: LandmarkMarks | None = None) -> None:
    h, w = img.shape[:2]
    margin = 60
    fused = tracks.get("fused")
    shown = truth.en_m if fused is None else np.concatenate([truth.en_m, fused.en_m[fused.valid]])
    lo, hi = np.nanmin(shown, axis=0) - 40.0, np.nanmax(shown, axis=0) + 40.0
    span = float(max(hi - lo))
    center = (lo + hi) / 2
    scale = (min(w, h) - 2 * margin) / span  # px per m, the same on both axes (a map)

    def px(en: np.ndarray) -> np.ndarray:
        e, n = en[..., 0], en[..., 1]
        return np.stack([w / 2 + (e - center[0]) * scale, h / 2 - (n - center[1]) * scale], axis=-1)

    step = _nice_step(span)
    for v in np.arange(math.floor((center[0] - span / 2) / step) * step, center[0] + span / 2 + step, step):
        x = int(w / 2 + (v - center[0]) * scale)
        if margin <= x <= w - margin:
            cv2.line(img, (x, margin), (x, h - margin), LIGHT, 1)
            _text(img, f"{v:.0f}", (x - 15, h - margin + 18), 0.4, GREY)
    for v in np.arange(math.floor((center[1] - span / 2) / step) * step, center[1] + span / 2 + step, step):
        y = int(h / 2 - (v - center[1]) * scale)
        if margin <= y <= h - margin:
            cv2.line(img, (margin, y), (w - margin, y), LIGHT, 1)
            _text(img, f"{v:.0f}", (5, y + 4), 0.4, GREY)
    _text(img, "east m", (w // 2 - 25, h - 15), 0.5, GREY)
    _text(img, "north m", (5, margin - 10), 0.5, GREY)

    raw = tracks.get("posenet")
    off_map = 0
    if raw is not None:
        p = px(raw.en_m[raw.valid])
        inside = np.all((p >= 0) & (p < [w, h]), axis=1)
        off_map = int((~inside).sum())
        for x, y in p[inside].astype(int):
            cv2.circle(img, (int(x), int(y)), 2, GREY, -1, cv2.LINE_AA)
        stamps = raw.stamps_ns[raw.valid][inside]
        for (x, y), s in zip(p[inside].astype(int), stamps, strict=True):
            if int(s) in marks.get("low_trust", ()):
                cv2.circle(img, (int(x), int(y)), 6, ORANGE, 1, cv2.LINE_AA)
            if int(s) in marks.get("gated", ()):
                cv2.drawMarker(img, (int(x), int(y)), RED, cv2.MARKER_TILTED_CROSS, 8, 1, cv2.LINE_AA)
    for seg in _segments(truth.en_m, truth.valid):
        cv2.polylines(img, [px(seg).astype(np.int32)], False, BLACK, 2, cv2.LINE_AA)
    if fused is not None:
        p = px(fused.en_m)
        for k in range(1, len(p)):
            if fused.valid[k] and fused.valid[k - 1] and np.hypot(*(fused.en_m[k] - fused.en_m[k - 1])) < JUMP_M:
                color = STATUS_BGR.get(str(fused.status[k]), GREY)
                cv2.line(img, tuple(p[k - 1].astype(int)), tuple(p[k].astype(int)), color, 2, cv2.LINE_AA)
        next_ns = None
        for k in np.flatnonzero(fused.valid):
            if next_ns is not None and fused.stamps_ns[k] < next_ns:
                continue
            next_ns = fused.stamps_ns[k] + int(ELLIPSE_EVERY_S * 1e9)
            _ellipse(img, p[k], fused.cov[k], scale)
    if landmarks is not None:
        _landmarks(img, px, landmarks)
    y = 40
    for label, color in [("truth (gps/fix)", BLACK), ("PoseNet raw fixes", GREY), ("fused: tracking",
                         STATUS_BGR["tracking"]), ("fused: degraded", STATUS_BGR["degraded"]),
                         ("fused: lost", STATUS_BGR["lost"]), ("95 % ellipse (every 2 s)", BLUE),
                         *([("fix gated (x)", RED)] if marks.get("gated") else []),
                         *([(f"fix trust < {LOW_TRUST} (ring)", ORANGE)] if marks.get("low_trust") else [])]:
        cv2.line(img, (w - 250, y - 5), (w - 225, y - 5), color, 3)
        _text(img, label, (w - 218, y), 0.45)
        y += 20
    if off_map:
        _text(img, f"{off_map} raw fixes off this view", (w - 250, y + 5), 0.45, GREY)


def _ellipse(img: np.ndarray, center_px: np.ndarray, cov: np.ndarray, scale: float) -> None:
    if not np.all(np.isfinite(cov)):
        return
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    axes = np.sqrt(np.maximum(vals, 0.0) * CHI2_2DOF_95) * scale
    if not np.all(np.isfinite(axes)) or axes.max() > 5000:
        return
    # image y points south: an ENU angle a is -a on the image
    angle_deg = -math.degrees(math.atan2(vecs[1, 1], vecs[0, 1]))
    cv2.ellipse(img, (int(center_px[0]), int(center_px[1])), (max(1, int(axes[1])), max(1, int(axes[0]))),
                angle_deg, 0, 360, BLUE, 1, cv2.LINE_AA)


def _segments(en: np.ndarray, valid: np.ndarray) -> list[np.ndarray]:
    """Runs of consecutive valid points without jumps (a kidnap is not a line)."""
    out, cur = [], []
    for k in range(len(en)):
        if not valid[k] or (cur and np.hypot(*(en[k] - cur[-1])) > JUMP_M):
            if len(cur) > 1:
                out.append(np.array(cur))
            cur = []
        if valid[k]:
            cur.append(en[k])
    if len(cur) > 1:
        out.append(np.array(cur))
    return out


def _errors(img: np.ndarray, tracks: dict[str, Track], errors: dict[str, np.ndarray]) -> None:
    h, w = img.shape[:2]
    left, right, top, bottom = 70, 20, 40, 90
    t0 = min(int(tr.stamps_ns[0]) for tr in tracks.values())
    t1 = max(int(tr.stamps_ns[-1]) for tr in tracks.values())
    dur_s = max((t1 - t0) * 1e-9, 1.0)
    lo_m, hi_m = 0.1, 1000.0

    def xy(t_ns: np.ndarray, err_m: np.ndarray) -> np.ndarray:
        x = left + (t_ns - t0) * 1e-9 / dur_s * (w - left - right)
        frac = (np.log10(np.clip(err_m, lo_m, hi_m)) - math.log10(lo_m)) / (math.log10(hi_m) - math.log10(lo_m))
        return np.stack([x, h - bottom - frac * (h - top - bottom)], axis=-1)

    for v in (0.1, 1, 5, 10, 20, 100, 1000):
        y = int(xy(np.array([t0]), np.array([v]))[0, 1])
        cv2.line(img, (left, y), (w - right, y), (200, 200, 255) if v in (5, 20) else LIGHT, 1)
        _text(img, f"{v:g} m", (5, y + 4), 0.4, GREY)
    step = _nice_step(dur_s, 10)
    for s in np.arange(0, dur_s + 1e-9, step):
        x = int(left + s / dur_s * (w - left - right))
        cv2.line(img, (x, top), (x, h - bottom), LIGHT, 1)
        _text(img, f"{s:.0f}", (x - 10, h - bottom + 16), 0.4, GREY)
    _text(img, "time s", ((w - left) // 2, h - bottom + 34), 0.5, GREY)
    _text(img, "position error (log scale)", (left, top - 12), 0.5)
    raw = tracks.get("posenet")
    if raw is not None and "posenet" in errors:
        e = errors["posenet"]
        ok = np.isfinite(e)
        for x, y in xy(raw.stamps_ns[ok], e[ok]).astype(int):
            cv2.circle(img, (int(x), int(y)), 2, GREY, -1, cv2.LINE_AA)
    fused = tracks.get("fused")
    if fused is not None and "fused" in errors:
        e = errors["fused"]
        p = xy(fused.stamps_ns, np.nan_to_num(e, nan=lo_m))
        radius = np.array([math.sqrt(CHI2_2DOF_95 * max(np.linalg.eigvalsh(c)[-1], 0.0))
                           if np.all(np.isfinite(c)) else np.nan for c in fused.cov])
        r = xy(fused.stamps_ns, np.nan_to_num(radius, nan=hi_m))
        for k in range(1, len(p)):
            if np.isfinite(e[k]) and np.isfinite(e[k - 1]):
                color = STATUS_BGR.get(str(fused.status[k]), GREY)
                cv2.line(img, tuple(p[k - 1].astype(int)), tuple(p[k].astype(int)), color, 2, cv2.LINE_AA)
            if fused.valid[k] and fused.valid[k - 1]:
                cv2.line(img, tuple(r[k - 1].astype(int)), tuple(r[k].astype(int)), BLUE, 1, cv2.LINE_AA)
        band_y = h - bottom + 45
        for k in range(1, len(p)):
            color = STATUS_BGR.get(str(fused.status[k]), GREY)
            cv2.rectangle(img, (int(p[k - 1, 0]), band_y), (max(int(p[k, 0]), int(p[k - 1, 0]) + 1), band_y + 14),
                          color, -1)
        _text(img, "status", (5, band_y + 12), 0.4, GREY)
    y = top + 10
    for label, color in [("raw fix error", GREY), ("fused error (by status)", STATUS_BGR["tracking"]),
                         ("fused 95 % radius", BLUE)]:
        cv2.line(img, (w - 230, y - 5), (w - 205, y - 5), color, 3)
        _text(img, label, (w - 198, y), 0.45)
        y += 20


# ------------------------------------------------------------------------------------------ landmarks

MAGENTA, SIGNAL_BGR, SIGN_BGR = (200, 40, 200), (60, 60, 60), (150, 60, 120)


@dataclass
class LandmarkMarks:
    """What the map panel shows of landmarks: the map's detectable landmarks (ENU [M, 2], kinds), the
    poses that used landmarks (ENU [P, 2]) and one link per landmark used (pose ENU, landmark ENU [L, 2, 2])."""

    map_en: np.ndarray
    kinds: list[str]
    used_en: np.ndarray
    links: np.ndarray


def landmark_marks(run_path: str, map_path: str | None, frame) -> LandmarkMarks | None:
    """The landmark marks of a run (its poses' ``landmark_ids``) on ``map_path``'s landmarks; None when
    there is neither a map nor a pose that used one."""
    from localization.landmarks import LandmarkMap
    from perception.drives import DriveReader
    from perception.drives.topics import POSE_TOPIC

    with DriveReader(run_path) as run:
        poses = [p for p in run.fixes(POSE_TOPIC) if p.landmarks_used] if POSE_TOPIC in run.topics else []
    if not poses and not map_path:
        return None
    map_en, kinds, by_id = np.zeros((0, 2)), [], {}
    if map_path:
        enu = LandmarkMap.load(map_path).in_frame(frame)
        map_en, kinds = np.stack([enu.east_m, enu.north_m], -1).reshape(-1, 2), list(enu.kinds)
        by_id = {lid: map_en[k] for k, lid in enumerate(enu.ids)}
    e, n, _ = frame.to_enu([p.lat_deg for p in poses], [p.lon_deg for p in poses])
    used_en = np.stack([np.atleast_1d(e), np.atleast_1d(n)], -1).reshape(-1, 2)
    links = [(used_en[k], by_id[i]) for k, p in enumerate(poses) for i in p.landmark_ids if i in by_id]
    return LandmarkMarks(map_en, kinds, used_en, np.array(links, float).reshape(-1, 2, 2))


def _landmarks(img: np.ndarray, px, marks: LandmarkMarks) -> None:
    h, w = img.shape[:2]
    for a, b in px(marks.links).astype(int):
        cv2.line(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), MAGENTA, 1, cv2.LINE_AA)
    for (x, y), kind in zip(px(marks.map_en).astype(int), marks.kinds, strict=True):
        if 0 <= x < w and 0 <= y < h:
            color = SIGNAL_BGR if kind == "traffic_signals" else SIGN_BGR
            cv2.rectangle(img, (int(x) - 2, int(y) - 2), (int(x) + 2, int(y) + 2), color, -1)
    for x, y in px(marks.used_en).astype(int):
        cv2.circle(img, (int(x), int(y)), 2, MAGENTA, -1, cv2.LINE_AA)
    n_links = len(marks.links)
    _text(img, f"landmarks: map (squares), {len(marks.used_en)} poses used them (magenta), {n_links} links",
          (60, h - 35), 0.45, MAGENTA)
