"""``streetloc node list|params``: the running nodes, and what a node module takes.

``node list`` merges two sources: each live launcher's state file in STREETLOC_IPC_DIR (state, pid,
restarts: see nodes/launcher/state.py) and the diagnostics every node publishes at 1 Hz (pid, uptime,
readiness, health, rates), read for a moment from the launcher's diagnostics forwarder. A node started
by hand, without a launcher, shows up from its diagnostics alone.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Any

import msgspec

from nodes.bus.forwarder import Forwarder
from nodes.bus.messages import Diagnostics
from nodes.bus.pubsub import Delivery, Subscriber
from nodes.bus.topics import BusConfig, get_topic
from nodes.bus.wire import DecodeError
from nodes.launcher.state import LauncherState, read_states
from perception.drives.topics import DIAGNOSTICS_TOPIC


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("node", help="running nodes (pid, uptime, restarts, rates); node parameters")
    sub = p.add_subparsers(dest="node_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="the running nodes with pid, uptime, restarts and rates")
    ls.add_argument("--duration", type=float, default=1.5,
                    help="listen to diagnostics at most this long, s (default %(default)s; they come at 1 Hz)")
    ls.add_argument("--json", action="store_true", help="one JSON object per node, one per line")
    ls.set_defaults(func=cmd_list)
    pp = sub.add_parser("params", help="the parameters of a node module: name, type, default, meaning")
    pp.add_argument("module", nargs="?", help="node module, e.g. nodes.monitor or monitor (default: every node)")
    pp.add_argument("--markdown", action="store_true", help="as the Markdown reference of docs/launch.md")
    pp.set_defaults(func=cmd_params)
    run = sub.add_parser("run", help="run one node in this process, its parameters as options",
                         description="Run a node module as `python -m MODULE` does: `streetloc node run monitor "
                                     "--window-s 10`. `streetloc node run MODULE -h` lists its options.")
    run.add_argument("module", help="node module, e.g. nodes.test_pattern or test_pattern")
    run.add_argument("node_args", nargs=argparse.REMAINDER, help="the node's options (see -h after MODULE)")
    run.set_defaults(func=cmd_run)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _rates(diag: Diagnostics | None) -> str:
    if diag is None:
        return "-"
    parts = [f"{t.topic} {t.direction} {t.rate_hz:.1f} Hz" for t in diag.topics]
    return ", ".join(parts) or "(no topics)"


def collect_diagnostics(configs: list[BusConfig], duration_s: float,
                        expect: set[tuple[str, int]] | None = None) -> dict[str, Diagnostics]:
    """The latest diagnostics per node heard within ``duration_s`` on each bus; returns early once every
    (node, pid) in ``expect`` has reported."""
    latest: dict[str, Diagnostics] = {}
    subs = [Subscriber(DIAGNOSTICS_TOPIC, delivery=Delivery.EVERY, config=c) for c in configs]
    try:
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            for sub in subs:
                try:
                    msg = sub.recv(timeout_s=0.05)
                except DecodeError:
                    continue
                if isinstance(msg, Diagnostics):
                    latest[msg.node] = msg
            if expect and all(n in latest and latest[n].pid == pid for n, pid in expect):
                break
    finally:
        for sub in subs:
            sub.close()
    return latest


def cmd_list(args: argparse.Namespace) -> int:
    env_config = BusConfig.from_env()
    states: list[LauncherState] = read_states(env_config.ipc_dir)
    configs: list[BusConfig] = []
    for state in states:
        config = BusConfig.from_env(state.bus)
        if config not in configs:
            configs.append(config)
    forwarder = None
    if not configs:
        configs = [env_config]
        with contextlib.suppress(OSError):  # in use: someone forwards already
            forwarder = Forwarder(env_config).start()  # nodes started by hand, no launcher
    expect = {(n.name, n.pid) for s in states for n in s.nodes if n.state == "running" and n.pid}
    try:
        diags = collect_diagnostics(configs, args.duration, expect)
    finally:
        if forwarder is not None:
            forwarder.close()

    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    now_ns = time.time_ns()
    for state in states:
        for n in state.nodes:
            seen.add(n.name)
            d = diags.get(n.name)
            if d is not None and n.pid is not None and d.pid != n.pid:
                d = None  # from the instance before a restart
            uptime = d.uptime_s if d else ((now_ns - n.started_ns) / 1e9 if n.pid and n.started_ns else None)
            rows.append({"name": n.name, "state": n.state, "pid": n.pid, "uptime_s": uptime,
                         "restarts": n.restarts, "machine": n.machine, "launcher_pid": state.launcher_pid,
                         "module": n.module, "detail": n.detail, DIAGNOSTICS_TOPIC: d})
    for name, d in diags.items():
        if name not in seen:
            rows.append({"name": name, "state": "running", "pid": d.pid, "uptime_s": d.uptime_s,
                         "restarts": None, "machine": "", "launcher_pid": None, "module": "", "detail": "",
                         DIAGNOSTICS_TOPIC: d})
    if not rows:
        endpoints = ", ".join(_diag_endpoint(c) for c in configs)
        print(f"no running nodes: no launcher state in {env_config.ipc_dir} and no diagnostics at {endpoints}",
              file=sys.stderr)
        return 1
    if args.json:
        for row in rows:
            d = row.pop(DIAGNOSTICS_TOPIC)
            row.update(ready=d.ready if d else None, status=d.status if d else None,
                       last_error=d.last_error if d else "", errors=dict(d.errors) if d else {},
                       topics=[msgspec.to_builtins(t) for t in d.topics] if d else [])
            print(msgspec.json.encode(row).decode())
        return 0
    table = [("NODE", "STATE", "PID", "UPTIME", "RESTARTS", "READY", "STATUS", "RATES")]
    for row in rows:
        d = row[DIAGNOSTICS_TOPIC]
        status = (d.status + (f" ({d.last_error})" if d.last_error and d.status != "ok" else "")) if d else "-"
        state = row["state"] + (f" ({row['detail']})" if row["detail"] and row["state"] != "running" else "")
        table.append((row["name"], state, str(row["pid"] or "-"), _uptime(row["uptime_s"]),
                      "-" if row["restarts"] is None else str(row["restarts"]),
                      "-" if d is None else ("yes" if d.ready else "no"), status, _rates(d)))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    return 0


def _diag_endpoint(config: BusConfig) -> str:
    return config.subscriber_endpoint(get_topic(DIAGNOSTICS_TOPIC))


def _node_class(module: str) -> tuple[str, type]:
    """(module, node class) for ``nodes.monitor`` or the short ``monitor``."""
    from nodes.launcher.graph import import_node

    if "." not in module:
        module = f"nodes.{module}"
    return module, import_node(module)


def cmd_params(args: argparse.Namespace) -> int:
    from nodes.params import node_modules, params_markdown, params_text

    found = [_node_class(args.module)] if args.module else node_modules()
    if args.markdown:
        print("\n".join(params_markdown(module, cls) for module, cls in found).rstrip())
        return 0
    for module, cls in found:
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{module} ({cls.__name__}): {doc[0] if doc else ''}")
        print("\n".join(params_text(cls.Params)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from nodes.runtime import node_main

    module, cls = _node_class(args.module)
    return node_main(cls, args.node_args, prog=f"streetloc node run {args.module}")
