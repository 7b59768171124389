"""Granian's exceptions, same names and hierarchy: callers catch FatalError."""


class FatalError(Exception):
    """The server cannot start or run; Granian's CLI turns it into exit 1."""


class ConfigurationError(FatalError):
    """A bad option or combination; its argument names the keyword."""


class PidFileError(FatalError):
    """The pid file is unreadable or belongs to a live process."""
