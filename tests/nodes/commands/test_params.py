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
from nodes.cli import main as cli_main
from nodes.params import (
    DOC_BEGIN,
    DOC_END,
    add_params_arguments,
    node_modules,
    option_name,
    param_fields,
    params_from_args,
    params_text,
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


# -- a pair of ints (an image size, a grid) is AxB ------------------------------------------------

class PairParams(msgspec.Struct, kw_only=True):
    input_size: Annotated[tuple[int, int], msgspec.Meta(
        description="input in pixels", extra={"metavar": "WxH", "low": 16, "high": 4096})] = (160, 120)
    grid: tuple[Annotated[int, msgspec.Meta(ge=1, le=16)], Annotated[int, msgspec.Meta(ge=1, le=16)]] = (3, 4)
    crop: Annotated[tuple[int, int] | None, msgspec.Meta(description="crop, pixels; none: whole image")] = None


def pair_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pairs")
    add_params_arguments(parser, PairParams)
    return parser


def test_a_pair_of_ints_is_given_as_AxB_and_shown_so():
    parse = pair_parser().parse_args
    assert params_from_args(parse([]), PairParams) == PairParams()
    assert params_from_args(parse(["--input-size", "32x24", "--grid", "2X5", "--crop", "100x50"]),
                            PairParams) == PairParams(input_size=(32, 24), grid=(2, 5), crop=(100, 50))
    assert params_from_args(parse(["--crop", "none"]), PairParams).crop is None
    text = " ".join(pair_parser().format_help().split())
    for fragment in ("--input-size WxH input in pixels (default 160x120)", "--grid AxB", "(default 3x4)"):
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    rows = {line.split()[0]: line for line in params_text(PairParams)}
    assert "pair of int" in rows["grid"] and "3x4" in rows["grid"] and "each >= 1, <= 16" in rows["grid"]


@pytest.mark.parametrize("argv, message", [
    (["--input-size", "big"], "argument --input-size: 'big' is not WxH"),
    (["--input-size", "8x8"], "argument --input-size: '8x8': both numbers of WxH must be 16..4096"),  # Meta extra
    (["--grid", "3x17"], "argument --grid: '3x17': both numbers of AxB must be 1..16"),  # the items' ge/le
])
def test_a_bad_pair_is_refused_naming_the_option_and_its_bounds(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        pair_parser().parse_args(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_a_list_option_may_take_several_words():
    parser = argparse.ArgumentParser(prog="toy")
    add_params_arguments(parser, ToyParams, argparse_kwargs={"topics": {"nargs": "+"}})
    args = parser.parse_args(["--topics", "gps/fix", "odometry,camera/image"])
    assert params_from_args(args, ToyParams).topics == ["gps/fix", "odometry", "camera/image"]


# -- streetloc train / evaluate: every option derived from the configs ------------------------------

def command_help(*argv: str, capsys) -> str:
    assert cli_main([*argv, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("model", ["posenet", "segmenter"])
def test_train_help_lists_every_config_field_with_the_configs_default(model, capsys):
    """Every field of TrainConfig, DataConfig and the model's Options has its option, showing the
    struct's own default: a default copied by hand into the command would show up here."""
    from perception.models import get_model_entry
    from perception.training import DataConfig, TrainConfig

    text = command_help("train", model, capsys=capsys)
    options = get_model_entry(model).training_module().Options
    checked = 0
    for config, skip in ((TrainConfig, {"out_dir"}), (DataConfig, {"seed"}), (options, set())):
        for f in param_fields(config):
            assert option_name(f.name) in text, f"{config.__name__}.{f.name}: no {option_name(f.name)}"
            if f.name not in skip and not f.required and "default" not in f.description:
                assert f"(default {f.default_text})" in text, f"{config.__name__}.{f.name}: default not shown"
                checked += 1
    assert checked >= 20
    assert f"(default runs/{model})" in text  # the command's own default for out_dir
    assert "--seed N seed of everything random" in text  # one --seed: TrainConfig's, DataConfig's follows


def test_train_keeps_its_option_names():
    from perception.training import DataConfig, TrainConfig

    args = cli_args("train", "posenet", "--data", "a.mcap", "b.mcap@0::2", "--val-data", "c.mcap", "--out", "runs/x",
                    "--workers", "2", "--no-amp", "--quiet", "--epochs", "3", "--seed", "7", "--threads", "1",
                    "--resume", "--cache-dir", "cache", "--input-size", "32x24", "--no-augment", "--export", "m.pt")
    config = params_from_args(args, TrainConfig, dest="train")
    assert config == TrainConfig(out_dir=Path("runs/x"), epochs=3, seed=7, amp=False, num_workers=2, threads=1,
                                 resume=True, progress=False)
    data = params_from_args(args, DataConfig, dest="data", base={"seed": config.seed})
    assert data == DataConfig(drives=["a.mcap", "b.mcap@0::2"], val_drives=["c.mcap"], seed=7,
                              cache_dir=Path("cache"))
    assert (args.export, getattr(args, "options.input_size"), getattr(args, "options.augment")) == \
        ("m.pt", (32, 24), False)
    assert params_from_args(cli_args("train", "posenet", "--data", "a.mcap"), TrainConfig,
                            dest="train").out_dir == Path("runs/posenet")


@pytest.mark.parametrize("argv, message", [
    (["train", "segmenter", "--data", "a.mcap", "--head-channels", "9999"],
     "argument --head-channels: 9999 is out of range: must be <= 1024"),
    (["train", "posenet", "--data", "a.mcap", "--input-size", "big"], "argument --input-size: 'big' is not WxH"),
    (["train", "posenet", "--data", "a.mcap", "--val-fraction", "1"], "argument --val-fraction: 1 is out of range: must be < 1"),
    (["train", "posenet", "--data", "a.mcap", "--epochs", "0"], "argument --epochs: 0 is out of range: must be >= 1"),
    (["train", "posenet", "--data", "a.mcap", "--device", "gpu"], "argument --device: 'gpu' does not match"),
    (["train", "posenet"], "the following arguments are required: --drives/--data"),
    (["evaluate", "posenet", "--data", "a.mcap", "--batch-size", "0"], "argument --batch-size: 0 is out of range"),
])
def test_train_and_evaluate_refuse_a_bad_option_in_one_line(argv, message, capsys):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_evaluate_options_come_from_its_config(capsys):
    from perception.evaluation import EvalConfig

    text = command_help("evaluate", "posenet", capsys=capsys)
    for f in param_fields(EvalConfig):
        assert f"{option_name(f.name)}" in text and f"(default {f.default_text})" in text
    args = cli_args("evaluate", "posenet", "--data", "a.mcap", "--batch-size", "8", "--device", "cpu", "--record")
    assert params_from_args(args, EvalConfig, dest="eval") == EvalConfig(device="cpu", batch_size=8, record=True)
