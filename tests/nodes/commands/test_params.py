"""Parameters declared once: a node's Params Struct gives its command-line options (names, types,
defaults, bounds, choices, help), its launch-file checks and its reference in docs/launch.md."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import pytest

from nodes.bus.pubsub import Subscriber
from nodes.cli import build_parser
from nodes.params import (
    DOC_BEGIN,
    DOC_END,
    add_params_arguments,
    node_modules,
    params_from_args,
    reference_markdown,
)
from nodes.record import RecordParams
from nodes.replay import ReplayParams
from nodes.runtime import node_parser

REPO = Path(__file__).resolve().parents[3]


class ToyParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rate_hz: Annotated[float, msgspec.Meta(gt=0, le=100, description="ticks per second, Hz")] = 10.0
    count: Annotated[int, msgspec.Meta(ge=1, description="how many")] = 3
    mode: Annotated[Literal["fast", "slow"], msgspec.Meta(description="pace")] = "fast"
    codec: Annotated[str, msgspec.Meta(pattern="^(jpeg|bgr8)$", description="image codec")] = "jpeg"
    enabled: Annotated[bool, msgspec.Meta(description="on or off")] = True
    topics: Annotated[list[str], msgspec.Meta(description="topics to use")] = msgspec.field(
        default_factory=lambda: ["camera/image"])
    gains: Annotated[dict[str, float], msgspec.Meta(description="gain per topic")] = {}
    limit_m: Annotated[float | None, msgspec.Meta(description="range limit, m; none: unlimited")] = None


def toy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy", exit_on_error=False)
    add_params_arguments(parser, ToyParams)
    return parser


def parse_toy(*argv: str) -> ToyParams:
    return params_from_args(toy_parser().parse_args(list(argv)), ToyParams)


def test_no_options_give_the_struct_defaults():
    assert parse_toy() == ToyParams()


def test_every_kind_of_field_round_trips_through_its_option():
    params = parse_toy("--rate-hz", "2.5", "--count", "7", "--mode", "slow", "--codec", "bgr8", "--no-enabled",
                       "--topics", "gps/fix,odometry", "--topics", "camera/image", "--gains", "gps/fix=0.5",
                       "--gains", "odometry=2", "--limit-m", "40")
    assert params == ToyParams(rate_hz=2.5, count=7, mode="slow", codec="bgr8", enabled=False,
                               topics=["gps/fix", "odometry", "camera/image"],
                               gains={"gps/fix": 0.5, "odometry": 2.0}, limit_m=40.0)
    assert parse_toy("--topics", "").topics == []
    assert parse_toy("--limit-m", "none").limit_m is None


@pytest.mark.parametrize("argv, message", [
    (["--rate-hz", "0"], "argument --rate-hz: 0 is out of range: must be > 0"),
    (["--rate-hz", "101"], "must be <= 100"),
    (["--count", "2.5"], "argument --count: '2.5' is not an integer"),
    (["--mode", "medium"], "argument --mode: 'medium' is not one of fast, slow"),
    (["--codec", "png"], "argument --codec: 'png' is not one of jpeg, bgr8"),
    (["--gains", "odometry"], "argument --gains: 'odometry' is not KEY=VALUE"),
    (["--speed", "3"], "unrecognized arguments"),
])
def test_a_bad_value_is_refused_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        argparse_parse(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def argparse_parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="toy")
    add_params_arguments(parser, ToyParams)
    return parser.parse_args(argv)


def test_a_command_may_set_its_own_defaults():
    parser = argparse.ArgumentParser(prog="toy")
    add_params_arguments(parser, ToyParams, defaults={"count": 5, "topics": ["gps/fix"]})
    assert params_from_args(parser.parse_args([]), ToyParams) == ToyParams(count=5, topics=["gps/fix"])
    given = params_from_args(parser.parse_args(["--count", "2", "--topics", "odometry"]), ToyParams)
    assert (given.count, given.topics) == (2, ["odometry"])  # the option replaces the default list
    assert "how many (default 5)" in parser.format_help()


def test_help_comes_from_the_field_docs_with_defaults_and_choices():
    text = toy_parser().format_help()
    for fragment in ("--rate-hz HZ", "ticks per second, Hz (default 10.0)", "--mode {fast,slow}",
                     "--codec {jpeg,bgr8}", "--enabled, --no-enabled", "--topics TOPIC,...",
                     "(default camera/image)", "--limit-m M"):
        assert fragment in " ".join(text.split()), f"{fragment!r} not in:\n{text}"


@pytest.mark.parametrize("module, cls", node_modules(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_node_module_takes_every_parameter_as_an_option(module, cls):
    parser = argparse.ArgumentParser(prog=module)
    add_params_arguments(parser, cls.Params)
    assert params_from_args(parser.parse_args([]), cls.Params) == cls.Params()
    options = {s for a in parser._actions for s in a.option_strings}
    for name in cls.Params.__struct_fields__:
        assert "--" + name.replace("_", "-") in options, f"{module}: no option for {name}"
    help_text = node_parser(cls).format_help()  # the node process's own command line
    assert all("--" + name.replace("_", "-") in help_text for name in cls.Params.__struct_fields__)


def test_docs_reference_is_generated_from_the_params():
    doc = (REPO / "docs/launch.md").read_text()
    section = doc[doc.index(DOC_BEGIN) + len(DOC_BEGIN):doc.index(DOC_END)].strip()
    assert section == reference_markdown().strip(), \
        "docs/launch.md's node parameters are out of date: run `python -m nodes.params`"
    for module, cls in node_modules():
        assert f"`{module}`" in section
        for name in cls.Params.__struct_fields__:
            assert f"| `{name}` |" in section


# -- the commands built on it keep their options -----------------------------------------------

def cli_args(*argv: str) -> argparse.Namespace:
    return build_parser(argv[0]).parse_args(list(argv))


def test_replay_keeps_its_option_names_and_gains_one_per_parameter():
    args = cli_args("replay", "drive.mcap", "--rate", "2", "--lockstep", "--lockstep-topic", "posenet/fix",
                    "--lockstep-topic", "localization/pose", "--start", "1.5", "--end", "9", "--loop",
                    "--topics", "camera/image,gps/fix", "--start-delay", "0.2", "--lockstep-timeout-s", "3")
    assert params_from_args(args, ReplayParams) == ReplayParams(
        drive="drive.mcap", rate=2.0, lockstep=True, lockstep_topics=["posenet/fix", "localization/pose"],
        start_s=1.5, end_s=9.0, loop=True, topics=["camera/image", "gps/fix"], start_delay_s=0.2,
        lockstep_timeout_s=3.0)
    assert params_from_args(cli_args("replay", "d.mcap"), ReplayParams) == ReplayParams(drive="d.mcap")
    assert cli_args("replay", "d.mcap", "--launch", "g.toml").launch == "g.toml"


def test_record_keeps_its_options(capsys):
    args = cli_args("record", "-o", "out.mcap", "--topics", "gps/fix", "--duration", "2")
    assert params_from_args(args, RecordParams) == RecordParams(output="out.mcap", topics=["gps/fix"])
    assert args.duration == 2.0
    with pytest.raises(SystemExit):
        cli_args("record")
    assert "-o/--output" in capsys.readouterr().err


def test_demo_checks_the_posenet_device_before_launching():
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "demo", "--device", "gpu"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "argument --device: 'gpu' does not match" in out.stderr


def test_node_run_takes_the_parameters_as_options(bus_config, processes):
    processes.start("-m", "nodes.cli", "node", "run", "test_pattern", "--width-px", "32", "--height-px", "24",
                    "--rate-hz", "20", "--encoding", "bgr8")
    with Subscriber("camera/image", config=bus_config) as sub:
        msg = sub.recv(timeout_s=20)
    assert msg is not None, "no frame from `streetloc node run test_pattern`"
    assert (msg.width_px, msg.height_px, msg.encoding) == (32, 24, "bgr8")


def test_node_process_refuses_an_out_of_range_parameter_option(bus_config):
    out = subprocess.run([sys.executable, "-m", "nodes.test_pattern", "--rate-hz", "-1"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and "argument --rate-hz: -1 is out of range: must be > 0" in out.stderr


def test_node_params_lists_a_node_by_its_short_name():
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "node", "params", "test_pattern"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert out.stdout.startswith("nodes.test_pattern (TestPatternCamera)")
    row = next(line for line in out.stdout.splitlines() if line.split()[0] == "rate_hz")
    assert row.split()[1:3] == ["float", "10.0"] and "> 0, <= 1000" in row and "frames per second" in row


@dataclasses.dataclass
class ToyConfig:
    """A command's config as a dataclass (as a training config is): the same options and checks."""

    out_dir: Annotated[Path, msgspec.Meta(description="where to write")]
    epochs: Annotated[int, msgspec.Meta(ge=1, description="passes over the data")] = 30
    threads: int | None = None


def test_a_dataclass_config_gets_the_same_options():
    parser = argparse.ArgumentParser(prog="toy")
    add_params_arguments(parser, ToyConfig, required=("out_dir",))
    config = params_from_args(parser.parse_args(["--out-dir", "runs/a", "--epochs", "3", "--threads", "2"]),
                              ToyConfig, node="toy")
    assert config == ToyConfig(out_dir=Path("runs/a"), epochs=3, threads=2)
    assert "--out-dir PATH" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--out-dir", "x", "--epochs", "0"])
