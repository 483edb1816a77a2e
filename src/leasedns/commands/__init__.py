"""One module per subcommand; cli.py parses and calls them.

Each module has add_parser(subparsers), which adds the command with its arguments and sets
`run` (`p.set_defaults(run=...)`) to its entry: called as run(args, cfg, out) -> exit code, or
run(args, out) for a command that sets `needs_config=False` (leases, dhcpd-snippet: no config,
no logging). The entry is named `run`, or `main` where the module's `run` is the command's
work as a library call (apply, reconcile, check). cli.py imports a module only when its command
is given, so what a module imports at its top costs nothing to the other commands.
"""
