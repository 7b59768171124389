"""Install the granian package into this interpreter's site-packages, with
the metadata pip would write, and the `granian` command into its scripts
directory.  `make install-python` runs it with $(PYTHON); no pip, no network.

    python3 python/install.py [--destdir DIR] [--bindir DIR]

--bindir is where `make install` put granc: the package looks there first.
A real Granian (the Rust one) in the same place is never overwritten.
"""
import argparse
import base64
import glob
import hashlib
import os
import shutil
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
NAME, INSTALLER = "granian", "granc"


def version():
    with open(os.path.join(HERE, "granian", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip("\"'")
    raise SystemExit("install.py: no __version__ in granian/__init__.py")


def ours(distinfo):
    try:
        with open(os.path.join(distinfo, "INSTALLER")) as f:
            return f.read().strip() == INSTALLER
    except OSError:
        return False


def refuse_real_granian(site):
    """A real Granian has its Rust extension, _granian, and pip's metadata."""
    real = glob.glob(os.path.join(site, NAME, "_granian*"))
    real += [d for d in glob.glob(os.path.join(site, NAME + "-*.dist-info")) if not ours(d)]
    if real:
        sys.exit(f"install-python: a real Granian is installed in {site} ({real[0]}); "
                 f"remove it first ({sys.executable} -m pip uninstall granian), "
                 "or use another PYTHON or virtualenv")


def record_line(path, rel):
    with open(path, "rb") as f:
        data = f.read()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{rel},sha256={digest},{len(data)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--destdir", default="", help="staging root, as make's DESTDIR")
    ap.add_argument("--bindir", default="/usr/local/bin", help="where granc is installed")
    a = ap.parse_args()
    stage = lambda p: a.destdir + p if a.destdir else p     # noqa: E731
    site, scripts = sysconfig.get_path("purelib"), sysconfig.get_path("scripts")
    dest, bindir = stage(site), stage(scripts)
    refuse_real_granian(dest)
    if not a.destdir:           # and not elsewhere on this interpreter's path
        for p in sys.path:
            if p and os.path.realpath(p) != os.path.realpath(site):
                if glob.glob(os.path.join(p, NAME, "_granian*")):
                    refuse_real_granian(p)

    pkg = os.path.join(dest, NAME)
    for old in glob.glob(os.path.join(dest, NAME + "-*.dist-info")):
        shutil.rmtree(old)      # ours (refuse_real_granian checked)
    shutil.rmtree(pkg, ignore_errors=True)
    shutil.copytree(os.path.join(HERE, NAME), pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_where.py"))
    with open(os.path.join(pkg, "_where.py"), "w") as f:
        f.write(f"# written by make install-python\nBINDIR = {a.bindir!r}\n")

    ver = version()
    info = os.path.join(dest, f"{NAME}-{ver}.dist-info")
    os.makedirs(info)
    files = {
        "METADATA": f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {ver}\n"
                    "Summary: Granian's Python API and command, served by granc\nLicense: MIT\n"
                    "Requires-Python: >=3.10\n",
        "INSTALLER": INSTALLER + "\n",
        "WHEEL": "Wheel-Version: 1.0\nGenerator: granc install.py\nRoot-Is-Purelib: true\n"
                 "Tag: py3-none-any\n",
        "top_level.txt": NAME + "\n",
        "entry_points.txt": "[console_scripts]\ngranian = granian.cli:entrypoint\n",
    }
    for name, text in files.items():
        with open(os.path.join(info, name), "w") as f:
            f.write(text)

    os.makedirs(bindir, exist_ok=True)
    script = os.path.join(bindir, NAME)
    with open(script, "w") as f:
        f.write(f"#!{sys.executable}\nimport sys\nfrom granian.cli import entrypoint\n\n"
                "sys.exit(entrypoint())\n")
    os.chmod(script, 0o755)

    # RECORD: paths relative to site-packages, as pip writes them
    lines = []
    for root, _, names in os.walk(pkg):
        for n in sorted(names):
            p = os.path.join(root, n)
            lines.append(record_line(p, os.path.relpath(p, dest)))
    for n in sorted(files):
        lines.append(record_line(os.path.join(info, n), f"{NAME}-{ver}.dist-info/{n}"))
    lines.append(record_line(script, os.path.relpath(script, dest)))
    lines.append(f"{NAME}-{ver}.dist-info/RECORD,,")
    with open(os.path.join(info, "RECORD"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"installed granian {ver} in {site}, the granian command in {scripts}")


if __name__ == "__main__":
    main()
