"""CurveZMQ on loopback tcp: with keys, clients without them (or with a key not on the allow-list) get
nothing and cannot publish; without keys, a non-loopback bind is refused unless opted in."""

from __future__ import annotations

import os
import random
import shutil
import threading
import time

import pytest
import zmq

from nodes.bus import security
from nodes.bus.forwarder import Forwarder
from nodes.bus.messages import Diagnostics, Header, Pose
from nodes.bus.pubsub import Publisher, Subscriber
from nodes.bus.topics import BusConfig, get_topic
from nodes.bus.wire import Codec
from nodes.commands.node import collect_diagnostics


@pytest.fixture(scope="module", autouse=True)
def _stop_zap_handler():
    """The tests' binding sockets start a ZAP handler in the shared context; stop it after them, so a
    later test that terminates that context does not wait on it."""
    yield
    security.stop_authenticator(zmq.Context.instance())


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("keys") / "graph"
    security.generate(folder, clients=("laptop",))
    return str(folder)


@pytest.fixture
def config(keys) -> BusConfig:
    return BusConfig(transport="tcp", port_base=random.randint(20000, 40000), keys_dir=keys)


def _pose(i: int) -> Pose:
    return Pose(Header(stamp_ns=time.time_ns()), lat_deg=34.0 + i * 1e-6, lon_deg=-118.0, valid=True)


def _diag(node: str) -> Diagnostics:
    return Diagnostics(Header(stamp_ns=time.time_ns()), node=node, pid=os.getpid(), uptime_s=1.0, status="ok")


def test_generate_writes_certificates_with_private_secrets(keys, tmp_path):
    import zmq.auth

    for name in ("server", "client"):
        public, secret = zmq.auth.load_certificate(os.path.join(keys, f"{name}.key_secret"))
        assert secret and zmq.auth.load_certificate(os.path.join(keys, f"{name}.key"))[0] == public
        assert os.stat(os.path.join(keys, f"{name}.key_secret")).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(os.path.join(keys, "allowed"))) == ["client.key", "laptop.key"]
    with pytest.raises(security.KeysError, match="not overwriting"):
        security.generate(keys)


def test_keyed_client_receives_plain_and_unlisted_clients_get_nothing(config, tmp_path):
    other = tmp_path / "other"  # a well-formed keypair of its own, not on the graph's allow-list
    security.generate(other)
    shutil.copyfile(os.path.join(config.keys_dir, "server.key"), other / "server.key")  # knows the server
    stranger = config.with_(keys_dir=str(other))
    laptop = tmp_path / "laptop"  # what a subscriber on another machine gets: server.key, its own secret
    laptop.mkdir(mode=0o700)
    for name in ("server.key", "laptop.key_secret"):
        shutil.copy2(os.path.join(config.keys_dir, name), laptop / name)
    topic = get_topic("localization/pose")
    with Publisher(topic, node="t", config=config) as pub, Subscriber(topic, config=config) as sub, \
            Subscriber(topic, config=stranger) as unlisted, \
            Subscriber(topic, config=config.with_(keys_dir=str(laptop))) as remote:
        plain = zmq.Context.instance().socket(zmq.SUB)
        plain.setsockopt(zmq.LINGER, 0)
        plain.setsockopt(zmq.SUBSCRIBE, b"")
        plain.connect(pub.endpoint)
        try:
            assert pub.wait_for_subscribers(2, timeout_s=5)
            deadline = time.monotonic() + 0.8
            i = 0
            while time.monotonic() < deadline:  # long enough for every handshake to have been tried
                pub.publish(_pose(i))
                i += 1
                time.sleep(0.02)
            assert sub.recv(timeout_s=2) is not None and remote.recv(timeout_s=2) is not None
            assert unlisted.recv(timeout_s=0.2) is None
            assert not plain.poll(200)
            assert pub.subscriber_count() == 2  # only the keyed ones ever subscribed
        finally:
            plain.close(0)


def test_only_keyed_diagnostics_reach_node_list(config):
    """A plain publisher on the diagnostics fan-in (a spoofed node) is not relayed: `node list` (its
    collect_diagnostics) lists only the node with the graph's client key."""
    topic = get_topic("diagnostics")
    stop = threading.Event()

    def publish_both() -> None:  # a node of the graph and a spoofer, at 20 Hz, while node list listens
        spoof = zmq.Context.instance().socket(zmq.PUB)
        spoof.setsockopt(zmq.LINGER, 0)
        spoof.connect(config.forwarder_in_endpoint(topic, connect=True))
        codec = Codec(topic)
        with Publisher(topic, node="real", config=config) as pub:
            while not stop.is_set():
                pub.publish(_diag("real"))
                spoof.send_multipart(codec.encode(_diag("spoofed")))
                time.sleep(0.05)
        spoof.close(0)

    with Forwarder(config) as forwarder:
        thread = threading.Thread(target=publish_both)
        thread.start()
        try:
            seen = collect_diagnostics([config], 1.5)
        finally:
            stop.set()
            thread.join()
        assert "real" in seen and "spoofed" not in seen
        assert set(forwarder.senders) == {"client"}


def test_non_loopback_bind_without_keys_needs_insecure(keys, capsys):
    with pytest.raises(ValueError, match="--insecure") as exc:
        BusConfig(transport="tcp", bind="0.0.0.0")
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="--insecure"):
        BusConfig.from_env({"STREETLOC_TRANSPORT": "tcp", "STREETLOC_BIND": "0.0.0.0"})
    insecure = BusConfig.from_env({"STREETLOC_TRANSPORT": "tcp", "STREETLOC_BIND": "0.0.0.0",
                                   "STREETLOC_INSECURE": "1", "STREETLOC_PORT_BASE": str(random.randint(20000, 40000))})
    assert insecure.insecure and BusConfig.from_env(insecure.to_env()) == insecure
    with Publisher("localization/pose", config=insecure):
        assert "WITHOUT authentication" in capsys.readouterr().err
    BusConfig(transport="tcp", bind="0.0.0.0", keys_dir=keys)  # keys: no opt-in needed
    BusConfig(transport="tcp", bind="127.0.0.1")
    BusConfig(transport="ipc")


def test_missing_key_file_is_one_line(tmp_path):
    config = BusConfig(transport="tcp", port_base=random.randint(20000, 40000), keys_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"server\.key"):
        Subscriber("localization/pose", config=config)


def test_keys_command_and_launch_opt_in(tmp_path, capsys, monkeypatch):
    from nodes.cli import main

    assert main(["keys", "generate", str(tmp_path / "k"), "--client", "laptop"]) == 0
    assert (tmp_path / "k" / "allowed" / "laptop.key").exists()
    assert main(["keys", "generate", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert "not overwriting" in err and err.count("\n") == 1
    graph = tmp_path / "open.toml"
    graph.write_text('[bus]\ntransport = "tcp"\nbind = "0.0.0.0"\n[nodes.camera]\nmodule = "nodes.test_pattern"\n')
    monkeypatch.setenv("STREETLOC_INSECURE", "0")  # restored after: --insecure sets it for the run
    assert main(["launch", str(graph), "--check"]) == 2
    assert "--insecure" in capsys.readouterr().err
    assert main(["launch", str(graph), "--check", "--insecure"]) == 0
    keyed = tmp_path / "keyed.toml"
    keyed.write_text(graph.read_text().replace("[nodes", f'keys_dir = "{tmp_path / "k"}"\n[nodes'))
    monkeypatch.setenv("STREETLOC_INSECURE", "0")
    assert main(["launch", str(keyed), "--check"]) == 0


def test_keyed_subscriber_ignores_a_plain_publisher_on_the_port(config):
    """Someone who binds a topic's port first (no server secret) cannot feed the graph's subscribers."""
    topic = get_topic("localization/pose")
    squatter = zmq.Context.instance().socket(zmq.XPUB)
    squatter.setsockopt(zmq.LINGER, 0)
    squatter.bind(config.subscriber_endpoint(topic))
    codec = Codec(topic)
    try:
        with Subscriber(topic, config=config) as sub:
            got = None
            deadline = time.monotonic() + 0.8
            while got is None and time.monotonic() < deadline:
                squatter.send_multipart(codec.encode(_pose(1)))
                got = sub.recv(timeout_s=0.05)
            assert got is None
            assert not squatter.poll(0)  # the handshake failed: not even a subscription reached it
    finally:
        squatter.close(0)


def test_a_keyed_process_terminates_its_context(config):
    """The ZAP handler's socket would keep Context.term() waiting forever (a node that never stops on
    SIGTERM and gets SIGKILLed); security.terminate, which every process shell uses, stops it first."""
    context = zmq.Context()
    Publisher("localization/pose", config=config, context=context).close()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (security.terminate(context), done.set()), daemon=True)
    thread.start()
    thread.join(timeout=3)
    assert done.is_set()


def test_check_refuses_a_split_graph_on_the_network_without_keys(tmp_path, capsys, monkeypatch):
    split = os.path.join(os.path.dirname(__file__), "../../../launch/split.toml")
    net = ["--arg", "robot_address=10.0.0.2", "--arg", "box_address=10.0.0.3"]
    monkeypatch.setenv("STREETLOC_INSECURE", "0")
    monkeypatch.delenv("STREETLOC_KEYS_DIR", raising=False)
    from nodes.cli import main

    assert main(["launch", split, "--check", *net]) == 2
    err = capsys.readouterr().err
    assert "machine robot: refusing to bind tcp on 10.0.0.2" in err and "machine box" in err
    monkeypatch.setenv("STREETLOC_KEYS_DIR", str(tmp_path))
    assert main(["launch", split, "--check", *net]) == 0
    monkeypatch.delenv("STREETLOC_KEYS_DIR")
    monkeypatch.setenv("STREETLOC_INSECURE", "0")
    assert main(["launch", split, "--check", "--insecure", *net]) == 0
