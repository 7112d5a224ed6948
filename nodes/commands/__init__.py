"""Subcommands of the ``streetloc`` CLI, one module each (see ``nodes.cli.COMMANDS``)."""
