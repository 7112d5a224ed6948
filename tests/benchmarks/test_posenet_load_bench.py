"""The PoseNet start benchmark: its prototype backbone is torchvision's MobileNetV3-small (same parameter
names, same outputs), so the "without torchvision" figures in BENCHMARKS.md measure the same network; and
the script runs and prints its table."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

REPO = Path(__file__).resolve().parents[2]
# benchmarks/ is scripts, not a package of the install: load the prototype by its path
_spec = importlib.util.spec_from_file_location("posenet_load_proto", REPO / "benchmarks" / "posenet_load_proto.py")
_proto = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_proto)
mobilenet_v3_small_features = _proto.mobilenet_v3_small_features


def test_prototype_backbone_is_torchvisions_mobilenet_v3_small():
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v3_small(weights=None).features.eval()
    prototype = mobilenet_v3_small_features().eval()
    ref_state, proto_state = reference.state_dict(), prototype.state_dict()
    assert list(proto_state) == list(ref_state)  # a checkpoint loads into either
    assert all(proto_state[k].shape == ref_state[k].shape for k in ref_state)
    prototype.load_state_dict(ref_state)
    images = torch.randn(2, 3, 96, 128)
    with torch.inference_mode():
        assert torch.equal(prototype(images), reference(images))
    assert prototype[-1].out_channels == reference[-1].out_channels == 576


@pytest.mark.slow
@pytest.mark.parametrize("flag", [[], ["--without-torchvision"]])
def test_benchmark_prints_its_stage_table(flag):
    out = subprocess.run([sys.executable, "-m", "benchmarks.posenet_load_bench", "--repeats", "1", "--no-end-to-end",
                          *flag], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| checkpoint read |" in out.stdout and "**total in-process**" in out.stdout
    assert ("torch._dynamo" in out.stdout) != bool(flag)
