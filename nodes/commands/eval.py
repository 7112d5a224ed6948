"""``streetloc eval RUN.mcap [--drive DRIVE] [--json] [--plot OUT.png]``: how good were the poses of a run?

Compares what a graph published during a replay (``localization/pose``, the fused track, and
``posenet/fix``, the raw fixes) with the drive's ``gps/fix`` ground truth. RUN.mcap is made with

    streetloc replay DRIVE --lockstep --launch launch/replay.toml --record RUN.mcap

Truth: RUN's own ``gps/fix`` (the replay publishes it), else ``--drive``'s. ``--drive`` also gives the ENU
frame and a kidnap scenario's jump (``kidnap_stamp_ns`` in its metadata); without it jumps of the truth
over ``JUMP_M`` between two samples count as kidnaps.

Figures (JSON keys ``fused.median_m``, ``posenet.p95_m``, ...):

* ``fused``: every pose of the run (the 20 Hz stream and the per-fix poses), so shares are shares of time;
  ``fused_at_fixes``: the poses at the fixes' stamps, the same instants as ``posenet`` (per frame);
  ``posenet``: the raw top fix of each frame, as PoseNet published it.
* ``median_m``, ``mean_m``, ``p95_m``, ``max_m``: position error over the samples that claim a position
  (a pose with ``valid``, a fix with ``valid``); ``heading_median_deg``/``heading_p95_deg``;
* ``over_20m``: share of those samples more than 20 m from the truth (a look-alike street);
* ``in_95_ellipse``: share of them whose truth lies inside the reported 95 % ellipse (0.90-0.99 is honest);
* ``availability``: share of all samples TRACKING (fused) or valid (raw);
* ``first_fix_s``: from the first sample to the first TRACKING pose (raw: the first valid fix);
* per kidnap: ``lost_reported`` and ``recover_s``, the time until TRACKING within 5 m held for 1 s.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import numpy as np

from localization.geodesy import GeoOrigin, LocalFrame, heading_difference_deg
from perception.drives.topics import GPS_TOPIC, POSE_TOPIC, POSENET_TOPIC

CHI2_2DOF_95 = 5.991  # 95 % quantile of chi-square with 2 dof: the 95 % error ellipse
OFF_M = 20.0  # "on the wrong street"
RECOVER_M = 5.0  # re-localised: TRACKING within this ...
RECOVER_HOLD_S = 1.0  # ... for this long
JUMP_M = 50.0  # truth moving this far between two samples (<= 1 s apart): a kidnap


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="score a recorded run's poses and raw fixes against the GPS truth",
                              description="Score a recorded run's fused poses (localization/pose) and raw "
                                          "PoseNet fixes (posenet/fix) against the drive's gps/fix truth.",
                              epilog="Make RUN.mcap: streetloc replay DRIVE --lockstep --launch launch/replay.toml "
                                     "--record RUN.mcap (docs/fusion.md).")
    p.add_argument("run", help="the run's recording (.mcap): localization/pose, posenet/fix, gps/fix")
    p.add_argument("--drive", help="the replayed drive: truth when the run has no gps/fix, ENU frame, kidnap")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="draw the tracks (with 95 %% ellipses) and errors over time")
    p.add_argument("--map", metavar="MAP.geojson",
                   help="with --plot: draw the landmark map and each pose's landmark associations on it "
                        "(docs/landmarks.md); without it poses that used landmarks are marked")
    p.set_defaults(func=run)


@dataclass
class Track:
    """Samples of one source in the ENU frame: stamps [N] ns, en_m [N, 2], cov [N, 2, 2], heading [N] deg
    (NaN: none), valid [N], status [N] (str)."""

    stamps_ns: np.ndarray
    en_m: np.ndarray
    cov: np.ndarray
    heading_deg: np.ndarray
    valid: np.ndarray
    status: np.ndarray

    @classmethod
    def of(cls, records: list, frame: LocalFrame, *, status: str | None = None) -> Track:
        if not records:
            z = np.zeros(0)
            return cls(z.astype(np.int64), np.zeros((0, 2)), np.zeros((0, 2, 2)), z, z.astype(bool), z.astype(object))
        lat = np.array([r.lat_deg for r in records], float)
        lon = np.array([r.lon_deg for r in records], float)
        e, n, _ = frame.to_enu(lat, lon)
        heading = np.array([np.nan if r.heading_deg is None else r.heading_deg for r in records], float)
        if status is None:  # a pose without a heading has heading_std 180
            heading[np.array([r.heading_std_deg >= 180.0 for r in records])] = np.nan
        return cls(np.array([r.header.stamp_ns for r in records], np.int64), np.stack([e, n], axis=1),
                   np.array([r.cov_enu_m2 for r in records], float).reshape(-1, 2, 2), heading,
                   np.array([r.valid and bool(np.isfinite(r.lat_deg)) for r in records], bool),
                   np.array([status or r.status for r in records], object))


def _dedupe(records: list) -> list:
    """One record per stamp (the last published), in stamp order."""
    by_stamp = {r.header.stamp_ns: r for r in records}
    return [by_stamp[s] for s in sorted(by_stamp)]


def load(run_path: str, drive_path: str | None) -> tuple[dict[str, Track], Track, list[int], LocalFrame]:
    """(tracks by name, truth, kidnap stamps, frame) of a run."""
    from perception.drives import DriveReader

    with DriveReader(run_path) as run_drive:
        topics = set(run_drive.topics)
        poses = _dedupe(list(run_drive.fixes(POSE_TOPIC))) if POSE_TOPIC in topics else []
        fixes = _dedupe(list(run_drive.fixes(POSENET_TOPIC))) if POSENET_TOPIC in topics else []
        truth = list(run_drive.fixes(GPS_TOPIC)) if GPS_TOPIC in topics else []
        origin = run_drive.metadata.geo_origin
    kidnaps: list[int] = []
    if drive_path:
        with DriveReader(drive_path) as drive:
            origin = drive.metadata.geo_origin or origin
            if not truth:
                truth = list(drive.fixes(GPS_TOPIC))
            stamp = (drive.metadata.extra or {}).get("kidnap_stamp_ns")
            if stamp:
                kidnaps.append(int(stamp))
    if not truth:
        raise ValueError(f"{run_path}: no {GPS_TOPIC} truth in the run{'' if drive_path else ' (give --drive DRIVE)'}")
    if not poses and not fixes:
        raise ValueError(f"{run_path}: neither {POSE_TOPIC} nor {POSENET_TOPIC} was recorded")
    truth = _dedupe(truth)
    if origin is None:
        origin = GeoOrigin(truth[0].lat_deg, truth[0].lon_deg)
    frame = LocalFrame(origin)
    truth_track = Track.of(truth, frame, status="truth")
    if not kidnaps:
        step = np.hypot(*np.diff(truth_track.en_m, axis=0).T)
        dt_s = np.diff(truth_track.stamps_ns) * 1e-9
        kidnaps = [int(truth_track.stamps_ns[k + 1]) for k in np.flatnonzero((step > JUMP_M) & (dt_s <= 1.0))]
    tracks = {"fused": Track.of(poses, frame), "posenet": Track.of(fixes, frame, status="fix")}
    if poses and fixes:
        at = np.isin(tracks["fused"].stamps_ns, tracks["posenet"].stamps_ns)
        tracks["fused_at_fixes"] = Track(*(getattr(tracks["fused"], f)[at] for f in Track.__dataclass_fields__))
    return {k: v for k, v in tracks.items() if len(v.stamps_ns)}, truth_track, kidnaps, frame


def truth_at(truth: Track, stamps_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Truth ENU [N, 2] and heading [N] at ``stamps_ns`` (linear between samples); NaN outside the truth's
    span and inside a jump of the truth (a kidnap: no place to interpolate)."""
    t = truth.stamps_ns
    en = np.stack([np.interp(stamps_ns, t, truth.en_m[:, i]) for i in range(2)], axis=1)
    k = np.clip(np.searchsorted(t, stamps_ns, side="right") - 1, 0, len(t) - 1)
    heading = truth.heading_deg[k]
    outside = (stamps_ns < t[0]) | (stamps_ns > t[-1])
    nxt = np.clip(k + 1, 0, len(t) - 1)
    jump = (np.hypot(*(truth.en_m[nxt] - truth.en_m[k]).T) > JUMP_M) & (stamps_ns != t[k])
    en[outside | jump] = np.nan
    return en, heading


def score(track: Track, truth: Track, kidnaps: list[int], *, fused: bool) -> tuple[dict, np.ndarray]:
    """The figures of one track (see the module docstring) and its per-sample error (NaN: no claim)."""
    truth_en, truth_heading = truth_at(truth, track.stamps_ns)
    known = ~np.isnan(truth_en[:, 0])
    claim = track.valid & known
    d = truth_en - track.en_m
    err = np.where(claim, np.hypot(d[:, 0], d[:, 1]), np.nan)
    inside = np.zeros(len(err), bool)
    for k in np.flatnonzero(claim):
        cov = track.cov[k]
        if np.all(np.isfinite(cov)) and np.linalg.det(cov) > 0:
            inside[k] = float(d[k] @ np.linalg.solve(cov, d[k])) <= CHI2_2DOF_95
    good = track.status == "tracking" if fused else track.valid
    e = err[claim]
    heading_err = np.abs(heading_difference_deg(track.heading_deg, truth_heading))[claim]
    heading_err = heading_err[np.isfinite(heading_err)]
    first = np.flatnonzero(good)
    out = {
        "samples": int(len(err)),
        "median_m": _f(np.median(e)) if len(e) else None,
        "mean_m": _f(np.mean(e)) if len(e) else None,
        "p95_m": _f(np.percentile(e, 95)) if len(e) else None,
        "max_m": _f(np.max(e)) if len(e) else None,
        "over_20m": _f(np.mean(e > OFF_M)) if len(e) else None,
        "in_95_ellipse": _f(np.mean(inside[claim])) if len(e) else None,
        "availability": _f(np.mean(good[known])) if known.any() else None,
        "heading_median_deg": _f(np.median(heading_err)) if len(heading_err) else None,
        "heading_p95_deg": _f(np.percentile(heading_err, 95)) if len(heading_err) else None,
        "first_fix_s": _f((track.stamps_ns[first[0]] - track.stamps_ns[0]) * 1e-9) if len(first) else None,
    }
    if kidnaps:
        out["kidnaps"] = [_kidnap(track, err, good, k) for k in kidnaps]
    return out, err


def _kidnap(track: Track, err: np.ndarray, good: np.ndarray, stamp_ns: int) -> dict:
    after = np.flatnonzero(track.stamps_ns >= stamp_ns)
    ok = good & (np.nan_to_num(err, nan=np.inf) <= RECOVER_M)
    recover = None
    for k in after:
        hold = (track.stamps_ns >= track.stamps_ns[k]) & (track.stamps_ns < track.stamps_ns[k] + RECOVER_HOLD_S * 1e9)
        if track.stamps_ns[-1] - track.stamps_ns[k] >= RECOVER_HOLD_S * 1e9 and ok[hold].all():
            recover = (track.stamps_ns[k] - stamp_ns) * 1e-9
            break
    return {"stamp_ns": int(stamp_ns), "lost_reported": bool(np.any(track.status[after] == "lost")),
            "recover_s": _f(recover) if recover is not None else None}


def _f(x) -> float:
    return round(float(x), 4)


def evaluate(run_path: str, drive_path: str | None = None) -> dict:
    """All the figures of a run: ``{"fused": {...}, "fused_at_fixes": {...}, "posenet": {...}}``."""
    tracks, truth, kidnaps, _ = load(run_path, drive_path)
    return {name: score(tr, truth, kidnaps, fused=name != "posenet")[0] for name, tr in tracks.items()}


def score_run(run_path: str, drive_path: str | None = None, *, plot: str | None = None,
              title: str | None = None, map_path: str | None = None) -> dict:
    """`evaluate`, and with ``plot`` the picture (`nodes.commands.eval_plot`, landmark associations marked
    with ``map_path``) written there: the one scoring of a run, for ``streetloc eval`` and ``streetloc demo``."""
    tracks, truth, kidnaps, frame = load(run_path, drive_path)
    results, errors = {}, {}
    for name, tr in tracks.items():
        results[name], errors[name] = score(tr, truth, kidnaps, fused=name != "posenet")
    if plot:
        from nodes.commands.eval_plot import draw, fix_marks, landmark_marks

        draw(plot, tracks, truth, errors, title=title or run_path,
             landmarks=landmark_marks(run_path, map_path, frame), marks=fix_marks(run_path))
    return results


def run(args: argparse.Namespace) -> int:
    results = score_run(args.run, args.drive, plot=args.plot, map_path=args.map)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(table(results))
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def table(results: dict) -> str:
    """The figures as a text table, one row per track."""
    cols = [("median_m", "median m", "{:.1f}"), ("p95_m", "p95 m", "{:.1f}"), ("max_m", "max m", "{:.0f}"),
            ("over_20m", ">20 m", "{:.1%}"), ("in_95_ellipse", "in 95%", "{:.1%}"),
            ("availability", "avail", "{:.1%}"), ("heading_median_deg", "hdg med", "{:.1f}"),
            ("first_fix_s", "1st fix s", "{:.1f}")]
    lines = [f"{'':16s}" + "".join(f"{h:>10s}" for _, h, _ in cols)]
    for name, s in results.items():
        cells = ["" if s.get(k) is None else fmt.format(s[k]) for k, _, fmt in cols]
        lines.append(f"{name:16s}" + "".join(f"{c:>10s}" for c in cells))
        for kid in s.get("kidnaps", []):
            rec = "never" if kid["recover_s"] is None else f"{kid['recover_s']:.1f} s"
            lines.append(f"{'':16s}kidnap: LOST {'reported' if kid['lost_reported'] else 'not reported'}, "
                         f"tracking within {RECOVER_M:g} m after {rec}")
    return "\n".join(lines)

