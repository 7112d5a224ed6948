"""PoseNet's backbones are torchvision's, written out so that a PoseNet node never imports torchvision
(issue 16 item 5: a respawned node's start). They must stay torchvision's in every way a user sees:
shipped and user checkpoints load unchanged, the same frame gives the same fix to the bit, and training
from scratch starts from the same weights for a seed."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from perception.models import get_weights, list_weights
from perception.models.posenet.network import BACKBONES, DEFAULT_BACKBONE, PoseNet, _backbone

torchvision = pytest.importorskip("torchvision", reason="the comparison needs torchvision")


def _torchvision_features(name: str) -> nn.Module:
    net = getattr(torchvision.models, name)(weights=None)
    if name.startswith("mobilenet"):
        return net.features
    return nn.Sequential(*list(net.children())[:-2])


def _random_state(reference: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Weights unlike any initialisation (BN statistics included, variances positive)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, t in reference.items():
        if not t.is_floating_point():
            out[key] = t
        elif "running_var" in key:
            out[key] = torch.rand(t.shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(t.shape, generator=g) * 0.3
    return out


# the default backbone in the default run, the others (seconds each on 2 cores) with the slow tests
@pytest.mark.parametrize("name", [n if n == DEFAULT_BACKBONE else pytest.param(n, marks=pytest.mark.slow)
                                  for n in BACKBONES])
def test_backbone_is_torchvisions(name):
    torch.manual_seed(7)
    ours, channels = _backbone(name)
    torch.manual_seed(7)
    theirs = _torchvision_features(name)
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    # same names in the same order and shapes: torchvision-trained checkpoints load unchanged
    assert [(k, v.shape) for k, v in ours_sd.items()] == [(k, v.shape) for k, v in theirs_sd.items()]
    # same initial weights for a seed: training from scratch is reproduced
    assert all(torch.equal(ours_sd[k], theirs_sd[k]) for k in ours_sd)
    weights = _random_state(theirs_sd, seed=1)
    ours.load_state_dict(weights)
    theirs.load_state_dict(weights)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out_ours, out_theirs = ours.eval()(x), theirs.eval()(x)
    assert out_ours.shape[1] == channels
    assert torch.equal(out_ours, out_theirs)


@pytest.mark.parametrize("weights_name", [n if get_weights(n).default else pytest.param(n, marks=pytest.mark.slow)
                                          for n in list_weights("posenet")])
def test_shipped_weights_give_the_same_outputs_as_with_torchvision(weights_name):
    ckpt = get_weights(weights_name).load()
    ours = PoseNet(**ckpt.arch)
    ours.load_state_dict(ckpt.state_dict)  # strict: every key of the shipped file, no other
    theirs = PoseNet(**ckpt.arch)
    theirs.features = _torchvision_features(ckpt.arch.get("backbone", "mobilenet_v3_small"))
    theirs.load_state_dict(ckpt.state_dict)
    w, h = ckpt.input_size_px
    x = torch.randn(3, 3, h, w, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), theirs.eval()(x))


def test_posenet_node_path_does_not_import_torchvision():
    """What a respawned PoseNet node imports to build its model: not torchvision (whose torch._dynamo
    import was a third of the node's start), not the detector or the segmenter."""
    code = ("import sys\n"
            "import nodes.posenet\n"
            "from perception.models import PosePredictor\n"
            "from perception.models.posenet.validity import FrameValidity\n"
            "FrameValidity(PosePredictor(device='cpu'))\n"
            "bad = [m for m in ('torchvision', 'torch._dynamo', 'perception.models.detector',\n"
            "                   'perception.models.segmenter') if m in sys.modules]\n"
            "sys.exit(f'imported {bad}' if bad else 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:] or out.stdout[-2000:]
