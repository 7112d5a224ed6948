"""Runs a checked graph: one process per node, supervised until Ctrl-C / SIGTERM.

The supervisor is one single-threaded loop (plus the diagnostics forwarder's thread) polling, at once,
the nodes' output pipes, the diagnostics it forwards, the topics some nodes wait for, and a wake-up pipe
for signals. It

- starts each node when what it waits for is there (a message on ``wait_for_topics``, ``ready`` in the
  diagnostics of ``wait_for_ready`` nodes);
- prefixes every line a node prints with the node's name on the console and appends it to
  ``<log dir>/<node>.log``;
- restarts a node that exits, per its respawn policy, with exponential backoff, and gives up on it when
  it exits more than ``max_restarts`` times within ``restart_window_s`` (a crash loop), saying so with
  the node's last output;
- on SIGINT/SIGTERM/SIGHUP sends SIGTERM to every node's process group and SIGKILL after its
  ``stop_timeout_s`` (at most 4.5 s), so the graph is down within 5 s.

No node outlives the launcher, even one killed with SIGKILL: every node process is started with
``prctl(PR_SET_PDEATHSIG, SIGTERM)``, so the kernel tells it to stop when the launcher dies, and it stops
as on Ctrl-C (its outputs flushed, a recording closed) instead of being killed. That signal is tied to
the *thread* that forked the child, which is why nodes are only ever started from the main thread; the
kernel sends it again each time the orphan is handed to another of the dying launcher's threads, so a
node may get it two or three times within a millisecond: the runtime's handler only sets a flag.
Each node runs in its own process group, so that a node's own children are stopped with it and a
terminal's Ctrl-C reaches the launcher alone, which then stops the nodes in order.

A launcher started by another process that must not outlive it (``streetloc replay --launch``, ``streetloc
demo``: ``nodes.commands.launched``) gets ``parent_fd``, the read end of a pipe whose write end only that
process holds: when it dies, however, the pipe reads end-of-file and the launcher stops its graph once,
like one Ctrl-C. (``PR_SET_PDEATHSIG`` on the launcher itself, as before, could deliver two SIGTERMs when
the multi-threaded parent died, and the second one counted as "stop now": the nodes were SIGKILLed.)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import zmq

from nodes.bus.forwarder import Forwarder
from nodes.bus.messages import Diagnostics
from nodes.bus.pubsub import Delivery, Subscriber
from nodes.bus.topics import BusConfig, private_dir
from nodes.bus.wire import DecodeError
from nodes.launcher.description import NodeEntry
from nodes.launcher.graph import Graph, GraphNode
from nodes.launcher.state import LauncherState, NodeState, state_path, write_state
from perception.drives.topics import DIAGNOSTICS_TOPIC

PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LOOP_S = 0.1  # longest the loop sleeps: bounds how late a timer (backoff, stop timeout) fires
_STATE_PERIOD_S = 1.0
_WAIT_REPORT_S = 10.0  # remind what a waiting node waits for this often
_LOG_MAX_BYTES = 50 * 1024 * 1024  # a node log beyond this is moved to <node>.log.1 (one generation kept)
_TAIL_LINES = 8  # last lines of output shown when a node is given up
_COLORS = ("36", "32", "33", "35", "34", "96", "92", "93", "95", "94")

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL):
    """A ``preexec_fn`` for ``subprocess.Popen``: the kernel sends ``sig`` to the child when
    ``parent_pid`` (the process, from the thread, that starts it) dies, even by SIGKILL. Runs in the
    forked child before exec, so it only calls async-signal-safe functions (prctl, getppid, kill) on
    objects prepared before the fork. Linux only; elsewhere a no-op."""
    prctl = _libc.prctl if _libc is not None else None
    sig = int(sig)

    def setup() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return setup


def should_restart(respawn: str, exit_code: int) -> bool:
    """The respawn policy: ``never``; ``on-failure`` after a non-zero exit code or a signal (a negative
    ``exit_code``), not after a clean exit; ``always``, a clean exit included."""
    if respawn == "always":
        return True
    if respawn == "on-failure":
        return exit_code != 0
    if respawn == "never":
        return False
    raise ValueError(f"respawn={respawn!r} is not never, on-failure or always")


def restart_delay_s(entry: NodeEntry, exits_in_window: int) -> float:
    """Seconds to wait before restarting after the ``exits_in_window``-th exit (1-based) within the node's
    ``restart_window_s``: ``respawn_delay_s``, then ``respawn_backoff`` times longer per further exit,
    capped at ``respawn_max_delay_s``."""
    growth = entry.respawn_backoff ** max(0, exits_in_window - 1)
    return min(entry.respawn_max_delay_s, entry.respawn_delay_s * growth)


class _LogFile:
    """Append-only log of one node (or of the launcher), moved aside once it grows too big."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open(path, "ab", buffering=0)

    def write(self, line: str) -> None:
        try:
            self._fh.write(line.encode("utf-8", "replace") + b"\n")
            if self._fh.tell() > _LOG_MAX_BYTES:
                self._fh.close()
                os.replace(self.path, self.path.with_suffix(".log.1"))
                self._fh = open(self.path, "ab", buffering=0)
        except OSError:
            pass  # a full disk must not take the graph down with it

    def close(self) -> None:
        self._fh.close()


@dataclass
class _Proc:
    """A supervised node."""

    node: GraphNode
    log: _LogFile
    color: str
    state: str = "waiting"
    proc: subprocess.Popen | None = None
    fd: int | None = None
    buffer: bytes = b""
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))
    restarts: int = 0
    exits: deque[float] = field(default_factory=deque)  # monotonic times of exits within the window
    next_start: float = 0.0
    waiting_since: float | None = None
    next_wait_report: float = 0.0
    started_ns: int | None = None
    exit_code: int | None = None
    ready: bool = False
    stop_deadline: float | None = None
    detail: str = ""

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Starts and supervises the nodes of one machine's part of a graph. ``run()`` from the main thread."""

    def __init__(self, graph: Graph, *, machine: str = "", config: BusConfig | None = None,
                 log_dir: Path, console: TextIO | None = None, color: bool | None = None,
                 parent_fd: int | None = None) -> None:
        """``parent_fd``: a pipe's read end that reads end-of-file when the process that started this
        launcher dies (see the module docstring); the graph is then stopped as by one SIGTERM."""
        self.graph = graph
        self.parent_fd = parent_fd
        self._parent_pid = os.getppid()
        self.machine = machine
        self.config = config or graph.bus_config(machine)
        private_dir(self.config.ipc_dir)  # another user's folder is refused before anything starts
        self.log_dir = log_dir
        self.console = console if console is not None else sys.stdout
        if color is None:
            color = self.console.isatty() and not os.environ.get("NO_COLOR")
        self.use_color = color
        nodes = graph.part(machine)
        self.width = max([len("launch"), *(len(n) for n in nodes)])
        log_dir.mkdir(parents=True, exist_ok=True)
        self.launch_log = _LogFile(log_dir / "launch.log")
        self.procs = {name: _Proc(node, _LogFile(log_dir / f"{name}.log"), _COLORS[i % len(_COLORS)])
                      for i, (name, node) in enumerate(nodes.items())}
        self.state_file = state_path(self.config.ipc_dir)
        self.started_ns = time.time_ns()
        self.exit_code = 0
        self._stop_requested = 0  # signals received; a second one kills at once
        self._stop_reason = ""
        self._poller = zmq.Poller()
        self._by_fd: dict[int, _Proc] = {}
        self._waiters: dict[zmq.Socket, Subscriber] = {}
        self._seen_topics: set[str] = set()
        self._diag: Subscriber | None = None
        self._diag_rejected_kinds: set[str] = set()
        self._forwarder: Forwarder | None = None
        self._wake_r = self._wake_w = -1
        self._state_dirty = True
        self._last_state_write = -1e9
        self._console_ok = True

    # -- output ---------------------------------------------------------------------------------
    def _emit(self, who: str, text: str, color: str = "") -> None:
        prefix = f"[{who}]".ljust(self.width + 2)
        if self.use_color and color:
            prefix = f"\033[{color}m{prefix}\033[0m"
        if not self._console_ok:
            return
        try:
            self.console.write(f"{prefix} {text}\n")
            self.console.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._console_ok = False  # nobody reads the console any more; the log files still do

    def say(self, text: str, proc: _Proc | None = None) -> None:
        """A message of the launcher's own (about ``proc`` when given: also written to its log)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._emit("launch", text, "1")
        self.launch_log.write(f"{stamp} {text}")
        if proc is not None:
            proc.log.write(f"{stamp} [launch] {text}")

    def _node_line(self, p: _Proc, line: str) -> None:
        # node_main's log format already names the node: say it once
        line = line.removeprefix(f"[{p.name}] ")
        p.tail.append(line)
        p.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}")
        self._emit(p.name, line, p.color)

    def _read_output(self, p: _Proc, final: bool = False) -> None:
        """Take what the node has printed; on EOF (or ``final``) flush and close its pipe."""
        if p.fd is None:
            return
        eof = False
        while True:
            try:
                data = os.read(p.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                eof = True
                break
            p.buffer += data
            *lines, p.buffer = p.buffer.split(b"\n")
            for raw in lines:
                self._node_line(p, raw.decode("utf-8", "replace").rstrip("\r"))
            if len(p.buffer) > 65536:  # a very long line without newline: show it anyway
                self._node_line(p, p.buffer.decode("utf-8", "replace"))
                p.buffer = b""
            if not final:
                break  # one read per event keeps one chatty node from starving the loop
        if eof or final:
            if p.buffer:
                self._node_line(p, p.buffer.decode("utf-8", "replace"))
                p.buffer = b""
            with contextlib.suppress(KeyError, zmq.ZMQError):
                self._poller.unregister(p.fd)
            self._by_fd.pop(p.fd, None)
            if p.proc is not None and p.proc.stdout is not None:
                p.proc.stdout.close()
            p.fd = None

    # -- processes ------------------------------------------------------------------------------
    def _command(self, node: GraphNode) -> list[str]:
        cmd = [sys.executable, "-m", node.spec.entry.module, "--name", node.name]
        for arg in node.param_args:
            cmd += ["--param", arg]
        for src, dst in node.remaps.items():
            cmd += ["--remap", f"{src}={dst}"]
        return cmd

    def _environment(self, node: GraphNode) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("STREETLOC_TOPIC_HOSTS", None)  # to_env() sets it only when there are any
        env.update(self.config.to_env())  # the launcher's bus, whatever this shell said
        env["STREETLOC_LOG_LEVEL"] = node.spec.entry.log_level
        env["PYTHONUNBUFFERED"] = "1"  # lines reach the console as they are printed
        for key, value in node.spec.entry.env.items():
            env[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return env

    def _start(self, p: _Proc, now: float) -> None:
        if p.state == "waiting" and p.detail:  # it had to wait: say when that ended
            waited = p.detail.removeprefix("waiting for ")
            self.say(f"{p.name}: starting after {now - (p.waiting_since or now):.1f} s waiting for {waited}", p)
        p.detail = ""
        try:
            proc = subprocess.Popen(
                self._command(p.node), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, env=self._environment(p.node), close_fds=True,
                process_group=0, preexec_fn=die_with_parent(os.getpid(), signal.SIGTERM),
            )
        except OSError as exc:
            self.say(f"{p.name}: cannot start: {exc}", p)
            self._after_exit(p, 127, now)
            return
        p.proc = proc
        p.tail.clear()  # a crash report shows the output of the run that crashed
        p.state = "running"
        p.ready = False
        p.started_ns = time.time_ns()
        p.exit_code = None
        assert proc.stdout is not None
        p.fd = proc.stdout.fileno()
        os.set_blocking(p.fd, False)
        self._by_fd[p.fd] = p
        self._poller.register(p.fd, zmq.POLLIN)
        p.log.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} start #{p.restarts + 1}, pid {proc.pid}: "
                    f"{' '.join(self._command(p.node))}")
        self._state_dirty = True

    def _signal_group(self, p: _Proc, sig: int) -> None:
        if p.proc is None:
            return
        try:
            os.killpg(p.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                p.proc.send_signal(sig)

    def _reap(self, now: float) -> None:
        for p in self.procs.values():
            if p.proc is None or p.state not in ("running", "stopping"):
                continue
            code = p.proc.poll()
            if code is None:
                continue
            self._read_output(p, final=True)
            # anything the node left behind in its group (its own children) goes with it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.proc.pid, signal.SIGKILL)
            p.exit_code = code
            if p.state == "stopping":
                p.state = "stopped"
                self._state_dirty = True
                # in the logs only (the console says "all nodes stopped"): how each one took the stop
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                for log in (self.launch_log, p.log):
                    log.write(f"{stamp} {p.name}: stopped, {_exit_text(code)}")
                continue
            self.say(f"{p.name}: {_exit_text(code)} (pid {p.proc.pid})", p)
            self._after_exit(p, code, now)

    def _after_exit(self, p: _Proc, code: int, now: float) -> None:
        """Apply the respawn policy to a node that ended while the graph runs."""
        e = p.node.spec.entry
        failed = code != 0
        self._state_dirty = True
        if not should_restart(e.respawn, code):
            p.state = "failed" if failed else "exited"
            p.detail = _exit_text(code)
            self._ended_for_good(p, failed)
            return
        p.exits.append(now)
        while p.exits and p.exits[0] < now - e.restart_window_s:
            p.exits.popleft()
        if len(p.exits) > e.max_restarts:
            p.state = "crash-loop"
            p.detail = (f"crash loop: ended {len(p.exits)} times within {e.restart_window_s:g} s "
                        f"(last: {_exit_text(code)}); not restarted")
            self.say(f"{p.name}: {p.detail}. Its last output:", p)
            for line in p.tail:
                self.say(f"    {line}")
            self._ended_for_good(p, True)
            return
        delay = restart_delay_s(e, len(p.exits))
        p.state = "backoff"
        p.next_start = now + delay
        p.detail = f"restart in {delay:.1f} s ({len(p.exits)} of at most {e.max_restarts} within {e.restart_window_s:g} s)"
        self.say(f"{p.name}: {p.detail}", p)

    def _ended_for_good(self, p: _Proc, failed: bool) -> None:
        if failed:
            self.exit_code = 1
        if p.node.spec.entry.required:
            self._request_stop(f"required node {p.name} ended", 1 if failed else 0)

    # -- waiting --------------------------------------------------------------------------------
    def _missing(self, p: _Proc) -> list[str]:
        """What ``p`` still waits for, in words; empty when it may start."""
        e = p.node.spec.entry
        missing = [f"topic {t}" for t in e.wait_for_topics if t not in self._seen_topics]
        for other in e.wait_for_ready:
            q = self.procs.get(other)
            if q is None or not (q.state == "running" and q.ready):
                missing.append(f"node {other} ready")
        return missing

    def _start_due(self, now: float) -> None:
        if self._stop_requested:
            return
        for p in self.procs.values():
            if p.state == "backoff" and now >= p.next_start:
                p.restarts += 1
                self.say(f"{p.name}: restarting (restart {p.restarts})", p)
                self._start(p, now)
            elif p.state == "waiting":
                missing = self._missing(p)
                if p.waiting_since is None:
                    p.waiting_since = now
                    p.next_wait_report = now + _WAIT_REPORT_S
                    if missing:
                        self.say(f"{p.name}: waiting for {', '.join(missing)}", p)
                if not missing:
                    self._start(p, now)
                    continue
                p.detail = f"waiting for {', '.join(missing)}"
                timeout = p.node.spec.entry.wait_timeout_s
                if timeout and now - p.waiting_since >= timeout:
                    self.say(f"{p.name}: still {p.detail} after {timeout:g} s; starting anyway", p)
                    p.detail = ""
                    self._start(p, now)
                elif now >= p.next_wait_report:
                    p.next_wait_report = now + _WAIT_REPORT_S
                    self.say(f"{p.name}: still {p.detail} ({now - p.waiting_since:.0f} s)", p)

    def _on_waited_topic(self, sock: zmq.Socket) -> None:
        sub = self._waiters.pop(sock)
        self._seen_topics.add(sub.topic.name)
        self._poller.unregister(sock)
        sub.close()

    def _on_diagnostics(self) -> None:
        assert self._diag is not None
        while True:
            frames = self._diag.recv_frames(0)
            if frames is None:
                return
            try:
                msg = self._diag.decode(frames)
            except Exception as exc:  # noqa: BLE001 - DecodeError; nothing a sender puts on the bus may end the launcher
                self._diagnostics_rejected(exc)
                continue
            if not isinstance(msg, Diagnostics):
                continue
            p = self.procs.get(msg.node)
            if p is not None and p.pid == msg.pid and p.ready != msg.ready:
                p.ready = msg.ready
                self._state_dirty = True

    def _diagnostics_rejected(self, exc: Exception) -> None:
        """A message on the diagnostics fan-in that is not well-formed diagnostics: counted (the
        subscriber's ``rejected``), said once per kind in the launch log."""
        kind = exc.kind if isinstance(exc, DecodeError) else f"internal:{type(exc).__name__}"
        if kind not in self._diag_rejected_kinds:
            self._diag_rejected_kinds.add(kind)
            self.say(f"diagnostics: rejected a message ({str(exc)[:200]}); further ones of this kind are counted")

    # -- state file -----------------------------------------------------------------------------
    def _write_state(self, now: float, force: bool = False) -> None:
        # periodically (a reader can tell the launcher is alive), and soon after a change
        due = now >= self._last_state_write + _STATE_PERIOD_S
        if not (force or due or (self._state_dirty and now >= self._last_state_write + 0.2)):
            return
        self._last_state_write = now
        self._state_dirty = False
        nodes = [NodeState(name=p.name, module=p.node.spec.entry.module, machine=p.node.machine, state=p.state,
                           pid=p.pid if p.state in ("running", "stopping") else None, restarts=p.restarts,
                           started_ns=p.started_ns, exit_code=p.exit_code, detail=p.detail)
                 for p in self.procs.values()]
        state = LauncherState(launcher_pid=os.getpid(), file=self.graph.description.file, machine=self.machine,
                              started_ns=self.started_ns, updated_ns=time.time_ns(), log_dir=str(self.log_dir),
                              bus=self.config.to_env(), nodes=nodes)
        try:
            write_state(self.state_file, state)
        except OSError as exc:
            self.say(f"cannot write {self.state_file}: {exc}; `streetloc node list` will not see restarts")

    # -- signals and the loop -------------------------------------------------------------------
    def _request_stop(self, reason: str, code: int | None = None) -> None:
        if not self._stop_requested:
            self._stop_reason = reason
        self._stop_requested += 1
        if code:
            self.exit_code = max(self.exit_code, code)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._request_stop(f"{signal.Signals(signum).name} received")

    def _install_signals(self) -> dict[int, object]:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)  # wakes the poll at once
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, self._on_signal)
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)  # a node exit wakes the loop
        self._poller.register(self._wake_r, zmq.POLLIN)
        if self.parent_fd is not None:
            os.set_blocking(self.parent_fd, False)
            self._poller.register(self.parent_fd, zmq.POLLIN)
        return previous

    def _on_parent_fd(self) -> None:
        """The parent's pipe is readable: end-of-file (or an error) means the parent is gone."""
        assert self.parent_fd is not None
        try:
            if os.read(self.parent_fd, 512):
                return  # nothing is ever written; ignore it
        except BlockingIOError:
            return
        except OSError:
            pass
        with contextlib.suppress(KeyError, zmq.ZMQError):
            self._poller.unregister(self.parent_fd)
        with contextlib.suppress(OSError):
            os.close(self.parent_fd)
        self.parent_fd = None
        if not self._stop_requested:  # a stop already under way keeps its pace (no SIGKILL for this)
            self._request_stop(f"the process that started this launcher (pid {self._parent_pid}) died")

    def _restore_signals(self, previous: dict[int, object]) -> None:
        signal.set_wakeup_fd(-1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _poll(self, timeout_s: float) -> None:
        try:
            events = self._poller.poll(max(0, int(timeout_s * 1000)))
        except zmq.ZMQError:
            return
        for sock, _ in events:
            if sock == self._wake_r:
                with contextlib.suppress(BlockingIOError, OSError):
                    while os.read(self._wake_r, 512):
                        pass
            elif self.parent_fd is not None and sock == self.parent_fd:
                self._on_parent_fd()
            elif isinstance(sock, int):
                p = self._by_fd.get(sock)
                if p is not None:
                    self._read_output(p)
            elif self._diag is not None and sock is self._diag.socket:
                self._on_diagnostics()
            elif sock in self._waiters:
                self._on_waited_topic(sock)

    def _setup_bus(self) -> None:
        try:
            self._forwarder = Forwarder(self.config).start()
        except OSError as exc:
            raise OSError(f"cannot forward diagnostics ({exc}); is another launcher, or a `streetloc topic` "
                          f"tool, running on this bus (STREETLOC_IPC_DIR={self.config.ipc_dir}, "
                          f"transport {self.config.transport})?") from None
        self._diag = Subscriber(DIAGNOSTICS_TOPIC, delivery=Delivery.EVERY, config=self.config)
        self._poller.register(self._diag.socket, zmq.POLLIN)
        for topic in sorted({t for p in self.procs.values() for t in p.node.spec.entry.wait_for_topics}):
            sub = Subscriber(topic, delivery=Delivery.EVERY, config=self.config)
            self._waiters[sub.socket] = sub
            self._poller.register(sub.socket, zmq.POLLIN)

    def _teardown_bus(self) -> None:
        for sub in self._waiters.values():
            sub.close()
        self._waiters.clear()
        if self._diag is not None:
            self._diag.close()
        if self._forwarder is not None:
            self._forwarder.close()

    def run(self) -> int:
        """Run until a signal, a required node's end, or no node left; the exit code: 0 when every node
        ran (or ended) cleanly, 1 when one failed for good (crash loop, failed and not restarted)."""
        previous = self._install_signals()
        try:
            self._setup_bus()
            endpoint = self.config.subscriber_endpoint(self._diag.topic) if self._diag else ""
            n = len(self.procs)
            self.say(f"{self.graph.description.file}: {n} node{'s' if n != 1 else ''}"
                     + (f" on machine {self.machine}" if self.machine else "")
                     + f"; logs in {self.log_dir}; diagnostics at {endpoint}; Ctrl-C stops")
            while True:
                now = time.monotonic()
                self._start_due(now)
                self._reap(now)
                if self._stop_requested:
                    break
                if not any(p.state in ("waiting", "running", "backoff") for p in self.procs.values()):
                    self._request_stop("no node left running")
                    break
                self._write_state(now)
                timers = [p.next_start for p in self.procs.values() if p.state == "backoff"]
                self._poll(min([now + _LOOP_S, *timers]) - now)
            self.say(f"stopping: {self._stop_reason}")
            self._shutdown()
        finally:
            self._kill_all()  # only does anything if the loop above died of an exception
            self._teardown_bus()
            self._restore_signals(previous)
            with contextlib.suppress(OSError):
                self.state_file.unlink()
            for p in self.procs.values():
                p.log.close()
            self.launch_log.close()
        return self.exit_code

    def _shutdown(self) -> None:
        """SIGTERM every node's group, SIGKILL those still there at their stop_timeout_s."""
        t0 = time.monotonic()
        running = [p for p in self.procs.values() if p.state == "running"]
        for p in self.procs.values():
            if p.state in ("waiting", "backoff"):
                p.state, p.detail = "stopped", ""
        for p in running:
            p.state = "stopping"
            p.stop_deadline = t0 + p.node.spec.entry.stop_timeout_s
            self._signal_group(p, signal.SIGTERM)
        self._write_state(t0, force=True)
        signals_at_start = self._stop_requested
        while True:
            now = time.monotonic()
            self._reap(now)
            left = [p for p in running if p.state == "stopping"]
            if not left:
                break
            if now - t0 > 10.0:  # SIGKILL did not end it (uninterruptible sleep): do not hang the stop
                self.say(f"giving up on {', '.join(p.name for p in left)}: not gone 10 s after SIGKILL")
                break
            hurry = self._stop_requested > signals_at_start  # a second Ctrl-C: no more patience
            for p in left:
                if p.stop_deadline is None:
                    continue  # SIGKILLed already
                if hurry:
                    self.say(f"{p.name}: second stop request; SIGKILL", p)
                elif now >= p.stop_deadline:
                    self.say(f"{p.name}: still running {p.node.spec.entry.stop_timeout_s:g} s after "
                             "SIGTERM; SIGKILL", p)
                else:
                    continue
                p.stop_deadline = None
                self._signal_group(p, signal.SIGKILL)
            self._poll(0.05)
        if running:
            self.say(f"all nodes stopped in {time.monotonic() - t0:.1f} s")

    def _kill_all(self) -> None:
        for p in self.procs.values():
            if p.proc is not None and p.proc.poll() is None:
                self._signal_group(p, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.proc.wait(timeout=2.0)
                p.state = "stopped"
            if p.fd is not None:
                self._read_output(p, final=True)
