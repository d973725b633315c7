"""The ``greenai`` command line: its commands, the runner that meters a command, the demo."""
