"""The `granian` command: granc with the same arguments.

granc parses Granian's command line and GRANIAN_* variables itself, so
entrypoint() only finds the binary and execs it.  Granian's click types
stay here for callers that build their own click commands on them
(python3-click); without click they are absent and the command still works.
"""
import os
import re
import sys

from . import _granc
from .errors import FatalError
from .server import Server

_SERVER = Server                # callers may replace granian.cli.Server

try:
    import click
except ImportError:             # the command does not need it
    click = None


def cli(args=None, prog_name=None, auto_envvar_prefix="GRANIAN", **_):
    """Exec granc with `args` (default: this process's arguments)."""
    args = sys.argv[1:] if args is None else list(args)
    try:
        if Server is not _SERVER:   # a subclass cannot cross into granc: say so
            raise FatalError(f"granian.cli.Server was replaced by {Server.__qualname__}; "
                             "granc runs Granian's command line, not a Python server class")
        binary = _granc.binary()
    except FatalError as e:
        print(f"granian: {e}", file=sys.stderr)
        sys.exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, [binary] + args)


def entrypoint():
    cli()


def _pretty_print_default(value):
    if isinstance(value, bool):
        return "enabled" if value else "disabled"
    return getattr(value, "value", value)


if click is not None:
    class Duration(click.IntRange):
        """Seconds, or NdNhNmNs ("1h30m"), within [min, max]."""

        name = "duration"
        _units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
        _pattern = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")

        def __init__(self, min=None, max=None):
            super().__init__(min, max, min_open=False, max_open=False, clamp=False)

        def convert(self, value, param, ctx):
            if value is None:
                return value
            if isinstance(value, int):
                seconds = value
            elif isinstance(value, str) and value.isnumeric():
                seconds = int(value)
            elif isinstance(value, str) and (m := self._pattern.fullmatch(value)):
                seconds = sum(int(m.group(u) or 0) * k for u, k in self._units.items())
            else:
                self.fail(f"{value!r} is not a valid duration", param, ctx)
            if self.min is not None and seconds < self.min:
                self.fail(f"{value!r} is less than the minimum allowed value of {self.min} "
                          "seconds", param, ctx)
            if self.max is not None and seconds > self.max:
                self.fail(f"{value!r} is greater than the maximum allowed value of {self.max} "
                          "seconds", param, ctx)
            return seconds

    class EnumType(click.Choice):
        """A choice among an enum's values, converted to the member."""

        def __init__(self, enum, case_sensitive=False):
            self.__enum = enum
            super().__init__(choices=[m.value for m in enum], case_sensitive=case_sensitive)

        def convert(self, value, param, ctx):
            if value is None or isinstance(value, self.__enum):
                return value
            return self.__enum(super().convert(value, param, ctx))

    class OctalIntType(click.ParamType):
        """A file mode: a leading 0 means octal."""

        name = "Octal integer"

        def convert(self, value, param, ctx):
            if value is None or isinstance(value, int):
                return value
            if not isinstance(value, str):
                self.fail(f"{value!r} is not a valid integer", param, ctx)
            try:
                return int(value, 8 if value[:1] == "0" else 10)
            except ValueError as e:
                self.fail(str(e), param, ctx)
