"""The odometry error model of the synthetic city: deterministic, the presets' statistics, honest stds."""

from __future__ import annotations

import numpy as np
import pytest

from sim_data.drive import SimConfig, write_drive
from sim_data.odometry import ODOMETRY_NOISE_PRESETS, OdometryNoise, OdometryNoiseModel, odometry_noise_model

FPS = 10.0


def _run(preset: str, seed: int, speed_mps: np.ndarray, yaw_rate_radps: np.ndarray):
    noise = OdometryNoise(preset, seed=seed)
    readings = [noise(int(k * 1e9 / FPS), speed_mps=float(v), yaw_rate_radps=float(w))
                for k, (v, w) in enumerate(zip(speed_mps, yaw_rate_radps, strict=True))]
    return noise, readings


def test_equal_seeds_give_equal_readings_and_other_seeds_others():
    v, w = np.full(200, 8.0), np.full(200, 0.1)
    _, a = _run("typical", 3, v, w)
    _, b = _run("typical", 3, v, w)
    _, c = _run("typical", 4, v, w)
    assert a == b
    assert [r.speed_mps for r in a] != [r.speed_mps for r in c]


def test_none_gives_the_truth():
    rng = np.random.default_rng(0)
    v, w = rng.uniform(0, 15, 100), rng.normal(0, 0.3, 100)
    _, readings = _run("none", 1, v, w)
    np.testing.assert_array_equal([r.speed_mps for r in readings], v)
    np.testing.assert_array_equal([r.yaw_rate_radps for r in readings], w)


@pytest.mark.parametrize("preset", ["typical", "poor"])
def test_scale_error_and_gyro_bias_follow_the_preset(preset):
    """Over many drives (seeds) the per-drive scale error and the gyro bias wander have the preset's
    spread: the scale error's std within 20 %, the bias after 100 s within 25 % of the random walk's."""
    m = ODOMETRY_NOISE_PRESETS[preset]
    n_s = 1000  # 100 s at 10 Hz
    v, w = np.full(n_s, 10.0), np.zeros(n_s)
    scales, wander, white = [], [], []
    for seed in range(200):
        noise, readings = _run(preset, seed, v, w)
        speeds = np.array([r.speed_mps for r in readings])
        yaw = np.array([r.yaw_rate_radps for r in readings])
        scales.append(speeds.mean() / 10.0 - 1.0)  # white noise averages out over 1000 readings
        wander.append(yaw[-50:].mean() - yaw[:50].mean())  # bias change over ~95 s
        white.append(np.std(np.diff(speeds)) / np.sqrt(2))
        assert noise.scale_error == pytest.approx(scales[-1], abs=0.01)
    assert np.std(scales) == pytest.approx(m.speed_scale_std, rel=0.2)
    assert np.std(wander) == pytest.approx(m.gyro_bias_walk_radps_per_sqrt_s * np.sqrt(95.0), rel=0.25)
    quant_std = m.speed_quantum_mps / np.sqrt(12)
    assert np.median(white) == pytest.approx(np.hypot(m.speed_white_std_mps, quant_std), rel=0.15)


def test_readings_are_quantised_and_a_stopped_vehicle_reads_zero():
    m = odometry_noise_model("poor")
    v = np.r_[np.zeros(20), np.full(20, 5.0)]
    _, readings = _run("poor", 2, v, np.full(40, 0.2))
    speeds = np.array([r.speed_mps for r in readings])
    assert np.all(speeds[:20] == 0.0)
    for values, q in ((speeds, m.speed_quantum_mps), ([r.yaw_rate_radps for r in readings], m.yaw_rate_quantum_radps)):
        steps = np.asarray(values) / q
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)


@pytest.mark.parametrize("preset", ["typical", "poor"])
def test_reported_stds_are_honest(preset):
    """The 1-sigma on each record matches its actual error: normalised errors have unit spread."""
    z_speed, z_yaw = [], []
    n = 300
    for seed in range(100):
        _, readings = _run(preset, seed, np.full(n, 12.0), np.full(n, -0.05))
        z_speed += [(r.speed_mps - 12.0) / r.speed_std_mps for r in readings]
        z_yaw += [(r.yaw_rate_radps + 0.05) / r.yaw_rate_std_radps for r in readings]
    assert np.std(z_speed) == pytest.approx(1.0, abs=0.2)
    assert np.std(z_yaw) == pytest.approx(1.0, abs=0.2)


def test_bad_presets_and_parameters_are_one_clear_error():
    with pytest.raises(ValueError, match="'bumpy' is not one of none, typical, poor"):
        OdometryNoise("bumpy")
    with pytest.raises(ValueError, match="speed_scale_std=-0.1"):
        OdometryNoiseModel(speed_scale_std=-0.1)
    with pytest.raises(ValueError, match="odometry noise preset 'bumpy'"):
        SimConfig(odometry_noise="bumpy")


def test_a_drive_file_carries_noisy_odometry_and_the_truth_on_gps(tmp_path):
    from perception.drives import DriveReader

    config = SimConfig(route="train", frames=30, blocks=(2, 1), width_px=48, height_px=36, odometry_noise="poor")
    path = tmp_path / "d.mcap"
    write_drive(config, path)
    with DriveReader(path) as drive:
        assert drive.metadata.extra["odometry_noise"] == "poor"
        odometry = list(drive.odometry())
        truth = [f.speed_mps for f in drive.fixes()]
    speeds = np.array([o.speed_mps for o in odometry])
    moving = np.array(truth) > 1.0
    assert moving.sum() > 10
    assert not np.allclose(speeds[moving], np.array(truth)[moving])
    assert all(o.speed_std_mps is not None and o.speed_std_mps > 0.1 for o in odometry)


def test_streetloc_sim_odometry_noise_option(tmp_path, capsys):
    from nodes.cli import main
    from perception.drives import DriveReader

    speeds = {}
    for preset in ("none", "poor"):
        path = tmp_path / f"{preset}.mcap"
        assert main(["sim", "--route", "train", "--frames", "20", "--size", "32x24", "--blocks", "2x1",
                     "--odometry-noise", preset, "-o", str(path), "-q"]) == 0
        with DriveReader(path) as d:
            assert d.metadata.extra["odometry_noise"] == preset
            speeds[preset] = [o.speed_mps for o in d.odometry()]
            truth = [f.speed_mps for f in d.fixes()]
    assert speeds["none"] == pytest.approx(truth) and speeds["poor"] != pytest.approx(truth)
    # argparse: invalid choice 'bumpy' (choose from none, typical, poor), exit 2
    assert main(["sim", "--odometry-noise", "bumpy", "-o", str(tmp_path / "x.mcap")]) == 2
    assert "invalid choice: 'bumpy'" in capsys.readouterr().err
