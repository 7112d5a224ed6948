"""Launch files: TOML under ``launch/``, read into a ``LaunchDescription`` (no process is started here).

A launch file lists the nodes of a graph (``[nodes.NAME]``), the arguments it takes (``[args.NAME]``,
given as ``--arg NAME=VALUE``), other launch files it builds on (``include``), optionally the machines
it spans (``[machines.NAME]``) and bus settings (``[bus]``). The schema is msgspec Structs, each key
with its type, bounds and meaning: ``LaunchFile`` (the top level), ``ArgTable``, ``MachineTable``,
``BusTable`` and ``NodeEntry``; docs/launch.md and the shipped files' comments follow them.

Loading is forgiving in one way only: it collects every problem it finds (``Problem``: file, node, key,
message) instead of stopping at the first, so that ``streetloc launch FILE --check`` lists them all.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

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
_S = TypeVar("_S", bound=msgspec.Struct)
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


class ArgTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[args.NAME]`` table (merged across includes key by key)."""

    default: Annotated[Any, msgspec.Meta(
        description="value when --arg NAME is not given; its type is the argument's; none: required")] = None
    description: Annotated[str, msgspec.Meta(description="what the argument sets (required)")]
    choices: Annotated[list[Any], msgspec.Meta(description="the values allowed; empty: any")] = []


class MachineTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[machines.NAME]`` table."""

    address: Annotated[str, msgspec.Meta(description="IP address or host name other machines reach it at")]
    bind: Annotated[str, msgspec.Meta(description="interface its publishers bind; default: address")] = ""


class BusTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``[bus]`` table: overrides of the ``STREETLOC_*`` environment (nodes/bus/topics.py BusConfig)."""

    # UNSET, not None: a key the files leave out keeps the environment's value
    transport: str | msgspec.UnsetType = msgspec.UNSET
    ipc_dir: str | msgspec.UnsetType = msgspec.UNSET
    host: str | msgspec.UnsetType = msgspec.UNSET
    bind: str | msgspec.UnsetType = msgspec.UNSET
    port_base: int | msgspec.UnsetType = msgspec.UNSET
    keys_dir: str | msgspec.UnsetType = msgspec.UNSET  # CurveZMQ keys folder (streetloc keys generate)
    insecure: bool | msgspec.UnsetType = msgspec.UNSET  # bind tcp beyond loopback without keys


class LaunchFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The top level of one launch file, before includes are merged and arguments substituted (so the
    tables are typed later, each naming its own key)."""

    description: Annotated[str, msgspec.Meta(description="one line shown by --check and at start")] = ""
    include: Annotated[list[str], msgspec.Meta(description="launch files this one builds on")] = []
    external_topics: Annotated[list[str], msgspec.Meta(description="topics published outside the graph")] = []
    args: dict[str, Any] = {}
    bus: dict[str, Any] = {}
    machines: dict[str, Any] = {}
    nodes: dict[str, Any] = {}


_NODE_TABLES = ("params", "remap", "env")  # merged key by key across includes; other keys are replaced
_MISSING_MESSAGES = {  # what a missing required key means, in the user's words
    "module": 'missing: the Python module to run (e.g. module = "nodes.test_pattern")',
    "address": "every machine needs an address (IP or host name others reach it at)",
    "description": "every argument needs a description",
}
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]*)`")
_REQUIRED = re.compile(r"Object missing required field `([^`]*)`")


def _convert(data: Any, struct: type[_S], report: Callable[[str | None, str], None]) -> tuple[_S | None, bool]:
    """``data`` (a TOML table) as ``struct``, with every problem reported as (key, message) where the
    key is a dotted path relative to the table. msgspec stops at the first problem, so each bad key is
    reported, dropped and the rest converted again: one pass lists them all. Returns (the Struct from the
    keys that were fine or None, whether only unknown keys were wrong)."""
    if not isinstance(data, dict):
        report(None, f"expected a table, got {type(data).__name__}")
        return None, False
    data = dict(data)
    clean = True
    for _ in range(len(data) + 2):
        try:
            return msgspec.convert(data, struct), clean
        except msgspec.ValidationError as exc:
            text = str(exc)
            what, _, where = text.partition(" - at `$")
            path = where.rstrip("`").lstrip(".").split("[")[0] or None
            fields = struct.__struct_fields__
            if m := _UNKNOWN.match(what):
                key = f"{path}.{m.group(1)}" if path else m.group(1)
                close = _suggest(m.group(1), fields)
                report(key, f"unknown key{close}" if close else f"unknown key; known: {', '.join(fields)}")
            elif m := _REQUIRED.match(what):
                key = f"{path}.{m.group(1)}" if path else m.group(1)
                report(key, _MISSING_MESSAGES.get(m.group(1), "missing (required)"))
                return None, False
            else:
                key, clean = path, False
                choices = _choices(struct, key)
                report(key, what + (f"; expected one of: {', '.join(map(str, choices))}" if choices else ""))
            top = (key or "").split(".")[0]
            if top not in data:
                return None, False
            del data[top]
    return None, False


def _choices(struct: type[msgspec.Struct], key: str | None) -> tuple[Any, ...]:
    """The allowed values of a key that takes one of a fixed set (``respawn``, ``log_level``)."""
    from nodes.params import param_fields

    return next((f.choices for f in param_fields(struct) if f.name == key), ())


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
    """The raw tables of a file and its includes, later files (the includer) overriding earlier ones;
    ``origins`` says which file set each key (``args.fps.default``, ``machines.box``, ``bus.port_base``)."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.description = ""
        self.args: dict[str, dict[str, Any]] = {}
        self.bus: dict[str, Any] = {}
        self.machines: dict[str, dict[str, Any]] = {}
        self.origins: dict[str, str] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.node_origins: dict[str, dict[str, str]] = {}
        self.external: dict[str, str] = {}
        self.problems: list[Problem] = []

    def where(self, key: str, default: str = "") -> str:
        """The file that set ``key`` or the nearest table above it."""
        while key:
            if key in self.origins:
                return self.origins[key]
            key = key.rpartition(".")[0]
        return default

    def add_table(self, section: str, name: str, table: dict[str, Any], file: str) -> None:
        """An ``[args.NAME]`` or ``[machines.NAME]`` table, merged key by key."""
        target = self.args if section == "args" else self.machines
        target.setdefault(name, {}).update(table)
        self.origins[f"{section}.{name}"] = file
        for key in table:
            self.origins[f"{section}.{name}.{key}"] = file

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
    except UnicodeDecodeError as exc:  # a binary file: TOML is UTF-8 text
        merged.problems.append(Problem(shown, f"not a TOML text file: byte 0x{exc.object[exc.start]:02x} at "
                                              f"offset {exc.start} is not UTF-8"))
        return
    merged.files.append(shown)
    # The schema of the file's top level (LaunchFile); its tables are typed once merged and substituted.
    top, _ = _convert(data, LaunchFile,
                      lambda key, message: merged.problems.append(Problem(shown, message, key=key)))
    file = top or LaunchFile()

    for item in file.include:
        # Include paths may use arguments given on the command line or defaulted in earlier files.
        defaults = {k: v.get("default") for k, v in [*merged.args.items(), *file.args.items()] if isinstance(v, dict)}
        text = _substitute_text(item, {**defaults, **arg_text})
        if text is None:
            merged.problems.append(Problem(shown, f"{item!r}: unknown argument in include path", key="include"))
            continue
        _load_tree(path.parent / text, merged, [*stack, path], arg_text)

    if isinstance(data.get("description"), str):
        merged.description = file.description
    for topic in file.external_topics:
        merged.external[topic] = shown
    for section, tables in (("args", file.args), ("machines", file.machines)):
        for name, table in tables.items():
            if not isinstance(table, dict):
                merged.problems.append(Problem(shown, f"expected a table [{section}.{name}]", key=f"{section}.{name}"))
                continue
            merged.add_table(section, name, table, shown)
    for key, value in file.bus.items():
        if key == "topic_hosts":
            merged.problems.append(Problem(shown, "not set in launch files: declare [machines] and each "
                                                  "node's machine, the launcher derives topic hosts", key="bus.topic_hosts"))
            continue
        merged.bus[key] = value
        merged.origins[f"bus.{key}"] = shown

    for name, table in file.nodes.items():
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
    for name, raw in merged.args.items():
        file = merged.where(f"args.{name}", root)
        if not ARG_NAME.match(name):
            problems.append(Problem(file, "an argument name is letters, digits and _", key=f"args.{name}"))
            continue

        def report(key: str | None, message: str, name: str = name) -> None:
            where = f"args.{name}.{key}" if key else f"args.{name}"
            problems.append(Problem(merged.where(where, root), message, key=where))

        table, _ = _convert(raw, ArgTable, report)
        if table is None:
            continue
        if not table.description:
            report("description", _MISSING_MESSAGES["description"])
        specs[name] = ArgSpec(name, table.default, table.description, tuple(table.choices), file)
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

def load_launch(path: str | os.PathLike[str], args: dict[str, str] | None = None) -> LaunchDescription:
    """Read a launch file and its includes, substitute ``--arg`` values, and type-check every key
    against the schema (``LaunchFile``, ``ArgTable``, ``MachineTable``, ``BusTable``, ``NodeEntry``).
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
            if name not in specs:  # a declared one without a value is reported once, as required
                problems.append(Problem(file, f"${{{name}}}: no such argument{_suggest(name, specs)} "
                                              f"(declare it under [args.{name}])", node=node, key=key or None))
            return _MISSING

    def report_at(prefix: str) -> Callable[[str | None, str], None]:
        def report(key: str | None, message: str) -> None:
            where = f"{prefix}.{key}" if key else prefix
            problems.append(Problem(merged.where(where, shown), message, key=where))
        return report

    bus: dict[str, Any] = {}
    for key, value in merged.bus.items():
        v = subst(value, merged.where(f"bus.{key}", shown), f"bus.{key}")
        if v is not _MISSING:
            bus[key] = v
    bus_table, clean = _convert(bus, BusTable, report_at("bus"))
    bus = msgspec.to_builtins(bus_table) if bus_table is not None else {}  # the keys the files set
    if bus_table is not None and clean:
        from nodes.bus.topics import BusConfig

        try:
            # --insecure / STREETLOC_INSECURE opt in for the whole run, files may too
            BusConfig(**{"insecure": BusConfig.insecure_from_env(), **bus})
        except ValueError as exc:
            problems.append(Problem(merged.where(f"bus.{next(iter(bus), '')}", shown), str(exc), key="bus"))

    machines: dict[str, Machine] = {}
    for name, raw in merged.machines.items():
        t = subst(raw, merged.where(f"machines.{name}", shown), f"machines.{name}")
        if t is _MISSING:
            continue
        table, _ = _convert(t, MachineTable, report_at(f"machines.{name}"))
        if table is None:
            continue
        if not table.address:
            report_at(f"machines.{name}")("address", _MISSING_MESSAGES["address"])
            continue
        machines[name] = Machine(name, table.address, table.bind or table.address)

    nodes: dict[str, NodeSpec] = {}
    for name, table in merged.nodes.items():
        origins = merged.node_origins[name]
        file = origins.get("module") or next(iter(origins.values()), shown)
        resolved: dict[str, Any] = {}
        for key, value in table.items():
            v = subst(value, origins.get(key, file), key, node=name)
            if v is not _MISSING:
                resolved[key] = v

        def report(key: str | None, message: str, name: str = name, origins: dict = origins,
                   file: str = file) -> None:
            problems.append(Problem(origins.get(key or "", file), message, node=name, key=key))

        entry, clean = _convert(resolved, NodeEntry, report)
        if entry is None or not clean:
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

    return LaunchDescription(
        file=shown, files=merged.files, description=merged.description, args=specs, arg_values=values,
        bus=bus, machines=machines, nodes=nodes, external_topics=dict(merged.external), problems=problems,
    )
