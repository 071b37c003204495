"""Command-line interface: one module per subcommand, heavy imports inside the commands."""
