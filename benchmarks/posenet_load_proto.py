"""Prototype for the PoseNet owner (issue 16 item 5), used by ``posenet_load_bench --without-torchvision``:
torchvision's ``mobilenet_v3_small().features`` in plain ``torch.nn`` with the same parameter names (240
tensors; outputs equal to torchvision's for the same weights), so that a PoseNet node could start without
importing torchvision, whose ``torch._dynamo`` import is 38 % of the node's start. Delete once
``perception/models/posenet/network.py`` defines its backbones itself.
"""

from __future__ import annotations

import sys
import types

from torch import nn

SMALL = [(16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2), (24, 3, 88, 24, False, "RE", 1),
         (24, 5, 96, 40, True, "HS", 2), (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
         (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1), (48, 5, 288, 96, True, "HS", 2),
         (96, 5, 576, 96, True, "HS", 1), (96, 5, 576, 96, True, "HS", 1)]


def _div8(v):
    new = max(8, int(v + 4) // 8 * 8)
    return new + 8 if new < 0.9 * v else new


def cna(cin, cout, k, stride=1, groups=1, act=nn.Hardswish):
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout, eps=0.001, momentum=0.01)]
    if act is not None:
        layers.append(act(inplace=True))
    block = nn.Sequential(*layers)
    block.out_channels = cout  # as torchvision's Conv2dNormActivation: PoseNet reads the last one's
    return block


class SE(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, s, 1), nn.Conv2d(s, c, 1)
        self.activation, self.scale_activation = nn.ReLU(), nn.Hardsigmoid()

    def forward(self, x):
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class IR(nn.Module):
    def __init__(self, cin, k, exp, cout, se, act, stride):
        super().__init__()
        a = nn.Hardswish if act == "HS" else nn.ReLU
        self.use_res_connect = stride == 1 and cin == cout
        layers = [cna(cin, exp, 1, act=a)] if exp != cin else []
        layers.append(cna(exp, exp, k, stride, groups=exp, act=a))
        if se:
            layers.append(SE(exp, _div8(exp // 4)))
        layers.append(cna(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x):
        y = self.block(x)
        return y + x if self.use_res_connect else y


def mobilenet_v3_small_features():
    layers = [cna(3, 16, 3, 2)] + [IR(*c) for c in SMALL] + [cna(96, 576, 1)]
    return nn.Sequential(*layers)


def install_stand_in() -> None:
    """Make ``import torchvision`` give a module whose ``models.mobilenet_v3_small(weights=None)`` is this
    prototype (all PoseNet's default backbone needs); any other use of torchvision fails loudly."""
    fake = types.ModuleType("torchvision")
    fake.models = types.SimpleNamespace(  # type: ignore[attr-defined]
        mobilenet_v3_small=lambda weights=None: types.SimpleNamespace(features=mobilenet_v3_small_features()))
    sys.modules["torchvision"] = fake
