"""``streetloc sim``: writes a drive and a preview; bad input is a one-line error."""

from __future__ import annotations

import cv2
import pytest

from nodes.cli import main
from perception.drives import DriveReader
from sim_data import ROUTES, SimConfig, SimDrive
from sim_data.preview import PreviewSampler, contact_sheet


def test_sim_writes_a_drive_and_a_preview(tmp_path, capsys):
    drive, png = tmp_path / "d.mcap", tmp_path / "p.png"
    code = main(["sim", "--route", "test_loop", "--frames", "6", "--size", "64x48", "--blocks", "2x1", "--fps", "5",
                 "--time-of-day", "18", "--traffic", "heavy", "--noise", "--motion-blur", "-o", str(drive),
                 "--preview", str(png), "--preview-frames", "4", "-q"])
    assert code == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "6 frames" in out
    with DriveReader(drive) as d:
        assert len(list(d.images())) == 6
        assert len(list(d.label_masks())) == 6
        assert d.metadata.extra["traffic"] == "heavy" and d.metadata.extra["camera_noise"] is True
        assert d.metadata.extra["time_of_day_h"] == 18.0
        assert d.duration_s == pytest.approx(1.0)  # 6 frames at 5 fps: stamps 0 .. 1 s
    sheet = cv2.imread(str(png))
    assert sheet is not None and sheet.shape[0] > 48 and sheet.shape[1] > 2 * 64


def test_sim_preview_only(tmp_path):
    png = tmp_path / "p.png"
    assert main(["sim", "--route", "blackout", "--frames", "3", "--size", "32x24", "--blocks", "1x1",
                 "--preview", str(png), "-q"]) == 0
    assert png.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "64by48"], "--size '64by48'"),
        (["--route", "nowhere"], "unknown route 'nowhere'"),
        (["--blocks", "0x3"], "1..8 blocks"),
        (["--fps", "0"], "fps=0.0"),
        (["--time-of-day", "25"], "outside [0, 24]"),
        (["--origin", "95,10"], "lat_deg=95.0"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, capsys, args, message):
    assert main(["sim", "-o", str(tmp_path / "x.mcap"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streetloc sim: error:") and message in err and "\n" not in err
    assert not (tmp_path / "x.mcap").exists()


def test_sim_needs_an_output(capsys):
    assert main(["sim"]) == 2
    assert "nothing to do" in capsys.readouterr().err


def test_list_routes(capsys):
    assert main(["sim", "--list-routes"]) == 0
    out = capsys.readouterr().out
    for name in ROUTES:
        assert name in out


def test_preview_sampler_spreads_its_frames_over_the_drive():
    frames = list(SimDrive(SimConfig(route="test_loop", frames=40, width_px=32, height_px=24, blocks=(1, 1))))
    sampler = PreviewSampler(5)
    for f in frames:
        sampler(f)
    picked = [f.index for f in sampler.frames()]
    assert len(picked) == 5 and picked[0] == 0 and picked[-1] >= 32
    assert all(b > a for a, b in zip(picked, picked[1:], strict=False))
    sheet = contact_sheet(sampler.frames(), columns=2, tile_width_px=64)
    assert sheet.ndim == 3 and sheet.shape[1] == 2 * (2 * 64 + 2) + 6


def test_a_route_seed_alone_picks_a_random_route(tmp_path):
    path = tmp_path / "r.mcap"
    assert main(["sim", "--route-seed", "4", "--frames", "2", "--size", "32x24", "--blocks", "1x1", "-o", str(path), "-q"]) == 0
    with DriveReader(path) as d:
        assert d.metadata.extra["route"] == "random" and d.metadata.extra["route_seed"] == 4
