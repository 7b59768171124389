"""Streaming uploads: a body is never buffered whole."""
import hashlib
import json
import re
import sys

import pytest

from conftest import ASAN, read_response

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


def minor_faults(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])     # minflt


def digest_upload(s, mib, frame=16384):
    """POST mib MiB to /digest (64 KiB reads), chunked in frames of frame
    bytes: never 64 KiB decoded at once, so every read assembles its chunk
    in a scratch buffer as well as a bytes object."""
    one = b"%x\r\n" % frame + b"\x5a" * frame + b"\r\n"
    blob = one * (MiB // frame)
    sock = s.connect(timeout=120)
    sock.sendall(b"POST /digest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(mib):
        sock.sendall(blob)
    sock.sendall(b"0\r\n\r\n")
    status, _, body, _ = read_response(sock)
    sock.close()
    assert status == 200
    assert json.loads(body)["length"] == mib * MiB


@pytest.mark.skipif(ASAN, reason="ASan has its own allocator")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap, /proc")
def test_chunked_reads_do_not_regrow_the_heap(wsgi_server):
    """Uploads read in 64 KiB chunks on the loop thread: a chunk's memory
    freed at the top of the heap used to make glibc shrink the heap with
    brk() and the next chunk grow it again, faulting its pages back in
    (1,090-6,800 minor faults for these 384 MiB in 5 runs out of 5;
    120,000 for a 1 GiB upload at worst; README, Uploads).  Counted, not
    timed: fewer than one minor fault per MiB now (16-40 in all)."""
    s = wsgi_server("wsgi_app:app", "--blocking-threads", "1")
    (worker,) = s.worker_pids()
    digest_upload(s, 1)                     # imports and first-request set-up
    before = minor_faults(worker)
    for frame in (16384, 8192, 4096) * 2:   # several layouts of the heap
        digest_upload(s, 64, frame)
    faults = minor_faults(worker) - before
    assert faults < 384, f"{faults} minor page faults in the worker for 384 MiB of uploads"
