"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""


class BakeryError(Exception):
    """A failure the user can fix; the message names the file, key or ID and what is wrong."""

    exit_code = 1


class ConfigError(BakeryError):
    """content/site.toml (or a file it names) is invalid."""

    exit_code = 2


class StageFailures(BakeryError):
    """A stage finished what it could but some items failed (listed in the message)."""

    exit_code = 1
