"""WebSocket message rate: granc against uvicorn (websockets) and hypercorn.

Each server runs one worker pinned to CPU 0; the client (Python
`websockets`, asyncio) runs on CPU 1 with CONNS connections, each sending a
64-byte text message and waiting for its echo, for SECONDS.  The client is
the slower side on this machine, so the fair figure is "msg/CPU-s": echoed
messages divided by the CPU time the server used.
"""
import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import APPS, GRANC, cpu_seconds, free_port, rss_kib, tree  # noqa: E402

SERVERS = {
    "granc": lambda p: [GRANC, "--interface", "asginl", "--loop", "uvloop", "--log-level",
                        "warning", "--port", str(p), "ws_echo:app"],
    "uvicorn-websockets": lambda p: ["/usr/bin/python3", "-m", "uvicorn", "--loop", "uvloop",
                                     "--ws", "websockets", "--no-access-log", "--log-level",
                                     "warning", "--port", str(p), "ws_echo:app"],
    "hypercorn": lambda p: ["/usr/bin/python3", "-m", "hypercorn", "--worker-class", "uvloop",
                            "-b", f"127.0.0.1:{p}", "ws_echo:app"],
}

CLIENT = r'''
import asyncio, sys, time, websockets
url, conns, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
async def one(stop, counts, i):
    async with websockets.connect(url, compression=None) as c:
        msg = "x" * 64
        while time.monotonic() < stop:
            await c.send(msg)
            await c.recv()
            counts[i] += 1
async def main():
    counts = [0] * conns
    stop = time.monotonic() + seconds
    await asyncio.gather(*[one(stop, counts, i) for i in range(conns)])
    print(sum(counts))
asyncio.run(main())
'''


def start(name):
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", "0"] + SERVERS[name](port), cwd=APPS,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(0.3)
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{name} did not start")


def client(port, conns, seconds):
    out = subprocess.run(["taskset", "-c", "1", "/usr/bin/python3", "-c", CLIENT,
                          f"ws://127.0.0.1:{port}/", str(conns), str(seconds)],
                         capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("servers", nargs="*")
    a = ap.parse_args()
    names = a.servers or list(SERVERS)
    results = {n: [] for n in names}
    for rnd in range(a.rounds):
        for name in names:
            proc, port = start(name)
            client(port, a.conns, 1)                      # warm-up
            pids = tree(proc.pid)
            c0 = cpu_seconds(pids)
            msgs = client(port, a.conns, a.seconds)
            cpu = cpu_seconds(pids) - c0
            rss = rss_kib(tree(proc.pid))
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            results[name].append((msgs / a.seconds, msgs / cpu if cpu else 0, rss))
            print(f"round {rnd + 1} {name}: {msgs / a.seconds:.0f} msg/s", file=sys.stderr)
    med = {n: [statistics.median(x[i] for x in r) for i in range(3)] for n, r in results.items()}
    print(f"\nWebSocket echo, 64 B text, {a.conns} connections, {a.seconds:.0f} s, 1 worker, "
          f"median of {a.rounds}\n")
    print("| server | msg/s | msg/CPU-s | RSS MiB |")
    print("|---|---|---|---|")
    for n, (mps, mpc, rss) in med.items():
        print(f"| {n} | {mps:.0f} | {mpc:.0f} | {rss / 1024:.1f} |")
    if "granc" in med:
        g = med["granc"]
        print("\nratios, granc / peer (msg/s; msg/CPU-s):")
        for n, m in med.items():
            if n != "granc" and m[0] and m[1]:
                print(f"- {n}: {g[0] / m[0]:.2f}x; {g[1] / m[1]:.2f}x")


if __name__ == "__main__":
    main()
