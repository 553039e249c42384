"""User-facing errors: the CLI prints their message on one line and exits with `exit_code`."""

from __future__ import annotations


class ReidError(Exception):
    """A mistake in the user's input (file, key or value); never shown with a traceback."""

    exit_code = 2


class ConfigError(ReidError):
    """A config file, preset or override that does not validate."""


class DataError(ReidError):
    """A dataset root, annotation, evaluation file or image that cannot be used."""


class CheckpointError(ReidError):
    """A checkpoint that is missing, corrupt or from another architecture."""
