"""Exceptions that the CLI turns into one clear line and exit status 2.

Everything a user can get wrong (a bad config value, a missing data file, an unknown method)
raises a subclass of :class:`FFLearnError` with a message that says what is wrong and how to
fix it; tracebacks are reserved for bugs in fflearn itself.
"""


class FFLearnError(Exception):
    """Base class of user-facing errors (exit status 2 from the CLI)."""


class ConfigError(FFLearnError, ValueError):
    """A config field has a bad value, type or combination."""


class DataError(FFLearnError):
    """A dataset is missing, corrupt, or cannot be downloaded."""


class TrainingError(FFLearnError):
    """Training cannot go on, e.g. a NaN or infinite loss."""
