"""``streetloc launch FILE --check``: every broken launch file is an answer naming file, node and key.

In-process and socket-free: the check imports node modules and reads their classes, nothing starts.
"""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

import pytest

from nodes.bus.topics import BusConfig
from nodes.cli import main
from nodes.launcher import build_graph, load_launch
from nodes.launcher.description import ArgTable, BusTable, LaunchFile, MachineTable, NodeEntry
from nodes.launcher.graph import toml_literal

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "launch").glob("*.toml"))

CAMERA = """
[nodes.camera]
module = "nodes.test_pattern"
"""
MONITOR = """
[nodes.monitor]
module = "nodes.monitor"
params = { topics = ["camera/image"] }
"""


def check(tmp_path: Path, capsys, text: str, *extra: str, name: str = "graph.toml") -> tuple[int, str, str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    code = main(["launch", str(path), "--check", *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_launch_files_pass_and_print_the_graph(path, capsys):
    assert main(["launch", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "camera/image" in out and "\ntopics:\n" in out
    assert out.rstrip().endswith("OK")


def test_graph_lists_nodes_topics_and_who_publishes_to_whom(tmp_path, capsys):
    code, out, err = check(tmp_path, capsys, CAMERA + MONITOR)
    assert code == 0, err
    assert re.search(r"camera\s+nodes\.test_pattern \(TestPatternCamera\)", out)
    assert re.search(r"monitor\s+nodes\.monitor \(TopicMonitor\)", out)
    assert re.search(r"camera/image\s+Image, 30 Hz\s+camera -> monitor", out)
    assert "diagnostics" in out and "camera, monitor -> launcher" in out


# (launch file, [what the one-line message must say]); each message also names the file
BROKEN = {
    "module does not exist": (
        '[nodes.camera]\nmodule = "nodes.test_patern"\n',
        ["node camera: module: no module named 'nodes.test_patern'", "did you mean 'nodes.test_pattern'"]),
    "module is not a node": (
        '[nodes.camera]\nmodule = "nodes.cli"\n',
        ["node camera: module: module nodes.cli defines no Node subclass"]),
    "unknown parameter": (
        CAMERA + "params = { rate = 5 }\n",
        ["node camera: params.rate: unknown parameter 'rate'", "known: encoding, height_px, hfov_deg, rate_hz"]),
    "ill-typed parameter": (
        CAMERA + 'params = { rate_hz = "fast" }\n',
        ["node camera: params.rate_hz: bad parameter: rate_hz: Expected `float`, got `str`"]),
    "out-of-range parameter": (
        CAMERA + "params = { rate_hz = -3 }\n",
        ["node camera: params.rate_hz:", "Expected `float` > 0"]),
    "parameter naming no usable topic": (
        CAMERA + '[nodes.monitor]\nmodule = "nodes.monitor"\nparams = { topics = ["camera/imag"] }\n',
        ["node monitor: params: topics: unknown topic 'camera/imag'"]),
    "subscribed topic nothing publishes": (
        CAMERA + '[nodes.monitor]\nmodule = "nodes.monitor"\nparams = { topics = ["localization/pose"] }\n',
        ["node monitor: subscribes to 'localization/pose' but no node of this graph publishes it",
         "published: camera/image", "external_topics"]),
    "two publishers of a topic": (
        CAMERA + '[nodes.camera2]\nmodule = "nodes.test_pattern"\n',
        ["node camera2: publishes 'camera/image', which node camera", "publishes too"]),
    "type mismatch between publisher and subscriber": (
        CAMERA + 'remap = { "camera/image" = "posenet/fix" }\n'
        + '[nodes.monitor]\nmodule = "nodes.monitor"\nparams = { topics = ["posenet/fix"] }\n',
        ["node camera: remap.camera/image: type mismatch: TestPatternCamera publishes 'camera/image' as "
         "Image, but 'posenet/fix' carries GeoFix"]),
    "remap of a topic the node does not have": (
        CAMERA + 'remap = { "gps/fix" = "posenet/fix" }\n',
        ["node camera: remap.gps/fix: the node neither subscribes to nor publishes 'gps/fix'"]),
    "misspelt key": (
        CAMERA + "respawn_dealy_s = 2\n",
        ["node camera: respawn_dealy_s: unknown key (did you mean 'respawn_delay_s'?)"]),
    "ill-typed launch key": (
        CAMERA + 'respawn = "sometimes"\n',
        ["node camera: respawn: Invalid enum value 'sometimes'; expected one of: always, never, on-failure"]),
    "stop timeout beyond the 5 s promise": (
        CAMERA + "stop_timeout_s = 10\n",
        ["node camera: stop_timeout_s: Expected `float` <= 4.5"]),
    "missing module": (
        "[nodes.camera]\nrespawn = \"never\"\n",
        ["node camera: module: missing"]),
    "undeclared argument": (
        CAMERA + 'params = { rate_hz = "${fps}" }\n',
        ["node camera: params.rate_hz: ${fps}: no such argument", "[args.fps]"]),
    "waiting for a topic nobody publishes": (
        CAMERA + MONITOR + 'wait_for_topics = ["gps/fix"]\n',
        ["node monitor: wait_for_topics: waits for 'gps/fix', which nothing in this graph publishes"]),
    "waiting for a disabled node": (
        'external_topics = ["camera/image"]\n' + CAMERA + "enabled = false\n" + MONITOR + 'wait_for_ready = ["camera"]\n',
        ["node monitor: wait_for_ready: waits for node 'camera', which is disabled"]),
    "waits in a circle": (
        CAMERA + 'wait_for_ready = ["monitor"]\n' + MONITOR + 'wait_for_ready = ["camera"]\n',
        ["waits form a circle, none would start: camera -> monitor -> camera"]),
    "unknown external topic": (
        'external_topics = ["camera/imag"]\n' + CAMERA,
        ["external_topics: no topic 'camera/imag' in the topic table (did you mean 'camera/image'?)"]),
    "not TOML": (
        CAMERA + "respawn = = 1\n",
        ["not valid TOML"]),
    "misspelt top-level key": (
        "nodse = 1\n" + CAMERA,
        ["nodse: unknown key (did you mean 'nodes'?)"]),
    "ill-typed top-level key": (
        'include = "base.toml"\n' + CAMERA,
        ["include: Expected `array`, got `str`"]),
    "misspelt bus key": (
        "[bus]\nport_bas = 5\n" + CAMERA,
        ["bus.port_bas: unknown key (did you mean 'port_base'?)"]),
    "ill-typed bus key": (
        "[bus]\nport_base = true\n" + CAMERA,
        ["bus.port_base: Expected `int`, got `bool`"]),
    "machine without an address": (
        '[machines.robot]\nbind = "eth0"\n' + CAMERA,
        ["machines.robot.address: every machine needs an address"]),
    "argument without a description": (
        "[args.fps]\ndefault = 1.0\n" + CAMERA,
        ["args.fps.description: every argument needs a description"]),
    "misspelt argument key": (
        '[args.fps]\ndefault = 1.0\ndescription = "frame rate"\nchoice = [1.0]\n' + CAMERA,
        ["args.fps.choice: unknown key (did you mean 'choices'?)"]),
    "unknown machine": (
        '[machines.robot]\naddress = "10.0.0.2"\n' + CAMERA + 'machine = "robto"\n',
        ["node camera: machine: no machine 'robto' (did you mean 'robot'?)"]),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=lambda c: c.replace(" ", "-"))
def test_check_names_file_node_and_key(case, tmp_path, capsys):
    text, expected = BROKEN[case]
    code, out, err = check(tmp_path, capsys, text)
    assert code == 2, (out, err)
    assert out == ""  # no graph printed for a broken file
    for fragment in expected:
        assert fragment in err, f"{fragment!r} not in:\n{err}"
    first = err.splitlines()[0]
    assert first.startswith(str(tmp_path / "graph.toml").removeprefix(str(Path.cwd()) + "/"))
    assert err.rstrip().endswith("nothing started")


def test_every_problem_is_listed_not_only_the_first(tmp_path, capsys):
    text = (CAMERA + "params = { rate = 5 }\n" + '[nodes.camera2]\nmodule = "nodes.nope"\n'
            + '[nodes.monitor]\nmodule = "nodes.monitor"\nparams = { topics = ["gps/fix"] }\n')
    code, _, err = check(tmp_path, capsys, text)
    assert code == 2
    assert "3 problems" in err
    assert "node camera: params.rate" in err and "node camera2: module" in err and "node monitor: subscribes" in err


def test_problem_in_an_included_file_names_that_file(tmp_path, capsys):
    (tmp_path / "base.toml").write_text(CAMERA + 'params = { rate_hz = "fast" }\n')
    code, _, err = check(tmp_path, capsys, 'include = ["base.toml"]\n' + MONITOR)
    assert code == 2
    assert re.search(r"base\.toml: node camera: params\.rate_hz: bad parameter", err), err


def test_every_bad_key_of_a_table_is_listed(tmp_path, capsys):
    code, _, err = check(tmp_path, capsys, CAMERA + 'respawn_dealy_s = 2\nrespwn = "never"\nmax_restarts = "many"\n')
    assert code == 2
    assert "3 problems" in err
    assert "respawn_dealy_s: unknown key" in err and "respwn: unknown key (did you mean 'respawn'?)" in err
    assert "max_restarts: Expected `int`, got `str`" in err


def test_argument_problem_in_an_included_file_names_that_file(tmp_path, capsys):
    (tmp_path / "base.toml").write_text('[args.fps]\ndefault = 1.0\ndescription = "fps"\nchoice = [1.0]\n')
    code, _, err = check(tmp_path, capsys, 'include = ["base.toml"]\n[args.fps]\ndefault = 2.0\n' + CAMERA)
    assert code == 2
    assert re.search(r"base\.toml: args\.fps\.choice: unknown key", err), err


def test_include_cycle(tmp_path, capsys):
    (tmp_path / "a.toml").write_text('include = ["graph.toml"]\n')
    code, _, err = check(tmp_path, capsys, 'include = ["a.toml"]\n' + CAMERA)
    assert code == 2
    assert "include cycle" in err and "a.toml" in err


def test_missing_file_is_one_line(tmp_path, capsys):
    code = main(["launch", str(tmp_path / "nope.toml"), "--check"])
    err = capsys.readouterr().err
    assert code == 2
    assert "nope.toml not found" in err


def test_args_defaults_overrides_conditions_and_errors(tmp_path, capsys):
    text = """
    [args.fps]
    default = 10.0
    description = "frame rate, Hz"
    [args.camera]
    default = "test_pattern"
    description = "which camera"
    choices = ["test_pattern", "v4l2"]
    [nodes.camera]
    module = "nodes.test_pattern"
    enabled = "${camera} == test_pattern"
    params = { rate_hz = "${fps}" }
    """
    path = tmp_path / "args.toml"
    path.write_text(textwrap.dedent(text))
    desc = load_launch(path, {"fps": "25"})
    assert not desc.problems
    graph = build_graph(desc)
    assert not graph.problems
    assert graph.nodes["camera"].params.rate_hz == 25.0
    assert "rate_hz=25.0" in graph.nodes["camera"].param_args
    assert not load_launch(path, {"camera": "v4l2"}).nodes["camera"].enabled

    assert main(["launch", str(path), "--check", "--arg", "fsp=3"]) == 2
    assert "--arg fsp: no such argument (did you mean 'fps'?)" in capsys.readouterr().err
    assert main(["launch", str(path), "--check", "--arg", "fps=fast"]) == 2
    assert "--arg fps=fast: expected float" in capsys.readouterr().err
    assert main(["launch", str(path), "--check", "--arg", "camera=usb"]) == 2
    assert "not one of test_pattern, v4l2" in capsys.readouterr().err
    assert main(["launch", str(path), "--show-args"]) == 0
    assert "fps: frame rate, Hz [default 10.0]" in capsys.readouterr().out


def test_include_overrides_key_by_key(tmp_path):
    (tmp_path / "base.toml").write_text(CAMERA + "params = { rate_hz = 5.0, width_px = 64 }\nrespawn = \"never\"\n")
    (tmp_path / "top.toml").write_text('include = ["base.toml"]\n[nodes.camera]\nparams = { rate_hz = 7.0 }\n')
    desc = load_launch(tmp_path / "top.toml")
    graph = build_graph(desc)
    assert not graph.problems
    camera = graph.nodes["camera"]
    assert (camera.params.rate_hz, camera.params.width_px) == (7.0, 64)
    assert camera.spec.entry.respawn == "never"
    assert camera.spec.where("params.rate_hz").endswith("top.toml")
    assert camera.spec.where("params.width_px").endswith("base.toml")


def test_split_graph_derives_each_machines_bus(monkeypatch):
    monkeypatch.setenv("STREETLOC_INSECURE", "1")  # 10.0.0.x without keys (tests/nodes/bus/test_curve.py)
    desc = load_launch(REPO / "launch/split.toml", {"robot_address": "10.0.0.2", "box_address": "10.0.0.3"})
    graph = build_graph(desc)
    assert not graph.problems
    with pytest.raises(ValueError, match="--insecure"):  # 10.0.0.x without keys: refused unless opted in
        graph.bus_config("robot", base=BusConfig())
    robot, box = (graph.bus_config(m, base=BusConfig(insecure=True)) for m in ("robot", "box"))
    assert (robot.transport, robot.bind, robot.topic_hosts) == ("tcp", "10.0.0.2", {})
    assert (box.transport, box.host, box.bind) == ("tcp", "10.0.0.3", "10.0.0.3")
    assert box.topic_hosts == {"camera/image": "10.0.0.2"}  # the box subscribes where the camera runs
    assert list(graph.part("box")) == ["monitor"]


def test_running_a_split_graph_needs_a_machine(capsys):
    assert main(["launch", str(REPO / "launch/split.toml")]) == 2
    assert "pass --machine NAME" in capsys.readouterr().err


def test_toml_literal_round_trips():
    for value in [1, -2.5, 1e-5, True, "a \"quoted\" \\ string\n", [1, 2], {"camera/image": 10.0}, []]:
        assert tomllib.loads(f"v = {toml_literal(value)}")["v"] == value


# -- the files document themselves ---------------------------------------------------------------

@pytest.mark.parametrize("schema", [LaunchFile, ArgTable, MachineTable, BusTable, NodeEntry],
                         ids=lambda s: s.__name__)
def test_docs_list_every_key_of_the_schema(schema):
    doc = (REPO / "docs/launch.md").read_text()
    for key in schema.__struct_fields__:
        assert f"`{key}`" in doc or f"`[{key}" in doc, f"docs/launch.md does not document {schema.__name__}.{key}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_key_in_shipped_files_is_commented(path):
    """As robot_localization's ekf.yaml: each key has a comment beside it or right above it, or sits in
    a table whose header has one (``description`` keys describe themselves)."""
    lines = [line.strip() for line in path.read_text().splitlines()]

    def comment_above(i: int) -> bool:
        j = i - 1
        while j >= 0 and not lines[j]:
            j -= 1
        return j >= 0 and lines[j].startswith("#")

    header_commented = False
    for i, line in enumerate(lines):
        if line.startswith("["):
            header_commented = comment_above(i)
            continue
        key = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if not key:
            continue
        ok = "#" in line or comment_above(i) or header_commented or key.group(1) == "description"
        assert ok, f"{path.name}:{i + 1}: {line!r} has no comment"


def test_programs_get_a_launch_error_listing_every_problem(tmp_path):
    from nodes.launcher import LaunchError, load_graph

    path = tmp_path / "two.toml"
    path.write_text(CAMERA + 'params = { rate = 5 }\n[nodes.camera2]\nmodule = "nodes.nope"\n')
    with pytest.raises(LaunchError) as info:
        load_graph(str(path)).raise_for_problems()
    assert len(info.value.problems) == 2
    assert "node camera: params.rate" in str(info.value) and "node camera2: module" in str(info.value)
