"""The launcher: runs a graph of node processes from a launch file and keeps it up.

    desc = load_launch("launch/bringup.toml", {"camera_rate_hz": "15"})   # files, includes, --arg
    graph = build_graph(desc).raise_for_problems()     # the static check; LaunchError lists problems
    Supervisor(graph, log_dir=Path("/tmp/run")).run()  # from the main thread, until Ctrl-C / SIGTERM

``streetloc launch`` (nodes/commands/launch.py) is this with a command line; docs/launch.md describes
the launch file format, supervision and graphs split across machines.
"""

from nodes.launcher.description import LaunchDescription, LaunchError, NodeEntry, Problem, load_launch
from nodes.launcher.graph import (
    Graph,
    GraphNode,
    build_graph,
    describe_graph,
    import_node,
    load_graph,
    node_class,
)
from nodes.launcher.supervisor import Supervisor

__all__ = [
    "Graph", "GraphNode", "LaunchDescription", "LaunchError", "NodeEntry", "Problem", "Supervisor",
    "build_graph", "describe_graph", "import_node", "load_graph", "load_launch", "node_class",
]
