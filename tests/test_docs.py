"""The documents: every block marked runnable (README.md, docs/*.md) runs as
written; the recipes of docs/deploying.md pass the checks that can run here
(systemd-analyze verify, nginx -t, the Dockerfile's instructions); the
compatibility table covers every option --help lists; and the facts the
documents state (the test count, benchmark figures, command lines) agree
with their sources."""
import glob
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess

import pytest

from conftest import BIN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
DOC_FILES = [README, os.path.join(ROOT, "CONTRIBUTING.md")] + sorted(
    glob.glob(os.path.join(DOCS, "*.md")))


def read(path):
    with open(path) as f:
        return f.read()


def doc(name):
    return read(os.path.join(DOCS, name))


def fenced(text, lang):
    return re.findall(r"```%s\n(.*?)```" % re.escape(lang), text, re.S)


def runnable_blocks():
    found = []
    for path in DOC_FILES:
        for block in re.findall(r"<!-- runnable -->\n```sh\n(.*?)```", read(path), re.S):
            found.append((os.path.relpath(path, ROOT), block))
    return found


def test_readme_has_runnable_blocks():
    assert len([1 for p, _ in runnable_blocks() if p == "README.md"]) >= 4


@pytest.mark.parametrize("i", range(len(runnable_blocks())))
def test_doc_block_runs(i, tmp_path):
    path, block = runnable_blocks()[i]
    # the suite's binary stands in for ./granc unless the block builds it,
    # and make builds against Debian's interpreter, as the rest of the suite
    # does; /tmp/granc-NAME
    # scratch paths go to this test's own directory
    if not re.search(r"^make\b", block, re.M):     # a block that builds runs its build
        script = re.sub(r"(^|\s)\./granc(?=\s)", r"\1" + BIN, block)
    else:
        script = block
    script = re.sub(r"/tmp/granc-([\w-]+)", lambda m: str(tmp_path / m.group(1)), script)
    env = dict(os.environ, PYTHON="/usr/bin/python3")
    env.pop("VIRTUAL_ENV", None)
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (path, block, r.stdout[-2000:], r.stderr[-2000:])


def test_readme_first_lines_are_the_two_commands():
    lines = read(README).splitlines()
    block = lines[lines.index("```sh") + 1:lines.index("```")]
    assert len(block) == 2
    assert "make && ./granc --interface wsgi examples/hello.py" in block[0]
    assert block[1] == "make test"


def test_readme_first_screen():
    """What a newcomer needs first: version, platform, the embedded Python,
    the licence, and the way to the switching guide, in the first 40 lines."""
    first = "\n".join(read(README).splitlines()[:40])
    version = re.search(r'#define GRANC_VERSION\s+"([^"]+)"', read(os.path.join(ROOT, "granc.h")))
    assert f"**Version** {version.group(1)}" in first
    granian = re.search(r'#define GRANIAN_COMPAT\s+"([^"]+)"',
                        read(os.path.join(ROOT, "granc.h")))
    assert f"compatible with Granian {granian.group(1)}" in first
    assert "Debian 12" in first and "Linux" in first
    assert "embeds the Python it was built with" in first
    assert "MIT" in first and "(LICENSE)" in first
    assert "docs/switching.md" in first


def test_readme_is_short():
    assert len(read(README).splitlines()) <= 300


def test_licence():
    text = read(os.path.join(ROOT, "LICENSE"))
    assert text.startswith("MIT License\n")
    assert "MIT" in read(os.path.join(ROOT, "granc.1")).split(".Sh LICENSE", 1)[1]


def test_links_resolve():
    """Every relative link of the documents names a file that exists."""
    bad = []
    for path in DOC_FILES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read(path)):
            if re.match(r"[a-z]+:", target):
                continue
            if not os.path.exists(os.path.join(os.path.dirname(path), target)):
                bad.append((os.path.relpath(path, ROOT), target))
    assert bad == []


def test_no_outside_paths_or_issue_numbers():
    """README and docs/design.md stand alone: no path outside the
    repository, no issue numbers."""
    for path in (README, os.path.join(DOCS, "design.md")):
        text = read(path)
        assert "../" not in text, path
        assert not re.search(r"(?<![\w&])#\d+\b", text), path
        assert not re.search(r"\bissue \d+", text, re.I), path


def test_compatibility_table_covers_every_option():
    out = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=10).stdout
    flags = {m.group(1) for m in re.finditer(r"^  --([a-z0-9-]+)", out, re.M)}
    flags -= {"version", "help"}
    text = doc("compatibility.md")
    table = text[text.index("| option or behaviour | vs Granian |"):]
    table = table[:table.index("\n\n")]
    named = set(re.findall(r"`--([a-z0-9-]+)", table))
    prefixes = re.findall(r"`--([a-z0-9-]+)-\*`", table)      # `--http2-*` and the like
    missing = sorted(f for f in flags
                     if f not in named and not any(f.startswith(p + "-") for p in prefixes))
    assert missing == []


# -- stated facts --------------------------------------------------------------

def collected_tests():
    r = subprocess.run(["/usr/bin/python3", "-m", "pytest", "--collect-only", "-q",
                        "-p", "no:cacheprovider"], cwd=os.path.join(ROOT, "tests"),
                       env=dict(os.environ, GRANC_BIN=BIN), capture_output=True, text=True,
                       timeout=300)
    m = re.search(r"^(\d+) tests? collected", r.stdout, re.M)
    assert m, r.stdout[-2000:] + r.stderr[-2000:]
    return int(m.group(1))


def test_stated_test_count():
    """"over N tests" stays true, and is updated once the suite grows by a
    quarter."""
    stated = []
    for path in DOC_FILES:
        stated += [int(n.replace(",", "")) for n in
                   re.findall(r"\bover ([\d,]+)\s+tests\b", read(path))]
    assert stated
    n = collected_tests()
    for s in stated:
        assert s <= n < s * 1.25, (s, n)


def stale_phrases():
    return ["about 3,900", "17–42 ms", "1.44× faster", "1.44× the requests"]


def test_no_stale_figures():
    for path in DOC_FILES + [os.path.join(ROOT, "granc.1")]:
        text = read(path)
        for phrase in stale_phrases():
            assert phrase not in text, (path, phrase)


def perf_rows():
    """[(title, header, server, cells)] of docs/performance.md's result
    tables; the title is the last bold heading or section above the table,
    the header the table's column names."""
    rows, title, header = [], None, []
    for line in doc("performance.md").splitlines():
        m = re.match(r"\*\*(.+?)\*\*", line)
        if m:
            title = m.group(1)
        elif line.startswith("## "):
            title = line[3:]
        elif line.startswith("| server") or line.startswith("| row"):
            header = [c.strip() for c in line.strip("|").split("|")]
        elif line.startswith("| ") and title:
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.append((title, header, cells[0], cells[1:]))
    return rows


def perf_row(title, server, ncells, column=None):
    """The first row of `server` under `title` in a table of that width
    (and whose first figure is `column`, when given)."""
    for t, header, s, cells in perf_rows():
        if t == title and s == server and len(cells) == ncells and \
                (column is None or header[1:2] == [column]):
            return cells
    raise AssertionError((title, server, ncells, column))


def ratio_line(section, peer):
    text = doc("performance.md")
    part = text[text.index(section):]
    m = re.search(r"^- %s: ([\d.]+)x; ([\d.]+)x" % re.escape(peer), part, re.M)
    return float(m.group(1)), float(m.group(2))


def test_performance_figures_agree():
    """The figures quoted in prose and in the targets table are the tables'."""
    # the first "Hello world" table of the page is WSGI's
    pool, inline, uwsgi, gsync = (perf_row("Hello world", s, 8) for s in
                                  ("granc-pool", "granc", "uwsgi", "gunicorn-sync"))
    perf = doc("performance.md")
    targets = perf[perf.index("## Against the targets"):perf.index("## WSGI")]
    assert "%.2f×" % (float(pool[1]) / float(uwsgi[1])) in targets
    assert "%.2f×" % (float(inline[1]) / float(uwsgi[1])) in targets
    assert "%.2f×" % (float(pool[0]) / float(gsync[0])) in targets
    assert f"WSGI {pool[7]} MiB" in targets and f"WSGI {inline[7]} MiB" in targets
    # inline against the pool, as docs/design.md quotes it
    r = float(inline[0]) / float(pool[0])
    assert "%.2f" % r == "%.2f" % ratio_line("## WSGI", "granc-pool")[0]
    assert "%.2f× the requests" % r in doc("design.md").replace("\n  ", " ")
    # start-up: the targets table and the footprint paragraph quote the table
    title = "Uploads, idle connections, start-up"
    wsgi_s, asgi_s = (perf_row(title, s, 5, "start-up ms") for s in ("granc-wsgi", "granc-asgi"))
    assert f"{wsgi_s[0]} ms ({wsgi_s[1]}–{wsgi_s[2]} ms)" in targets
    assert f"{asgi_s[0]} ms ({asgi_s[1]}–{asgi_s[2]} ms" in targets
    assert f"{wsgi_s[0]} ms for WSGI, {asgi_s[0]} ms for" in perf.replace("\n", " ")


def test_performance_states_its_conditions():
    perf = doc("performance.md")
    head = perf[:perf.index("## Against the targets")]
    assert "2026-12-03" in head and "bench/run --case" in head
    assert "--interface asginl" in head and "--log-level warning" in head
    assert "min and\nmax" in head or "min and max" in head


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_for_docs",
                                                  os.path.join(ROOT, "bench", "bench.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.GRANC, mod.PY, mod.APPS = "granc", "python3", "bench/apps"
    return mod


def test_bench_command_lines_documented():
    """docs/performance.md's command-line table is what bench/bench.py runs."""
    b = load_bench()
    servers = {"granc (WSGI)": b.WSGI["granc"], "granc-pool": b.WSGI["granc-pool"],
               "granc (ASGI)": b.ASGI["granc"], "granc-asyncio": b.ASGI["granc-asyncio"],
               "granc-asgi (summary)": b.summary_groups()[0][3]["granc-asgi"][0],
               "uwsgi": b.WSGI["uwsgi"], "gunicorn-sync": b.WSGI["gunicorn-sync"],
               "gunicorn-gthread": b.WSGI["gunicorn-gthread"], "waitress": b.WSGI["waitress"],
               "uvicorn-httptools": b.ASGI["uvicorn-httptools"],
               "uvicorn-websockets": b.WS["uvicorn-websockets"],
               "hypercorn": b.ASGI["hypercorn"], "daphne": b.ASGI["daphne"]}
    perf = doc("performance.md")
    table = perf[perf.index("| row | command line |"):]
    table = table[:table.index("\n\n")]
    documented = dict(re.findall(r"^\| (.+?) \| `(.+)` \|$", table, re.M))
    assert sorted(documented) == sorted(servers)
    for name, cmd in servers.items():
        assert documented[name] == " ".join(cmd("PORT", "APP")), name
    # every granc row of the bench is one of the two documented lines
    assert b.WS["granc"]("PORT", "APP") == b.ASGI["granc"]("PORT", "APP")


# -- the recipes of docs/deploying.md --------------------------------------------

def unit_files():
    units = {}
    for block in fenced(doc("deploying.md"), "ini"):
        m = re.match(r"# /etc/systemd/system/(\S+)\n", block)
        if m:
            units[m.group(1)] = block
    return units


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_systemd_units_verify(tmp_path):
    """The units pass systemd-analyze verify on this systemd (Debian 12: 252)
    with no warning at all: an unknown key or a Type= it does not know is
    only a warning, so the output must be empty too."""
    units = unit_files()
    assert sorted(units) == ["granc.service", "granc.socket"]
    service = units["granc.service"]
    assert re.search(r"^Type=notify$", service, re.M)
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", service, re.M)
    assert re.search(r"^Environment=VIRTUAL_ENV=/\S+$", service, re.M)
    paths = []
    for name, text in units.items():
        p = tmp_path / name
        p.write_text(text.replace("/usr/local/bin/granc", BIN))
        paths.append(str(p))
    r = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and (r.stdout + r.stderr).strip() == "", r.stdout + r.stderr
    # and the check has teeth: the type this systemd does not know is reported
    bad = tmp_path / "bad" / "granc.service"
    bad.parent.mkdir()
    bad.write_text(service.replace("/usr/local/bin/granc", BIN)
                   .replace("Type=notify\n", "Type=notify-reload\n"))
    r = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True)
    if int(re.search(r"systemd (\d+)", r.stdout).group(1)) < 253:
        r = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True,
                           text=True, timeout=60)
        assert "notify-reload" in r.stdout + r.stderr


def test_systemd_unit_runs_granc():
    """The service's command line is one granc accepts: the master parses and
    validates it (a bad option exits 1 before anything is bound); here it
    must get as far as trying to load the app, which does not exist."""
    service = unit_files()["granc.service"]
    body = service.split("ExecStart=", 1)[1]
    line = ""
    for part in body.splitlines():
        line += part.rstrip("\\").strip() + " "
        if not part.endswith("\\"):
            break
    argv = shlex.split(line)
    assert argv[0] == "/usr/local/bin/granc"
    argv = [BIN] + [a if a != "/srv/mysite" else ROOT for a in argv[1:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANIAN_")
           and k not in ("VIRTUAL_ENV", "LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET")}
    r = subprocess.run(argv + ["--port", "0", "--workers", "1"], capture_output=True, text=True,
                       timeout=60, env=env, cwd=ROOT)
    out = r.stdout + r.stderr
    assert r.returncode == 1
    assert "mysite" in out and "No module named" in out, out[-2000:]


@pytest.mark.skipif(not shutil.which("nginx"), reason="no nginx")
@pytest.mark.parametrize("i", range(len(fenced(doc("deploying.md"), "nginx"))))
def test_nginx_blocks(i, tmp_path):
    """Each nginx block of docs/deploying.md is valid inside http {} (nginx -t)."""
    block = fenced(doc("deploying.md"), "nginx")[i]
    conf = tmp_path / "nginx.conf"
    temps = "".join(f"{k}_temp_path {tmp_path}/{k};\n"
                    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
                    f"events {{}}\nhttp {{\n{temps}{block}}}\n")
    r = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
                        "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


DOCKER_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY",
                       "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD",
                       "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER"}


def dockerfile_instructions(text):
    """(instruction, arguments) in order, continuation lines joined and
    comments dropped, as Docker's parser reads them."""
    out, cur = [], ""
    for line in text.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        word, _, args = cur.strip().partition(" ")
        out.append((word, args.strip()))
        cur = ""
    assert cur == "", "a continuation line ends the file"
    return out


def test_dockerfile(tmp_path):
    """No docker here: check what can be checked offline.  Every instruction
    is one Docker knows, in upper case; stages are named before COPY --from
    uses them; every COPY source exists in a build context laid out as the
    text says (the app, with granc's source in granc/ and requirements.txt);
    CMD is an exec-form JSON array; the granc build is `make` against the
    Makefile here; the Debian packages exist in this Debian."""
    (block,) = fenced(doc("deploying.md"), "dockerfile")
    ins = dockerfile_instructions(block)
    assert ins[0][0] == "FROM"
    context = tmp_path / "app"
    context.mkdir()
    os.symlink(ROOT, context / "granc")
    (context / "requirements.txt").write_text("")
    stages, packages = [], set()
    for word, args in ins:
        assert word in DOCKER_INSTRUCTIONS, word
        if word == "FROM":
            m = re.fullmatch(r"(\S+)(?: AS (\S+))?", args)
            assert m and m.group(1) == "debian:12-slim", args
            stages.append(m.group(2))
        elif word == "COPY":
            parts = args.split()
            flags = [p for p in parts if p.startswith("--")]
            srcs = [p for p in parts if not p.startswith("--")][:-1]
            assert srcs, args
            frm = [f.split("=", 1)[1] for f in flags if f.startswith("--from=")]
            if frm:
                assert frm[0] in stages[:-1], args
            else:
                for s in srcs:
                    assert (context / s).exists(), s
        elif word == "CMD":
            argv = json.loads(args)
            assert argv[0] == "granc" and all(isinstance(a, str) for a in argv)
        elif word == "RUN":
            m = re.search(r"apt-get install -y --no-install-recommends (.*?)(?:&&|$)", args)
            if m:
                packages |= set(m.group(1).split())
            if "make -C /src" in args:
                assert (context / "granc" / "Makefile").exists()
        elif word == "ENV":
            assert "VIRTUAL_ENV=/venv" in args
    assert {"python3", "libbearssl0", "python3-dev", "libbearssl-dev"} <= packages
    if not shutil.which("apt-cache") or not glob.glob("/var/lib/apt/lists/*Packages*"):
        pytest.skip("no apt package lists to check the package names against")
    for p in sorted(packages):
        r = subprocess.run(["apt-cache", "show", "--no-all-versions", p],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, p


# -- granc.1 -------------------------------------------------------------------

def c_define(name):
    for path in glob.glob(os.path.join(ROOT, "*.[ch]")):
        m = re.search(r"^#define %s\s+\(?(\d+)(?: << (\d+))?\)?" % name, read(path), re.M)
        if m:
            return int(m.group(1)) << int(m.group(2) or 0)
    raise AssertionError(f"#define {name} not found")


def test_man_limits_match_the_source():
    """The LIMITS table of granc.1 quotes the constants as defined."""
    man = read(os.path.join(ROOT, "granc.1"))
    sec = man.split(".Sh LIMITS\n", 1)[1].split(".Sh ", 1)[0]
    units = {"B": 1, "MiB": 1 << 20, "s": 1000}
    seen = 0
    for value, unit, name in re.findall(r"^\.It .* Ta ([\d,]+) (B|MiB|s)\b.* Ta Dv (\w+)$",
                                        sec, re.M):
        n = int(value.replace(",", "")) * units[unit]
        assert n == c_define(name), (name, value, unit)
        seen += 1
    assert seen >= 6
    for opt in re.findall(r"Ta Fl -([a-z0-9-]+)$", sec, re.M):
        assert re.search(r"^\.It Fl -%s\b" % re.escape(opt), man, re.M), opt


def test_man_sections():
    man = read(os.path.join(ROOT, "granc.1"))
    sections = re.findall(r"^\.Sh (.+)$", man, re.M)
    for s in ("SIGNALS", "LIMITS", "BUGS", "LICENSE", "ENVIRONMENT", "EXIT STATUS"):
        assert s in sections
    subs = re.findall(r"^\.Ss (.+)$", man, re.M)
    assert "Application" in subs and "Workers and processes" in subs
    accepted = man.split(".Ss Accepted without effect\n", 1)[1].split(".Ss ", 1)[0]
    assert ".It Fl -loop" not in accepted
    signals = man.split(".Sh SIGNALS\n", 1)[1].split(".Sh ", 1)[0]
    for needle in ("Fl -graceful-timeout", "Fl -respawn-failed-workers",
                   "keep-alive\nconnections at once"):
        assert needle in signals, needle
    env = man.split(".Sh ENVIRONMENT\n", 1)[1].split(".Sh ", 1)[0]
    assert "VIRTUAL_ENV\nnames a virtual environment" in env
