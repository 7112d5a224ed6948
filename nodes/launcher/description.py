"""Launch files: TOML under ``launch/``, read into a ``LaunchDescription`` (no process is started here).

A launch file lists the nodes of a graph (``[nodes.NAME]``), the arguments it takes (``[args.NAME]``,
given as ``--arg NAME=VALUE``), other launch files it builds on (``include``), optionally the machines
it spans (``[machines.NAME]``) and bus settings (``[bus]``). Every key, its unit and default is listed
in ``NodeEntry`` below and in docs/launch.md; the shipped files carry the same as comments.

Loading is forgiving in one way only: it collects every problem it finds (``Problem``: file, node, key,
message) instead of stopping at the first, so that ``streetloc launch FILE --check`` lists them all.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

# -- problems -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a launch file, located as precisely as known."""

    file: str
    message: str
    node: str | None = None
    key: str | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.node is not None:
            parts.append(f"node {self.node}")
        if self.key is not None:
            parts.append(self.key)
        return ": ".join([*parts, self.message])


class LaunchError(ValueError):
    """A launch file that cannot be run; ``problems`` lists every problem found, one line each."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# -- the keys of a node entry (the schema the docs and comments follow) --------------------------

RESPAWN_POLICIES = ("never", "on-failure", "always")
NODE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_STOP_TIMEOUT_S = 4.5  # SIGTERM -> SIGKILL; below the 5 s in which the launcher promises a stop


class NodeEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[nodes.NAME]`` table, after argument substitution."""

    module: Annotated[str, msgspec.Meta(
        description="Python module of the node, run as `python -m MODULE` (e.g. nodes.test_pattern)")]
    enabled: Annotated[bool | str, msgspec.Meta(
        description="run this node: true, false, or a condition 'A == B' / 'A != B' on arguments")] = True
    machine: Annotated[str, msgspec.Meta(
        description="machine that runs the node ([machines.*]); default: the first machine listed")] = ""
    params: Annotated[dict[str, Any], msgspec.Meta(
        description="the node's parameters (`streetloc node params MODULE` lists them)")] = {}
    remap: Annotated[dict[str, str], msgspec.Meta(
        description="declared topic -> table topic of the same message type")] = {}
    env: Annotated[dict[str, str | int | float | bool], msgspec.Meta(
        description="environment variables of the node's process (e.g. CUDA_VISIBLE_DEVICES)")] = {}
    respawn: Annotated[Literal["never", "on-failure", "always"], msgspec.Meta(
        description="restart the node: never, on-failure (non-zero exit or signal), always")] = "on-failure"
    respawn_delay_s: Annotated[float, msgspec.Meta(
        ge=0, le=3600, description="wait before the first restart, s")] = 1.0
    respawn_backoff: Annotated[float, msgspec.Meta(
        ge=1, le=10, description="each further restart within the window waits this factor longer")] = 2.0
    respawn_max_delay_s: Annotated[float, msgspec.Meta(
        ge=0, le=3600, description="longest wait before a restart, s")] = 30.0
    max_restarts: Annotated[int, msgspec.Meta(
        ge=0, description="restarts allowed within restart_window_s; one more exit is a crash loop "
                          "and the launcher gives up on the node")] = 5
    restart_window_s: Annotated[float, msgspec.Meta(
        gt=0, description="window over which restarts are counted, s")] = 60.0
    required: Annotated[bool, msgspec.Meta(
        description="stop the whole graph once this node has ended for good")] = False
    wait_for_topics: Annotated[list[str], msgspec.Meta(
        description="start only once a message has been seen on each of these topics")] = []
    wait_for_ready: Annotated[list[str], msgspec.Meta(
        description="start only once each of these nodes reports ready in its diagnostics")] = []
    wait_timeout_s: Annotated[float, msgspec.Meta(
        ge=0, description="start anyway (with a warning) after waiting this long, s; 0: wait forever")] = 0.0
    stop_timeout_s: Annotated[float, msgspec.Meta(
        gt=0, le=MAX_STOP_TIMEOUT_S, description="on stop, SIGKILL the node this long after SIGTERM, s")] = 3.0
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], msgspec.Meta(
        description="log level of the node (STREETLOC_LOG_LEVEL)")] = "INFO"


def node_keys() -> list[tuple[str, str, Any, str]]:
    """(key, type, default, description) of every node key, for docs and ``--help``."""
    from nodes.runtime import describe_params

    return describe_params(NodeEntry)


_NODE_TABLES = ("params", "remap", "env")  # merged key by key across includes; other keys are replaced
_TOP_KEYS = ("description", "include", "external_topics", "args", "bus", "machines", "nodes")
_ARG_KEYS = ("default", "description", "choices")
_BUS_KEYS = ("transport", "ipc_dir", "host", "bind", "port_base")
_MACHINE_KEYS = ("address", "bind")


@dataclass(frozen=True)
class ArgSpec:
    """A launch argument: ``--arg NAME=VALUE`` on the command line, ``${NAME}`` in the files."""

    name: str
    default: Any  # None: required
    description: str
    choices: tuple[Any, ...] = ()
    file: str = ""


@dataclass(frozen=True)
class Machine:
    """A host of a graph split across machines."""

    name: str
    address: str  # where other machines reach it (IP address or host name)
    bind: str  # interface its publishers bind (IP address or interface name)


@dataclass
class NodeSpec:
    """One node of a launch description: its entry plus where each key came from."""

    name: str
    entry: NodeEntry
    enabled: bool
    file: str  # the file that defined the node's module
    origins: dict[str, str] = field(default_factory=dict)  # key -> file that set it

    def where(self, key: str | None) -> str:
        """The file that set ``key`` (``params.rate_hz`` falls back to ``params``), else the node's file."""
        while key:
            if key in self.origins:
                return self.origins[key]
            key = key.rpartition(".")[0]
        return self.file


@dataclass
class LaunchDescription:
    """A launch file with its includes merged and its arguments substituted."""

    file: str  # the file given by the user
    files: list[str]  # it and everything it included, in load order
    description: str
    args: dict[str, ArgSpec]
    arg_values: dict[str, Any]
    bus: dict[str, Any]  # [bus] keys set by the files
    machines: dict[str, Machine]
    nodes: dict[str, NodeSpec]  # all of them, disabled ones included
    external_topics: dict[str, str]  # topic -> file that declared it
    problems: list[Problem]

    @property
    def enabled_nodes(self) -> dict[str, NodeSpec]:
        return {n: s for n, s in self.nodes.items() if s.enabled}

    def machine_of(self, spec: NodeSpec) -> str:
        """The machine name of a node ("" for a single-machine graph)."""
        if not self.machines:
            return ""
        return spec.entry.machine or next(iter(self.machines))


# -- loading ------------------------------------------------------------------------------------

def display_path(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it, as users typed it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class _Merged:
    """The raw tables of a file and its includes, later files (the includer) overriding earlier ones."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.description = ""
        self.args: dict[str, dict[str, Any]] = {}
        self.arg_files: dict[str, str] = {}
        self.bus: dict[str, Any] = {}
        self.bus_files: dict[str, str] = {}
        self.machines: dict[str, dict[str, Any]] = {}
        self.machine_files: dict[str, str] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.node_origins: dict[str, dict[str, str]] = {}
        self.external: dict[str, str] = {}
        self.problems: list[Problem] = []

    def add_node(self, name: str, table: dict[str, Any], file: str) -> None:
        node = self.nodes.setdefault(name, {})
        origins = self.node_origins.setdefault(name, {})
        if "module" in table and node.get("module") not in (None, table["module"]):
            # another module under the same name: a different node, whose params would not fit
            node.clear()
            origins.clear()
        for key, value in table.items():
            if key in _NODE_TABLES and isinstance(value, dict) and isinstance(node.get(key), dict):
                for sub, sub_value in value.items():
                    node[key][sub] = copy.deepcopy(sub_value)
                    origins[f"{key}.{sub}"] = file
            else:
                node[key] = copy.deepcopy(value)
                if isinstance(value, dict):
                    for sub in value:
                        origins[f"{key}.{sub}"] = file
            origins[key] = file


def _load_tree(path: Path, merged: _Merged, stack: list[Path], arg_text: dict[str, str]) -> None:
    shown = display_path(path)
    if path.resolve() in [p.resolve() for p in stack]:
        chain = " -> ".join(display_path(p) for p in [*stack, path])
        merged.problems.append(Problem(display_path(stack[-1]), f"include cycle: {chain}", key="include"))
        return
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        where = display_path(stack[-1]) if stack else shown
        merged.problems.append(Problem(where, f"launch file {shown} not found",
                                       key="include" if stack else None))
        return
    except OSError as exc:
        merged.problems.append(Problem(shown, f"cannot read: {exc.strerror or exc}"))
        return
    except tomllib.TOMLDecodeError as exc:
        merged.problems.append(Problem(shown, f"not valid TOML: {exc}"))
        return
    merged.files.append(shown)
    for key in data:
        if key not in _TOP_KEYS:
            merged.problems.append(Problem(shown, f"unknown top-level key{_suggest(key, _TOP_KEYS)}; "
                                                  f"known: {', '.join(_TOP_KEYS)}", key=key))

    includes = data.get("include", [])
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        merged.problems.append(Problem(shown, "expected a list of file names", key="include"))
        includes = []
    for item in includes:
        # Include paths may use arguments given on the command line or defaulted in earlier files.
        own = data.get("args") if isinstance(data.get("args"), dict) else {}
        defaults = {k: v.get("default") for k, v in [*merged.args.items(), *own.items()] if isinstance(v, dict)}
        text = _substitute_text(item, {**defaults, **arg_text})
        if text is None:
            merged.problems.append(Problem(shown, f"{item!r}: unknown argument in include path", key="include"))
            continue
        _load_tree(path.parent / text, merged, [*stack, path], arg_text)

    if isinstance(data.get("description"), str):
        merged.description = data["description"]
    for topic in data.get("external_topics", []) if isinstance(data.get("external_topics"), list) else []:
        merged.external[str(topic)] = shown
    if "external_topics" in data and not isinstance(data["external_topics"], list):
        merged.problems.append(Problem(shown, "expected a list of topic names", key="external_topics"))

    for section, known in (("args", _ARG_KEYS), ("machines", _MACHINE_KEYS)):
        tables = data.get(section, {})
        if not isinstance(tables, dict):
            merged.problems.append(Problem(shown, "expected a table", key=section))
            continue
        target = merged.args if section == "args" else merged.machines
        files = merged.arg_files if section == "args" else merged.machine_files
        for name, table in tables.items():
            if not isinstance(table, dict):
                merged.problems.append(Problem(shown, f"expected a table [{section}.{name}]", key=f"{section}.{name}"))
                continue
            for key in table:
                if key not in known:
                    merged.problems.append(Problem(shown, f"unknown key{_suggest(key, known)}; known: "
                                                          f"{', '.join(known)}", key=f"{section}.{name}.{key}"))
            target.setdefault(name, {}).update({k: v for k, v in table.items() if k in known})
            files[name] = shown

    bus = data.get("bus", {})
    if not isinstance(bus, dict):
        merged.problems.append(Problem(shown, "expected a table", key="bus"))
        bus = {}
    for key, value in bus.items():
        if key == "topic_hosts":
            merged.problems.append(Problem(shown, "not set in launch files: declare [machines] and each "
                                                  "node's machine, the launcher derives topic hosts", key="bus.topic_hosts"))
        elif key not in _BUS_KEYS:
            merged.problems.append(Problem(shown, f"unknown key{_suggest(key, _BUS_KEYS)}; known: "
                                                  f"{', '.join(_BUS_KEYS)}", key=f"bus.{key}"))
        else:
            merged.bus[key] = value
            merged.bus_files[key] = shown

    nodes = data.get("nodes", {})
    if not isinstance(nodes, dict):
        merged.problems.append(Problem(shown, "expected tables [nodes.NAME]", key="nodes"))
        nodes = {}
    for name, table in nodes.items():
        if not NODE_NAME.match(name):
            merged.problems.append(Problem(shown, "a node name is letters, digits, _ and -, starting with a letter",
                                           node=name))
            continue
        if name == "launch":  # the launcher's own name on the console and in the log folder
            merged.problems.append(Problem(shown, "'launch' is the launcher's own name; pick another", node=name))
            continue
        if not isinstance(table, dict):
            merged.problems.append(Problem(shown, "expected a table [nodes.NAME]", node=name))
            continue
        merged.add_node(name, table, shown)


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- arguments ----------------------------------------------------------------------------------

_SUBST = re.compile(r"\$\$|\$\{([^}]*)\}")
_MISSING = object()


def _substitute_text(text: str, values: dict[str, Any]) -> str | None:
    """``text`` with ``${name}`` replaced (as text); None if a name is unknown."""
    missing = False

    def repl(m: re.Match) -> str:
        nonlocal missing
        if m.group(0) == "$$":
            return "$"
        value = values.get(m.group(1), _MISSING)
        if value is _MISSING or value is None:
            missing = True
            return ""
        return _as_text(value)

    out = _SUBST.sub(repl, text)
    return None if missing else out


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _substitute(value: Any, values: dict[str, Any], where: str) -> Any:
    """Replace ``${name}`` throughout ``value``. A string that is exactly ``${name}`` takes the
    argument's typed value (a number stays a number); elsewhere it is spliced in as text. ``$$`` is a
    literal ``$``. KeyError(name, where) for an unknown argument."""
    if isinstance(value, str):
        m = _SUBST.fullmatch(value)
        if m and m.group(1) is not None:
            name = m.group(1)
            if name not in values:
                raise KeyError(name, where)
            return values[name]
        for m in _SUBST.finditer(value):
            if m.group(1) is not None and m.group(1) not in values:
                raise KeyError(m.group(1), where)
        return _substitute_text(value, values)
    if isinstance(value, list):
        return [_substitute(v, values, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _substitute(v, values, f"{where}.{k}" if where else k) for k, v in value.items()}
    return value


def parse_arg_assignments(items: list[str]) -> dict[str, str]:
    """``["camera_rate_hz=15", ...]`` -> ``{"camera_rate_hz": "15"}``; ValueError for a malformed one."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--arg {item!r} is not NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def _coerce_arg(spec: ArgSpec, text: str) -> Any:
    """The typed value of ``--arg NAME=text``: the type of the argument's default decides."""
    default = spec.default
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false"):
                raise ValueError
            value: Any = text.lower() == "true"
        elif isinstance(default, int):
            value = int(text)
        elif isinstance(default, float):
            value = float(text)
        elif isinstance(default, list):
            value = tomllib.loads(f"v = {text}")["v"]
            if not isinstance(value, list):
                raise ValueError
        else:
            value = text
    except (ValueError, tomllib.TOMLDecodeError):
        raise ValueError(f"--arg {spec.name}={text}: expected {type(default).__name__} "
                         f"like the default {_as_text(default)!r}") from None
    return value


def _resolve_args(merged: _Merged, given: dict[str, str], problems: list[Problem],
                  root: str) -> tuple[dict[str, ArgSpec], dict[str, Any]]:
    specs: dict[str, ArgSpec] = {}
    for name, table in merged.args.items():
        file = merged.arg_files[name]
        if not ARG_NAME.match(name):
            problems.append(Problem(file, "an argument name is letters, digits and _", key=f"args.{name}"))
            continue
        choices = table.get("choices", [])
        if not isinstance(choices, list):
            problems.append(Problem(file, "expected a list", key=f"args.{name}.choices"))
            choices = []
        description = table.get("description", "")
        if not isinstance(description, str) or not description:
            problems.append(Problem(file, "every argument needs a description", key=f"args.{name}.description"))
        specs[name] = ArgSpec(name, table.get("default"), str(description), tuple(choices), file)
    values: dict[str, Any] = {}
    for name, text in given.items():
        if name not in specs:
            known = ", ".join(sorted(specs)) or "none"
            problems.append(Problem(root, f"--arg {name}: no such argument{_suggest(name, specs)}; "
                                          f"this launch file takes: {known}"))
            continue
        try:
            values[name] = _coerce_arg(specs[name], text)
        except ValueError as exc:
            problems.append(Problem(root, str(exc)))
    for name, spec in specs.items():
        if name not in values:
            if spec.default is None:
                problems.append(Problem(spec.file, f"required argument: pass --arg {name}=VALUE "
                                                   f"({spec.description})", key=f"args.{name}"))
                continue
            values[name] = spec.default
        if spec.choices and values[name] not in spec.choices:
            problems.append(Problem(root, f"--arg {name}={_as_text(values[name])}: not one of "
                                          f"{', '.join(_as_text(c) for c in spec.choices)}"))
    return specs, values


def _condition(value: bool | str) -> bool:
    """``enabled``: a bool, "true"/"false", or "A == B" / "A != B" (after substitution)."""
    if isinstance(value, bool):
        return value
    text = value.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    m = re.fullmatch(r"(.*?)\s*(==|!=)\s*(.*)", text)
    if not m:
        raise ValueError(f"{value!r} is not true, false, 'A == B' or 'A != B'")
    left, op, right = (s.strip().strip("'\"") for s in m.groups())
    return (left == right) if op == "==" else (left != right)


# -- building the description -------------------------------------------------------------------

def _friendly(exc: msgspec.ValidationError) -> tuple[str | None, str]:
    """(key path, message) of a msgspec validation error."""
    msg = str(exc)
    if " - at `$." in msg:
        what, _, where = msg.partition(" - at `$.")
        return where.rstrip("`").split("[")[0], what
    return None, msg


def _literal_choices(key: str | None) -> list[str]:
    """The allowed values of a node key that takes one of a fixed set (``respawn``, ``log_level``)."""
    for f in msgspec.inspect.type_info(NodeEntry).fields:  # type: ignore[attr-defined]
        if f.name == key:
            t = f.type.type if isinstance(f.type, msgspec.inspect.Metadata) else f.type
            if isinstance(t, msgspec.inspect.LiteralType):
                return [str(v) for v in t.values]
    return []


def load_launch(path: str | os.PathLike[str], args: dict[str, str] | None = None) -> LaunchDescription:
    """Read a launch file and its includes, substitute ``--arg`` values, and type-check every key.
    Problems are collected in ``.problems`` (the graph check adds more, see ``nodes.launcher.graph``)."""
    root = Path(path)
    shown = display_path(root)
    merged = _Merged()
    _load_tree(root, merged, [], args or {})
    problems = merged.problems
    specs, values = _resolve_args(merged, args or {}, problems, shown)

    def subst(value: Any, file: str, where: str, node: str | None = None) -> Any:
        try:
            return _substitute(value, values, where)
        except KeyError as exc:
            name, key = exc.args
            problems.append(Problem(file, f"${{{name}}}: no such argument{_suggest(name, specs)} "
                                          f"(declare it under [args.{name}])", node=node, key=key or None))
            return _MISSING

    bus: dict[str, Any] = {}
    for key, value in merged.bus.items():
        v = subst(value, merged.bus_files[key], f"bus.{key}")
        if v is not _MISSING:
            bus[key] = v

    machines: dict[str, Machine] = {}
    for name, table in merged.machines.items():
        file = merged.machine_files[name]
        t = subst(table, file, f"machines.{name}")
        if t is _MISSING:
            continue
        address = t.get("address")
        if not isinstance(address, str) or not address:
            problems.append(Problem(file, "every machine needs an address (IP or host name others reach it at)",
                                    key=f"machines.{name}.address"))
            continue
        bind = t.get("bind", address)
        if not isinstance(bind, str) or not bind:
            problems.append(Problem(file, "expected an IP address or interface name", key=f"machines.{name}.bind"))
            continue
        machines[name] = Machine(name, address, bind)

    nodes: dict[str, NodeSpec] = {}
    for name, table in merged.nodes.items():
        origins = merged.node_origins[name]
        file = origins.get("module") or next(iter(origins.values()), shown)
        resolved: dict[str, Any] = {}
        for key, value in table.items():
            v = subst(value, origins.get(key, file), key, node=name)
            if v is not _MISSING:
                resolved[key] = v
        for key in resolved:
            if key not in NodeEntry.__struct_fields__:
                problems.append(Problem(origins.get(key, file), f"unknown key{_suggest(key, NodeEntry.__struct_fields__)}",
                                        node=name, key=key))
        resolved = {k: v for k, v in resolved.items() if k in NodeEntry.__struct_fields__}
        if "module" not in resolved:
            problems.append(Problem(file, "missing: the Python module to run (e.g. module = \"nodes.test_pattern\")",
                                    node=name, key="module"))
            continue
        try:
            entry = msgspec.convert(resolved, NodeEntry)
        except msgspec.ValidationError as exc:
            key, message = _friendly(exc)
            choices = _literal_choices(key)
            if choices:
                message = f"{message}; expected one of: {', '.join(choices)}"
            problems.append(Problem(origins.get(key or "", file), message, node=name, key=key))
            continue
        try:
            enabled = _condition(entry.enabled)
        except ValueError as exc:
            problems.append(Problem(origins.get("enabled", file), str(exc), node=name, key="enabled"))
            continue
        for var in entry.env:
            if not ENV_NAME.match(var):
                problems.append(Problem(origins.get(f"env.{var}", file), "not a valid environment variable name",
                                        node=name, key=f"env.{var}"))
        if entry.respawn_max_delay_s < entry.respawn_delay_s:
            problems.append(Problem(origins.get("respawn_max_delay_s", file),
                                    f"{entry.respawn_max_delay_s} s is below respawn_delay_s "
                                    f"{entry.respawn_delay_s} s", node=name, key="respawn_max_delay_s"))
        nodes[name] = NodeSpec(name, entry, enabled, file, dict(origins))

    bus_problems = _check_bus(bus, merged.bus_files)
    problems.extend(bus_problems)
    return LaunchDescription(
        file=shown, files=merged.files, description=merged.description, args=specs, arg_values=values,
        bus=bus, machines=machines, nodes=nodes, external_topics=dict(merged.external), problems=problems,
    )


def _check_bus(bus: dict[str, Any], files: dict[str, str]) -> list[Problem]:
    from nodes.bus.topics import BusConfig

    problems = []
    types = {"transport": str, "ipc_dir": str, "host": str, "bind": str, "port_base": int}
    for key, value in bus.items():
        if not isinstance(value, types[key]) or isinstance(value, bool):
            problems.append(Problem(files[key], f"expected {types[key].__name__}, got {value!r}", key=f"bus.{key}"))
    if not problems:
        try:
            BusConfig(**bus)
        except ValueError as exc:
            key = next(iter(bus), "")
            problems.append(Problem(files.get(key, ""), str(exc), key="bus"))
    return problems
