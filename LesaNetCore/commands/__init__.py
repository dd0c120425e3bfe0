"""Subcommands of ``lesanet``: one module each, argument parsing only; the work is done by the core modules."""
