"""TLS (BearSSL, TLS 1.2 only): HTTPS for WSGI and ASGI, wss, UDS, key
formats and key errors, client certificates and CRLs, what `openssl
s_client` sees of the handshake, and clients that never finish one.

openssl(1) makes every certificate and key once per session, in a
temporary directory (the `pki` fixture)."""
import asyncio
import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import httpx
import pytest
import websockets

from conftest import APPS, BIN, Server, read_response

PASSWORD = "foobar"

# what a TLS 1.2 server limited to ECDHE + AEAD may negotiate:
# OpenSSL's name -> (IANA name, code point)
SUITES = {
    "ECDHE-RSA-AES128-GCM-SHA256": ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xC02F),
    "ECDHE-RSA-AES256-GCM-SHA384": ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 0xC030),
    "ECDHE-RSA-CHACHA20-POLY1305": ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCA8),
    "ECDHE-ECDSA-AES128-GCM-SHA256": ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xC02B),
    "ECDHE-ECDSA-AES256-GCM-SHA384": ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 0xC02C),
    "ECDHE-ECDSA-CHACHA20-POLY1305": ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCA9),
}
CIPHER_RE = re.compile(r"^ECDHE-(RSA|ECDSA)-(AES128-GCM-SHA256|AES256-GCM-SHA384|CHACHA20-POLY1305)$")


# ---- certificates and keys ------------------------------------------------

class PKI:
    def __init__(self, d):
        self.d = d

    def __getattr__(self, name):          # pki.rsa_crt -> <dir>/rsa.crt
        stem, _, ext = name.rpartition("_")
        return os.path.join(self.d, f"{stem}.{ext}")


def _openssl(d, *args, stdin=None):
    r = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True,
                       input=stdin, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)}:\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    o = lambda *a: _openssl(d, *a)          # noqa: E731
    w = lambda name, text: open(os.path.join(d, name), "w").write(text)  # noqa: E731
    w("req.cnf", "[req]\ndistinguished_name=dn\n[dn]\n")
    req = ("-config", "req.cnf")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    rsa = ("-newkey", "rsa:2048")
    w("srv.ext", "basicConstraints=critical,CA:FALSE\n"
                 "keyUsage=critical,digitalSignature,keyEncipherment\n"
                 "extendedKeyUsage=serverAuth\n"
                 "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                 "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    w("cli.ext", "basicConstraints=critical,CA:FALSE\n"
                 "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
                 "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")

    def ca(name, keyopts, cn):
        o("req", *req, "-x509", *keyopts, "-nodes", "-keyout", f"{name}.key", "-out",
          f"{name}.crt", "-subj", f"/CN={cn}", "-days", "2",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(name, keyopts, cn, issuer, serial, ext):
        o("req", *req, "-new", *keyopts, "-nodes", "-keyout", f"{name}.key",
          "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        o("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.crt", "-CAkey",
          f"{issuer}.key", "-set_serial", str(serial), "-days", "2", "-extfile", ext,
          "-out", f"{name}.crt")

    # the servers' CA (RSA) and two server certificates for 127.0.0.1/localhost
    ca("ca", rsa, "granc test CA")
    leaf("rsa", rsa, "localhost", "ca", 0x10, "srv.ext")
    leaf("ec", ec, "localhost", "ca", 0x11, "srv.ext")
    # key files: PKCS#8 (what req writes), PKCS#1, SEC1, encrypted PKCS#8
    o("rsa", "-in", "rsa.key", "-traditional", "-out", "rsa1.key")
    o("ec", "-in", "ec.key", "-out", "ec1.key")
    for k in ("rsa", "ec"):
        o("pkcs8", "-topk8", "-in", f"{k}.key", "-out", f"{k}enc.key", "-v2", "aes-256-cbc",
          "-v2prf", "hmacWithSHA256", "-passout", f"pass:{PASSWORD}")
    # keys that belong to no server certificate
    o("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa2.key")
    o("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec2.key")

    # the clients' CA (EC), a good client (RSA key) and a revoked one (EC key)
    ca("cca", ec, "granc client CA")
    leaf("good", rsa, "good client", "cca", 0x1001, "cli.ext")
    leaf("revoked", ec, "revoked client", "cca", 0x1002, "cli.ext")
    # a self-signed client certificate no --ssl-ca trusts
    o("req", *req, "-x509", *ec, "-nodes", "-keyout", "stranger.key", "-out",
      "stranger.crt", "-subj", "/CN=stranger", "-days", "2")
    # intermediates: a server chain (leaf + intermediate) under "ca", and a
    # client chain under "cca"
    w("ica.ext", "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                 "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    leaf("ica", ec, "granc intermediate CA", "ca", 0x20, "ica.ext")
    leaf("leaf", rsa, "localhost", "ica", 0x21, "srv.ext")
    w("chain.crt", open(os.path.join(d, "leaf.crt")).read() + open(os.path.join(d, "ica.crt")).read())
    leaf("icca", ec, "granc intermediate client CA", "cca", 0x2001, "ica.ext")
    leaf("sub", ec, "chained client", "icca", 0x2002, "cli.ext")
    w("subchain.crt", open(os.path.join(d, "sub.crt")).read() + open(os.path.join(d, "icca.crt")).read())
    w("index.txt", "")
    w("crlnumber", "01\n")
    w("serial", "3000\n")
    w("ca.cnf", "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\ncrlnumber=crlnumber\n"
                "default_md=sha256\ndefault_crl_days=2\nnew_certs_dir=.\nserial=serial\n"
                "policy=pol\nunique_subject=no\n[pol]\ncommonName=supplied\n")
    # a client certificate of "cca" that expired long ago
    o("req", *req, "-new", *ec, "-nodes", "-keyout", "expired.key", "-out", "expired.csr",
      "-subj", "/CN=expired client")
    o("ca", "-batch", "-config", "ca.cnf", "-keyfile", "cca.key", "-cert", "cca.crt",
      "-in", "expired.csr", "-out", "expired.crt", "-notext", "-extfile", "cli.ext",
      "-startdate", "20200101000000Z", "-enddate", "20200201000000Z")
    o("ca", "-config", "ca.cnf", "-keyfile", "cca.key", "-cert", "cca.crt",
      "-revoke", "revoked.crt")
    o("ca", "-config", "ca.cnf", "-keyfile", "cca.key", "-cert", "cca.crt",
      "-gencrl", "-out", "cca.crl")

    p = PKI(d)
    heads = {"rsa.key": "PRIVATE KEY", "rsa1.key": "RSA PRIVATE KEY",
             "ec.key": "PRIVATE KEY", "ec1.key": "EC PRIVATE KEY",
             "rsaenc.key": "ENCRYPTED PRIVATE KEY", "ecenc.key": "ENCRYPTED PRIVATE KEY"}
    for name, head in heads.items():      # the formats are what the names say
        with open(os.path.join(d, name)) as f:
            assert f.readline().strip() == f"-----BEGIN {head}-----", name
    crl = o("crl", "-in", "cca.crl", "-noout", "-text")
    assert re.search(r"Serial Number: 0*1002\b", crl) and not re.search(r"0*1001\b", crl), crl
    return p


# ---- helpers -------------------------------------------------------------

def client_ctx(pki, cert=None, ciphers=None):
    ctx = ssl.create_default_context(cafile=pki.ca_crt)
    if cert:
        crt = pki.subchain_crt if cert == "sub" else getattr(pki, f"{cert}_crt")
        ctx.load_cert_chain(crt, getattr(pki, f"{cert}_key"))
    if ciphers:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
    return ctx


def tls_args(pki, kind="rsa", key=None, *extra):
    return ["--ssl-certificate", getattr(pki, f"{kind}_crt"),
            "--ssl-keyfile", key or getattr(pki, f"{kind}_key"), *extra]


def https(s, path):
    return f"https://127.0.0.1:{s.port}{path}"


def der(pem):
    return ssl.PEM_cert_to_DER_cert(pem)


def cert_der(path):
    with open(path) as f:
        return der(f.read())


def run_granc(args, timeout=20):
    """Run granc to its exit; returns (rc, stderr lines, stdout)."""
    r = subprocess.run([BIN, "--interface", "wsgi", "--port", "0", *args, "wsgi_app:app"],
                       cwd=APPS, capture_output=True, text=True, timeout=timeout)
    return r.returncode, [line for line in r.stderr.splitlines() if line.strip()], r.stdout


def s_client(port, *args, stdin="", timeout=20):
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                        "-servername", "localhost", *args],
                       input=stdin, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def negotiated(out):
    """(session state, protocol, cipher) of s_client's summary line."""
    m = re.search(r"^(New|Reused), (\S+), Cipher is (\S+)$", out, re.M)
    assert m, out
    return m.groups()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture
def wsgi_tls(wsgi_server, pki):
    return wsgi_server("wsgi_app:app", *tls_args(pki))


@pytest.fixture
def asgi_tls(wsgi_server, pki):
    return wsgi_server("asgi_app:app", *tls_args(pki), interface="asgi")


@pytest.fixture(scope="module")
def shared(pki):
    """One RSA and one EC WSGI server for the handshake-only tests."""
    servers = {k: Server("wsgi_app:app", *tls_args(pki, k)).start() for k in ("rsa", "ec")}
    yield servers
    for s in servers.values():
        s.stop()
        os.unlink(s.log_path)


# ---- HTTPS -----------------------------------------------------------------

@pytest.mark.parametrize("ciphers", sorted(k for k in SUITES if "-RSA-" in k))
def test_wsgi_environ(wsgi_tls, pki, ciphers):
    with httpx.Client(verify=client_ctx(pki, ciphers=ciphers)) as c:
        r = c.get(https(wsgi_tls, "/info"))
    assert r.status_code == 200
    env = r.json()
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert env["SSL_PROTOCOL"] == "TLSv1.2"
    assert env["SSL_CIPHER"] == SUITES[ciphers][0]
    assert env.get("SSL_CLIENT_CERT") is None
    assert env["SERVER_PORT"] == str(wsgi_tls.port)


@pytest.mark.parametrize("ciphers", sorted(k for k in SUITES if "-ECDSA-" in k))
def test_asgi_scope(wsgi_server, pki, ciphers):
    s = wsgi_server("asgi_app:app", *tls_args(pki, "ec"), interface="asgi")
    with httpx.Client(verify=client_ctx(pki, ciphers=ciphers)) as c:
        r = c.get(https(s, "/info"))
    assert r.status_code == 200
    scope = r.json()
    assert scope["scheme"] == "https"
    assert scope["extensions"]["tls"] == {
        "server_cert": None, "client_cert_chain": [], "client_cert_name": None,
        "client_cert_error": None, "tls_version": 0x0303, "cipher_suite": SUITES[ciphers][1]}


def test_asgi_default_cipher(asgi_tls, pki):
    with httpx.Client(verify=client_ctx(pki)) as c:
        tls = c.get(https(asgi_tls, "/info")).json()["extensions"]["tls"]
    assert tls["tls_version"] == 0x0303
    assert tls["cipher_suite"] in {v[1] for k, v in SUITES.items() if "-RSA-" in k}


@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_keep_alive(wsgi_server, pki, iface):
    """Five requests, one TCP connection (the client port never changes)."""
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki), interface=iface)
    ports = set()
    with httpx.Client(verify=client_ctx(pki)) as c:
        for i in range(5):
            r = c.post(https(s, "/echo"), content=b"req %d" % i)
            assert (r.status_code, r.content) == (200, b"req %d" % i)
            info = c.get(https(s, "/info")).json()
            ports.add(info["REMOTE_PORT"] if iface == "wsgi" else info["client"][1])
    assert len(ports) == 1, ports


@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_post_5mb_echo(wsgi_server, pki, iface):
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki), interface=iface)
    body = os.urandom(5 * 1024 * 1024)
    with httpx.Client(verify=client_ctx(pki), timeout=60) as c:
        r = c.post(https(s, "/echo"), content=body)
    assert r.status_code == 200
    assert len(r.content) == len(body)
    assert r.content == body


@pytest.mark.parametrize("iface,path", [("wsgi", "/stream?n=320&size=65536"),
                                        ("asgi", "/stream?n=320&size=65536"),
                                        ("asgi", "/big?total=20971520&chunk=65536")])
def test_stream_20mb(wsgi_server, pki, iface, path):
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki), interface=iface)
    if path.startswith("/big"):
        want = hashlib.sha256(b"x" * 20971520).hexdigest()
    else:
        h = hashlib.sha256()
        for i in range(320):
            h.update(str(i % 10).encode() * 65536)
        want = h.hexdigest()
    h, n = hashlib.sha256(), 0
    with httpx.Client(verify=client_ctx(pki), timeout=60) as c:
        with c.stream("GET", https(s, path)) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                h.update(chunk)
                n += len(chunk)
        # the connection still serves after 20 MB
        assert c.get(https(s, "/info")).status_code == 200
    assert n == 20 * 1024 * 1024
    assert h.hexdigest() == want


def test_plain_http_on_tls_port(wsgi_tls):
    """Plain HTTP to the TLS port is no request: nothing is served."""
    s = socket.create_connection(("127.0.0.1", wsgi_tls.port), timeout=10)
    s.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except ConnectionResetError:
        pass
    s.close()
    assert b"HTTP/1.1" not in data
    assert b"wsgi.url_scheme" not in data


# ---- WebSocket over TLS ----------------------------------------------------

def test_wss_echo(asgi_tls, pki):
    big = os.urandom(1024 * 1024)

    async def go():
        url = f"wss://127.0.0.1:{asgi_tls.port}"
        async with websockets.connect(url + "/ws_echo", ssl=client_ctx(pki),
                                      max_size=None) as c:
            await c.send("héllo")
            assert await c.recv() == "héllo"
            await c.send(b"\x00\x01\xff")
            assert await c.recv() == b"\x00\x01\xff"
            await c.send(big)
            assert await c.recv() == big
        async with websockets.connect(url + "/ws_info", ssl=client_ctx(pki),
                                      subprotocols=["chat.v2"]) as c:
            scope = json.loads(await c.recv())
        return scope
    scope = run(go())
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "wss"
    assert scope["extensions"]["tls"]["tls_version"] == 0x0303


# ---- Unix socket -----------------------------------------------------------

@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_uds(wsgi_server, pki, tmp_path, iface):
    sock = str(tmp_path / "granc.sock")
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki), interface=iface, uds=sock)
    transport = httpx.HTTPTransport(uds=sock, verify=client_ctx(pki))
    with httpx.Client(transport=transport) as c:
        r = c.get("https://localhost/info")
        assert r.status_code == 200
        info = r.json()
        assert (info["wsgi.url_scheme"] if iface == "wsgi" else info["scheme"]) == "https"
        r = c.post("https://localhost/echo", content=b"over a unix socket")
        assert r.content == b"over a unix socket"
    assert "Listening at: unix:" in s.log()


# ---- keys --------------------------------------------------------------------

@pytest.mark.parametrize("kind,key,pw", [
    ("rsa", "rsa.key", None),                 # PKCS#8
    ("rsa", "rsa1.key", None),                # PKCS#1
    ("rsa", "rsaenc.key", PASSWORD),          # encrypted PKCS#8
    ("ec", "ec.key", None),                   # PKCS#8
    ("ec", "ec1.key", None),                  # SEC1
    ("ec", "ecenc.key", PASSWORD),            # encrypted PKCS#8
], ids=["rsa-pkcs8", "rsa-pkcs1", "rsa-encrypted", "ec-pkcs8", "ec-sec1", "ec-encrypted"])
def test_key_formats(wsgi_server, pki, kind, key, pw):
    extra = ["--ssl-keyfile-password", pw] if pw else []
    s = wsgi_server("wsgi_app:app", *tls_args(pki, kind, os.path.join(pki.d, key), *extra))
    with httpx.Client(verify=client_ctx(pki)) as c:
        env = c.get(https(s, "/info")).json()
    assert env["SSL_CIPHER"].startswith("TLS_ECDHE_%s_WITH_" % ("RSA" if kind == "rsa" else "ECDSA"))


def test_protocol_min_tls12_serves(wsgi_server, pki):
    s = wsgi_server("wsgi_app:app", *tls_args(pki), "--ssl-protocol-min", "tls1.2")
    with httpx.Client(verify=client_ctx(pki)) as c:
        assert c.get(https(s, "/info")).json()["SSL_PROTOCOL"] == "TLSv1.2"


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("pw", ["wrong", None])
def test_encrypted_key_bad_password(pki, kind, pw):
    key = os.path.join(pki.d, f"{kind}enc.key")
    extra = ["--ssl-keyfile-password", pw] if pw else []
    rc, lines, out = run_granc(tls_args(pki, kind, key, *extra))
    assert rc == 1
    assert len(lines) == 1, lines
    assert "--ssl-keyfile" in lines[0] and "password" in lines[0], lines[0]
    assert "Listening" not in out


@pytest.mark.parametrize("kind,key", [("rsa", "ec.key"), ("rsa", "rsa2.key"),
                                      ("ec", "rsa.key"), ("ec", "ec2.key")])
def test_key_mismatch(pki, kind, key):
    key = os.path.join(pki.d, key)
    crt = getattr(pki, f"{kind}_crt")
    rc, lines, out = run_granc(tls_args(pki, kind, key))
    assert rc == 1
    assert len(lines) == 1, lines
    assert crt in lines[0] and key in lines[0], lines[0]
    assert "Listening" not in out


@pytest.mark.parametrize("given", ["certificate", "keyfile"])
def test_half_configured(pki, given):
    args = (["--ssl-certificate", pki.rsa_crt] if given == "certificate"
            else ["--ssl-keyfile", pki.rsa_key])
    rc, lines, out = run_granc(args)
    assert rc == 1
    assert len(lines) == 1, lines
    assert "--ssl-certificate" in lines[0] and "--ssl-keyfile" in lines[0], lines[0]
    assert "Listening" not in out


def test_protocol_min_tls13_refused(pki):
    rc, lines, out = run_granc(tls_args(pki, "rsa", None, "--ssl-protocol-min", "tls1.3"))
    assert rc == 1
    assert len(lines) == 1, lines
    assert "--ssl-protocol-min" in lines[0] and "TLS 1.2 only" in lines[0], lines[0]
    assert "Listening" not in out


# ---- client certificates -----------------------------------------------------

def get_or_error(url, ctx):
    try:
        with httpx.Client(verify=ctx) as c:
            return c.get(url)
    except httpx.ConnectError as e:
        return e


@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_client_verify_required(wsgi_server, pki, iface):
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki, "rsa", None, "--ssl-ca", pki.cca_crt,
                                                  "--ssl-client-verify"), interface=iface)
    url = https(s, "/info")
    assert isinstance(get_or_error(url, client_ctx(pki)), httpx.ConnectError)
    assert isinstance(get_or_error(url, client_ctx(pki, "stranger")), httpx.ConnectError)
    for who in ("good", "revoked"):       # no --ssl-crl: both are valid
        r = get_or_error(url, client_ctx(pki, who))
        assert not isinstance(r, Exception), r
        assert r.status_code == 200
        if iface == "wsgi":
            assert der(r.json()["SSL_CLIENT_CERT"]) == cert_der(getattr(pki, f"{who}_crt"))
        else:
            chain = r.json()["extensions"]["tls"]["client_cert_chain"]
            assert len(chain) >= 1
            assert der(chain[0]) == cert_der(getattr(pki, f"{who}_crt"))


@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_client_cert_optional(wsgi_server, pki, iface):
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki, "rsa", None, "--ssl-ca", pki.cca_crt),
                    interface=iface)
    url = https(s, "/info")
    r = get_or_error(url, client_ctx(pki))
    assert not isinstance(r, Exception), r
    assert r.status_code == 200
    if iface == "wsgi":
        assert r.json().get("SSL_CLIENT_CERT") is None
    else:
        assert r.json()["extensions"]["tls"]["client_cert_chain"] == []
    r = get_or_error(url, client_ctx(pki, "good"))
    assert not isinstance(r, Exception), r
    assert r.status_code == 200
    if iface == "wsgi":
        assert der(r.json()["SSL_CLIENT_CERT"]) == cert_der(pki.good_crt)
    else:
        assert der(r.json()["extensions"]["tls"]["client_cert_chain"][0]) == cert_der(pki.good_crt)


def test_client_crl(wsgi_server, pki):
    s = wsgi_server("asgi_app:app", *tls_args(pki, "rsa", None, "--ssl-ca", pki.cca_crt,
                                              "--ssl-client-verify", "--ssl-crl", pki.cca_crl),
                    interface="asgi")
    url = https(s, "/info")
    assert isinstance(get_or_error(url, client_ctx(pki, "revoked")), httpx.ConnectError)
    assert isinstance(get_or_error(url, client_ctx(pki)), httpx.ConnectError)
    r = get_or_error(url, client_ctx(pki, "good"))
    assert not isinstance(r, Exception), r
    assert r.status_code == 200
    assert der(r.json()["extensions"]["tls"]["client_cert_chain"][0]) == cert_der(pki.good_crt)
    # refused once, refused again: the worker is fine and the CRL still applies
    assert isinstance(get_or_error(url, client_ctx(pki, "revoked")), httpx.ConnectError)


def test_client_cert_key_comes_from_the_connection(wsgi_server, pki):
    s = wsgi_server("wsgi_app:app", *tls_args(pki), env={"SSL_CLIENT_CERT": "forged"})
    with httpx.Client(verify=client_ctx(pki)) as c:
        env = c.get(https(s, "/info")).json()
    assert env["HTTPS"] == "on"
    assert env.get("SSL_CLIENT_CERT") is None


def test_client_chain_with_intermediate(wsgi_server, pki):
    """The client sends leaf + intermediate; --ssl-ca holds the root only."""
    s = wsgi_server("asgi_app:app", *tls_args(pki, "rsa", None, "--ssl-ca", pki.cca_crt,
                                              "--ssl-client-verify"), interface="asgi")
    r = get_or_error(https(s, "/info"), client_ctx(pki, "sub"))
    assert not isinstance(r, Exception), r
    chain = r.json()["extensions"]["tls"]["client_cert_chain"]
    assert [der(c) for c in chain] == [cert_der(pki.sub_crt), cert_der(pki.icca_crt)]


def test_client_cert_expired_refused(wsgi_server, pki):
    s = wsgi_server("asgi_app:app", *tls_args(pki, "rsa", None, "--ssl-ca", pki.cca_crt,
                                              "--ssl-client-verify"), interface="asgi")
    url = https(s, "/info")
    assert isinstance(get_or_error(url, client_ctx(pki, "expired")), httpx.ConnectError)
    assert get_or_error(url, client_ctx(pki, "good")).status_code == 200


@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
@pytest.mark.parametrize("who", ["stranger", "expired", "revoked"])
def test_client_cert_optional_invalid_not_exposed(wsgi_server, pki, iface, who):
    """With optional client certificates, one that does not validate (not
    from --ssl-ca, expired, revoked by --ssl-crl) is either refused or
    never shown to the app: an app must be able to trust what it sees."""
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki, "rsa", None, "--ssl-ca", pki.cca_crt,
                                                  "--ssl-crl", pki.cca_crl), interface=iface)
    r = get_or_error(https(s, "/info"), client_ctx(pki, who))
    if isinstance(r, httpx.ConnectError):
        return                              # refused: fine
    assert r.status_code == 200
    if iface == "wsgi":
        assert r.json().get("SSL_CLIENT_CERT") is None
    else:
        tls = r.json()["extensions"]["tls"]
        assert tls["client_cert_chain"] == [] or tls["client_cert_error"] is not None


def _tls_get(s, ctx, session=None):
    """GET /info on a fresh TLS connection; (json, ssl socket's session, reused)."""
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    k = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    try:
        k.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body, _ = read_response(k)
        assert status == 200
        return json.loads(body), k.session, k.session_reused
    finally:
        k.close()


def test_session_resumption(wsgi_tls, pki):
    ctx = client_ctx(pki, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    env, sess, reused = _tls_get(wsgi_tls, ctx)
    assert not reused
    env2, _, reused = _tls_get(wsgi_tls, ctx, sess)
    assert reused
    assert env2["SSL_CIPHER"] == env["SSL_CIPHER"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"


def test_client_cert_on_every_connection(wsgi_server, pki):
    """Under --ssl-client-verify, a client offering the previous session
    still ends up with its certificate in the environ (full handshake or
    resumption that remembers it)."""
    s = wsgi_server("wsgi_app:app", *tls_args(pki, "rsa", None, "--ssl-ca", pki.cca_crt,
                                              "--ssl-client-verify"))
    ctx = client_ctx(pki, "good", ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    env, sess, _ = _tls_get(s, ctx)
    assert der(env["SSL_CLIENT_CERT"]) == cert_der(pki.good_crt)
    env, _, _ = _tls_get(s, ctx, sess)
    assert der(env["SSL_CLIENT_CERT"]) == cert_der(pki.good_crt)


def test_server_chain(wsgi_server, pki):
    """A leaf + intermediate PEM file: the client, trusting the root only,
    gets the whole chain."""
    s = wsgi_server("wsgi_app:app", "--ssl-certificate", pki.chain_crt,
                    "--ssl-keyfile", pki.leaf_key)
    with httpx.Client(verify=client_ctx(pki)) as c:
        assert c.get(https(s, "/info")).json()["HTTPS"] == "on"
    rc, out = s_client(s.port, "-tls1_2", "-showcerts", "-CAfile", pki.ca_crt)
    assert rc == 0, out
    assert out.count("-----BEGIN CERTIFICATE-----") == 2
    assert "Verify return code: 0 (ok)" in out


# ---- the handshake as openssl s_client sees it -------------------------------

@pytest.mark.parametrize("version", ["-tls1", "-tls1_1", "-tls1_3"])
def test_s_client_old_and_new_versions_fail(shared, pki, version):
    args = [version, "-CAfile", pki.ca_crt]
    if version != "-tls1_3":               # let the client offer them at all
        args += ["-cipher", "DEFAULT@SECLEVEL=0"]
    rc, out = s_client(shared["rsa"].port, *args)
    assert rc != 0, out
    assert negotiated(out)[2] == "(NONE)", out


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_s_client_tls12(shared, pki, kind):
    rc, out = s_client(shared[kind].port, "-tls1_2", "-CAfile", pki.ca_crt)
    assert rc == 0, out
    state, proto, cipher = negotiated(out)
    assert (state, proto) == ("New", "TLSv1.2")
    m = CIPHER_RE.match(cipher)
    assert m, cipher
    assert m.group(1) == ("RSA" if kind == "rsa" else "ECDSA")
    assert "Verify return code: 0 (ok)" in out


@pytest.mark.parametrize("cipher", sorted(k for k in SUITES if "-RSA-" in k))
def test_s_client_each_suite(shared, pki, cipher):
    rc, out = s_client(shared["rsa"].port, "-tls1_2", "-cipher", cipher, "-CAfile", pki.ca_crt)
    assert rc == 0, out
    assert negotiated(out) == ("New", "TLSv1.2", cipher)


@pytest.mark.parametrize("cipher", ["AES128-SHA256", "AES128-GCM-SHA256", "AES256-GCM-SHA384",
                                    "ECDHE-RSA-AES128-SHA256", "ECDHE-RSA-AES128-SHA",
                                    "DHE-RSA-AES128-GCM-SHA256"])
def test_s_client_weak_suites_fail(shared, cipher):
    rc, out = s_client(shared["rsa"].port, "-tls1_2", "-cipher", cipher)
    assert rc != 0, out
    assert negotiated(out)[2] == "(NONE)", out


def test_s_client_alpn(shared):
    rc, out = s_client(shared["rsa"].port, "-alpn", "http/1.1")
    assert rc == 0, out
    assert "ALPN protocol: http/1.1" in out
    rc, out = s_client(shared["rsa"].port, "-alpn", "h2,http/1.1")   # --http auto
    assert rc == 0, out
    assert "ALPN protocol: h2" in out
    rc, out = s_client(shared["rsa"].port, "-alpn", "spdy/3")   # nothing in common: no ALPN
    assert rc == 0, out
    assert "ALPN protocol" not in out and "No ALPN negotiated" in out


def test_s_client_session_reuse(shared, tmp_path):
    sess = str(tmp_path / "sess.pem")
    port = shared["rsa"].port
    rc, out = s_client(port, "-tls1_2", "-sess_out", sess)
    assert rc == 0, out
    state, _, cipher = negotiated(out)
    assert state == "New"
    rc, out = s_client(port, "-tls1_2", "-sess_in", sess)
    assert rc == 0, out
    assert negotiated(out) == ("Reused", "TLSv1.2", cipher)


def test_s_client_request(shared):
    """An HTTP request typed into s_client gets its answer over TLS."""
    rc, out = s_client(shared["rsa"].port, "-tls1_2", "-quiet",
                       stdin="GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    # (booleans: the body holds the whole environ, os.environ included)
    served = "HTTP/1.1 200 OK" in out
    https_on = '"HTTPS": "on"' in out
    assert served and https_on, [line for line in out.splitlines() if "{" not in line]


def test_s_client_renegotiation_refused(shared):
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{shared['rsa'].port}",
                          "-tls1_2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        p.stdin.write(b"R\n")
        p.stdin.flush()
        time.sleep(1.0)
        out, _ = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = out.decode("latin-1")
    assert "RENEGOTIATING" in out, out
    assert "no renegotiation" in out, out
    # the server is still fine
    rc, out = s_client(shared["rsa"].port, "-tls1_2")
    assert rc == 0, out


# ---- robustness --------------------------------------------------------------

def wait_closed(sock, limit):
    """Read (and drop) until the server closes sock; the seconds it took,
    or None if it still had not after `limit` seconds."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < limit:
        try:
            if not sock.recv(65536):
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
    return None


def timed_get(s, pki):
    t0 = time.monotonic()
    with httpx.Client(verify=client_ctx(pki), timeout=10) as c:
        r = c.get(https(s, "/info"))
    return r, time.monotonic() - t0


@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_garbage_and_stalled_handshakes(wsgi_server, pki, iface):
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki), "--http1-header-read-timeout", "2000",
                    interface=iface)
    pids = s.worker_pids()
    t_open = time.monotonic()
    stalled = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    garbage = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    garbage.sendall(os.urandom(4096))
    try:
        r, took = timed_get(s, pki)
        assert r.status_code == 200
        assert took < 1.0, took
        g = wait_closed(garbage, 6)
        st = wait_closed(stalled, 8 - (time.monotonic() - t_open))
    finally:
        stalled.close()
        garbage.close()
    assert g is not None, "the garbage connection was never closed"
    assert st is not None, "the stalled handshake was never closed"
    since_open = time.monotonic() - t_open
    assert 1.5 <= since_open < 8, since_open
    r, took = timed_get(s, pki)
    assert r.status_code == 200
    assert s.proc.poll() is None
    assert s.worker_pids() == pids        # no worker died and was replaced


def test_stalled_handshakes_dont_block(wsgi_server, pki):
    """Twenty half-open handshakes (a ClientHello cut short) at once."""
    s = wsgi_server("wsgi_app:app", *tls_args(pki), "--http1-header-read-timeout", "2000")
    socks = []
    hello = _client_hello(pki)
    try:
        for i in range(20):
            k = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            k.sendall(hello[:len(hello) // 2] if i % 2 else hello[:3])
            socks.append(k)
        r, took = timed_get(s, pki)
        assert r.status_code == 200
        assert took < 1.0, took
        t0 = time.monotonic()
        for k in socks:
            assert wait_closed(k, 8 - (time.monotonic() - t0)) is not None
    finally:
        for k in socks:
            k.close()
    assert timed_get(s, pki)[0].status_code == 200


def _client_hello(pki):
    """The bytes of a real ClientHello, from an in-memory handshake."""
    ctx = client_ctx(pki)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_idle_after_handshake_closed(wsgi_server, pki, iface):
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki), "--http1-header-read-timeout", "2000",
                    interface=iface)
    t0 = time.monotonic()
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    tls = client_ctx(pki).wrap_socket(raw, server_hostname="localhost")
    try:
        assert tls.version() == "TLSv1.2"
        tls.settimeout(10)
        try:
            data = tls.recv(1024)
        except (ssl.SSLEOFError, ConnectionResetError):
            data = b""
        took = time.monotonic() - t0
    finally:
        tls.close()
    assert data == b""
    assert 1.5 <= took < 6, took
    assert timed_get(s, pki)[0].status_code == 200


def test_partial_head_over_tls_times_out(wsgi_server, pki):
    """Half a request head after the handshake: 408 or a close, in time."""
    s = wsgi_server("wsgi_app:app", *tls_args(pki), "--http1-header-read-timeout", "2000")
    t0 = time.monotonic()
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    tls = client_ctx(pki).wrap_socket(raw, server_hostname="localhost")
    data = b""
    try:
        tls.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n")
        tls.settimeout(10)
        try:
            while True:
                b = tls.recv(65536)
                if not b:
                    break
                data += b
        except (ssl.SSLEOFError, ConnectionResetError):
            pass
        took = time.monotonic() - t0
    finally:
        tls.close()
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data
    assert 1.5 <= took < 6, took


def test_many_parallel_clients(wsgi_server, pki):
    """Handshakes and requests from eight threads at once, each on its own
    keep-alive connection."""
    s = wsgi_server("asgi_app:app", *tls_args(pki), interface="asgi")
    errors, bodies = [], []

    def worker(i):
        try:
            with httpx.Client(verify=client_ctx(pki), timeout=30) as c:
                for j in range(10):
                    body = os.urandom(1000 * (i + 1) + j)
                    r = c.post(https(s, "/echo"), content=body)
                    assert r.content == body
                    bodies.append(len(body))
        except Exception as e:          # noqa: BLE001
            errors.append(repr(e))
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(bodies) == 80


# ---- HTTP/1.1 framing over TLS -----------------------------------------------

def tls_socket(s, pki, timeout=20):
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=timeout)
    return client_ctx(pki).wrap_socket(raw, server_hostname="localhost")


@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_pipelined_requests(wsgi_server, pki, iface):
    """Three requests in one TLS record, then one whose head arrives a byte
    per record: the decrypted bytes the engine holds are served without a
    readiness event to announce them."""
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki), interface=iface)
    k = tls_socket(s, pki)
    try:
        reqs = b"".join(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(b), b) for b in (b"one", b"two", b"three"))
        k.sendall(reqs)
        buf = b""
        for want in (b"one", b"two", b"three"):
            status, _, body, buf = read_response(k, buf)
            assert (status, body) == (200, want)
        assert buf == b""
        for ch in b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nslow":
            k.sendall(bytes([ch]))             # a TLS record per byte
        status, _, body, buf = read_response(k)
        assert (status, body, buf) == (200, b"slow", b"")
    finally:
        k.close()


@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_expect_100_continue(wsgi_server, pki, iface):
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki), interface=iface)
    k = tls_socket(s, pki)
    try:
        k.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = k.recv(65536)
            assert b, buf
            buf += b
        head, buf = buf.split(b"\r\n\r\n", 1)
        assert head == b"HTTP/1.1 100 Continue"
        k.sendall(b"hello world")
        status, _, body, buf = read_response(k, buf)
        assert (status, body, buf) == (200, b"hello world", b"")
    finally:
        k.close()


@pytest.mark.parametrize("iface,path", [("wsgi", "/bigresp?n=20971520"),
                                        ("asgi", "/big?total=20971520&chunk=1048576")])
def test_slow_reader(wsgi_server, pki, iface, path):
    """20 MB for a client that reads nothing for a second, then slowly:
    the server waits on a full socket and loses no byte."""
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki), interface=iface)
    k = tls_socket(s, pki)
    total = 20 * 1024 * 1024
    try:
        k.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        k.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        time.sleep(1.0)
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = k.recv(65536)
            assert b, buf
            buf += b
        head, body = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert re.search(rb"\r\ncontent-length: *%d\r\n" % total, head + b"\r\n", re.I), head
        h, n, reads = hashlib.sha256(body), len(body), 0
        while n < total:
            b = k.recv(16384)
            assert b, f"closed after {n} bytes"
            reads += 1
            if reads % 200 == 0:
                time.sleep(0.01)
            h.update(b)
            n += len(b)
    finally:
        k.close()
    assert n == total
    assert h.hexdigest() == hashlib.sha256(b"x" * total).hexdigest()


def test_two_workers(wsgi_server, pki):
    s = wsgi_server("wsgi_app:app", *tls_args(pki), workers=2)
    pids = set()
    for _ in range(12):
        with httpx.Client(verify=client_ctx(pki)) as c:
            env = c.get(https(s, "/info")).json()
        assert env["HTTPS"] == "on"
        pids.add(env["_pid"])
    assert pids <= set(s.worker_pids())


@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_sigterm_with_idle_tls_connection(wsgi_server, pki, iface):
    """An idle keep-alive TLS connection does not hold up a graceful stop."""
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki), interface=iface)
    k = tls_socket(s, pki)
    try:
        k.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(k)[0] == 200
        t0 = time.monotonic()
        assert s.stop(timeout=10) == 0
        assert time.monotonic() - t0 < 5
    finally:
        k.close()


@pytest.mark.parametrize("tls", [False, True],
    ids=["plain", "tls"])
def test_keep_alive_head_clock(wsgi_server, pki, tls):
    """--http1-header-read-timeout 3000: after a request, 2 s idle, then a
    head that takes 2.2 s to arrive.  Plain HTTP times the head from its
    first byte and serves it; TLS must do the same."""
    args = ["--http1-header-read-timeout", "3000"] + (tls_args(pki) if tls else [])
    s = wsgi_server("wsgi_app:app", *args)
    k = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    if tls:
        k = client_ctx(pki).wrap_socket(k, server_hostname="localhost")
    try:
        k.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(k)[0] == 200
        time.sleep(2.0)
        for part in (b"GET /info HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n",
                     b"X-B: 2\r\n"):
            k.sendall(part)
            time.sleep(0.55)
        k.sendall(b"\r\n")
        status = read_response(k)[0]
    finally:
        k.close()
    assert status == 200


# ---- files, many small writes, disconnects, the first flight ----------------

def _slow_get(s, pki, path, pause=1.0):
    """GET path on a raw TLS socket with a small receive buffer, reading
    nothing for `pause` seconds; (status, headers, body)."""
    k = tls_socket(s, pki, timeout=30)
    try:
        k.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        k.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        time.sleep(pause)
        status, headers, body, rest = read_response(k)
        assert rest == b""
        return status, headers, body
    finally:
        k.close()


@pytest.fixture(scope="module")
def blob(tmp_path_factory):
    p = tmp_path_factory.mktemp("blob") / "blob.bin"
    data = os.urandom(5 * 1024 * 1024 + 7)
    p.write_bytes(data)
    return str(p), data


@pytest.mark.parametrize("iface,route", [("wsgi", "/filewrapper"), ("asgi", "/pathsend")])
def test_file_response(wsgi_server, pki, blob, iface, route):
    """Files (sendfile without TLS) go through the engine: encrypted, whole."""
    path, data = blob
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki), interface=iface)
    status, _, body = _slow_get(s, pki, f"{route}?path={path}")
    assert status == 200
    assert len(body) == len(data)
    assert body == data


def _dechunk(data):
    out, pos = bytearray(), 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol], 16)
        out += data[eol + 2:eol + 2 + size]
        assert data[eol + 2 + size:eol + 4 + size] == b"\r\n"
        pos = eol + 4 + size
        if size == 0:
            return bytes(out), bytes(data[pos:])


def test_many_small_chunks_slow_reader(wsgi_server, pki):
    """100,000 ASGI body messages of 100 bytes to a client that waits."""
    s = wsgi_server("asgi_app:app", *tls_args(pki), interface="asgi")
    k = tls_socket(s, pki, timeout=30)
    data = bytearray()
    try:
        k.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        k.sendall(b"GET /stream?n=100000&size=100 HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        time.sleep(1.0)
        while True:
            b = k.recv(262144)
            if not b:
                break
            data += b
    finally:
        k.close()
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\ntransfer-encoding: chunked" in head.lower()
    body, trailer = _dechunk(rest)
    assert trailer == b""
    assert len(body) == 100000 * 100
    assert body == b"".join(str(i % 10).encode() * 100 for i in range(100000))


@pytest.mark.parametrize("how", ["tcp-close", "close_notify"])
def test_client_disconnect_seen_by_app(wsgi_server, pki, tmp_path, how):
    """A TLS client that goes mid-stream, with or without close_notify: the
    app's send() raises OSError and receive() says http.disconnect."""
    s = wsgi_server("asgi_app:app", *tls_args(pki), interface="asgi")
    report = tmp_path / "seen.json"
    k = tls_socket(s, pki)
    k.sendall(b"GET /disconnect?report=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(report).encode())
    assert k.recv(65536)
    if how == "close_notify":
        k.setblocking(False)
        try:
            k.unwrap()                  # sends close_notify; the reply may never come
        except (ssl.SSLWantReadError, ssl.SSLError, OSError):
            pass
    k.close()
    deadline = time.time() + 10
    while not report.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert json.loads(report.read_text()) == ["send:OSError", "http.disconnect"]
    with httpx.Client(verify=client_ctx(pki)) as c:
        assert c.get(https(s, "/info")).status_code == 200


def _responses(data):
    """The complete Content-Length responses at the start of data: [(status, body)]."""
    out = []
    while b"\r\n\r\n" in data:
        head, rest = data.split(b"\r\n\r\n", 1)
        m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
        n = int(m.group(1)) if m else 0
        if len(rest) < n:
            break
        out.append((int(head.split(b" ")[1]), rest[:n]))
        data = rest[n:]
    return out


def _bio_request(port, ctx, session=None, req=b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n",
                 nresp=1):
    """Handshake through memory BIOs, then send the client's last flight and
    `req` in a single write; returns (responses, session, reused)."""
    k = socket.create_connection(("127.0.0.1", port), timeout=10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost", session=session)
    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if out.pending:
                    k.sendall(out.read())
                b = k.recv(65536)
                assert b, "closed during the handshake"
                inc.write(b)
        obj.write(req)
        k.sendall(out.read())
        data = b""
        while len(_responses(data)) < nresp:
            try:
                data += obj.read(65536)
            except ssl.SSLWantReadError:
                b = k.recv(65536)           # 10 s timeout: a stall fails the test
                if not b:
                    break
                inc.write(b)
        return _responses(data), obj.session, obj.session_reused
    finally:
        k.close()


@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_request_in_the_finished_flight(wsgi_server, pki, iface):
    """On resumption the client's Finished and its first request may share
    a TCP segment: the request is decrypted along with the handshake and
    must be served though no further byte arrives."""
    s = wsgi_server(f"{iface}_app:app", *tls_args(pki), interface=iface)
    ctx = client_ctx(pki, ciphers="ECDHE-RSA-CHACHA20-POLY1305")
    resps, sess, reused = _bio_request(s.port, ctx)
    assert not reused
    assert [st for st, _ in resps] == [200]
    req = (b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    resps, _, reused = _bio_request(s.port, ctx, sess, req=req, nresp=2)
    assert reused
    assert [st for st, _ in resps] == [200, 200]
    assert resps[1][1] == b"hello"
