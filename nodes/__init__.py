"""The streetloc runtime: bus, node base, launcher, CLI, and the node processes."""
