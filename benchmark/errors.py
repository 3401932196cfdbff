"""Errors that are the user's to fix.

Anything raised as a :class:`UserError` is printed by the CLI as one line on
stderr (no traceback) and the process exits non-zero. Everything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: a recipe, an override, a path, a missing file."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration value or key is invalid. The message names the file and key."""


class DatasetNotFoundError(UserError):
    """A dataset's files are missing. The message names them and the expected layout."""


class WeightsNotFoundError(UserError):
    """Pretrained weights are not on disk and could not be fetched."""
