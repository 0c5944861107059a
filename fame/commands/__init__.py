"""Subcommands of the `fame` CLI, one module each (see `fame.cli.COMMANDS`)."""
