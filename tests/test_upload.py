"""Streaming uploads: a body is never buffered whole."""
import hashlib
import json
import re

import pytest

from conftest import read_response

MiB = 1024 * 1024


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))


@pytest.mark.slow
@pytest.mark.parametrize("threads", ["1", "4"])
def test_1gib_chunked_upload_bounded_rss(wsgi_server, threads):
    s = wsgi_server("wsgi_app:app", "--blocking-threads", threads)
    (worker,) = s.worker_pids()
    base = vm_hwm_kib(worker)
    block = bytes(range(256)) * 4096          # 1 MiB
    h = hashlib.sha256()
    sock = s.connect(timeout=120)
    sock.sendall(b"POST /digest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    frame = b"%x\r\n" % len(block) + block + b"\r\n"
    for _ in range(1024):
        sock.sendall(frame)
        h.update(block)
    sock.sendall(b"0\r\n\r\n")
    status, _, body, _ = read_response(sock)
    sock.close()
    assert status == 200
    assert json.loads(body) == {"length": 1024 * MiB, "sha256": h.hexdigest()}
    peak = vm_hwm_kib(worker)
    assert peak < 64 * 1024, f"worker peak RSS {peak} KiB (was {base} KiB before)"


@pytest.mark.slow
def test_256mib_content_length_upload(wsgi_server):
    s = wsgi_server("wsgi_app:app")
    (worker,) = s.worker_pids()
    n = 256 * MiB
    block = b"\x5a" * MiB
    sock = s.connect(timeout=120)
    sock.sendall(b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n)
    for _ in range(256):
        sock.sendall(block)
    status, _, body, _ = read_response(sock)
    assert status == 200
    assert json.loads(body) == {"length": n, "sha256": hashlib.sha256(block * 256).hexdigest()}
    assert vm_hwm_kib(worker) < 64 * 1024
