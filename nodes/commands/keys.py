"""``streetloc keys generate DIR``: CurveZMQ keys for a graph on tcp (nodes/bus/security.py).

Writes DIR/server.key + server.key_secret (the graph's server keypair), DIR/client.key +
client.key_secret (the graph's own client keypair), NAME.key + NAME.key_secret per --client NAME, and DIR/allowed/<name>.key (the ZAP allow-list), in ZeroMQ's
certificate format; secret files 0600, folders 0700. Point the graph at it with STREETLOC_KEYS_DIR=DIR
or ``[bus] keys_dir = "DIR"`` (docs/launch.md, docs/wire_format.md "Security").
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("keys", help="CurveZMQ keys for a graph on tcp (generate)",
                              description="Manage CurveZMQ keys that authenticate and encrypt the bus on tcp.")
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = sub.add_parser("generate", help="write a server keypair, client keypairs and the allow-list",
                       description="Write a keys folder: server.key/.key_secret, a keypair per --client "
                                   "name, their public keys in allowed/. Existing key files are never "
                                   "overwritten.")
    g.add_argument("dir", metavar="DIR", help="keys folder (created 0700)")
    g.add_argument("--client", action="append", metavar="NAME", default=[],
                   help="an extra client keypair, for a subscriber on another machine (repeatable)")
    g.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from nodes.bus.security import generate

    clients = tuple(args.client)
    for name in clients:
        if not name or "/" in name or name.startswith(".") or name in ("server", "allowed"):
            raise ValueError(f"--client {name!r}: not a usable key name (a plain file name, not 'server')")
    written = generate(args.dir, clients=clients)
    for path in written:
        print(path)
    print(f"keys in {args.dir}: set STREETLOC_KEYS_DIR={args.dir} (or [bus] keys_dir) on every machine of the "
          "graph; a subscriber elsewhere needs a folder with server.key and its NAME.key_secret")
    return 0
