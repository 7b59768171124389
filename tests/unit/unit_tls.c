/* tests/unit/unit_tls.c -- TAP tests for tls.c and tls_load.c, linked with
 * them and BearSSL.
 *
 *   cc -std=c11 -D_GNU_SOURCE -DGRANC_TLS -Wall -Wextra -g \
 *      -fsanitize=address,undefined -I. tests/unit/unit_tls.c tls.c tls_load.c \
 *      -lbearssl -o tests/unit/unit_tls
 *
 * openssl(1) makes the certificates and keys in a temporary directory.
 * tls_load must accept or refuse each file, with a message naming the
 * option and the file; then real handshakes run over a socketpair: the
 * server side here through tls.c, non-blocking, and the client in a
 * forked child with BearSSL's own client engine (blocking, br_sslio).
 */
#include "tls.h"

#include <bearssl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 5000            /* a handshake step that takes longer is lost */
#define BIG     (1u << 20)      /* response bytes of the large-write test */

#define AREA_BYTES 1             /* no guarded inputs here */
#include "tap.h"
#include "ev.h"
#include "log.h"

static char dir[64];
static char last_warn[512];

/* The stub for log.c: debug lines become TAP comments; warnings are kept. */
void log_msg(int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (level >= LL_WARNING)
        snprintf(last_warn, sizeof last_warn, "%s", msg);
    fprintf(out, "# log %d: %s\n", level, msg);
}

static const char *path(const char *name)
{
    static char buf[16][128];
    static int k;

    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static const char gen[] =
    "set -e; cd \"$0\"; D='-days 2 -nodes'; EC='-newkey ec -pkeyopt ec_paramgen_curve:P-256'\n"
    "openssl req -x509 -newkey rsa:2048 $D -keyout rsa.key -out rsa.crt -subj /CN=localhost\n"
    "openssl rsa -in rsa.key -traditional -out rsa1.key\n"
    "openssl pkcs8 -topk8 -in rsa.key -out rsa_enc.key -v2 aes-256-cbc -v2prf hmacWithSHA256"
    " -passout pass:secret\n"
    "openssl req -x509 $EC $D -keyout ec.key -out ec.crt -subj /CN=localhost\n"
    "openssl ec -in ec.key -out ec1.key\n"
    "openssl pkcs8 -topk8 -in ec.key -out ec_enc.key -v2 aes-128-cbc -v2prf hmacWithSHA1"
    " -passout pass:secret\n"
    "openssl pkcs8 -topk8 -in ec.key -out ec_512.key -v2 aes-192-cbc -v2prf hmacWithSHA512"
    " -passout pass:secret\n"
    "openssl pkcs8 -topk8 -in rsa.key -out des3.key -v2 des3 -passout pass:secret\n"
    "openssl rsa -in rsa.key -aes256 -traditional -passout pass:secret -out legacy.key\n"
    "openssl genpkey -algorithm ed25519 -out ed.key\n"
    "openssl genrsa -out other.key 2048\n"
    "openssl req -x509 $EC $D -keyout ca.key -out ca.crt -subj /CN=testca\n"
    "openssl req -x509 $EC $D -keyout ca2.key -out ca2.crt -subj /CN=otherca\n"
    "printf 'basicConstraints=CA:FALSE\\nkeyUsage=digitalSignature\\n' > ext.cnf\n"
    "for c in good:ca:1 bad:ca:2 orphan:ca2:3; do\n"
    "  n=${c%%:*}; r=${c#*:}; i=${r%%:*}; s=${r#*:}\n"
    "  openssl req $EC -nodes -keyout $n.key -out $n.csr -subj /CN=$n\n"
    "  openssl x509 -req -in $n.csr -CA $i.crt -CAkey $i.key -set_serial $s -days 2"
    " -extfile ext.cnf -out $n.crt\n"
    "  openssl x509 -in $n.crt -outform DER -out $n.der\n"
    "  openssl pkcs8 -topk8 -nocrypt -in $n.key -outform DER -out $n.kder\n"
    "done\n"
    "touch index.txt; echo 01 > crlnumber\n"
    "printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=index.txt\\ncrlnumber=crlnumber\\n"
    "default_md=sha256\\ndefault_crl_days=2\\n' > ca.cnf\n"
    "openssl ca -config ca.cnf -keyfile ca.key -cert ca.crt -revoke bad.crt\n"
    "openssl ca -config ca.cnf -keyfile ca.key -cert ca.crt -gencrl -out ca.crl\n"
    "cat ca.crt ca2.crt > cas.crt\n"
    "openssl x509 -in rsa.crt -outform DER -out rsa.der\n"
    "openssl x509 -in ec.crt -outform DER -out ec.der\n"
    "printf 'not a certificate\\n' > garbage.pem\n";

static unsigned char *slurp(const char *name, size_t *len)
{
    FILE *f = fopen(path(name), "rb");
    unsigned char *p = malloc(1 << 16);

    *len = f && p ? fread(p, 1, 1 << 16, f) : 0;
    if (f)
        fclose(f);
    return p;
}

/* ---- tls_load ------------------------------------------------------- */

static config conf(const char *cert, const char *key)
{
    config c;

    memset(&c, 0, sizeof c);
    c.ssl_certificate = cert ? path(cert) : NULL;
    c.ssl_keyfile = key ? path(key) : NULL;
    return c;
}

/* tls_load.c has no way to free a context (the master keeps its one): keep
 * them reachable, so that LeakSanitizer does not count them. */
static tls_ctx *kept[64];
static int nkept;

static tls_ctx *load(config c, char *err)
{
    tls_ctx *ctx;

    err[0] = 0;
    ctx = tls_load(&c, err, 256);
    if (ctx && nkept < 64)
        kept[nkept++] = ctx;
    return ctx;
}

static void load_ok(const char *cert, const char *key, const char *pw, const char *name)
{
    char err[256];
    config c = conf(cert, key);

    c.ssl_keyfile_password = pw;
    ok(load(c, err) != NULL, name);
    if (err[0])
        fprintf(out, "# %s\n", err);
}

/* Refused, with a message that contains each of want (NULL-ended). */
static void load_bad(config c, const char *name, ...)
{
    char err[256];
    const char *w;
    int good = load(c, err) == NULL;
    va_list ap;

    va_start(ap, name);
    while ((w = va_arg(ap, const char *)))
        good = good && strstr(err, w);
    va_end(ap);
    ok(good, name);
    fprintf(out, "# %s\n", err);
}

static void test_load(void)
{
    config c;

    load_ok("rsa.crt", "rsa.key", NULL, "RSA key, PKCS#8");
    load_ok("rsa.crt", "rsa1.key", NULL, "RSA key, PKCS#1");
    load_ok("rsa.crt", "rsa_enc.key", "secret", "RSA key, encrypted PKCS#8 (AES-256, SHA-256)");
    load_ok("ec.crt", "ec.key", NULL, "EC key, PKCS#8");
    load_ok("ec.crt", "ec1.key", NULL, "EC key, SEC1");
    load_ok("ec.crt", "ec_enc.key", "secret", "EC key, encrypted PKCS#8 (AES-128, SHA-1)");
    load_ok("ec.crt", "ec_512.key", "secret", "EC key, encrypted PKCS#8 (AES-192, SHA-512)");
    load_ok("rsa.crt", "rsa.key", "unused", "a password for a plain key is ignored");

    c = conf("rsa.crt", "rsa_enc.key");
    c.ssl_keyfile_password = "wrong";
    load_bad(c, "wrong password", "--ssl-keyfile: ", "rsa_enc.key: wrong password", NULL);
    c = conf("ec.crt", "ec_enc.key");
    c.ssl_keyfile_password = "Secret";
    load_bad(c, "wrong password (AES-128)", "wrong password", NULL);
    load_bad(conf("rsa.crt", "rsa_enc.key"), "encrypted key without a password",
             "--ssl-keyfile", "password", NULL);
    c = conf("rsa.crt", "des3.key");
    c.ssl_keyfile_password = "secret";
    load_bad(c, "3DES-encrypted key", "unsupported key encryption", NULL);
    c = conf("rsa.crt", "legacy.key");
    c.ssl_keyfile_password = "secret";
    load_bad(c, "legacy encrypted PEM", "legacy encrypted PEM", "pkcs8 -topk8", NULL);
    load_bad(conf("rsa.crt", "ed.key"), "Ed25519 key", "unsupported key type", NULL);
    load_bad(conf("rsa.crt", "other.key"), "another RSA key",
             "--ssl-certificate: ", "rsa.crt: the key does not match the certificate", NULL);
    load_bad(conf("ec.crt", "rsa.key"), "an RSA key for an EC certificate",
             "does not match", NULL);
    load_bad(conf("garbage.pem", "rsa.key"), "garbage certificate",
             "--ssl-certificate: ", "garbage.pem: no certificate", NULL);
    load_bad(conf("rsa.crt", "garbage.pem"), "garbage key",
             "--ssl-keyfile: ", "garbage.pem: no private key", NULL);
    load_bad(conf("rsa.crt", "rsa.crt"), "a certificate as the key", "no private key", NULL);
    load_bad(conf("missing.crt", "rsa.key"), "missing certificate file",
             "--ssl-certificate: ", "missing.crt: No such file", NULL);
    load_bad(conf("rsa.crt", "missing.key"), "missing key file",
             "--ssl-keyfile: ", "missing.key: No such file", NULL);
    load_bad(conf("rsa.crt", NULL), "certificate without a key", "--ssl-keyfile", NULL);

    c = conf("rsa.crt", "rsa.key");
    c.ssl_protocol_min = "tls1.2";     /* tls1.3 is refused by granc.c */
    {
        char err[256];
        ok(load(c, err) != NULL, "--ssl-protocol-min tls1.2");
    }

    c = conf("rsa.crt", "rsa.key");
    c.ssl_ca = path("garbage.pem");
    load_bad(c, "garbage CA bundle", "--ssl-ca: ", "garbage.pem", NULL);
    c.ssl_ca = path("cas.crt");
    {
        const char *crls[] = { path("garbage.pem") };
        char err[256];
        c.ssl_crl = (strlist){ crls, 1 };
        load_bad(c, "garbage CRL", "--ssl-crl: ", "garbage.pem: no X509 CRL", NULL);
        crls[0] = path("ca.crl");
        ok(load(c, err) != NULL, "CA bundle and CRL");
    }
    c = conf("rsa.crt", "rsa.key");
    c.ssl_client_verify = 1;
    {
        char err[256];
        last_warn[0] = 0;
        ok(load(c, err) != NULL && strstr(last_warn, "--ssl-ca"),
           "--ssl-client-verify without --ssl-ca: a warning");
    }
}

/* ---- handshakes ----------------------------------------------------- */

typedef struct client {         /* what the child offers */
    uint16_t vmin, vmax;        /* 0: BearSSL's default (1.0 to 1.2) */
    const uint16_t *suites;
    size_t nsuites;
    const char *alpn;
    const char *cert, *key;     /* DER files of a client certificate */
    const char *anchor;         /* DER of the server's certificate */
    size_t expect;              /* response bytes */
    size_t chunk;               /* the server writes them in pieces this big */
} client;

typedef struct result {         /* what the server side saw */
    int ok;                     /* "ping" read and the response written */
    int err;                    /* errno of a failure */
    int child;                  /* the child's exit status */
    char version[16], cipher[64], alpn[16];
    int nchain;
    int chain_ok;               /* certificate 0 is the client's */
    size_t pending;             /* tls_pending after reading 1 byte of "ping" */
    ssize_t eof;                /* tls_read after the response */
} result;

static int sock_read(void *ctx, unsigned char *buf, size_t len)
{
    ssize_t r = read(*(int *)ctx, buf, len);
    return r > 0 ? (int)r : -1;
}

static int sock_write(void *ctx, const unsigned char *buf, size_t len)
{
    ssize_t r = write(*(int *)ctx, buf, len);
    return r > 0 ? (int)r : -1;
}

static unsigned char ta_dn[1024];  /* the anchor's DN, for the child */
static size_t ta_dnlen;

static void dn_add(void *ctx, const void *p, size_t n)
{
    (void)ctx;
    if (ta_dnlen + n <= sizeof ta_dn) {
        memcpy(ta_dn + ta_dnlen, p, n);
        ta_dnlen += n;
    }
}

/* One client connection; 0 when the whole response arrived.  sp carries
 * the session from one connection to the next: with resume set, the
 * second must be resumed (same session ID) or 3 is returned. */
static int run_client(const client *cl, int fd, br_ssl_session_parameters *sp, int resume)
{
    static br_ssl_client_context cc;
    static br_x509_minimal_context xc;
    static unsigned char iobuf[BR_SSL_BUFSIZE_BIDI], resp[BIG];
    br_x509_decoder_context dc;
    br_skey_decoder_context kc;
    br_x509_trust_anchor ta;
    br_x509_certificate crt;
    br_sslio_context io;
    br_ssl_session_parameters now;
    size_t len, klen;
    unsigned char *der = slurp(cl->anchor, &len), *key;

    ta_dnlen = 0;
    br_x509_decoder_init(&dc, dn_add, NULL);
    br_x509_decoder_push(&dc, der, len);
    ta = (br_x509_trust_anchor){ { ta_dn, ta_dnlen }, 0, *br_x509_decoder_get_pkey(&dc) };
    br_ssl_client_init_full(&cc, &xc, &ta, 1);
    if (cl->vmin)
        br_ssl_engine_set_versions(&cc.eng, cl->vmin, cl->vmax);
    if (cl->suites)
        br_ssl_engine_set_suites(&cc.eng, cl->suites, cl->nsuites);
    if (cl->alpn) {
        static const char *names[1];
        names[0] = cl->alpn;
        br_ssl_engine_set_protocol_names(&cc.eng, names, 1);
    }
    if (cl->cert) {
        crt.data = slurp(cl->cert, &crt.data_len);
        key = slurp(cl->key, &klen);
        br_skey_decoder_init(&kc);
        br_skey_decoder_push(&kc, key, klen);
        br_ssl_client_set_single_ec(&cc, &crt, 1, br_skey_decoder_get_ec(&kc), BR_KEYTYPE_SIGN,
                                    BR_KEYTYPE_EC, br_ec_get_default(),
                                    br_ecdsa_sign_asn1_get_default());
    }
    br_ssl_engine_set_buffer(&cc.eng, iobuf, sizeof iobuf, 1);
    if (resume)
        br_ssl_engine_set_session_parameters(&cc.eng, sp);
    br_ssl_client_reset(&cc, "localhost", resume);
    br_sslio_init(&io, &cc.eng, sock_read, &fd, sock_write, &fd);
    if (br_sslio_write_all(&io, "ping", 4) || br_sslio_flush(&io))
        return 1;
    usleep(100000);             /* let the server's writes hit EAGAIN */
    if (br_sslio_read_all(&io, resp, cl->expect))
        return 2;
    for (size_t i = 0; i < cl->expect; i++)
        if (resp[i] != (cl->expect == 4 ? "pong"[i] : (unsigned char)(i * 7 + i / 4096)))
            return 4;
    br_ssl_engine_get_session_parameters(&cc.eng, &now);
    if (resume && memcmp(now.session_id, sp->session_id, sizeof now.session_id))
        return 3;
    *sp = now;
    br_sslio_close(&io);
    return 0;
}

static int wait_fd(int fd, int mask)
{
    struct pollfd p = { fd, (short)(mask == EV_WRITE ? POLLOUT : POLLIN), 0 };
    return poll(&p, 1, WAIT_MS) == 1;
}

/* The server side of one connection. */
static void serve(tls_ctx *ctx, int fd, size_t nresp, size_t chunk, result *res)
{
    static unsigned char big[BIG];
    tls_conn *t = tls_new(ctx);
    char buf[8];
    size_t got = 0, sent = 0;
    ssize_t r;
    const unsigned char *der;
    size_t len;

    fcntl(fd, F_SETFL, O_NONBLOCK);
    while (got < 4) {
        if ((r = tls_read(t, fd, buf + got, got ? 4 - got : 1)) > 0) {
            if (!got)           /* one byte first: the rest waits in the engine */
                res->pending = tls_pending(t);
            got += (size_t)r;
        }
        else if (r < 0 && errno == EAGAIN && wait_fd(fd, tls_want(t)))
            continue;
        else
            break;
    }
    res->err = got < 4 ? errno : 0;
    snprintf(res->version, sizeof res->version, "%s", tls_version(t) ? tls_version(t) : "");
    snprintf(res->cipher, sizeof res->cipher, "%s", tls_cipher(t) ? tls_cipher(t) : "");
    snprintf(res->alpn, sizeof res->alpn, "%s", tls_alpn(t) ? tls_alpn(t) : "");
    for (res->nchain = 0; tls_client_chain(t, &der, &len, res->nchain) == 0; res->nchain++)
        if (res->nchain == 0) {
            size_t n;
            unsigned char *want = slurp("good.der", &n);
            res->chain_ok = n == len && !memcmp(want, der, n);
            free(want);
        }
    if (got == 4 && !memcmp(buf, "ping", 4)) {
        for (size_t i = 0; i < nresp; i++)
            big[i] = nresp == 4 ? (unsigned char)"pong"[i] : (unsigned char)(i * 7 + i / 4096);
        while (sent < nresp) {  /* three iovecs, and whatever is left */
            size_t rest = chunk && nresp - sent > chunk - (sent % chunk)
                          ? chunk - (sent % chunk) : nresp - sent, a = rest / 3 ? rest / 3 : 1, b = rest - a > 1 ? 1 : 0;
            struct iovec iov[3] = { { big + sent, a }, { big + sent + a, b },
                                    { big + sent + a + b, rest - a - b } };
            if ((r = tls_writev(t, fd, iov, 3)) > 0)
                sent += (size_t)r;
            else if (!(r < 0 && errno == EAGAIN && wait_fd(fd, tls_want(t))))
                break;
        }
        res->ok = sent == nresp;
        while ((r = tls_read(t, fd, buf, sizeof buf)) < 0 && errno == EAGAIN
               && wait_fd(fd, tls_want(t)))
            ;
        res->eof = r;           /* 0: the client's close_notify */
    }
    tls_close(t, fd);
    tls_free(t);
}

/* nconn connections from one child; the results of the last one. */
static void session(tls_ctx *ctx, const client *cl, int nconn, result *res)
{
    int sv[4][2];
    pid_t pid;
    int st;

    memset(res, 0, sizeof *res);
    for (int k = 0; k < nconn; k++)
        socketpair(AF_UNIX, SOCK_STREAM, 0, sv[k]);
    fflush(out);
    if ((pid = fork()) == 0) {
        br_ssl_session_parameters sp;
        signal(SIGPIPE, SIG_IGN);   /* the server may close first */
        alarm(10);
        for (int k = 0; k < nconn; k++) {
            int rc;
            close(sv[k][0]);
            if ((rc = run_client(cl, sv[k][1], &sp, k > 0)))
                _exit(rc);
            close(sv[k][1]);
        }
        _exit(0);
    }
    for (int k = 0; k < nconn; k++) {
        close(sv[k][1]);
        memset(res, 0, sizeof *res);
        if (cl->chunk) {        /* fill the socket with small records */
            int small = 4096;
            setsockopt(sv[k][0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        }
        serve(ctx, sv[k][0], cl->expect, cl->chunk, res);
        close(sv[k][0]);
    }
    waitpid(pid, &st, 0);
    res->child = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static tls_ctx *ctx_for(const char *cert, const char *key, const char *ca, const char *crl,
                        int verify)
{
    char err[256];
    config c = conf(cert, key);
    tls_ctx *ctx;
    const char *crls[] = { crl ? path(crl) : NULL };

    c.ssl_ca = ca ? path(ca) : NULL;
    c.ssl_crl = (strlist){ crls, crl ? 1 : 0 };
    c.ssl_client_verify = verify;
    c.ssl_keyfile_password = "secret";     /* ignored by plain keys */
    if (!(ctx = load(c, err)))
        fprintf(stderr, "# %s\n", err);
    return ctx;
}

/* A session that must fail on both ends. */
static int refused(tls_ctx *ctx, const client *cl)
{
    result r;

    session(ctx, cl, 1, &r);
    fprintf(out, "# server errno %d (%s), client exit %d\n", r.err, strerror(r.err), r.child);
    return !r.ok && r.child != 0 && (r.err == EPROTO || r.err == ECONNRESET);
}

static void test_handshakes(void)
{
    static const uint16_t rsa_kx[] = { BR_TLS_RSA_WITH_AES_128_GCM_SHA256,
                                       BR_TLS_RSA_WITH_AES_256_CBC_SHA256 };
    static const uint16_t cbc[] = { BR_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
                                    BR_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA };
    static const uint16_t ecdsa[] = { BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 };
    tls_ctx *rsa = ctx_for("rsa.crt", "rsa.key", NULL, NULL, 0);
    tls_ctx *ec = ctx_for("ec.crt", "ec_enc.key", NULL, NULL, 0);
    tls_ctx *req = ctx_for("rsa.crt", "rsa1.key", "ca.crt", NULL, 1);
    tls_ctx *opt = ctx_for("rsa.crt", "rsa.key", "ca.crt", NULL, 0);
    tls_ctx *crl = ctx_for("rsa.crt", "rsa.key", "cas.crt", "ca.crl", 1);
    tls_ctx *nocrl = ctx_for("rsa.crt", "rsa.key", "cas.crt", NULL, 1);
    client cl = { .anchor = "rsa.der", .alpn = "http/1.1", .expect = 4 }, c2;
    result r;

    if (!rsa || !ec || !req || !opt || !crl || !nocrl) {
        ok(0, "contexts for the handshakes");
        return;
    }
    session(rsa, &cl, 1, &r);
    ok(r.ok && r.child == 0, "RSA: ping/pong");
    ok(!strcmp(r.version, "TLSv1.2"), "RSA: tls_version is TLSv1.2");
    ok(!strncmp(r.cipher, "TLS_ECDHE_RSA_WITH_", 19), "RSA: an ECDHE_RSA suite");
    fprintf(out, "# cipher %s\n", r.cipher);
    ok(!strcmp(r.alpn, "http/1.1"), "ALPN http/1.1");
    ok(r.pending == 3, "tls_pending: the 3 bytes left of \"ping\"");
    ok(r.eof == 0, "tls_read returns 0 after the client's close_notify");
    ok(r.nchain == 0, "no client chain without --ssl-ca");

    c2 = cl, c2.anchor = "ec.der";
    session(ec, &c2, 1, &r);
    ok(r.ok && r.child == 0 && !strncmp(r.cipher, "TLS_ECDHE_ECDSA_WITH_", 21),
       "EC (encrypted key): ping/pong with an ECDHE_ECDSA suite");
    fprintf(out, "# cipher %s\n", r.cipher);
    c2.suites = ecdsa, c2.nsuites = 1;
    session(ec, &c2, 1, &r);
    ok(r.ok && !strcmp(r.cipher, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"), "AES-128-GCM");

    c2 = cl, c2.vmin = BR_TLS10, c2.vmax = BR_TLS11;
    ok(refused(rsa, &c2), "a client with TLS 1.0-1.1 only is refused");
    c2 = cl, c2.suites = rsa_kx, c2.nsuites = 2;
    ok(refused(rsa, &c2), "a client without ECDHE suites is refused");
    c2 = cl, c2.suites = cbc, c2.nsuites = 2;
    ok(refused(rsa, &c2), "a client with CBC suites only is refused");
    c2 = cl, c2.suites = ecdsa, c2.nsuites = 1;
    ok(refused(rsa, &c2), "a client with ECDSA suites only, for an RSA key, is refused");

    c2 = cl, c2.alpn = "h2";
    session(rsa, &c2, 1, &r);
    ok(r.ok && r.child == 0 && !strcmp(r.alpn, "h2"), "ALPN h2 with --http auto: h2");
    {
        char err[256];
        config c = conf("rsa.crt", "rsa.key");
        c.http = HTTPM_1;
        tls_ctx *h1 = load(c, err);
        session(h1, &c2, 1, &r);
        ok(r.ok && r.child == 0 && !r.alpn[0], "ALPN h2 with --http 1: no protocol, no failure");
    }
    c2.alpn = NULL;
    session(rsa, &c2, 1, &r);
    ok(r.ok && r.child == 0 && !r.alpn[0], "no ALPN");

    c2 = cl, c2.expect = BIG;
    session(rsa, &c2, 1, &r);
    ok(r.ok && r.child == 0, "1 MiB through partial writes and EAGAIN");
    c2.expect = 64 << 10, c2.chunk = 10;
    session(rsa, &c2, 1, &r);
    ok(r.ok && r.child == 0, "64 KiB in 10-byte writes, each flushed into a full socket");
    c2 = cl;
    session(rsa, &c2, 2, &r);
    ok(r.ok && r.child == 0, "the session cache resumes a session");

    /* client certificates */
    c2 = cl, c2.cert = "good.der", c2.key = "good.kder";
    session(req, &c2, 1, &r);
    ok(r.ok && r.child == 0 && r.nchain == 1 && r.chain_ok,
       "required client certificate: accepted, tls_client_chain returns it");
    ok(refused(req, &cl), "required client certificate: none is refused");
    c2.cert = "orphan.der", c2.key = "orphan.kder";
    ok(refused(req, &c2), "a client certificate from an unknown CA is refused");
    session(opt, &cl, 1, &r);
    ok(r.ok && r.child == 0 && r.nchain == 0, "optional client certificate: none is fine");
    c2.cert = "good.der", c2.key = "good.kder";
    session(opt, &c2, 1, &r);
    ok(r.ok && r.child == 0 && r.nchain == 1 && r.chain_ok,
       "optional client certificate: one is checked and kept");

    session(crl, &c2, 1, &r);
    ok(r.ok && r.child == 0 && r.nchain == 1, "CRL: a certificate not listed passes");
    c2.cert = "bad.der", c2.key = "bad.kder";
    ok(refused(crl, &c2), "CRL: a revoked certificate is refused");
    session(nocrl, &c2, 1, &r);
    ok(r.ok && r.child == 0, "without the CRL it passes");
    c2.cert = "orphan.der", c2.key = "orphan.kder";
    ok(refused(crl, &c2), "CRL: a certificate whose issuer has no CRL is refused");
    session(nocrl, &c2, 1, &r);
    ok(r.ok && r.child == 0, "without CRLs it passes");
}

/* Without a TLS client: plain HTTP, a silent peer, a vanished peer. */
static void test_edges(void)
{
    tls_ctx *ctx = kept[0];
    tls_conn *t;
    int sv[2];
    char buf[64];
    ssize_t r;

    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    t = tls_new(ctx);
    r = tls_read(t, sv[0], buf, sizeof buf);
    ok(r == -1 && errno == EAGAIN && tls_want(t) == EV_READ, "nothing yet: EAGAIN, EV_READ");
    ok(!tls_version(t) && !tls_cipher(t) && !tls_alpn(t), "no facts before the handshake");
    (void)!write(sv[1], "GET / HTTP/1.1\r\n\r\n", 18);
    r = tls_read(t, sv[0], buf, sizeof buf);
    ok(r == -1 && errno == EPROTO, "plain HTTP: EPROTO");
    tls_close(t, sv[0]);
    tls_free(t);
    close(sv[0]), close(sv[1]);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    close(sv[1]);
    t = tls_new(ctx);
    ok(tls_read(t, sv[0], buf, sizeof buf) == 0, "the peer left before the handshake: 0");
    tls_close(t, sv[0]);        /* must neither block nor raise SIGPIPE */
    tls_free(t);
    close(sv[0]);
    tls_free(NULL);
}

int main(void)
{
    char cmd[256];
    int rc;

    tap_begin();
    snprintf(dir, sizeof dir, "/tmp/granc-tls-XXXXXX");
    if (!mkdtemp(dir))
        return 2;
    snprintf(cmd, sizeof cmd, "sh -c \"$GEN\" %s >/dev/null 2>&1", dir);
    setenv("GEN", gen, 1);
    if (system("openssl version >/dev/null 2>&1") != 0) {
        printf("1..0 # SKIP openssl not found\n");
        return 0;
    }
    if (system(cmd) != 0) {
        printf("Bail out! openssl could not make the test files in %s\n", dir);
        return 1;
    }
    test_load();
    fflush(out);
    test_handshakes();
    test_edges();
    rc = tap_end();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (!nfailed)
        (void)!system(cmd);
    return rc;
}
