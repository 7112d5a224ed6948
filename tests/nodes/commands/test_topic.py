"""``streetloc topic`` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from nodes.bus.topics import TOPICS
from nodes.commands.topic import rate_stats


def streetloc(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nodes.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_topic_list_prints_the_table(bus_config):
    out = streetloc("topic", "list")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["TOPIC", "TYPE", "RATE_HZ", "RECORDED", "ENDPOINT"]
    for topic in TOPICS.values():
        row = next(line for line in lines if line.startswith(topic.name + " "))
        assert topic.type_name in row and bus_config.ipc_dir in row


def test_topic_info_lists_fields(bus_config):
    out = streetloc("topic", "info", "localization/pose")
    assert out.returncode == 0
    assert "type: Pose" in out.stdout and "cov_enu_m2: tuple[float, float, float, float]" in out.stdout


def test_unknown_topic_is_one_line_error(bus_config):
    out = streetloc("topic", "echo", "no/such/topic")
    assert out.returncode == 2
    assert "unknown topic 'no/such/topic'" in out.stderr and "Traceback" not in out.stderr


def test_echo_and_hz_on_a_live_topic(bus_config, processes):
    processes.start("-m", "nodes.test_pattern", "--param", "rate_hz=25", "--param", "width_px=32",
                    "--param", "height_px=24")
    out = streetloc("topic", "echo", "camera/image", "-n", "2", "--json", "--timeout", "15")
    assert out.returncode == 0, out.stderr
    msgs = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(msgs) == 2 and msgs[0]["data"] == "<uint8 [24, 32, 3]>"
    out = streetloc("topic", "hz", "camera/image", "--duration", "2.5")
    assert out.returncode == 0
    rate = float(out.stdout.strip().splitlines()[-1].split("average rate ")[1].split()[0])
    assert 20 <= rate <= 30


def test_echo_times_out_with_a_message(bus_config):
    out = streetloc("topic", "echo", "gps/fix", "--timeout", "0.5")
    assert out.returncode == 1 and "no message on gps/fix" in out.stderr


def test_rate_stats_use_stamps_not_arrival():
    stamps = [i * 100_000_000 for i in range(11)]  # 10 Hz by capture time
    st = rate_stats(stamps)
    assert abs(st["rate_hz"] - 10.0) < 1e-9 and st["std_ms"] == 0.0
