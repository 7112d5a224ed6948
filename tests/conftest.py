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
