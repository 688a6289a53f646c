"""One module per ``statecast`` subcommand: its parser and its handler together."""
