"""`streetloc train context`: one command makes the versioned model file the fusion node loads, with the
hashes of the drives it was fitted on; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localization.context import FEATURES, FORMAT_VERSION, ContextModel
from nodes.cli import main
from perception.datasets import file_digest
from sim_data import DEFAULT_DEMO_DRIVE


def test_a_missing_drive_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "context", "--data", str(tmp_path / "nope.mcap"), "--out", str(tmp_path / "c.json")])
    assert "nope.mcap: no such file" in str(exc.value)
    assert not (tmp_path / "c.json").exists()


@pytest.mark.slow
def test_the_command_writes_a_model_the_fusion_node_loads(tmp_path, capsys):
    from nodes.fusion import FusionNode, FusionParams

    out = tmp_path / "context.json"
    drive = str(DEFAULT_DEMO_DRIVE)
    assert main(["train", "context", "--data", drive, "--check-data", drive, "--step", "5", "--out", str(out)]) == 0
    assert "fitted on 30 frames of 1 drives" in capsys.readouterr().out
    raw = json.loads(out.read_text())
    assert raw["version"] == FORMAT_VERSION and raw["features"] == list(FEATURES)
    assert raw["data"] == [{"path": drive, "frames": 30, "sha256": file_digest(Path(drive))}]
    assert raw["check"]["frames"] == 30 and "posenet-" in raw["recipe"]["models"]
    node = FusionNode(FusionParams(context=str(out)))
    assert isinstance(node.context.model, ContextModel)
