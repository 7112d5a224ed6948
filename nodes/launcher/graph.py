"""The graph a launch description makes, checked without starting anything (``streetloc launch --check``).

Each node module is imported and its node class found by one convention: the module's ``NODE``
attribute if it sets one, else the single ``Node`` subclass the module itself defines. The class says
what the node subscribes to and publishes (``Node.declared_topics(params)``), so the whole graph is
known statically, as dora's ``dora validate`` knows it from its dataflow file. Checked, each reported
with file, node and key:

- the module exists, imports, and defines one node class;
- every parameter is known and well-typed (the very ``load_params`` the node process runs);
- remaps rename a declared topic to a table topic of the same message type;
- every subscribed topic has a publisher (in this graph, on another machine of it, or declared in
  ``external_topics``), and no topic has two;
- waits name published topics and enabled nodes, and do not wait on each other in a circle.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import msgspec

from nodes.bus.pubsub import Delivery
from nodes.bus.topics import TOPICS, BusConfig, get_topic
from nodes.launcher.description import LaunchDescription, LaunchError, NodeSpec, Problem, _suggest
from nodes.params import ParamError, load_params
from nodes.runtime import Node
from perception.drives.topics import DIAGNOSTICS_TOPIC


@dataclass
class GraphNode:
    """A node of the checked graph."""

    spec: NodeSpec
    machine: str
    cls: type[Node]
    params: msgspec.Struct
    param_args: list[str]  # ``key=<TOML literal>``, passed to the process as --param
    subscribes: dict[str, Delivery]  # bus topic (after remaps) -> delivery
    publishes: tuple[str, ...]  # bus topics (after remaps)
    remaps: dict[str, str]  # declared -> bus topic, only those that differ

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Graph:
    """Nodes and who publishes what to whom; ``problems`` empty when it can run."""

    description: LaunchDescription
    nodes: dict[str, GraphNode] = field(default_factory=dict)
    publishers: dict[str, str] = field(default_factory=dict)  # topic -> node
    subscribers: dict[str, list[str]] = field(default_factory=dict)  # topic -> nodes
    problems: list[Problem] = field(default_factory=list)

    def raise_for_problems(self) -> Graph:
        """This graph, or LaunchError listing every problem (for programs that launch graphs)."""
        if self.problems:
            raise LaunchError(self.problems)
        return self

    def part(self, machine: str) -> dict[str, GraphNode]:
        """The nodes one machine runs ("" for every node of a single-machine graph)."""
        return {n: g for n, g in self.nodes.items() if not machine or g.machine == machine}

    def bus_config(self, machine: str = "", base: BusConfig | None = None) -> BusConfig:
        """The bus of ``machine``'s part: the environment, then the file's ``[bus]``, then, for a graph
        split across machines, tcp with this machine's address and bind interface and, for each topic
        another machine publishes, that machine's address."""
        config = (base or BusConfig.from_env()).with_(**self.description.bus)
        machines = self.description.machines
        if not machines:
            return config
        if machine not in machines:
            raise ValueError(f"{self.description.file}: no machine {machine!r}; machines: {', '.join(machines)}")
        me = machines[machine]
        hosts = {topic: machines[self.nodes[node].machine].address
                 for topic, node in self.publishers.items() if self.nodes[node].machine != machine}
        return config.with_(transport="tcp", host=me.address, bind=me.bind, topic_hosts=hosts)


# -- finding node classes -----------------------------------------------------------------------

def node_class(module: ModuleType) -> type[Node]:
    """The node class of a node module: ``module.NODE``, else the one ``Node`` subclass it defines
    (a base class that sets ``abstract = True`` is not one). ValueError naming the module otherwise."""
    cls = getattr(module, "NODE", None)
    if cls is not None:
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise ValueError(f"{module.__name__}.NODE is {cls!r}, not a Node subclass")
        return cls
    found = [obj for obj in vars(module).values()
             if isinstance(obj, type) and issubclass(obj, Node) and obj is not Node
             and obj.__module__ == module.__name__ and not vars(obj).get("abstract", False)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(f"module {module.__name__} defines no Node subclass: not a node module")
    names = ", ".join(sorted(c.__name__ for c in found))
    raise ValueError(f"module {module.__name__} defines several Node classes ({names}); "
                     f"set NODE = <the one to run> in it")


def _node_modules() -> list[str]:
    """Modules of the ``nodes`` package that could be node modules, for suggestions."""
    import nodes

    skip = {"cli", "params", "runtime", "testing"}
    return [f"nodes.{m.name}" for m in pkgutil.iter_modules(nodes.__path__)
            if not m.ispkg and m.name not in skip]


def import_node(module_name: str) -> type[Node]:
    """Import a node module and return its node class; ValueError saying what is wrong."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ModuleNotFoundError, ValueError):
        spec = None
    if spec is None:
        raise ValueError(f"no module named {module_name!r}{_suggest(module_name, _node_modules())}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a node module that does not import is a finding, not a crash of --check
        raise ValueError(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    return node_class(module)


# -- parameters as the node process receives them -----------------------------------------------

def toml_literal(value: Any) -> str:
    """``value`` as a TOML literal (what ``--param key=...`` parses back to the same value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_literal(str(k))} = {toml_literal(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot pass {type(value).__name__} {value!r} as a parameter")


# -- the check ----------------------------------------------------------------------------------

def load_graph(path: str, args: dict[str, str] | None = None) -> Graph:
    """``build_graph(load_launch(path, args))``: a launch file's checked graph."""
    from nodes.launcher.description import load_launch

    return build_graph(load_launch(path, args))


def _check_machine_binds(desc: LaunchDescription, problems: list[Problem]) -> None:
    """A machine binding tcp beyond loopback needs CurveZMQ keys or the insecure opt-in (environment or
    ``[bus]``), as ``BusConfig`` requires at run time: said by ``--check`` already."""
    from nodes.bus.security import insecure_bind_refusal, is_local_bind

    try:
        keyed = bool(desc.bus.get("keys_dir", os.environ.get("STREETLOC_KEYS_DIR", "")))
        insecure = bool(desc.bus.get("insecure", BusConfig.insecure_from_env()))
    except ValueError as exc:
        problems.append(Problem(desc.file, str(exc), key="bus.insecure"))
        return
    if keyed or insecure:
        return
    for name, machine in desc.machines.items():
        if not is_local_bind(machine.bind):
            problems.append(Problem(desc.file, f"machine {name}: {insecure_bind_refusal(machine.bind)}",
                                    key=f"machines.{name}.bind"))


def build_graph(desc: LaunchDescription) -> Graph:
    """Resolve every enabled node and check the graph; problems of the description come first."""
    graph = Graph(desc, problems=list(desc.problems))
    problems = graph.problems
    for topic, file in desc.external_topics.items():
        if topic not in TOPICS:
            problems.append(Problem(file, f"no topic {topic!r} in the topic table{_suggest(topic, TOPICS)}",
                                    key="external_topics"))
        elif get_topic(topic).fan_in:
            problems.append(Problem(file, f"{topic!r} is fan-in (every node publishes it); it cannot be external",
                                    key="external_topics"))
    _check_machine_binds(desc, problems)
    loaded = {}
    for name, spec in desc.enabled_nodes.items():
        item = _load_node(desc, spec, problems)
        if item is not None:
            loaded[name] = item
    # Who would publish what (remaps to table topics applied), so that a type mismatch can name the
    # publisher of the topic a subscription was remapped to.
    publishers_hint = {spec.entry.remap.get(t, t): name
                       for name, (spec, _, _, _, _, _, pubs) in loaded.items() for t in pubs}
    for name, item in loaded.items():
        node = _apply_remaps(item, publishers_hint, problems)
        if node is not None:
            graph.nodes[name] = node

    # one publisher per topic
    for name, node in graph.nodes.items():
        for topic in node.publishes:
            if topic in desc.external_topics:
                problems.append(Problem(node.spec.where("module"), f"publishes {topic!r}, which "
                                        f"{desc.external_topics[topic]} declares external (published outside "
                                        f"this graph); a topic has one publisher", node=name))
            elif topic in graph.publishers:
                other = graph.publishers[topic]
                problems.append(Problem(node.spec.where(_remap_key(node, topic) or "module"),
                                        f"publishes {topic!r}, which node {other} ({graph.nodes[other].spec.file}) "
                                        f"publishes too; a topic has one publisher: disable one, or remap one "
                                        f"to another topic", node=name, key=_remap_key(node, topic)))
            else:
                graph.publishers[topic] = name

    # every subscription fed
    for name, node in graph.nodes.items():
        for topic in node.subscribes:
            graph.subscribers.setdefault(topic, []).append(name)
            if get_topic(topic).fan_in or topic in graph.publishers or topic in desc.external_topics:
                continue
            remapped = [d for d, b in node.remaps.items() if b == topic]
            via = f" (remapped from {remapped[0]!r})" if remapped else ""
            published = ", ".join(sorted(graph.publishers)) or "nothing"
            problems.append(Problem(node.spec.where(_remap_key(node, topic) or "module"),
                                    f"subscribes to {topic!r}{via} but no node of this graph publishes it "
                                    f"(published: {published}); add or enable its publisher, remap the "
                                    f"subscription, or list the topic in external_topics",
                                    node=name, key=_remap_key(node, topic)))

    _check_waits(graph)
    return graph


def _remap_key(node: GraphNode, bus_topic: str) -> str | None:
    for declared, bus in node.remaps.items():
        if bus == bus_topic:
            return f"remap.{declared}"
    return None


_Loaded = tuple[NodeSpec, str, type[Node], msgspec.Struct, list[str], dict[str, Delivery], tuple[str, ...]]


def _load_node(desc: LaunchDescription, spec: NodeSpec, problems: list[Problem]) -> _Loaded | None:
    """Machine, class, parameters and declared topics of a node; None (and a problem) if any fails."""
    name, entry = spec.name, spec.entry
    machine = desc.machine_of(spec)
    if desc.machines and machine not in desc.machines:
        problems.append(Problem(spec.where("machine"), f"no machine {machine!r}"
                                f"{_suggest(machine, desc.machines)}; machines: {', '.join(desc.machines)}",
                                node=name, key="machine"))
        return None
    if not desc.machines and entry.machine:
        problems.append(Problem(spec.where("machine"), f"machine {entry.machine!r} but the file declares no "
                                "[machines]", node=name, key="machine"))
        return None
    try:
        cls = import_node(entry.module)
    except ValueError as exc:
        problems.append(Problem(spec.where("module"), str(exc), node=name, key="module"))
        return None
    try:
        param_args = [f"{k}={toml_literal(v)}" for k, v in entry.params.items()]
        params = load_params(cls.Params, overrides=param_args, node=name)
    except ParamError as exc:  # every bad parameter of the node, one problem each
        for bad, message in exc.problems:
            key = f"params.{bad}" if bad in entry.params else "params"
            problems.append(Problem(spec.where(key), message.removeprefix(f"node {name}: "), node=name, key=key))
        return None
    except ValueError as exc:
        problems.append(Problem(spec.where("params"), str(exc).removeprefix(f"node {name}: "), node=name,
                                key="params"))
        return None
    try:
        subscribes, publishes = cls.declared_topics(params)
    except ValueError as exc:
        problems.append(Problem(spec.where("params"), str(exc), node=name, key="params"))
        return None
    return spec, machine, cls, params, param_args, dict(subscribes), tuple(publishes)


def _apply_remaps(item: _Loaded, publishers: dict[str, str], problems: list[Problem]) -> GraphNode | None:
    spec, machine, cls, params, param_args, subscribes, publishes = item
    name = spec.name
    ok = True
    for src, dst in spec.entry.remap.items():
        key = f"remap.{src}"
        if src not in subscribes and src not in publishes:
            declared = ", ".join([*subscribes, *publishes]) or "none"
            problems.append(Problem(spec.where(key), f"the node neither subscribes to nor publishes {src!r} "
                                    f"(its topics: {declared})", node=name, key=key))
            ok = False
            continue
        if dst not in TOPICS:
            problems.append(Problem(spec.where(key), f"no topic {dst!r} in the topic table"
                                    f"{_suggest(dst, TOPICS)}", node=name, key=key))
            ok = False
            continue
        src_t, dst_t = get_topic(src), get_topic(dst)
        if src_t.fan_in or dst_t.fan_in:
            problems.append(Problem(spec.where(key), "fan-in topics cannot be remapped", node=name, key=key))
            ok = False
        elif src_t.message_type is not dst_t.message_type:
            role = "subscribes to" if src in subscribes else "publishes"
            publisher = publishers.get(dst)
            note = f", published by node {publisher}" if publisher and publisher != name else ""
            problems.append(Problem(spec.where(key), f"type mismatch: {cls.__name__} {role} {src!r} as "
                                    f"{src_t.type_name}, but {dst!r} carries {dst_t.type_name}{note}",
                                    node=name, key=key))
            ok = False
    if not ok:
        return None
    remaps = {s: d for s, d in spec.entry.remap.items() if s != d}
    subs = {remaps.get(t, t): d for t, d in subscribes.items()}
    pubs = tuple(remaps.get(t, t) for t in publishes)
    return GraphNode(spec, machine, cls, params, param_args, subs, pubs, remaps)


def _check_waits(graph: Graph) -> None:
    desc, problems = graph.description, graph.problems
    for name, node in graph.nodes.items():
        spec = node.spec
        for topic in spec.entry.wait_for_topics:
            key = "wait_for_topics"
            if topic not in TOPICS:
                problems.append(Problem(spec.where(key), f"no topic {topic!r} in the topic table"
                                        f"{_suggest(topic, TOPICS)}", node=name, key=key))
            elif get_topic(topic).fan_in:
                problems.append(Problem(spec.where(key), f"{topic!r} has many publishers; wait for a node "
                                        "with wait_for_ready instead", node=name, key=key))
            elif topic not in graph.publishers and topic not in desc.external_topics:
                problems.append(Problem(spec.where(key), f"waits for {topic!r}, which nothing in this graph "
                                        "publishes, so it would never start", node=name, key=key))
        for other in spec.entry.wait_for_ready:
            key = "wait_for_ready"
            if other == name:
                problems.append(Problem(spec.where(key), "a node cannot wait for itself", node=name, key=key))
            elif other not in desc.nodes:
                problems.append(Problem(spec.where(key), f"no node {other!r}{_suggest(other, desc.nodes)}",
                                        node=name, key=key))
            elif not desc.nodes[other].enabled:
                problems.append(Problem(spec.where(key), f"waits for node {other!r}, which is disabled, so it "
                                        "would never start", node=name, key=key))
            elif other in graph.nodes and graph.nodes[other].machine != node.machine:
                problems.append(Problem(spec.where(key), f"waits for node {other!r} on machine "
                                        f"{graph.nodes[other].machine}; readiness is seen per machine: wait "
                                        "for a topic it publishes (wait_for_topics)", node=name, key=key))
    # waits in a circle never start: depth-first search over "starts after"
    after = {name: {*(n for n in g.spec.entry.wait_for_ready if n in graph.nodes),
                    *(graph.publishers[t] for t in g.spec.entry.wait_for_topics if t in graph.publishers)}
             for name, g in graph.nodes.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name):], name]
            spec = graph.nodes[name].spec
            problems.append(Problem(spec.where("wait_for_ready"), "waits form a circle, none would start: "
                                    + " -> ".join(cycle), node=name))
            return
        if name in done:
            return
        for dep in sorted(after[name]):
            visit(dep, [*path, name])
        done.add(name)

    for name in graph.nodes:
        visit(name, [])


# -- printing -----------------------------------------------------------------------------------

def describe_graph(graph: Graph, machine: str = "") -> list[str]:
    """The graph as lines of text: nodes with module, class, respawn and waits; topics with who
    publishes to whom."""
    desc = graph.description
    lines: list[str] = []
    on = {g.machine for g in graph.nodes.values()}
    machines = f" on {len(on)} machines" if desc.machines else ""
    disabled = [n for n, s in desc.nodes.items() if not s.enabled]
    lines.append(f"{desc.file}: {len(graph.nodes)} nodes{machines}"
                 + (f" ({len(disabled)} disabled: {', '.join(disabled)})" if disabled else ""))
    if desc.description:
        lines.append(f"  {desc.description.strip().splitlines()[0]}")
    if desc.machines:
        lines.append("machines:")
        for m in desc.machines.values():
            mark = "  <- this launcher" if m.name == machine else ""
            lines.append(f"  {m.name:12s} address {m.address}, bind {m.bind}{mark}")
    lines.append("nodes:")
    width = max((len(n) for n in graph.nodes), default=4)
    for name, g in graph.nodes.items():
        e = g.spec.entry
        respawn = e.respawn if e.respawn == "never" else f"{e.respawn} (max {e.max_restarts} in {e.restart_window_s:g} s)"
        extra = []
        if e.wait_for_topics:
            extra.append(f"after topics {', '.join(e.wait_for_topics)}")
        if e.wait_for_ready:
            extra.append(f"after ready {', '.join(e.wait_for_ready)}")
        if e.required:
            extra.append("required")
        if g.remaps:
            extra.append("remap " + ", ".join(f"{a}->{b}" for a, b in g.remaps.items()))
        where = f"@{g.machine} " if g.machine else ""
        lines.append(f"  {name:{width}s} {where}{e.module} ({g.cls.__name__}), respawn {respawn}"
                     + (f"; {'; '.join(extra)}" if extra else ""))
    lines.append("topics:")
    topics = [t for t in TOPICS if t in graph.publishers or t in graph.subscribers or t in desc.external_topics]
    rows = []
    for t in topics:
        topic = get_topic(t)
        pub = graph.publishers.get(t) or ("(external)" if t in desc.external_topics else "(none)")
        subs = ", ".join(graph.subscribers.get(t, [])) or "(no subscriber here)"
        rows.append((t, f"{topic.type_name}, {topic.rate_hz:g} Hz", f"{pub} -> {subs}"))
    if graph.nodes:
        rows.append((DIAGNOSTICS_TOPIC, "Diagnostics, fan-in", f"{', '.join(graph.nodes)} -> launcher"))
    w0 = max((len(r[0]) for r in rows), default=0)
    w1 = max((len(r[1]) for r in rows), default=0)
    lines.extend(f"  {a:{w0}s}  {b:{w1}s}  {c}" for a, b, c in rows)
    return lines
