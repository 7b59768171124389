"""Finding the granc binary and preparing the environment it runs in."""
import os
import shutil
import site
import sys
import sysconfig

from .errors import FatalError

HERE = os.path.dirname(os.path.abspath(__file__))


def binary():
    """$GRANC; else the bindir `make install-python` recorded; else next
    to the granian command (pip's scripts directory); else the ./granc of
    the source tree this package sits in; else PATH."""
    path = os.environ.get("GRANC")
    if path:
        if not os.access(path, os.X_OK):
            raise FatalError(f"$GRANC={path} is not an executable file")
        return path
    try:
        from ._where import BINDIR
    except ImportError:
        BINDIR = None
    for cand in (BINDIR and os.path.join(BINDIR, "granc"),
                 os.path.join(sysconfig.get_path("scripts"), "granc"),
                 os.path.join(os.path.dirname(os.path.dirname(HERE)), "granc")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    path = shutil.which("granc")
    if not path:
        raise FatalError("granc binary not found: install it (make install), "
                         "put it on PATH, or set $GRANC to its path")
    return path


def _caller_paths():
    """sys.path entries the child interpreter would not have by itself:
    the script's directory and whatever the caller inserted.  Granian's
    workers are forked and inherit them, so a target such as
    "app.main:app" resolves the same under granc."""
    std = set(site.getsitepackages() + [site.getusersitepackages()])
    std |= {sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    out = []
    for p in sys.path:
        if not p or p in std or p.endswith(".zip") or os.path.basename(p) == "lib-dynload":
            continue
        p = os.path.abspath(p)
        if os.path.isdir(p) and p not in out:
            out.append(p)
    return out


def child_env(api):
    """The caller's environment, minus GRANIAN_* for an API call: Granian's
    constructor reads no variable, and granc would honour them.  The
    caller's virtualenv and sys.path go along, as a forked worker has them."""
    env = dict(os.environ)
    if not api:
        return env
    for k in [k for k in env if k.startswith("GRANIAN_")]:
        del env[k]
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    else:
        env.pop("VIRTUAL_ENV", None)
    old = env.get("PYTHONPATH", "")
    extra = [p for p in _caller_paths() if p not in old.split(os.pathsep)]
    if old:
        extra.append(old)
    if extra:
        env["PYTHONPATH"] = os.pathsep.join(extra)
    return env


def _die_with_parent():
    """Child side, before exec: a process group of its own (a terminal's
    ^C reaches only the caller, which forwards it once: granc takes a
    second INT as "kill the workers now"), and SIGTERM when the caller
    dies, so granc never outlives it."""
    os.setpgid(0, 0)
    if _prctl is not None:
        _prctl(1, 15)               # PR_SET_PDEATHSIG, SIGTERM
        if os.getppid() != _parent:
            os._exit(1)             # the caller died before the prctl


_parent = os.getpid()
_prctl = None
if sys.platform.startswith("linux"):
    try:
        import ctypes
        _prctl = ctypes.CDLL(None, use_errno=True).prctl   # loaded now, not after fork
    except (OSError, AttributeError):
        pass


def preexec():
    """The preexec_fn for Popen: refresh the parent pid (we may have forked
    since import) and return the hook."""
    global _parent
    _parent = os.getpid()
    return _die_with_parent
