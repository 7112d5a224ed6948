"""CurveZMQ on tcp: key folders, which socket gets which keys, the ZAP allow-list, the insecure opt-in.

A keys folder (``streetloc keys generate DIR``; ZeroMQ's certificate format, ``zmq.auth``) holds:

  server.key  server.key_secret   the graph's server keypair: every socket that binds (a topic's
                                  publisher, the diagnostics forwarder) is a CURVE server with it
  client.key  client.key_secret   the graph's client keypair: every socket that connects (subscribers,
                                  diagnostics publishers) is a CURVE client with it and server.key
  NAME.key  NAME.key_secret       extra client keypairs (``--client NAME``), for subscribers elsewhere
  allowed/*.key                   the ZAP allow-list: public keys of the clients a server accepts

Secret files are 0600 (refused otherwise), the folders 0700. A machine that only subscribes needs a
folder with ``server.key`` and its own ``NAME.key_secret``; its ``NAME.key`` is in ``allowed/`` on the
machines that bind.

The security applies to tcp endpoints only (ipc is guarded by the private folder, ``private_dir``).
Without keys, binding tcp anywhere but the loopback interface needs ``insecure`` (``--insecure``,
``STREETLOC_INSECURE=1``, ``[bus] insecure = true``): anyone who reaches the port can then read and
publish every topic, which is said once per process on stderr.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import zmq
import zmq.utils.z85

SERVER = "server"
CLIENT = "client"
ALLOWED = "allowed"
ZAP_DOMAIN = b"streetloc"
SECRET_MODE = 0o600
LOCAL_BINDS = ("127.0.0.1", "localhost", "::1", "[::1]", "lo")


class KeysError(ValueError):
    """A keys folder or key file that cannot be used; the message is one line naming it."""


def is_local_bind(bind: str) -> bool:
    """Whether binding ``bind`` (an address or interface, as in STREETLOC_BIND) reaches this machine only."""
    return bind in LOCAL_BINDS or bind.startswith("127.")


def insecure_bind_refusal(bind: str) -> str:
    """The one-line refusal for a tcp bind to ``bind`` without keys nor the insecure opt-in."""
    return (f"refusing to bind tcp on {bind} without CurveZMQ keys: anyone who reaches it could read and "
            "publish every topic; set keys (streetloc keys generate DIR, then STREETLOC_KEYS_DIR=DIR or "
            "[bus] keys_dir) or opt in with --insecure (STREETLOC_INSECURE=1, [bus] insecure = true)")


_warned: set[str] = set()


def warn_insecure(bind: str) -> None:
    """Say once per process and bind address that the bus is open to the network."""
    if bind in _warned:
        return
    _warned.add(bind)
    print(f"warning: bus bound on {bind} over tcp WITHOUT authentication (--insecure): anyone who reaches "
          "it can read and publish every topic", file=sys.stderr)


def _load(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeysError(f"key file {path}: {exc}") from None
    if secret and not secret_key:
        raise KeysError(f"key file {path}: no secret-key in it")
    if secret:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            raise KeysError(f"key file {path} has mode {mode:03o}: other users may read the secret "
                            f"(chmod 600 {path})")
    return public, secret_key


def _keys(keys_dir: str, name: str, *, secret: bool) -> tuple[bytes, bytes | None]:
    suffix = ".key_secret" if secret else ".key"
    return _load(Path(keys_dir) / f"{name}{suffix}", secret=secret)


def allowed_keys(keys_dir: str) -> dict[bytes, str]:
    """The allow-list: public key (Z85) -> its file name without ``.key`` (the User-Id it is known by)."""
    folder = Path(keys_dir) / ALLOWED
    if not folder.is_dir():
        raise KeysError(f"keys folder {keys_dir}: no {ALLOWED}/ folder of client public keys")
    keys = {}
    for path in sorted(folder.glob("*.key")):
        public, _ = _load(path, secret=False)
        keys[public] = path.stem
    if not keys:
        raise KeysError(f"keys folder {keys_dir}: {ALLOWED}/ holds no *.key file: no client could connect")
    return keys


def _authenticator_class():
    from zmq.auth.thread import ThreadAuthenticator

    class _Authenticator(ThreadAuthenticator):
        """The ZAP handler: accepts the allow-listed client keys; a client's User-Id is its key's name."""

        names: dict[bytes, str] = {}

        def curve_user_id(self, client_public_key: bytes) -> str:
            return self.names.get(zmq.utils.z85.encode(client_public_key), "unknown")

    return _Authenticator


_lock = threading.Lock()
_authenticators: dict[int, tuple[zmq.Context, object]] = {}


def ensure_authenticator(context: zmq.Context, keys_dir: str) -> None:
    """Start the ZAP handler of ``context`` (one per context) with the allow-list of ``keys_dir``."""
    with _lock:
        if id(context) in _authenticators:
            return
        names = allowed_keys(keys_dir)
        auth = _authenticator_class()(context)
        auth.names = names
        auth.start()
        auth.configure_curve(domain=ZAP_DOMAIN.decode(), location=str(Path(keys_dir) / ALLOWED))
        _authenticators[id(context)] = (context, auth)


def stop_authenticator(context: zmq.Context) -> None:
    """Stop the ZAP handler of ``context`` (before terminating the context)."""
    with _lock:
        entry = _authenticators.pop(id(context), None)
    if entry is not None:
        entry[1].stop()  # type: ignore[attr-defined]


def terminate(context: zmq.Context) -> None:
    """Terminate ``context`` (delivering what its sockets still queue, as ``Context.term``), stopping
    its ZAP handler first: the handler's socket would otherwise keep ``term`` waiting forever."""
    stop_authenticator(context)
    context.term()


def secure_server(socket: zmq.Socket, keys_dir: str, context: zmq.Context) -> None:
    """Make ``socket`` (about to bind) a CURVE server that accepts only allow-listed clients."""
    public, secret = _keys(keys_dir, SERVER, secret=True)
    ensure_authenticator(context, keys_dir)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.zap_domain = ZAP_DOMAIN
    socket.curve_server = True


def client_name(keys_dir: str) -> str:
    """The client keypair this process connects with: ``client`` when the folder has
    ``client.key_secret``, else its only other ``*.key_secret`` but the server's (a folder copied to a
    subscriber's machine: ``server.key`` and ``laptop.key_secret``)."""
    folder = Path(keys_dir)
    if (folder / f"{CLIENT}.key_secret").exists():
        return CLIENT
    names = sorted(p.stem for p in folder.glob("*.key_secret") if p.stem != SERVER)
    if len(names) != 1:
        found = ", ".join(f"{n}.key_secret" for n in names) or "none"
        raise KeysError(f"keys folder {keys_dir}: no {CLIENT}.key_secret and not exactly one other client "
                        f"secret key (found {found})")
    return names[0]


def secure_client(socket: zmq.Socket, keys_dir: str) -> None:
    """Make ``socket`` (about to connect) a CURVE client of the graph's server key."""
    server_public, _ = _keys(keys_dir, SERVER, secret=False)
    public, secret = _keys(keys_dir, client_name(keys_dir), secret=True)
    socket.curve_serverkey = server_public
    socket.curve_publickey = public
    socket.curve_secretkey = secret


def generate(keys_dir: str | os.PathLike[str], *, clients: tuple[str, ...] = ()) -> list[Path]:
    """Write a keys folder (see the module docstring): the server keypair, the graph's ``client``
    keypair and one per extra name in ``clients`` (subscribers on other machines), the client public keys
    in ``allowed/``. Existing key files are not overwritten (KeysError).
    Returns the files written."""
    import shutil

    import zmq.auth

    folder = Path(keys_dir)
    names = (SERVER, CLIENT, *(c for c in clients if c != CLIENT))
    for name in names:
        for suffix in (".key", ".key_secret"):
            if (folder / f"{name}{suffix}").exists():
                raise KeysError(f"{folder / (name + suffix)} exists; not overwriting keys "
                                "(remove it, or choose another folder)")
    old_umask = os.umask(0o077)  # secret files are born 0600, folders 0700: no window where others read
    try:
        (folder / ALLOWED).mkdir(parents=True, exist_ok=True)
        written = []
        for name in names:
            public, secret = zmq.auth.create_certificates(folder, name)
            os.chmod(secret, SECRET_MODE)
            written += [Path(public), Path(secret)]
            if name != SERVER:
                allowed = folder / ALLOWED / f"{name}.key"
                shutil.copyfile(public, allowed)
                written.append(allowed)
    finally:
        os.umask(old_umask)
    return written
