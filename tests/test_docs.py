"""The documents: README blocks marked runnable run as written, and the
README's compatibility table covers every option --help lists."""
import os
import re
import subprocess

import pytest

from conftest import BIN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def runnable_blocks():
    text = open(README).read()
    return re.findall(r"<!-- runnable -->\n```sh\n(.*?)```", text, re.S)


def test_readme_has_runnable_blocks():
    assert len(runnable_blocks()) >= 2


@pytest.mark.parametrize("i", range(len(runnable_blocks())))
def test_readme_block_runs(i, tmp_path):
    block = runnable_blocks()[i]
    # the suite's binary stands in for ./granc, and make builds against
    # Debian's interpreter, as the rest of the suite does
    script = re.sub(r"(^|\s)\./granc(?=\s)", r"\1" + BIN, block)
    env = dict(os.environ, PYTHON="/usr/bin/python3")
    if "DESTDIR=/tmp/granc-root" in script:
        script = script.replace("/tmp/granc-root", str(tmp_path / "root"))
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (block, r.stdout[-2000:], r.stderr[-2000:])


def test_readme_first_lines_are_the_two_commands():
    lines = open(README).read().splitlines()
    block = lines[lines.index("```sh") + 1:lines.index("```")]
    assert len(block) == 2
    assert "make && ./granc --interface wsgi examples/hello.py" in block[0]
    assert block[1] == "make test"


def test_compatibility_table_covers_every_option():
    out = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=10).stdout
    flags = {m.group(1) for m in re.finditer(r"^  --([a-z0-9-]+)", out, re.M)}
    flags -= {"version", "help"}
    text = open(README).read()
    table = text[text.index("| option or behaviour | vs Granian |"):]
    table = table[:table.index("\n\n")]
    named = set(re.findall(r"`--([a-z0-9-]+)", table))
    prefixes = re.findall(r"`--([a-z0-9-]+)-\*`", table)      # `--http2-*` and the like
    missing = sorted(f for f in flags
                     if f not in named and not any(f.startswith(p + "-") for p in prefixes))
    assert missing == []
