"""Your own geotagged photos -> a drive -> a PoseNet trained on part of it -> scored on the rest
(docs/own_data.md), on a few photos made here; and the importer's handling of what real photos bring
(the Lund walk: Mapillary tags, photos in a sub-folder, noisy GPS)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodes.cli import main
from perception.drives import DriveReader
from perception.drives.topics import POSE_TOPIC, POSENET_TOPIC

REPO = Path(__file__).resolve().parents[3]
LUND = REPO.parent / "shared" / "data" / "lund" / "images"
START = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=dt.UTC)
# Uppsala: ~540 km from the synthetic city's origin, so a model that kept that origin would be far off
LAT0_DEG, LON0_DEG = 59.8586, 17.6389
STEP_M = 6.0
M_PER_DEG_LAT = 111_320.0


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    return (float(d), float(m), round(((value - d) * 60 - m) * 60, 4))


def write_photo(path: Path, *, lat_deg: float, lon_deg: float, when: dt.datetime, seed: int,
                size: tuple[int, int] = (128, 96), description: str | None = None) -> None:
    """A JPEG with EXIF GPS position, GPS date/time (UTC) and a picture of its own (so that a model has
    something to tell the places apart by)."""
    rng = np.random.default_rng(seed)
    pixels = np.kron(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), np.ones((size[1] // 6, size[0] // 8, 1), np.uint8))
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", _dms(lat_deg)
    gps[3], gps[4] = "E", _dms(lon_deg)
    gps[29] = when.strftime("%Y:%m:%d")
    gps[7] = (float(when.hour), float(when.minute), float(when.second))
    if description is not None:
        exif[0x010E] = description
    Image.fromarray(pixels).save(path, exif=exif, quality=90)


def photo_walk(folder: Path, n: int = 8) -> list[tuple[float, float]]:
    """``n`` photos ``STEP_M`` apart walking north, 5 s apart, named in reverse time order (the import
    must order them by their EXIF time, not their names)."""
    folder.mkdir(parents=True)
    positions = []
    for i in range(n):
        lat = LAT0_DEG + i * STEP_M / M_PER_DEG_LAT
        positions.append((lat, LON0_DEG))
        write_photo(folder / f"IMG_{n - i:04d}.jpg", lat_deg=lat, lon_deg=LON0_DEG,
                    when=START + dt.timedelta(seconds=5 * i), seed=i)
    return positions


def test_own_photos_import_train_evaluate(tmp_path, capsys):
    """The documented path: import all photos and the held-out stretch, train on the rest (1 tiny epoch),
    score the held-out stretch. The model's local frame comes from the photos, not the synthetic city."""
    positions = photo_walk(tmp_path / "photos")
    walk, held = tmp_path / "walk.mcap", tmp_path / "walk_heldout.mcap"
    assert main(["import", "photos", str(tmp_path / "photos"), "--max-width", "64", "-o", str(walk)]) == 0
    assert main(["import", "photos", str(tmp_path / "photos"), "--max-width", "64", "--frames", "3:5",
                 "-o", str(held)]) == 0
    assert "kept photos 3:5: 2 of 8, IMG_0005.jpg .. IMG_0004.jpg" in capsys.readouterr().out
    with DriveReader(held) as drive:
        fixes = list(drive.fixes())
    assert [f.lat_deg for f in fixes] == pytest.approx([positions[3][0], positions[4][0]], abs=1e-6)
    assert all(f.heading_deg == pytest.approx(0.0, abs=1.0) or f.heading_deg == pytest.approx(360.0, abs=1.0)
               for f in fixes)  # walking north, from the whole walk's track

    out = tmp_path / "model"
    assert main(["train", "posenet", "--data", f"{walk}@:3", f"{walk}@5:", "--epochs", "1", "--batch-size", "6",
                 "--input-size", "32x24", "--anchors", "4", "--hidden", "16", "--threads", "1", "--quiet",
                 "--device", "cpu", "--out", str(out)]) == 0
    capsys.readouterr()
    from perception.models import Checkpoint

    ckpt = Checkpoint.load(out / "model.pt")
    origin = ckpt.meta["geo_origin"]
    assert (origin["lat_deg"], origin["lon_deg"]) == pytest.approx(positions[0], abs=1e-6)  # the first photo
    # what it was trained on, as specs that name the same frames again (`calibrate` refuses those drives)
    assert [(d["path"], d["frames"]) for d in ckpt.meta["trained_on"]] == [(f"{walk}@:3", 3), (f"{walk}@5:", 3)]

    assert main(["evaluate", "posenet", "--model", str(out / "model.pt"), "--data", str(held), "--device", "cpu",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 2
    # one epoch learns little, but every answer lies in the walk's own area (42 m long), not 540 km away
    assert report["position_error_m_max"] < 100.0


def test_photos_in_a_subfolder_are_named_in_the_error(tmp_path, capsys):
    photo_walk(tmp_path / "walk" / "images", n=2)
    assert main(["import", "photos", str(tmp_path / "walk"), "-o", str(tmp_path / "x.mcap")]) == 2
    err = capsys.readouterr().err
    assert "no .jpg/.jpeg photos" in err and "images holds 2: import that folder" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("frames", ["3", "a:b", "1:2:0"])
def test_bad_photo_selection_is_one_line(tmp_path, capsys, frames):
    photo_walk(tmp_path / "photos", n=2)
    assert main(["import", "photos", str(tmp_path / "photos"), "--frames", frames, "-o", str(tmp_path / "x.mcap")]) == 2
    err = capsys.readouterr().err
    assert "--frames" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_selection_of_no_photo_is_refused(tmp_path, capsys):
    photo_walk(tmp_path / "photos", n=2)
    assert main(["import", "photos", str(tmp_path / "photos"), "--frames", "5:9", "-o", str(tmp_path / "x.mcap")]) != 0
    assert "select none of the 2 photos" in capsys.readouterr().err
    assert not (tmp_path / "x.mcap").exists()


def test_mapillary_gps_accuracy_is_the_fix_error(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        write_photo(folder / f"{i}.jpg", lat_deg=LAT0_DEG + i * 1e-4, lon_deg=LON0_DEG, seed=i,
                    when=START + dt.timedelta(seconds=i), description=json.dumps({"MAPGPSAccuracyMeters": "7.5"}))
    assert main(["import", "photos", str(folder), "-o", str(tmp_path / "x.mcap")]) == 0
    with DriveReader(tmp_path / "x.mcap") as drive:
        assert [f.horizontal_std_m for f in drive.fixes()] == [7.5, 7.5, 7.5]


def test_lund_walk_heading_follows_the_street(tmp_path):
    """The Lund photos (Mapillary, iPhone 4S, GPS 5-10 m, ~7 m apart) walk north along one street: the
    heading from their own track over 20 m is 9 deg off the street's direction at the median (over the
    nearest neighbours alone: 17 deg)."""
    assert LUND.is_dir(), f"{LUND} is missing: the shared data belongs at ../shared/data next to the repository"
    assert main(["import", "photos", str(LUND), "-o", str(tmp_path / "lund.mcap")]) == 0
    with DriveReader(tmp_path / "lund.mcap") as drive:
        heading = np.array([f.heading_deg for f in drive.fixes()])
    off = np.abs((heading - 345.0 + 180.0) % 360.0 - 180.0)  # the street runs ~345 deg
    assert len(heading) == 29 and np.median(off) < 15.0 and off.max() < 45.0


@pytest.mark.slow
def test_own_model_served_and_fused_camera_only(tmp_path, bus_config):
    """The rest of the path: the model trained on the photos serves posenet/fix in the replay graph,
    the fusion runs camera only (the photos have no odometry), and `streetloc eval` scores the run."""
    photo_walk(tmp_path / "photos")
    walk = tmp_path / "walk.mcap"
    assert main(["import", "photos", str(tmp_path / "photos"), "--max-width", "64", "-o", str(walk)]) == 0
    assert main(["train", "posenet", "--data", str(walk), "--epochs", "1", "--batch-size", "8",
                 "--input-size", "32x24", "--anchors", "4", "--hidden", "16", "--threads", "1", "--quiet",
                 "--device", "cpu", "--out", str(tmp_path / "model")]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "nodes.cli"]
    run = tmp_path / "run.mcap"
    out = subprocess.run([*cli, "replay", str(walk), "--lockstep", "--launch", "launch/replay.toml",
                          "--arg", f"model={tmp_path / 'model' / 'model.pt'}", "--arg", "device=cpu",
                          "--arg", "odometry=false", "--arg", "monitor=false", "--record", str(run)],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    with DriveReader(run) as drive:
        fixes = list(drive.read(POSENET_TOPIC))
        poses = list(drive.read(POSE_TOPIC))
    assert len(fixes) == 8 and poses
    # a pose that claims a position says so; one that does not, says why
    assert all(p.valid == (p.status in ("tracking", "degraded")) and (p.valid or p.reason) for p in poses)
    scored = subprocess.run([*cli, "eval", str(run), "--json"], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads(scored.stdout)["posenet"]["samples"] == 8


@pytest.mark.slow
def test_lund_benchmark_script_runs_the_whole_path(tmp_path):
    """benchmarks/lund.sh (BENCHMARKS.md, "Own data: Lund") with one epoch: every step runs and the tables
    come out, so the documented path cannot rot unseen."""
    assert LUND.is_dir(), f"{LUND} is missing: the shared data belongs at ../shared/data next to the repository"
    out = subprocess.run(["bash", "benchmarks/lund.sh", str(LUND.parent), str(tmp_path / "work")], cwd=REPO,
                         env={**os.environ, "PYTHON": sys.executable, "EPOCHS": "1"}, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for line in ("| held-out photos (7) |", "| heldout | posenet | 7 |", "| all | fused | ",
                 "| all, offline, chain_gap_s=20 | fused | 29 |", "| train (1 epochs) |"):
        assert line in out.stdout, line
    assert not (REPO / "lund.mcap").exists()  # everything it writes stays in WORK
