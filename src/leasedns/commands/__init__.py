"""One module per subcommand; cli.py parses and calls them."""
