"""Mutation check: break one behaviour at a time, by hand-written edits, and see whether the tests notice.

Not part of the test run (pytest collects ``test_*.py`` only). Run it from the repository root:

    python tests/mutations.py                 # every mutation, a table at the end
    python tests/mutations.py --list          # what each mutation breaks
    python tests/mutations.py -k geodesy      # only mutations whose name contains this
    python tests/mutations.py --baseline      # first check the selected tests pass unmutated

The tree (tracked and untracked, not ignored files) is copied once into a temporary folder, next to a link
to the shared data (tests find it at ../shared/data); each mutation is applied there, its tests run with
``pytest -x``, and the file is restored. A mutation is

- ``killed`` when the tests fail (what we want),
- ``SURVIVED`` when they pass: no test notices the defect,
- ``stale`` when its old text is no longer found exactly once (the code moved: update the mutation),
- ``error`` when pytest could not run the tests (collection error, no tests selected),
- ``no baseline`` (with ``--baseline``) when its tests do not pass on the unmutated tree.

The exit status is 0 only when every mutation was killed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__test__ = False  # not a test module, whatever pytest is pointed at

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (found exactly once) by ``new`` in ``file`` (relative to the repository root)."""

    file: str
    old: str
    new: str


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]  # pytest arguments: files, ``file::test``, ``-k EXPR``


def mutation(name: str, description: str, edits: list[tuple[str, str, str]], tests: list[str]) -> Mutation:
    return Mutation(name, description, tuple(Edit(*e) for e in edits), tuple(tests))


MUTATIONS: list[Mutation] = [
    # -- geodesy -------------------------------------------------------------------------------------
    mutation(
        "geodesy-swap-east-north",
        "east and north swapped consistently in to_enu and to_geodetic (round trips still pass)",
        [("localization/geodesy.py", "        return np.asarray(e), np.asarray(n), np.asarray(u)",
          "        return np.asarray(n), np.asarray(e), np.asarray(u)"),
         ("localization/geodesy.py", "self._pipeline.transform(e, n, u, direction=",
          "self._pipeline.transform(n, e, u, direction=")],
        ["tests/localization/test_geodesy.py"]),
    mutation(
        "geodesy-default-height-zero",
        "to_enu puts points without altitude at 0 m instead of the origin's height",
        [("localization/geodesy.py", "np.full_like(lat, self.origin.alt_m) if alt_m is None",
          "np.zeros_like(lat) if alt_m is None")],
        ["tests/localization/test_geodesy.py"]),
    # -- launcher ------------------------------------------------------------------------------------
    mutation(
        "respawn-on-failure-after-clean-exit",
        "respawn on-failure also restarts a node that exited cleanly",
        [("nodes/launcher/supervisor.py", "        return exit_code != 0\n", "        return True\n")],
        ["tests/nodes/test_launcher.py", "-k", "respawn or required"]),
    mutation(
        "respawn-no-backoff",
        "no exponential backoff: every restart waits respawn_delay_s",
        [("nodes/launcher/supervisor.py", "    growth = entry.respawn_backoff ** max(0, exits_in_window - 1)\n",
          "    growth = 1.0\n")],
        ["tests/nodes/test_launcher.py", "-k", "backs_off or crash_loop"]),
    mutation(
        "respawn-no-cap",
        "the backoff delay is not capped at respawn_max_delay_s",
        [("nodes/launcher/supervisor.py", "    return min(entry.respawn_max_delay_s, entry.respawn_delay_s * growth)",
          "    return entry.respawn_delay_s * growth")],
        ["tests/nodes/test_launcher.py", "-k", "backs_off"]),
    # -- layering ------------------------------------------------------------------------------------
    mutation(
        "layering-dunder-import",
        "__import__('zmq') at import time in localization/",
        [("localization/geodesy.py", "import pyproj\n", "import pyproj\n\n_bus = __import__('zmq')\n")],
        ["tests/test_layering.py", "-k", "importing_every"]),  # the sys.modules check alone
    mutation(
        "layering-importlib",
        "importlib.import_module('nodes.bus') at import time in perception/",
        [("perception/drives/track.py", "import pyproj\n",
          "import pyproj\n\nimportlib.import_module('nodes.bus')\n"),
         ("perception/drives/track.py", "from dataclasses import", "import importlib\nfrom dataclasses import")],
        ["tests/test_layering.py", "-k", "importing_every"]),
    mutation(
        "layering-lazy-import",
        "import zmq inside a function body of localization/ (runs only when called)",
        [("localization/nmea.py", '    """Read an NMEA log file into fixes (see `parse_nmea_fixes`); errors name ``path:line``."""\n',
          '    """Read an NMEA log file into fixes (see `parse_nmea_fixes`); errors name ``path:line``."""\n'
          "    import zmq  # noqa: F401\n")],
        ["tests/test_layering.py", "-k", "lazily"]),  # the source check
    # -- benchmarks ----------------------------------------------------------------------------------
    mutation(
        "bus-bench-ratio-inverted",
        "the bus benchmark's throughput ratio is bare/streetloc instead of streetloc/bare",
        [("benchmarks/bus_bench.py", 'tp_ratios.append(round_rate["streetloc"] / round_rate["bare pyzmq"])',
          'tp_ratios.append(round_rate["bare pyzmq"] / round_rate["streetloc"])')],
        ["tests/benchmarks/test_bus_benchmarks.py", "-k", "bus_bench"]),
    mutation(
        "bus-isolate-ratio-inverted",
        "bus_isolate's ratios are bare/combination instead of combination/bare (bare/bare still prints 1.00)",
        [("benchmarks/bus_isolate.py", 'ratios[combo].append(rates[combo] / rates[("bare", "bare")])',
          'ratios[combo].append(rates[("bare", "bare")] / rates[combo])')],
        ["tests/benchmarks/test_bus_benchmarks.py", "-k", "isolate"]),
    mutation(
        "bus-bench-pin-calling-thread-only",
        "--pin pins only the calling thread (the ZeroMQ I/O thread runs anywhere)",
        [("benchmarks/bus_bench.py", "            os.sched_setaffinity(tid, cpus)", "            os.sched_setaffinity(0, cpus)")],
        ["tests/benchmarks/test_bus_benchmarks.py", "-k", "pin"]),
    # -- demo and the bus ----------------------------------------------------------------------------
    mutation(
        "demo-scores-the-drive-not-the-run",
        "the demo scores the drive's own GPS as if it were the fixes (every error 0)",
        [("nodes/commands/demo.py", "scores = score_run(str(run_path), str(drive),",
          "scores = score_run(str(drive), str(drive),")],
        ["tests/nodes/commands/test_demo.py", "-k", "whole_graph"]),
    mutation(
        "latency-last-tick-pose-not-first",
        "the latency of posenet -> fusion is taken from the last pose repeating a fix's chain, not the first",
        [("nodes/latency.py", "if key not in table or down.pub_ns < table[key].pub_ns:",
          "if key not in table or down.pub_ns > table[key].pub_ns:")],
        ["tests/nodes/commands/test_demo_latency.py"]),
    mutation(
        "latency-joined-chains-not-split",
        "a joined trace is read as one chain (detector -> replay -> posenet -> fusion)",
        [("nodes/latency.py", "if hop.node == source or not chains:", "if not chains:")],
        ["tests/nodes/commands/test_demo_latency.py"]),
    mutation(
        "test-pattern-without-frame-stripe",
        "the test-pattern camera stops writing its frame number (pixels on the wire change)",
        [("nodes/test_pattern.py", "        img[:4, : 16 * cell] = np.repeat(bits * 255, cell)[:, None].astype(np.uint8)\n",
          "")],
        ["tests/nodes/bus/test_pubsub.py", "-k", "two_processes"]),
    # -- NMEA and GPX --------------------------------------------------------------------------------
    mutation(
        "nmea-writer-always-north",
        "the GGA/RMC writer writes every latitude as north",
        [("localization/nmea.py", '_format_coordinate(lat_deg, 2, decimals), "N" if lat_deg >= 0.0 else "S",',
          '_format_coordinate(lat_deg, 2, decimals), "N",')],
        ["tests/localization/test_nmea.py"]),
    mutation(
        "nmea-any-hemisphere",
        "an unknown hemisphere letter is read (as pynmea2 does, as 0 degrees) instead of refused",
        [("localization/nmea.py", "    if hemisphere not in (positive, negative):\n", "    if False:\n")],
        ["tests/localization/test_nmea.py"]),
    mutation(
        "gpx-time-zone-ignored",
        "GPX times with a zone offset read as if they were UTC",
        [("perception/drives/trackio.py", "seconds = calendar.timegm(moment.utctimetuple())",
          "seconds = calendar.timegm(moment.timetuple())")],
        ["tests/perception/drives/test_gpx.py"]),
]


# -- models area: evaluation figures, segmenter IoU, the training loop ---------
MODELS_TESTS = {
    "unsorted-median": ["tests/perception/test_posenet.py", "-k", "summary_of_known_errors or position_error_is"],
    "position-error": ["tests/perception/test_posenet.py", "-k", "position_error_is_the_horizontal"],
    "summary": ["tests/perception/test_posenet.py", "-k", "summary_of_known_errors"],
    "iou": ["tests/perception/test_segmenter.py", "-k", "iou_from"],
    "segmenter-cli": ["tests/perception/test_segmenter.py", "-k", "train_and_evaluate_through_the_cli"],
    "best-epoch": ["tests/perception/test_training.py", "-k", "loss_goes_down"],
    "data-order": ["tests/perception/test_training.py", "-k", "data_order"],
    "warm-up": ["tests/perception/test_training.py", "-k", "lr_warms_up"],
    "resume": ["tests/perception/test_training.py", "-k", "resume_continues"],
}
MUTATIONS += [
    mutation(f"models-{name}", description, [(file, old, new)], MODELS_TESTS[tests])
    for name, tests, (file, old, new, description) in [
        ("median-unsorted", "unsorted-median", ("localization/metrics.py", "float(np.median(v))",
         "float(v[len(v) // 2])", "median of errors taken as the middle element of the unsorted list")),
        ("error-east-only", "position-error", ("localization/metrics.py",
         "np.hypot(err[:, 0], err[:, 1])", "np.abs(err[:, 0])", "position error computed from east only")),
        ("p95-is-p90", "summary", ("localization/metrics.py", "float(np.percentile(v, 95))",
         "float(np.percentile(v, 90))", "p95 figure is really the 90th percentile")),
        ("iou-not-union", "iou", ("perception/models/segmenter/evaluation.py", "union = cm.sum(0) + cm.sum(1) - tp",
         "union = cm.sum(0) + cm.sum(1)", "IoU divides by TP+FP+FN+TP (a Dice-like figure), not the union")),
        ("miou-absent-classes", "iou", ("perception/models/segmenter/evaluation.py", "float(np.nanmean(iou))",
         "float(np.mean(np.nan_to_num(iou)))", "mIoU counts classes in neither truth nor prediction as IoU 0")),
        ("worst-epoch-exported", "best-epoch", ("perception/training.py", "improved = value <= best_value",
         "improved = value >= best_value", "the exported model is the worst epoch, not the best")),
        ("max-monitor-picks-lowest", "segmenter-cli", ("perception/training.py",
         'sign = -1.0 if getattr(task, "monitor_mode", "min") == "max" else 1.0', "sign = 1.0",
         "a higher-is-better monitor (mIoU) picks its lowest epoch")),
        ("same-order-every-epoch", "data-order", ("perception/training.py", "        sampler.set_epoch(epoch)\n", "",
         "every epoch sees the data in the same order")),
        ("no-warm-up", "warm-up", ("perception/training.py", "start_factor=1.0 / warmup_steps", "start_factor=1.0",
         "no learning-rate warm-up")),
        ("resume-restarts-schedule", "resume", ("perception/training.py",
         '        scheduler.load_state_dict(state["scheduler"])\n', "        pass\n",  # the line is an if's body now
         "--resume restarts the learning-rate schedule")),
    ]
]


def tree_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                         capture_output=True).stdout
    return [name for name in out.decode().split("\0") if name and (root / name).is_file()]


def copy_tree(root: Path, dest: Path) -> None:
    for name in tree_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)


def apply(tree: Path, m: Mutation) -> dict[str, str] | str:
    """Apply ``m``'s edits in ``tree``; the original texts by file, or why it cannot be applied."""
    originals: dict[str, str] = {}
    texts: dict[str, str] = {}
    for edit in m.edits:
        path = tree / edit.file
        if not path.is_file():
            return f"{edit.file} does not exist"
        text = texts.get(edit.file) or path.read_text()
        originals.setdefault(edit.file, text)
        if text.count(edit.old) != 1:
            return f"{edit.file}: old text found {text.count(edit.old)} times: {edit.old.strip()[:60]!r}"
        texts[edit.file] = text.replace(edit.old, edit.new)
    for file, text in texts.items():
        (tree / file).write_text(text)
    return originals


def applies(tree: Path, m: Mutation) -> bool:
    return all((tree / e.file).is_file() and (tree / e.file).read_text().count(e.old) == 1 for e in m.edits)


def run_tests(tree: Path, args: tuple[str, ...], timeout_s: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return 1, f"timed out after {timeout_s:g} s (counted as noticed: the tests hang)"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, lines[-1] if lines else proc.stderr.strip()[-200:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only mutations whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--baseline", action="store_true", help="first run each mutation's tests unmutated")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to mutate (default: this one)")
    args = parser.parse_args(argv)
    selected = [m for m in MUTATIONS if args.k in m.name]
    if args.list:
        for m in selected:
            print(f"{m.name}: {m.description}\n    {', '.join(sorted({e.file for e in m.edits}))} -> "
                  f"pytest {' '.join(m.tests)}")
        return 0
    rows: list[tuple[str, str, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="streetloc-mutations-") as tmp:
        tree = Path(tmp) / "repo"
        copy_tree(args.tree.resolve(), tree)
        shared = args.tree.resolve().parent / "shared"
        if shared.exists():
            os.symlink(shared, Path(tmp) / "shared")  # tests read ../shared/data
        baseline_failures: dict[tuple[str, ...], str] = {}
        if args.baseline:  # the tests of every mutation that applies to this tree, unmutated
            for tests in dict.fromkeys(m.tests for m in selected if applies(tree, m)):
                code, summary = run_tests(tree, tests, args.timeout)
                if code != 0:
                    baseline_failures[tests] = summary
        for m in selected:
            t0 = time.monotonic()
            originals = apply(tree, m)
            if m.tests in baseline_failures:
                for file, text in ({} if isinstance(originals, str) else originals).items():
                    (tree / file).write_text(text)
                rows.append((m.name, "no baseline", f"unmutated: {baseline_failures[m.tests]}", 0.0))
            elif isinstance(originals, str):
                rows.append((m.name, "stale", originals, 0.0))
            else:
                try:
                    code, summary = run_tests(tree, m.tests, args.timeout)
                finally:
                    for file, text in originals.items():
                        (tree / file).write_text(text)
                result = {0: "SURVIVED", 1: "killed"}.get(code, "error")
                rows.append((m.name, result, summary, time.monotonic() - t0))
            print(f"{rows[-1][1]:8s} {m.name}: {rows[-1][2]}", flush=True)
    print()
    print("| mutation | what it breaks | result | tests (pytest's last line) |")
    print("|---|---|---|---|")
    by_name = {m.name: m for m in MUTATIONS}
    for name, result, summary, seconds in rows:
        print(f"| {name} | {by_name[name].description} | **{result}** | {summary} ({seconds:.0f} s) |")
    bad = [r for r in rows if r[1] != "killed"]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} mutations killed")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
