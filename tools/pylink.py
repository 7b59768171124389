"""How the Makefile links libpython into granc: the way the interpreter that
runs this script is linked, so that granc gets python3's own speed and
hardening.

    $(PYTHON) tools/pylink.py [STATIC_PYTHON]

prints one line: "static no-pie WHY", "static pie WHY" or "shared pie WHY".
STATIC_PYTHON=1 or 0 forces a static or a shared link; empty (the default)
follows the interpreter:

- Debian's /usr/bin/python3 carries libpython statically and is not PIE
  (its libpython3.X.a is built without position-independent code, which is
  about 13 % faster), although sysconfig says Py_ENABLE_SHARED=1 there: that
  flag tells that a libpython3.X.so was built, not what python3 runs.  So
  look where the running interpreter's Py_Initialize lives instead: in the
  executable itself, or in a libpython shared library (pyenv and other
  --enable-shared builds).
- A static link needs libpython3.X.a in LIBPL (Debian: libpython3.X-dev);
  without it the link is shared.
- A static link is PIE only when the interpreter is: its archive then holds
  position-independent code.  Forced onto an interpreter that runs the
  shared library, it is not PIE, which links with any archive.
"""
import os
import sys
import sysconfig

force = sys.argv[1] if len(sys.argv) > 1 else ""
var = sysconfig.get_config_var
exe = os.path.realpath(sys.executable)
archive = os.path.join(var("LIBPL") or "", var("LIBRARY") or "")
shared_lib = var("LDLIBRARY") or "libpython"


def holder():
    """The file that holds this interpreter's Py_Initialize (dladdr(3)), or
    None where ctypes or dladdr is missing."""
    try:
        import ctypes

        class DlInfo(ctypes.Structure):
            _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                        ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]
        info = DlInfo()
        sym = ctypes.cast(ctypes.pythonapi.Py_Initialize, ctypes.c_void_p)
        if ctypes.CDLL(None).dladdr(sym, ctypes.byref(info)) and info.fname:
            return os.fsdecode(info.fname)
    except (ImportError, AttributeError, OSError):
        pass
    return None


def linked_in():
    """True when libpython is part of the executable itself."""
    f = holder()
    if f is None:
        return not var("Py_ENABLE_SHARED")
    # a shared library is named by its path; the executable by argv[0],
    # which may be relative ("python3")
    return not os.path.isabs(f) or os.path.realpath(f) == exe


def pie():
    """True when the interpreter is position-independent (an ELF ET_DYN
    executable); non-ELF systems (macOS) have PIE executables only."""
    try:
        with open(exe, "rb") as f:
            h = f.read(18)
    except OSError:
        return True
    if h[:4] != b"\x7fELF" or len(h) < 18:
        return True
    return int.from_bytes(h[16:18], "little" if h[5] == 1 else "big") == 3


static_exe = linked_in()
pie_exe = pie()
flavour = "pie" if static_exe and pie_exe else "no-pie"
shown = sys.executable
if force == "1":
    print(f"static {flavour} libpython linked in ({os.path.basename(archive)}"
          f"{'' if flavour == 'pie' else ', not PIE'}): STATIC_PYTHON=1")
elif force == "0":
    print(f"shared pie shared {shared_lib}: STATIC_PYTHON=0")
elif static_exe and os.path.exists(archive):
    print(f"static {flavour} libpython linked in ({os.path.basename(archive)}"
          f"{'' if pie_exe else ', not PIE'}) as {shown} has it; STATIC_PYTHON=0 links the shared "
          f"{shared_lib}")
elif static_exe:
    print(f"shared pie shared {shared_lib}: {shown} has libpython linked in, but there is no "
          f"{archive} to link (Debian: libpython3-dev)")
else:
    print(f"shared pie shared {shared_lib} as {shown} links it; STATIC_PYTHON=1 links "
          f"libpython in")
