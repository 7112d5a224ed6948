"""Shared fixtures: an isolated bus per test, and helpers to run node processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from nodes.bus.topics import BusConfig


@pytest.fixture
def bus_config() -> Iterator[BusConfig]:
    """A bus of this test's own (ipc sockets in a fresh folder), also exported to the environment so
    that subprocesses and BusConfig.from_env() see it."""
    with tempfile.TemporaryDirectory(prefix="streetloc-test-") as ipc_dir:
        config = BusConfig(transport="ipc", ipc_dir=ipc_dir)
        old = {k: os.environ.get(k) for k in config.to_env()}
        os.environ.update(config.to_env())
        try:
            yield config
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class Processes:
    """Starts subprocesses and guarantees they are gone at the end of the test."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, *args], env={**os.environ, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.cleanup()


def save_tiny_posenet(path, *, origin: dict, anchor_spacing_m: float = 0.1, scale_m: float = 50.0,
                      position_cov_scale: float = 2.0) -> str:
    """An untrained tiny PoseNet (32x24 input) with a complete checkpoint record, saved at ``path``:
    for testing what consumes a checkpoint (the node, the demo), not accuracy."""
    import torch

    from perception.models import Checkpoint, get_model

    torch.manual_seed(0)
    arch = {"backbone": "mobilenet_v3_small", "hidden": 16, "dropout": 0.0, "num_anchors": 4}
    model = get_model("posenet", **arch)
    d = anchor_spacing_m
    model.set_anchors(torch.tensor([[0.0, 0.0], [d, 0.0], [0.0, d], [d, d]]), d)
    ckpt = Checkpoint(model="posenet", arch=arch, state_dict=model.state_dict(), meta={
        "input_size_px": [32, 24], "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3},
        "geo_origin": origin, "center_enu_m": [0.0, 0.0], "scale_m": scale_m,
        "calibration": {"position_cov_scale": position_cov_scale, "heading_var_scale": 1.0}})
    return str(ckpt.save(path))
