"""Offline fusion scoring (no bus): PoseNet frame by frame on drives, its fixes and the drive's (noisy)
odometry through `localization.filter.PoseFilter`, raw and fused compared with the ``gps/fix`` truth.

    .venv/bin/python benchmarks/fusion_eval.py                                   # demo_city
    .venv/bin/python benchmarks/fusion_eval.py sim_data/drives/demo_city.mcap held_out.mcap --json
    .venv/bin/python benchmarks/fusion_eval.py DRIVE --no-odometry               # camera only
    .venv/bin/python benchmarks/fusion_eval.py DRIVE --hypotheses 5              # top-5 anchors as a mixture

Rows: ``posenet`` (the raw top-1 fixes), ``fused`` (the filter), ``plain-ekf`` (the same filter with no
gates and no relocalisation: what trusting every fix gives). Figures per row: median / p95 position error
over frames with an estimate, share > 20 m, share of frames whose truth lies inside the reported 95 %
ellipse, availability (fused: share of frames TRACKING; raw: share of frames with a fix), filter cost per
``handle`` call (median µs). A kidnap drive (``kidnap_stamp_ns`` in its metadata) also gets whether LOST was
reported after the jump and the time until TRACKING within 5 m (held for 1 s).

Odometry: a drive written with an ``odometry_noise`` preset (sim_data.odometry) is used as it is; an older
drive (true odometry) gets ``--odometry-noise`` (typical) applied here with the same model, seeded by the
drive. ``--hypotheses K`` (K > 1) feeds the filter the predictor's top-K hypotheses, what the node
publishes in ``GeoFix.hypotheses`` (merged modes of the anchor mixture, weights and covariances calibrated
on validation drives), with the one heading the model predicts (a place index: each hypothesis' own); the
``posenet`` row stays the
top-level fix (top anchor, moment-matched covariance).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localization.filter import FilterParams, PoseFilter, Status, plain_ekf_params  # noqa: E402
from localization.geodesy import LocalFrame  # noqa: E402
from localization.measurements import (  # noqa: E402
    ODOMETRY,
    POSENET,
    FixMeasurement,
    Hypothesis,
    OdometryMeasurement,
)

DEFAULT_DRIVES = ["sim_data/drives/demo_city.mcap"]
CHI2_2DOF_95 = 5.991


@dataclasses.dataclass
class DriveData:
    name: str
    stamps_ns: np.ndarray  # int64 [T], camera frames
    truth_en_m: np.ndarray  # [T, 2] truth at the frames, drive ENU
    odometry: list[tuple[int, float, float]]  # (stamp_ns, speed_mps, yaw_rate_radps), stamp order
    fixes: list[list[Hypothesis]]  # [T] PoseNet hypotheses per frame, drive ENU
    odometry_note: str
    kidnap_stamp_ns: int | None = None  # a kidnap scenario's jump (drive metadata)
    summary: list[Hypothesis] | None = None  # [T] the top-level fixes (the raw row); None: fixes[t][0]
    flags: list[list[str]] | None = None  # [T] the node's validity reasons per frame (empty: valid); None: all valid
    blackout_ns: tuple[int, int] | None = None  # a blackout scenario's dark interval (drive metadata)


def posenet_hypotheses(images_bgr: list[np.ndarray], frame: LocalFrame, checkpoint: str | None, k: int,
                       batch: int = 32) -> tuple[list[list[Hypothesis]], list[Hypothesis]]:
    """PoseNet on BGR frames -> (per frame its hypotheses in ``frame``'s ENU, best first; per frame the
    top-level fix). The one place that calls the model, through the predictor the node runs: k=1 is the
    top-level fix alone (top anchor, moment-matched covariance); k>1 the predictor's top-k hypotheses
    (merged modes, calibrated weights and covariances "if this one is right": GeoFix.hypotheses)."""
    import torch

    predictor = _predictor(checkpoint)
    predictor.hypotheses = k if k > 1 else 0
    out: list[list[Hypothesis]] = []
    summary: list[Hypothesis] = []
    for i in range(0, len(images_bgr), batch):
        chunk = torch.from_numpy(np.stack([predictor.prepare_bgr(im) for im in images_bgr[i:i + batch]]))
        est = predictor.predict(chunk)
        e, n, _ = frame.to_enu(est.lat_deg, est.lon_deg)
        if k > 1:
            he, hn, _ = frame.to_enu(est.hyp_lat_deg, est.hyp_lon_deg)
        for j in range(len(est)):
            top = Hypothesis(float(e[j]), float(n[j]), float(est.heading_deg[j]), est.cov_enu_m2[j],
                             float(est.heading_std_deg[j]), 1.0)
            summary.append(top)
            if k <= 1:
                out.append([top])
                continue
            present = np.flatnonzero(np.isfinite(est.hyp_east_m[j]))
            own = est.hyp_heading_deg is not None  # place hypotheses carry their own heading (as on the wire)
            out.append([Hypothesis(float(he[j, m]), float(hn[j, m]),
                                   float(est.hyp_heading_deg[j, m]) if own else top.heading_deg,
                                   est.hyp_cov_enu_m2[j, m],
                                   float(est.hyp_heading_std_deg[j, m]) if own else top.heading_std_deg,
                                   float(est.hyp_weight[j, m])) for m in present])
    return out, summary


def posenet_validity(images_bgr: list[np.ndarray], checkpoint: str | None, stamps_ns: np.ndarray | None = None,
                     batch: int = 32) -> list[list[str]]:
    """Per frame the reasons the PoseNet node's validity check flags it with (empty: valid), the frames
    seen as one stream in order, as the node sees them."""
    from perception.models.posenet.validity import FrameValidity

    predictor = _predictor(checkpoint)
    validity = FrameValidity(predictor)
    flags: list[list[str]] = []
    for i in range(0, len(images_bgr), batch):
        prepared = np.stack([predictor.prepare_bgr(im) for im in images_bgr[i:i + batch]])
        sizes = [(im.shape[1], im.shape[0]) for im in images_bgr[i:i + batch]]
        if stamps_ns is not None and "stamps_ns" in inspect.signature(validity.assess).parameters:
            # capture times, as the node passes them (the check judges repeats by time where it can)
            flags += validity.assess(prepared, sizes, stamps_ns=stamps_ns[i:i + batch])
        else:
            flags += validity.assess(prepared, sizes)
    return flags


_PREDICTORS: dict = {}


def _predictor(checkpoint: str | None):
    from perception.models import PosePredictor

    if checkpoint not in _PREDICTORS:
        _PREDICTORS[checkpoint] = PosePredictor(checkpoint, device="cpu")
    return _PREDICTORS[checkpoint]


def load_drive(path: str, *, checkpoint: str | None, hypotheses: int, odometry_noise: str,
               cache_dir: str | None = None) -> DriveData:
    """A drive's truth, odometry and PoseNet hypotheses (from ``cache_dir`` when run before on the same
    drive file, checkpoint (its model id and calibration), validity-check code, hypothesis count and noise
    preset)."""
    import hashlib
    import pickle

    cache = None
    if cache_dir:
        st = Path(path).stat()
        # the calibration too: a recalibrated checkpoint of the same name gives other hypotheses
        predictor = _predictor(checkpoint)  # the weights' id (a retrained default keeps its file name)
        calib = predictor.model_id + json.dumps(dataclasses.asdict(predictor.calibration), sort_keys=True)
        if predictor.places is not None:  # a place index gives other hypotheses (and its own calibration)
            calib += json.dumps(dataclasses.asdict(predictor.places.config), sort_keys=True)
            calib += str(len(predictor.places.bank))
        # and the validity check's code: its flags are cached too
        from perception.models.posenet import validity

        calib += hashlib.sha1(Path(validity.__file__).read_bytes()).hexdigest()
        bank = predictor.checkpoint.meta.get("validity") or {}  # and its bank (a refitted one flags others)
        calib += f"|{bank.get('threshold')}|{bank.get('bank_frames')}"
        key = f"v3|{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{checkpoint}|{calib}|{hypotheses}|{odometry_noise}"
        cache = Path(cache_dir) / f"fusion_eval_{hashlib.sha1(key.encode()).hexdigest()[:16]}.pkl"
        if cache.is_file():
            return DriveData(**pickle.loads(cache.read_bytes()))
    data = _load_drive(path, checkpoint=checkpoint, hypotheses=hypotheses, odometry_noise=odometry_noise)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(vars(data)))
    return data


def _load_drive(path: str, *, checkpoint: str | None, hypotheses: int, odometry_noise: str) -> DriveData:
    from perception.drives import DriveReader
    from sim_data.odometry import OdometryNoise

    with DriveReader(path) as drive:
        meta = drive.metadata
        frame = LocalFrame(meta.geo_origin)
        images = list(drive.images(decode=True))
        truth = list(drive.fixes())
        odo = list(drive.odometry())
        extra = meta.extra or {}
    t_stamps = np.array([f.header.stamp_ns for f in truth])
    te, tn, _ = frame.to_enu([f.lat_deg for f in truth], [f.lon_deg for f in truth])
    stamps = np.array([im.header.stamp_ns for im in images], dtype=np.int64)
    # Truth at each frame: the sim writes one fix per frame at the same stamp; interpolate otherwise.
    truth_en = np.stack([np.interp(stamps, t_stamps, te), np.interp(stamps, t_stamps, tn)], axis=1)
    if "odometry_noise" in extra:
        note = f"as recorded ({extra['odometry_noise']})"
        odometry = [(o.header.stamp_ns, o.speed_mps, o.yaw_rate_radps) for o in odo]
    else:
        note = f"true odometry + {odometry_noise} noise applied here"
        seed = [int(extra.get("city_seed", 0)), int(extra.get("route_seed", 0) or 0), 0x0D0]
        noise = OdometryNoise(odometry_noise, seed=seed)
        odometry = []
        for o in odo:
            r = noise(o.header.stamp_ns, speed_mps=o.speed_mps, yaw_rate_radps=o.yaw_rate_radps)
            odometry.append((o.header.stamp_ns, r.speed_mps, r.yaw_rate_radps))
    bgr = [im.to_bgr() for im in images]
    fixes, summary = posenet_hypotheses(bgr, frame, checkpoint, hypotheses)
    flags = posenet_validity(bgr, checkpoint, stamps)
    kidnap = extra.get("kidnap_stamp_ns")
    blackout = extra.get("blackout_stamps_ns")
    return DriveData(Path(path).name, stamps, truth_en, odometry, fixes, note, int(kidnap) if kidnap else None,
                     summary, flags, (int(blackout[0]), int(blackout[1])) if blackout else None)


def run_filter(data: DriveData, params: FilterParams, *, use_odometry: bool, hypotheses: int,
               fix_std_m: float | None, top_level_only: bool = False,
               use_flagged: frozenset[str] = frozenset()) -> dict:
    """Feed one drive through a filter in stamp order; per frame the pose after that frame's inputs.
    ``top_level_only``: each frame's top-level fix alone (what a consumer without hypotheses reads).
    A frame flagged by the validity check is skipped (as the node does) unless all its reasons are in
    ``use_flagged`` (the node's ``use_flagged`` parameter)."""
    f = PoseFilter(params)
    events = [(s, 0, ODOMETRY, OdometryMeasurement(v, w)) for s, v, w in data.odometry] if use_odometry else []
    per_frame = data.fixes
    if top_level_only:
        per_frame = [[h] for h in (data.summary or [hs[0] for hs in data.fixes])]
    for k, (s, hyps) in enumerate(zip(data.stamps_ns, per_frame, strict=True)):
        if data.flags is not None and data.flags[k] and not set(data.flags[k]) <= use_flagged:
            events.append((int(s), 1, POSENET, (k, None)))  # flagged by the validity check: the node skips it
            continue
        hyps = hyps[:hypotheses]
        if fix_std_m is not None:
            hyps = [h._replace(cov_enu_m2=np.eye(2) * fix_std_m**2) for h in hyps]
        events.append((int(s), 1, POSENET, (k, FixMeasurement(hyps))))
    events.sort(key=lambda e: (e[0], e[1]))
    err = np.full(len(data.stamps_ns), np.nan)
    err_any = np.full(len(data.stamps_ns), np.nan)
    inside = np.zeros(len(data.stamps_ns), bool)
    status = np.empty(len(data.stamps_ns), object)
    update_us, fix_us, odo_us = [], [], []
    for s, _, kind, m in events:
        k = None
        if kind == POSENET:
            k, m = m
        if m is not None:
            t0 = time.perf_counter()
            f.handle(kind, s, m)
            update_us.append((time.perf_counter() - t0) * 1e6)
            (fix_us if kind == POSENET else odo_us).append(update_us[-1])
        if k is None:
            continue
        pose = f.pose(s)
        status[k] = pose.status
        if pose.status != Status.INITIALIZING:  # any estimate, LOST included (not scored: it claims none)
            err_any[k] = float(np.hypot(*(data.truth_en_m[k] - np.array([pose.east_m, pose.north_m]))))
        if pose.valid:
            d = data.truth_en_m[k] - np.array([pose.east_m, pose.north_m])
            err[k] = float(np.hypot(*d))
            inside[k] = float(d @ np.linalg.solve(np.array(pose.cov_enu_m2).reshape(2, 2), d)) < CHI2_2DOF_95
    if f.stamp_ns is None:  # never started: no pose at all
        status[:] = Status.INITIALIZING
    out = {"err": err, "err_any": err_any, "status": status, "inside": inside, "tracking": status == Status.TRACKING,
           "relocalisations": f.relocalisations, "update_us_median": float(np.median(update_us)),
           "fix_us_median": float(np.median(fix_us)) if fix_us else float("nan"),
           "fix_us_p95": float(np.percentile(fix_us, 95)) if fix_us else float("nan"),
           "odometry_us_median": float(np.median(odo_us)) if odo_us else float("nan")}
    if data.kidnap_stamp_ns is not None:
        # Kidnap: was LOST reported, and how long until TRACKING within 5 m (and staying so for 1 s)?
        after = np.flatnonzero(data.stamps_ns >= data.kidnap_stamp_ns)
        out["kidnap_lost_reported"] = bool(np.any(status[after] == Status.LOST))
        good = (status == Status.TRACKING) & (np.nan_to_num(err, nan=np.inf) <= 5.0)
        fps = 1e9 / float(np.median(np.diff(data.stamps_ns)))
        hold = max(1, int(round(fps)))
        recovered = [k for k in after if good[k:k + hold].all() and k + hold <= len(good)]
        out["kidnap_recover_s"] = ((data.stamps_ns[recovered[0]] - data.kidnap_stamp_ns) * 1e-9 if recovered
                                   else float("nan"))
    if data.blackout_ns is not None:
        # Blackout: DEGRADED (not TRACKING, not LOST) once degraded_after_s has passed, the truth inside the
        # growing 95 % ellipse, and the error when the camera returns (the last dark frame's pose).
        a, b = data.blackout_ns
        dark = np.flatnonzero((data.stamps_ns >= a + int(params.degraded_after_s * 1e9) + 1) & (data.stamps_ns < b))
        out["blackout_degraded"] = float(np.mean(status[dark] == Status.DEGRADED)) if len(dark) else float("nan")
        out["blackout_in_95"] = float(np.mean(inside[dark])) if len(dark) else float("nan")
        last = np.flatnonzero(data.stamps_ns < b)
        out["blackout_return_err_m"] = float(err[last[-1]]) if len(last) else float("nan")
    return out


def raw_scores(data: DriveData) -> dict:
    """The top-level fixes (what a plain consumer reads) against the truth."""
    tops = data.summary if data.summary is not None else [h[0] for h in data.fixes]
    est = np.array([[h.east_m, h.north_m] for h in tops])
    err = np.hypot(*(data.truth_en_m - est).T)
    inside = np.array([float(d @ np.linalg.solve(h.cov_enu_m2, d)) < CHI2_2DOF_95
                       for d, h in zip(data.truth_en_m - est, tops, strict=True)])
    valid = np.array([not f for f in data.flags]) if data.flags is not None else np.ones(len(err), bool)
    err[~valid] = np.nan  # as `streetloc eval`: a fix flagged invalid claims no position
    return {"err": err, "inside": inside, "tracking": valid}


def posenet_bound(data: DriveData, fused: dict, window_s: float = 5.0) -> dict:
    """What PoseNet allows: the share of frames where no hypothesis of a valid fix lies within 20 m of the
    truth, and of the fused frames more than 20 m off, the share with no such hypothesis in the last
    ``window_s`` (nothing the filter could have taken: a bound, not a filter error)."""
    T = len(data.stamps_ns)
    valid = np.array([not f for f in data.flags]) if data.flags is not None else np.ones(T, bool)
    near = np.array([min(np.hypot(h.east_m - data.truth_en_m[k, 0], h.north_m - data.truth_en_m[k, 1])
                         for h in data.fixes[k]) <= 20.0 for k in range(T)]) & valid
    fps = 1e9 / float(np.median(np.diff(data.stamps_ns)))
    w = max(1, int(round(window_s * fps)))
    recent = np.array([near[max(0, k - w + 1):k + 1].any() for k in range(T)])
    off = np.nan_to_num(fused["err"], nan=0.0) > 20.0
    return {"no_hyp_within_20m": float(np.mean(~near)), "over_20m_frames": int(off.sum()),
            "over_20m_unsupported": int((off & ~recent).sum())}


def summarize(r: dict) -> dict:
    err = r["err"]
    ok = np.isfinite(err)
    e = err[ok]
    return {"median_m": float(np.median(e)) if len(e) else float("nan"),
            "p95_m": float(np.percentile(e, 95)) if len(e) else float("nan"),
            "over_20m": float(np.mean(e > 20.0)) if len(e) else float("nan"),
            "in_95_ellipse": float(np.mean(r["inside"][ok])) if len(e) else float("nan"),
            "availability": float(np.mean(r["tracking"])),
            "frames": int(len(err))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("drives", nargs="*", default=DEFAULT_DRIVES, help="drive files (default: demo_city)")
    ap.add_argument("--checkpoint", default=None, help="PoseNet checkpoint (default: the default weights)")
    ap.add_argument("--odometry-noise", default="typical", choices=("none", "typical", "poor"),
                    help="noise applied to drives that carry true odometry (typical)")
    ap.add_argument("--no-odometry", action="store_true", help="camera only")
    ap.add_argument("--hypotheses", type=int, default=1, help="hypotheses per fix (1: today's top-1 fix)")
    ap.add_argument("--fix-std-m", type=float, default=None,
                    help="replace each hypothesis's covariance by this std (m) on both axes")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a FilterParams field of the fused filter (repeatable), e.g. min_fix_std_m=2")
    ap.add_argument("--cache", metavar="DIR", default=None, help="keep PoseNet's outputs per drive here (reruns skip it)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)

    overrides = {}
    for item in args.param:
        name, _, value = item.partition("=")
        if name not in FilterParams.__dataclass_fields__ or not value:
            raise SystemExit(f"--param {item!r}: expected NAME=VALUE with NAME a FilterParams field")
        kind = type(getattr(FilterParams(), name))
        overrides[name] = kind(value)
    fused_params = FilterParams(**overrides)
    rows: dict[str, list[dict]] = {"posenet": [], "fused": [], "plain-ekf": []}
    plain = plain_ekf_params()
    notes = {}
    per_drive = {}
    for path in args.drives:
        data = load_drive(path, checkpoint=args.checkpoint, hypotheses=args.hypotheses,
                          odometry_noise=args.odometry_noise, cache_dir=args.cache)
        notes[data.name] = data.odometry_note if not args.no_odometry else "no odometry"
        results = {"posenet": raw_scores(data)}
        for name, params in (("fused", fused_params), ("plain-ekf", plain)):
            results[name] = run_filter(data, params, use_odometry=not args.no_odometry,
                                       hypotheses=args.hypotheses, fix_std_m=args.fix_std_m,
                                       top_level_only=name == "plain-ekf")
        extra_keys = ("relocalisations", "update_us_median", "fix_us_median", "fix_us_p95", "odometry_us_median", "kidnap_lost_reported", "kidnap_recover_s",
                      "blackout_degraded", "blackout_in_95", "blackout_return_err_m")
        per_drive[data.name] = {k: {**summarize(v), **{e: v[e] for e in extra_keys if e in v}}
                                for k, v in results.items()}
        per_drive[data.name]["bound"] = posenet_bound(data, results["fused"])
        for k, v in results.items():
            rows[k].append(v)
    merged = {k: summarize({f: np.concatenate([r[f] for r in v]) for f in ("err", "inside", "tracking")})
              for k, v in rows.items()}
    report = {"drives": args.drives, "odometry": notes, "hypotheses": args.hypotheses, "fix_std_m": args.fix_std_m,
              **{f"{k}.{m}": v for k, s in merged.items() for m, v in s.items()}, "per_drive": per_drive}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"hypotheses per fix: {args.hypotheses}; fix covariance: "
          f"{'PoseNet' if args.fix_std_m is None else f'{args.fix_std_m:g} m std'}")
    for name, note in notes.items():
        print(f"  {name}: odometry {note}")
    header = (f"{'':24s}{'median m':>10s}{'p95 m':>10s}{'>20 m':>8s}{'in 95%':>8s}{'avail':>8s}{'relocs':>8s}"
              f"{'us/update':>10s}")
    bounds = [t["bound"] for t in per_drive.values()]
    for name, table in [*per_drive.items(), ("all drives", None)]:
        print(f"\n{name}\n{header}")
        b = table["bound"] if table else {
            "no_hyp_within_20m": float(np.mean([x["no_hyp_within_20m"] for x in bounds])),
            **{k: sum(x[k] for x in bounds) for k in ("over_20m_frames", "over_20m_unsupported")}}
        print(f"  PoseNet bound: no valid hypothesis within 20 m on {b['no_hyp_within_20m']:.1%} of frames; of the "
              f"{b['over_20m_frames']} fused frames > 20 m off, {b['over_20m_unsupported']} had none within 20 m "
              f"in the 5 s before")
        for row in ("posenet", "fused", "plain-ekf"):
            s = table[row] if table else merged[row]
            relocs = str(s.get("relocalisations", "")) if table else ""
            cost = f"{s['update_us_median']:.0f}" if table and "update_us_median" in s else ""
            kidnap = (f"  kidnap: LOST {'reported' if s['kidnap_lost_reported'] else 'not reported'}, tracking "
                      f"within 5 m {s['kidnap_recover_s']:.1f} s after" if table and "kidnap_recover_s" in s else "")
            blackout = (f"  blackout: DEGRADED {s['blackout_degraded']:.0%}, truth in 95 % "
                        f"{s['blackout_in_95']:.0%}, {s['blackout_return_err_m']:.1f} m off when the camera returns"
                        if table and "blackout_degraded" in s else "")
            print(f"  {row:22s}{s['median_m']:10.1f}{s['p95_m']:10.1f}{s['over_20m']:8.1%}"
                  f"{s['in_95_ellipse']:8.1%}{s['availability']:8.1%}{relocs:>8s}{cost:>10s}{kidnap}{blackout}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
