"""The evaluation report every model shares: figures of the merged drives, per drive with several."""

from __future__ import annotations

import pytest

from perception.evaluation import DriveScore, evaluate_drives


class CountingScorer:
    """Scores a drive as the list of its name's letters; the figure is how many there are."""

    model = "toy"
    model_id = "toy-0000"
    device = "cpu"

    def score_drive(self, spec):
        return DriveScore(list(spec.path.stem), frames=len(spec.path.stem), infer_s=0.5, extra={"source": "x"})

    def merge(self, partials):
        return [c for p in partials for c in p]

    def summarize(self, partial):
        return {"letters": len(partial)}


def test_report_merges_drives_and_keeps_each_one(tmp_path):
    for name in ("ab", "cdef"):
        (tmp_path / f"{name}.mcap").touch()
    one = evaluate_drives(CountingScorer(), [tmp_path / "ab.mcap"])
    assert one == {"model": "toy", "model_id": "toy-0000", "checkpoint": "(default)",
                   "drives": [str(tmp_path / "ab.mcap")], "letters": 2, "images_per_s": 4.0, "device": "cpu"}
    two = evaluate_drives(CountingScorer(), [tmp_path / "ab.mcap", f"{tmp_path / 'cdef.mcap'}@::2"],
                          checkpoint="m.pt")
    assert two["letters"] == 6 and two["images_per_s"] == pytest.approx(6.0) and two["checkpoint"] == "m.pt"
    assert two["per_drive"] == {str(tmp_path / "ab.mcap"): {"letters": 2, "source": "x"},
                                f"{tmp_path / 'cdef.mcap'}@::2": {"letters": 4, "source": "x"}}


def test_a_missing_drive_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.mcap"):
        evaluate_drives(CountingScorer(), [tmp_path / "gone.mcap"])
