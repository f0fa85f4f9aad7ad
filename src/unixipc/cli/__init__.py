"""The ``unixipc`` command: one module per subcommand, a thin layer over the library."""
