"""PoseNet's validity: black, over-exposed, frozen and extreme-aspect frames and frames from outside the
model's area are flagged (with the default checkpoint and its fitted out-of-area test); frames of its
own city are not; `evaluate` refuses a drive outside the training area unless told; the node publishes
flagged fixes with valid=False and a reason, counts them, and goes on."""

from __future__ import annotations

import numpy as np
import pytest

from localization.geodesy import GeoOrigin
from nodes.bus.messages import Header, Image
from perception.models.posenet.predictor import PosePredictor
from perception.models.posenet.validity import FrameValidity, appearance_descriptor, area_check
from perception.transforms import resize_to_input
from sim_data.drive import SimConfig, SimDrive, write_drive

LUND = GeoOrigin(55.7047, 13.1910, 50.0)


@pytest.fixture(scope="module")
def predictor() -> PosePredictor:
    return PosePredictor(None, device="cpu")  # the shipped default, with its fitted validity test


def render(city_seed: int, route_seed: int, frames: int = 12, hour: float = 13.0) -> list[np.ndarray]:
    """A few BGR frames of a random route (5 fps) in a synthetic city."""
    config = SimConfig(city_seed=city_seed, route="random", route_seed=route_seed, frames=frames, fps=5.0,
                       time_of_day_h=hour)
    return [f.image_bgr for f in SimDrive(config)]


@pytest.fixture(scope="module")
def own_city() -> list[np.ndarray]:
    # a route seed the test was fitted on never (the bank: the training routes; calibration: seeds 901/902)
    return render(0, 57, frames=12)


@pytest.fixture(scope="module")
def street(own_city, predictor) -> np.ndarray:
    # alone, without the window's average, a frame is judged on its own score: one typical of the city
    return resize_to_input(own_city[5], predictor.input_size_px)


def assess(predictor: PosePredictor, frames_bgr: list[np.ndarray]) -> list[list[str]]:
    validity = FrameValidity(predictor)
    return validity.assess(np.stack([resize_to_input(f, predictor.input_size_px) for f in frames_bgr]))


def test_black_overexposed_and_frozen_frames_are_flagged(predictor, street):
    w, h = predictor.input_size_px
    validity = FrameValidity(predictor)
    black = np.zeros((3, h, w), np.uint8)
    black[:, :2, :2] = 40  # a few stray bright pixels do not make a frame usable
    white = np.full((3, h, w), 255, np.uint8)
    s = 1_000_000_000
    flags = validity.assess(np.stack([black, street, street, street, white]),
                            stamps_ns=[0, 1 * s, 16 * s, 22 * s, 23 * s])
    assert flags[0] == ["black_frame"]
    assert flags[1] == []  # a street of the city, seen for the first time
    assert flags[2] == []  # the same frame 15 s later: the vehicle waits at a red light
    assert flags[3] == ["frozen"]  # still the same frame 21 s later: a stuck camera
    assert flags[4] == ["overexposed"]
    assert validity.counts == {"black_frame": 1, "frozen": 1, "overexposed": 1}


def test_repeats_without_stamps_count_as_frames_a_tenth_of_a_second_apart(predictor, street):
    validity = FrameValidity(predictor)
    flags = validity.assess(np.stack([street] * 206))
    assert flags[195] == [] and flags[205] == ["frozen"]  # 19.5 s, 20.5 s of repeats


def test_an_extreme_aspect_is_flagged_a_16_9_frame_is_not(predictor, street):
    validity = FrameValidity(predictor)
    [wide, video, square] = validity.assess(np.stack([street] * 3), [(1200, 200), (426, 240), (240, 240)])
    assert "bad_aspect" in wide and "bad_aspect" not in video and "bad_aspect" not in square


def test_frames_of_the_models_city_are_valid(predictor, own_city):
    flags = assess(predictor, own_city)
    assert sum(bool(f) for f in flags) <= 1, flags


def test_frames_of_another_city_are_out_of_area(predictor):
    flags = assess(predictor, render(7, 2, frames=12))
    # the score is averaged over the last 10 frames: from the third frame on, every one is flagged
    assert all("out_of_area" in f for f in flags[2:]), flags


def test_evaluate_counts_the_frames_the_checks_flag_as_not_valid(tmp_path):
    """Another city at the model's own origin: the GPS area check lets it through, the appearance check
    flags its frames out_of_area; the report's valid share says so, as the node's fixes would."""
    from perception.models.posenet.evaluation import evaluate

    path = tmp_path / "city7.mcap"
    write_drive(SimConfig(city_seed=7, route="random", route_seed=2, frames=12, fps=5.0), path)
    result = evaluate(None, [str(path)], device="cpu", cache_dir=None)
    assert result["flag_rates"]["flagged"] >= 10 / 12
    assert result["valid_fraction"] == pytest.approx(1.0 - result["flag_rates"]["flagged"])


def test_descriptor_ignores_exposure_but_not_the_view(predictor, own_city):
    a, b = (resize_to_input(f, predictor.input_size_px) for f in own_city[::11])
    darker = (a.astype(np.float32) * 0.6).astype(np.uint8)
    d = appearance_descriptor(np.stack([a, darker, b]))
    assert float(d[0] @ d[1]) > 0.97 > float(d[0] @ d[2])


def test_area_check_measures_great_circle_distance():
    area = {"center_lat_deg": 34.0522, "center_lon_deg": -118.2437, "radius_m": 500.0}
    inside = area_check(area, np.array([34.0525]), np.array([-118.2440]))
    lund = area_check(area, np.array([LUND.lat_deg]), np.array([LUND.lon_deg]))
    assert inside["outside_fraction"] == 0.0 and inside["outside_m"] == 0.0
    # the ellipsoid's geodesic is within 0.5 % of the spherical great circle (haversine, R = 6371 km)
    p1, p2 = np.radians([area["center_lat_deg"], LUND.lat_deg])
    dl = np.radians(LUND.lon_deg - area["center_lon_deg"])
    hav = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    sphere_m = 2 * 6_371_000.0 * np.arcsin(np.sqrt(hav))
    assert lund["outside_fraction"] == 1.0 and lund["nearest_m"] == pytest.approx(sphere_m, rel=0.005)
    assert lund["outside_m"] == pytest.approx(lund["nearest_m"] - 500.0)


@pytest.fixture(scope="module")
def lund_drive(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("lund") / "lund_sim.mcap"
    write_drive(SimConfig(route="random", route_seed=3, frames=6, fps=5.0, origin=LUND), path)
    return str(path)


def test_evaluate_refuses_a_drive_outside_the_training_area(lund_drive, capsys):
    from nodes.cli import main as cli

    assert cli(["evaluate", "posenet", "--data", lund_drive, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "outside" in err and "training area" in err and "km" in err and "--allow-out-of-area" in err

    assert cli(["evaluate", "posenet", "--data", lund_drive, "--device", "cpu", "--allow-out-of-area"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "lies outside" in out[0] and "km" in out[0]
    assert any(line.startswith("flagged invalid:") for line in out)


def test_node_publishes_flagged_fixes_with_a_reason_and_goes_on(own_city):
    from nodes.posenet import PoseNetNode, PoseNetParams

    node = PoseNetNode(PoseNetParams(device="cpu"))
    street = own_city[5]
    h, w = street.shape[:2]

    def msg(stamp_ns: int, data: np.ndarray) -> Image:
        return Image(header=Header(stamp_ns=stamp_ns, frame_id="camera"), width_px=w, height_px=h,
                     encoding="bgr8", data=data)

    [(_, black)] = node.on_message("camera/image", msg(1, np.zeros_like(street)), 0)
    assert not black.valid and black.reason == "black_frame"
    assert node.take_errors() == [("flagged:black_frame", "frame 1")]
    [(_, good)] = node.on_message("camera/image", msg(2, street), 0)
    assert good.valid and good.reason == ""
    [(_, waiting)] = node.on_message("camera/image", msg(10**10, street.copy()), 0)
    assert waiting.valid  # the same frame 10 s later: at a standstill the fix is still right
    [(_, frozen)] = node.on_message("camera/image", msg(3 * 10**10, street.copy()), 0)
    assert not frozen.valid and frozen.reason == "frozen"  # 30 s of one frame: a stuck camera
    assert node.validity.counts == {"black_frame": 1, "frozen": 1}


# ---------------------------------------------------------------------------------------------- place test


def test_the_default_checkpoint_uses_the_sequential_place_test(predictor):
    meta = predictor.checkpoint.meta["validity"]
    assert meta["method"] == "place_cusum" and FrameValidity(predictor).sequential is not None


def test_place_evidence_accumulates_evidence_from_elsewhere_and_forgets_it_when_views_match_again():
    from perception.models.posenet.validity import PlaceEvidence, PlaceTestConfig

    cfg = PlaceTestConfig(reference=0.4, jump_weight=0.3, jump_m=25.0, ceiling_margin=1.0)
    test = PlaceEvidence(cfg, threshold=0.5)
    # a recognised street: 1 - similarity 0.2 < reference, nothing builds up
    assert not any(test.update(0.8, 10.0 * i, 0.0) for i in range(20))
    assert test.statistic == 0.0
    # another city: 1 - similarity 0.6, 0.2 a frame above the reference: flagged from the fourth frame
    flags = [test.update(0.4, 200.0, 0.0) for _ in range(10)]
    assert flags[:2] == [False, False] and all(flags[3:])  # (the first one also jumped 200 m: + 0.3)
    assert test.statistic == pytest.approx(1.5)  # held at the ceiling, threshold + ceiling_margin
    # back in the area: (1.5 - 0.5) / 0.2 = 5 frames to fall under the threshold again
    back = [test.update(0.8, 200.0, 0.0) for _ in range(7)]
    assert back == [True] * 4 + [False] * 3


def test_place_evidence_counts_time_not_frames():
    from perception.models.posenet.validity import PlaceEvidence, PlaceTestConfig

    cfg = PlaceTestConfig(reference=0.4, frame_period_s=0.2)
    slow, fast = PlaceEvidence(cfg, threshold=None), PlaceEvidence(cfg, threshold=None)
    for i in range(5):  # 1 s of 5 fps frames against 1 s of 25 fps frames, the same evidence
        slow.update(0.4, 0.0, 0.0, stamp_ns=i * 200_000_000)
    for i in range(25):
        fast.update(0.4, 0.0, 0.0, stamp_ns=i * 40_000_000)
    assert fast.statistic == pytest.approx(slow.statistic, rel=0.25)
    stuck = fast.statistic
    fast.update(float("nan"), 0.0, 0.0, stamp_ns=10**9)  # no place evidence (no index answer): unchanged
    assert fast.statistic == stuck


def test_a_place_jump_no_vehicle_makes_is_evidence_of_elsewhere():
    from perception.models.posenet.validity import PlaceEvidence, PlaceTestConfig

    test = PlaceEvidence(PlaceTestConfig(reference=0.4, jump_weight=0.3, jump_m=25.0), threshold=None)
    test.update(0.7, 0.0, 0.0)
    test.update(0.7, 20.0, 0.0)  # 20 m: a fast car at 5 fps, not a jump
    assert test.statistic == 0.0
    test.update(0.7, 300.0, 0.0)  # 280 m in one frame: 0.3 + 0.3 - 0.4
    assert test.statistic == pytest.approx(0.2)


def test_the_node_path_and_the_own_search_give_the_same_flags(predictor):
    """The node hands the predictor's output to the test (no second search); `evaluate` lets the test
    search itself: the same frames get the same flags."""
    # another city, then the model's own: recognised again within ~2 s (here after 9 frames at 5 fps)
    frames = render(7, 3, frames=6) + render(0, 58, frames=14)
    images = np.stack([resize_to_input(f, predictor.input_size_px) for f in frames])
    import torch

    est = predictor.predict(torch.from_numpy(images))
    assert est.place_similarity is not None
    a = FrameValidity(predictor).assess(images, estimates=est)
    b = FrameValidity(predictor).assess(images)
    assert a == b and all("out_of_area" in f for f in a[:6]) and a[-2:] == [[], []]


def test_fit_place_validity_puts_the_threshold_at_the_calibration_quantile(predictor):
    import torch

    from perception.models.posenet.validity import PlaceEvidence, PlaceTestConfig, fit_place_validity

    frames = render(0, 59, frames=10)
    images = torch.from_numpy(np.stack([resize_to_input(f, predictor.input_size_px) for f in frames]))
    cfg = PlaceTestConfig(quantile=0.9)
    meta = fit_place_validity(predictor, predictor.places, [(images, None)], config=cfg,
                              sources={"calibration": ["r59"]})
    hyp = predictor.places.hypotheses(images, 1)
    # the reference is fitted too: the 95th percentile of the calibration frames' own evidence
    assert meta["reference"] == pytest.approx(np.quantile(1.0 - hyp.similarity, 0.95))
    test = PlaceEvidence(PlaceTestConfig(quantile=0.9, reference=meta["reference"]), None)
    stats = [(test.update(float(s), float(e), float(n)), test.statistic)[1]
             for s, e, n in zip(hyp.similarity, hyp.east_m[:, 0], hyp.north_m[:, 0], strict=True)]
    assert meta["method"] == "place_cusum" and meta["threshold"] == pytest.approx(np.quantile(stats, 0.9))
    with pytest.raises(ValueError, match="reference"):
        PlaceEvidence(PlaceTestConfig(), None)
    assert meta["calibration_frames"] == 10 and meta["sources"] == {"calibration": ["r59"]}
    with pytest.raises(ValueError, match="calibration drives"):
        fit_place_validity(predictor, predictor.places, [])
