"""Benchmark granc against its peers with wrk, side by side, in one run.

Each server runs one worker pinned to CPU 0 (taskset); wrk runs on CPU 1.
Each case runs ROUNDS times, interleaved across servers, after a warm-up;
the table shows medians.  "req/CPU-s" divides the requests served by the
CPU time the server's processes used during the run (from /proc), which
still separates servers when wrk on one core is the bottleneck.
"""
import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APPS = os.path.join(HERE, "apps")
GRANC = os.path.join(ROOT, "tests", "granc-test")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WSGI = {
    "granc": lambda p: [GRANC, "--interface", "wsgi", "--blocking-threads", "1",
                        "--log-level", "warning", "--port", str(p), "hello_wsgi:app"],
    "granc-pool": lambda p: [GRANC, "--interface", "wsgi", "--log-level", "warning",
                             "--port", str(p), "hello_wsgi:app"],
    "uwsgi": lambda p: ["uwsgi", "--plugin", "python3", "--http11-socket", f"127.0.0.1:{p}",
                        "--wsgi-file", "hello_wsgi.py", "--callable", "app", "--processes", "1",
                        "--disable-logging", "--single-interpreter"],
    "gunicorn-sync": lambda p: ["/usr/bin/python3", "-m", "gunicorn", "-w", "1", "-b",
                                f"127.0.0.1:{p}", "hello_wsgi:app"],
    "gunicorn-gthread": lambda p: ["/usr/bin/python3", "-m", "gunicorn", "-w", "1", "-k",
                                   "gthread", "--threads", "4", "-b", f"127.0.0.1:{p}",
                                   "hello_wsgi:app"],
}

ASGI = {
    "granc": lambda p: [GRANC, "--interface", "asginl", "--loop", "uvloop",
                        "--log-level", "warning", "--port", str(p), "hello_asgi:app"],
    "granc-asyncio": lambda p: [GRANC, "--interface", "asginl", "--loop", "asyncio",
                                "--log-level", "warning", "--port", str(p), "hello_asgi:app"],
    "uvicorn-httptools": lambda p: ["/usr/bin/python3", "-m", "uvicorn", "--loop", "uvloop",
                                    "--http", "httptools", "--no-access-log", "--log-level",
                                    "warning", "--port", str(p), "hello_asgi:app"],
    "hypercorn": lambda p: ["/usr/bin/python3", "-m", "hypercorn", "--worker-class", "uvloop",
                            "-b", f"127.0.0.1:{p}", "hello_asgi:app"],
    "daphne": lambda p: ["/usr/bin/python3", "-m", "daphne", "-p", str(p), "hello_asgi:app"],
}

CERTS = "/tmp/granc-bench-certs"


def certs():
    """A self-signed EC certificate for the HTTPS cases (made once)."""
    if not os.path.exists(f"{CERTS}/cert.pem"):
        os.makedirs(CERTS, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{CERTS}/key.pem",
                        "-out", f"{CERTS}/cert.pem", "-days", "30", "-subj", "/CN=127.0.0.1"],
                       check=True, capture_output=True)
    return f"{CERTS}/cert.pem", f"{CERTS}/key.pem"


HTTPS = {
    "granc": lambda p: ASGI["granc"](p)[:-1] + ["--ssl-certificate", certs()[0],
                                                "--ssl-keyfile", certs()[1], "hello_asgi:app"],
    "uvicorn-httptools": lambda p: ASGI["uvicorn-httptools"](p)[:-1] + [
        "--ssl-certfile", certs()[0], "--ssl-keyfile", certs()[1], "hello_asgi:app"],
}

ASGI_ECHO = {k: (lambda f: lambda p: f(p)[:-1] + ["echo_asgi:app"])(f) for k, f in ASGI.items()}

CASES = {"wsgi": WSGI, "asgi": ASGI, "asgi-echo": ASGI_ECHO, "https": HTTPS,
         "https-handshakes": HTTPS}
SCHEME = "http"
WRK_HEADERS = []
SERVERS = {}


def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])    # utime + stime
        except OSError:
            pass
    return total / TICK


def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            pass
    return total


def start(name):
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", "0"] + SERVERS[name](port), cwd=APPS,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if SCHEME == "https":
                    time.sleep(0.5)             # listening is enough
                    return proc, port
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{name} did not start")


def wrk(port, seconds, conns):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s",
                          "--latency"] + WRK_HEADERS + [f"{SCHEME}://127.0.0.1:{port}/"],
                         capture_output=True, text=True).stdout
    def unit(v, u):
        return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u]
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    lat = dict(re.findall(r"\s(50|99)%\s+([\d.]+\w+)", out))
    ms = {k: unit(*re.match(r"([\d.]+)(\w+)", v).groups()) for k, v in lat.items()}
    errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return reqs, ms.get("50", 0), ms.get("99", 0), errs + (int(non2xx.group(1)) if non2xx else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--case", choices=list(CASES), default="wsgi")
    ap.add_argument("servers", nargs="*")
    a = ap.parse_args()
    SERVERS.update(CASES[a.case])
    global SCHEME
    if a.case.startswith("https"):
        SCHEME = "https"
    if a.case == "https-handshakes":        # a new TLS handshake per request
        WRK_HEADERS.extend(["-H", "Connection: close"])
    if a.case.endswith("echo"):             # POST 10 KiB, echoed back
        WRK_HEADERS.extend(["-s", os.path.join(HERE, "post10k.lua")])
    a.servers = a.servers or list(SERVERS)
    results = {n: [] for n in a.servers}
    for rnd in range(a.rounds):
        for name in a.servers:
            proc, port = start(name)
            wrk(port, 2, a.conns)                       # warm-up
            pids = tree(proc.pid)
            c0 = cpu_seconds(pids)
            reqs, p50, p99, errs = wrk(port, a.seconds, a.conns)
            cpu = cpu_seconds(pids) - c0
            rss = rss_kib(tree(proc.pid))
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            results[name].append((reqs / a.seconds, reqs / cpu if cpu else 0, p50, p99, errs, rss))
            print(f"round {rnd + 1} {name}: {reqs / a.seconds:.0f} req/s", file=sys.stderr)
    med = {n: [statistics.median(x[i] for x in r) for i in range(6)] for n, r in results.items()}
    what = "10 KiB POST echo" if a.case.endswith("echo") else "hello world (13 B)"
    print(f"\n{a.case.upper()} {what}, wrk -t1 -c{a.conns} -d{a.seconds}s, 1 worker, "
          f"median of {a.rounds}\n")
    print(f"| server | req/s | req/CPU-s | p50 ms | p99 ms | errors | RSS MiB |")
    print(f"|---|---|---|---|---|---|---|")
    for n, (rps, rpc, p50, p99, errs, rss) in med.items():
        print(f"| {n} | {rps:.0f} | {rpc:.0f} | {p50:.2f} | {p99:.2f} | {errs:.0f} | {rss / 1024:.1f} |")
    if "granc" in med:
        g = med["granc"]
        print("\nratios, granc / peer (req/s; req/CPU-s):")
        for n, m in med.items():
            if n != "granc" and m[0] and m[1]:
                print(f"- {n}: {g[0] / m[0]:.2f}x; {g[1] / m[1]:.2f}x")


if __name__ == "__main__":
    main()
