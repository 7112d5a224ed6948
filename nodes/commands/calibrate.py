"""``streetloc calibrate posenet --model CKPT --data VAL_DRIVE... -o OUT``: fit a checkpoint's hypothesis
calibration (softmax temperature of the weights, covariance scale) on validation drives and write the
checkpoint with it in ``meta.calibration.hypotheses``. No training: the weights stay as they are (the
model id too). Calibrate on drives the model was neither trained on nor will be scored on.

``--places-data TRAIN_DRIVE...`` instead gives the checkpoint a place index (the training views with
their poses, `perception.models.posenet.places`), calibrated on ``--data``."""

from __future__ import annotations

import argparse
import json

from nodes.commands import OneLineErrorParser


def _run(args: argparse.Namespace) -> int:
    from perception.models.posenet.evaluation import calibrate, index_places

    try:
        if args.places_data:
            record = index_places(args.model, args.places_data, args.data, args.output, k=args.hypotheses,
                                  device=args.device, cache_dir=args.cache_dir)
        else:
            record = calibrate(args.model, args.data, args.output, k=args.hypotheses, radius_m=args.radius_m,
                               merge_m=args.merge_m, device=args.device, cache_dir=args.cache_dir)
    except (ValueError, FileNotFoundError) as exc:
        print(f"streetloc calibrate posenet: {exc}")
        return 2
    if args.json:
        print(json.dumps(record, indent=1))
        return 0
    if args.places_data:
        c, cal = record["config"], record["calibration"]
        b, a = cal["before"], cal["after"]
        print(f"wrote {args.output}: place index of {record['bank_frames']} frames from {len(record['sources'])} "
              f"drives, calibrated on {cal['frames']} frames of {', '.join(cal['fitted_on'])}")
        print(f"  temperature {c['temperature']:g}, weight scale {c['weight_scale']:g}; 1-sigma {c['along_std_m']:.2f} "
              f"m along, {c['across_std_m']:.2f} m across, heading {c['heading_std_deg']:.2f} deg")
        tail = f"; top-{args.hypotheses} within 10 m {a['topk_recall_10m']:.1%}"
    else:
        b, a = record["before"], record["after"]
        print(f"wrote {args.output}: hypotheses calibrated on {record['frames']} frames of "
              f"{', '.join(record['fitted_on'])}")
        print(f"  temperature {record['temperature']:.3f}, covariance scale {record['cov_scale']:.3f} (right = nearest "
              f"hypothesis within {record['radius_m']:g} m; modes merged within {record['merge_m']:g} m)")
        tail = ""
    print(f"  weight ECE {b['hypothesis_weight_ece']:.3f} -> {a['hypothesis_weight_ece']:.3f}; right hypothesis' "
          f"95% ellipse coverage {b['right_hypothesis_within_95_ellipse']:.1%} -> "
          f"{a['right_hypothesis_within_95_ellipse']:.1%}{tail} (on these drives; score on others)")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "calibrate", help="fit a checkpoint's uncertainty on validation drives (no training)",
        description="Fit the uncertainty figures of a checkpoint on validation drives and store them in it.")
    models = parser.add_subparsers(dest="model_name", metavar="MODEL", parser_class=OneLineErrorParser)
    p = models.add_parser("posenet", help="hypothesis weights (temperature) and covariances (scale)")
    p.add_argument("--model", default=None, metavar="CKPT",
                   help="checkpoint file or registered weights name (default: the shipped default)")
    p.add_argument("--data", nargs="+", required=True, metavar="DRIVE",
                   help="validation drives (not trained on, not scored on); DRIVE@START:STOP:STEP for a slice")
    p.add_argument("-o", "--output", required=True, metavar="CKPT", help="checkpoint to write (may be --model's file)")
    p.add_argument("--places-data", nargs="+", default=None, metavar="DRIVE",
                   help="build a place index from these drives (the training drives, DRIVE@::2 to thin) and "
                        "calibrate it on --data: the hypotheses then come from the most alike training "
                        "views (docs/posenet.md, 'Place recognition')")
    p.add_argument("--hypotheses", type=int, default=5, metavar="K", help="hypotheses per image (5)")
    p.add_argument("--radius-m", type=float, default=10.0, help="a hypothesis is right within this of the truth (10)")
    p.add_argument("--merge-m", type=float, default=5.0, help="modes closer than this merge (5)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--cache-dir", default=None, help="frame cache folder")
    p.add_argument("--json", action="store_true", help="print the fitted record as JSON")
    p.set_defaults(func=_run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
