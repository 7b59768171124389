"""Granian's Python API, served by granc.

`Granian(target, ...).serve()` takes Granian 2.8's keywords and runs the
granc binary with the same configuration; `granian` and `python -m
granian` run granc with the same arguments.  See README.md, "From Python",
and docs/switching.md.
"""
from ._loops import loops
from .server import Server as Granian

# The Granian release whose API (and command line) this package follows:
# granc.h's GRANIAN_COMPAT.
__version__ = "2.8.1"

__all__ = ["__version__", "loops", "Granian"]
