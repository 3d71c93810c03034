"""The ``colliderlab`` command: thin subcommands over the public API."""
