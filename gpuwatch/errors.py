"""The one kind of error a user sees as a message: a mistake in how gpuwatch was called or
configured. The command line catches :class:`UserError` once, prints its text as one line
and exits with code 2; nothing else is caught that way, so a bug still shows its traceback."""

from __future__ import annotations


class UserError(Exception):
    """A user mistake worded for a one-line message (exit code 2)."""


class UsageError(UserError):
    """A wrong flag or value on the command line."""


class ConfigError(UserError, ValueError):
    """A config problem: missing file, bad TOML, a wrong key or value."""


class ScenarioError(UserError, ValueError):
    """An unknown demo scenario or fault."""
