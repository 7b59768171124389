/* tls.c -- TLS 1.2 server side with BearSSL: the per-connection engine.
 *
 * tls_load (tls_load.c) reads the --ssl-* files into a tls_ctx.  Each
 * connection runs its own BearSSL server engine, driven by one pump
 * (engine_run) that maps the engine's state onto non-blocking send/read
 * and EV_READ/EV_WRITE, the way libtls-bearssl's tls_run_until does.
 *
 * Profile, chosen by hand rather than with br_ssl_server_init_full_* (which
 * also enables TLS 1.0/1.1, 3DES and suites without forward secrecy):
 * TLS 1.2 only, ECDHE key exchange with AEAD suites only (AES-GCM and
 * ChaCha20-Poly1305), no renegotiation, ALPN "h2" and "http/1.1" as --http says.
 */
#include "tls_int.h"
#include "ev.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TLS_CACHE_BYTES     (256u << 10)  /* session cache per worker: 2,621
                                             sessions of 100 bytes each */
#define TLS_MAX_CHAIN_BYTES (64u << 10)   /* client chain kept per connection, in all */

/* Per-connection memory: 37,352 bytes (36.5 KiB), mostly the BIDI buffer
 * (33,178 bytes: a full 16 KiB record each way, so reading never waits for
 * writing) and the engine (4,128 bytes).  With client certificates
 * requested, the validator adds 3,288 bytes plus the client's chain. */
struct tls_conn {
    br_ssl_server_context sc;
    xwrap *x;                       /* NULL without client authentication */
    int want;                       /* EV_READ or EV_WRITE after EAGAIN */
    int ready;                      /* handshake done */
    int logged;                     /* engine error already logged */
    int owed;                       /* 1: the engine holds a byte that
                                       tls_writev has not reported written */
    unsigned char buf[BR_SSL_BUFSIZE_BIDI];
};

/* ALPN by --http (enum http_mode): auto, 1, 2 */
static const char *alpn_names[][2] = { { "h2", "http/1.1" }, { "http/1.1" }, { "h2" } };

/* The x509 class around br_x509_minimal: forward everything, copy the
 * certificates, and check revocation at the end of the chain. */
static void xw_start_chain(const br_x509_class **ctx, const char *name)
{
    xwrap *x = (xwrap *)(void *)ctx;

    x->n = x->overflow = 0;
    x->len = 0;                     /* a connection validates one chain */
    x->inner.vtable->start_chain(&x->inner.vtable, name);
}

static void xw_start_cert(const br_x509_class **ctx, uint32_t length)
{
    xwrap *x = (xwrap *)(void *)ctx;

    if (x->n == TLS_MAX_CHAIN)
        x->overflow = 1;
    x->inner.vtable->start_cert(&x->inner.vtable, length);
}

static void xw_append(const br_x509_class **ctx, const unsigned char *buf, size_t len)
{
    xwrap *x = (xwrap *)(void *)ctx;

    if (!x->overflow && x->len + len > x->cap) {
        size_t cap = x->len + len > TLS_MAX_CHAIN_BYTES ? 0 : 2 * (x->len + len);
        unsigned char *q = cap ? realloc(x->der, cap) : NULL;
        if (q)
            x->der = q, x->cap = cap;
        else
            x->overflow = 1;
    }
    if (!x->overflow) {
        memcpy(x->der + x->len, buf, len);
        x->len += len;
    }
    x->inner.vtable->append(&x->inner.vtable, buf, len);
}

static void xw_end_cert(const br_x509_class **ctx)
{
    xwrap *x = (xwrap *)(void *)ctx;

    if (!x->overflow)
        x->off[++x->n] = x->len;
    x->inner.vtable->end_cert(&x->inner.vtable);
}

static unsigned xw_end_chain(const br_x509_class **ctx)
{
    xwrap *x = (xwrap *)(void *)ctx;
    unsigned err = x->inner.vtable->end_chain(&x->inner.vtable);

    if (!err && x->overflow)
        err = BR_ERR_X509_LIMIT_EXCEEDED;
    if (!err && x->ctx->ncrls)
        err = tls_chain_revoked(x);
    /* With optional client certificates BearSSL goes on after a failed
     * check: the app must then see no certificate at all. */
    x->verified = !err;
    return err;
}

static const br_x509_pkey *xw_get_pkey(const br_x509_class *const *ctx, unsigned *usages)
{
    const xwrap *x = (const xwrap *)(const void *)ctx;

    return x->inner.vtable->get_pkey(&x->inner.vtable, usages);
}

static const br_x509_class xwrap_vtable = {
    sizeof(xwrap), xw_start_chain, xw_start_cert, xw_append, xw_end_cert,
    xw_end_chain, xw_get_pkey
};

/* ---- connections --------------------------------------------------- */

tls_conn *tls_new(tls_ctx *ctx)
{
    tls_conn *t = malloc(sizeof *t);
    br_ssl_engine_context *e;

    if (!t)
        return NULL;
    memset(t, 0, offsetof(tls_conn, buf));
    e = &t->sc.eng;
    br_ssl_server_zero(&t->sc);
    br_ssl_engine_set_versions(e, BR_TLS12, BR_TLS12);
    br_ssl_engine_set_suites(e, ctx->suites, NSUITES);
    /* SHA-1 stays for the signatures of clients that offer nothing else. */
    for (int id = br_sha1_ID; id <= br_sha512_ID; id++)
        br_ssl_engine_set_hash(e, id, sha_hashes[id - br_sha1_ID]);
    br_ssl_engine_set_prf_sha256(e, &br_tls12_sha256_prf);
    br_ssl_engine_set_prf_sha384(e, &br_tls12_sha384_prf);
    br_ssl_engine_set_default_aes_gcm(e);
    br_ssl_engine_set_default_chapol(e);
    br_ssl_engine_set_default_ec(e);
    if (br_skey_decoder_key_type(&ctx->key) == BR_KEYTYPE_EC)
        br_ssl_server_set_single_ec(&t->sc, ctx->chain, ctx->nchain,
                                    br_skey_decoder_get_ec(&ctx->key), BR_KEYTYPE_SIGN,
                                    (unsigned)ctx->signer, br_ec_get_default(),
                                    br_ecdsa_sign_asn1_get_default());
    else
        br_ssl_server_set_single_rsa(&t->sc, ctx->chain, ctx->nchain,
                                     br_skey_decoder_get_rsa(&ctx->key), BR_KEYTYPE_SIGN,
                                     br_rsa_private_get_default(),
                                     br_rsa_pkcs1_sign_get_default());
    br_ssl_engine_add_flags(e, BR_OPT_NO_RENEGOTIATION);
    br_ssl_engine_set_protocol_names(e, alpn_names[ctx->http],   /* a mismatch is no error */
                                     ctx->http == HTTPM_AUTO ? 2 : 1);

    if (ctx->client_auth) {
        if (!(t->x = calloc(1, sizeof *t->x))) {
            free(t);
            return NULL;
        }
        t->x->vtable = &xwrap_vtable;
        t->x->ctx = ctx;
        br_x509_minimal_init_full(&t->x->inner, ctx->tas, ctx->ntas);
        br_ssl_engine_set_x509(e, &t->x->vtable);
        br_ssl_server_set_trust_anchor_names_alt(&t->sc, ctx->tas, ctx->ntas);
        br_ssl_engine_set_default_rsavrfy(e);   /* the client's CertificateVerify */
        br_ssl_engine_set_default_ecdsa(e);
        if (ctx->client_auth == 1)
            br_ssl_engine_add_flags(e, BR_OPT_TOLERATE_NO_CLIENT_AUTH);
    } else {
        /* The cache is allocated here, after fork, so each worker has its
         * own (one thread per worker runs handshakes: no lock).  Not with
         * client certificates: a resumed session skips the chain, hence
         * the CRL check and tls_client_chain. */
        if (!ctx->cache_store && (ctx->cache_store = malloc(TLS_CACHE_BYTES)))
            br_ssl_session_cache_lru_init(&ctx->cache, ctx->cache_store, TLS_CACHE_BYTES);
        if (ctx->cache_store)
            br_ssl_server_set_cache(&t->sc, &ctx->cache.vtable);
    }
    br_ssl_engine_set_buffer(e, t->buf, sizeof t->buf, 1);
    if (!br_ssl_server_reset(&t->sc)) {
        log_error("TLS: cannot start an engine (BearSSL error %d)", br_ssl_engine_last_error(e));
        tls_free(t);
        return NULL;
    }
    return t;
}

void tls_free(tls_conn *t)
{
    if (!t)
        return;
    if (t->x)
        free(t->x->der);
    free(t->x);
    wipe(&t->sc, sizeof t->sc);     /* session keys */
    free(t);
}

/* The engine closed: 0 after close_notify, else -1 with errno. */
static int engine_closed(tls_conn *t)
{
    int err = br_ssl_engine_last_error(&t->sc.eng);

    if (err == BR_ERR_OK)
        return 0;
    if (!t->logged++)
        log_debug("TLS: %s failed: BearSSL error %d%s", t->ready ? "connection" : "handshake",
                  err & 0xFF, err >= BR_ERR_SEND_FATAL_ALERT ? " (alert sent)"
                  : err >= BR_ERR_RECV_FATAL_ALERT ? " (alert received)" : "");
    errno = err == BR_ERR_IO || (err >= BR_ERR_RECV_FATAL_ALERT && err < BR_ERR_SEND_FATAL_ALERT)
            ? ECONNRESET : EPROTO;
    return -1;
}

/* The pump.  Run the engine until one of the states in goal is ready (1),
 * or, with goal 0, until no record waits to be sent (1).  Records waiting
 * to be sent go first; then the goal; then records are read.  Returns 0 at
 * the end of the stream (close_notify, or EOF from the peer) and -1 with
 * errno otherwise; EAGAIN sets t->want. */
static int engine_run(tls_conn *t, int fd, unsigned goal)
{
    br_ssl_engine_context *e = &t->sc.eng;
    unsigned char *p;
    size_t len;
    ssize_t r;

    for (;;) {
        unsigned st = br_ssl_engine_current_state(e);

        if (st & BR_SSL_CLOSED)
            return engine_closed(t);
        if (st & BR_SSL_SENDAPP)
            t->ready = 1;
        if (st & BR_SSL_SENDREC) {
            p = br_ssl_engine_sendrec_buf(e, &len);
            if ((r = send(fd, p, len, MSG_NOSIGNAL)) > 0) {
                br_ssl_engine_sendrec_ack(e, (size_t)r);
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (st & goal)      /* what was asked for is there: no stall */
                    return 1;
                t->want = EV_WRITE;
            }
            return -1;
        }
        if ((st & goal) || !goal)
            return 1;
        if (!(st & BR_SSL_RECVREC)) {   /* cannot happen with a BIDI buffer */
            errno = EPROTO;
            return -1;
        }
        p = br_ssl_engine_recvrec_buf(e, &len);
        if ((r = read(fd, p, len)) > 0) {
            br_ssl_engine_recvrec_ack(e, (size_t)r);
        } else if (r == 0) {
            return 0;               /* EOF without close_notify: a plain end, as
                                       with TCP; HTTP framing catches truncation */
        } else if (errno != EINTR) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                t->want = EV_READ;
            return -1;
        }
    }
}

ssize_t tls_read(tls_conn *t, int fd, void *buf, size_t n)
{
    unsigned char *p;
    size_t len;
    int r;

    if (n == 0)
        return 0;
    if ((r = engine_run(t, fd, BR_SSL_RECVAPP)) <= 0)
        return r;
    p = br_ssl_engine_recvapp_buf(&t->sc.eng, &len);
    if (len > n)
        len = n;
    memcpy(buf, p, len);
    br_ssl_engine_recvapp_ack(&t->sc.eng, len);
    return (ssize_t)len;
}

/* Writes are accepted into the engine, then flushed.  When everything was
 * accepted but the last records cannot leave yet (EAGAIN), reporting all
 * bytes as written would strand them: the caller would not come back.  So
 * one byte is reported as unwritten ("owed"); the next call, which must
 * start with that byte as after any short write, sends the records first
 * and then counts the byte without injecting it again. */
ssize_t tls_writev(tls_conn *t, int fd, const struct iovec *iov, int n)
{
    br_ssl_engine_context *e = &t->sc.eng;
    size_t done = 0, off = 0, len;
    int i = 0, r;

    if (t->owed) {
        if ((r = engine_run(t, fd, 0)) <= 0)
            return r == 0 ? (errno = EPIPE, -1) : -1;
        while (i < n && !iov[i].iov_len)
            i++;
        if (i < n)                  /* the owed byte is in the engine already */
            off = done = 1, t->owed = 0;
    }
    for (; i < n; i++, off = 0) {
        while (off < iov[i].iov_len) {
            unsigned char *p;
            if ((r = engine_run(t, fd, BR_SSL_SENDAPP)) <= 0) {
                if (r == 0)
                    errno = EPIPE;
                return done ? (ssize_t)done : -1;
            }
            p = br_ssl_engine_sendapp_buf(e, &len);
            if (len > iov[i].iov_len - off)
                len = iov[i].iov_len - off;
            memcpy(p, (const char *)iov[i].iov_base + off, len);
            br_ssl_engine_sendapp_ack(e, len);
            off += len, done += len;
        }
    }
    br_ssl_engine_flush(e, 0);      /* small responses leave now */
    if ((r = engine_run(t, fd, 0)) > 0 || done == 0)
        return (ssize_t)done;
    if (r == 0 || errno != EAGAIN)
        return r == 0 ? (errno = EPIPE, -1) : -1;
    t->owed = 1;
    if (done == 1)
        return -1;                  /* errno is EAGAIN, t->want EV_WRITE */
    return (ssize_t)(done - 1);
}

int tls_want(tls_conn *t)
{
    return t->want ? t->want : EV_READ;
}

size_t tls_pending(tls_conn *t)
{
    size_t len = 0;

    br_ssl_engine_recvapp_buf(&t->sc.eng, &len);
    return len;
}

void tls_close(tls_conn *t, int fd)
{
    br_ssl_engine_close(&t->sc.eng);
    engine_run(t, fd, 0);           /* best effort: never wait for the peer */
}

const char *tls_version(tls_conn *t)
{
    return t->ready && br_ssl_engine_get_version(&t->sc.eng) == BR_TLS12 ? "TLSv1.2" : NULL;
}

const char *tls_cipher(tls_conn *t)
{
#define SUITE(name) { BR_##name, #name }     /* BearSSL's names are IANA's */
    static const struct { uint16_t id; const char *name; } names[] = {
        SUITE(TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        SUITE(TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        SUITE(TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        SUITE(TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        SUITE(TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        SUITE(TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256) };

    for (size_t i = 0; t->ready && i < sizeof names / sizeof names[0]; i++)
        if (names[i].id == t->sc.eng.session.cipher_suite)
            return names[i].name;
    return NULL;
}

const char *tls_alpn(tls_conn *t)
{
    return t->ready ? br_ssl_engine_get_selected_protocol(&t->sc.eng) : NULL;
}

int tls_client_chain(tls_conn *t, const unsigned char **der, size_t *len, int i)
{
    if (!t->ready || !t->x || !t->x->verified || i < 0 || i >= t->x->n)
        return -1;
    *der = t->x->der + t->x->off[i];
    *len = t->x->off[i + 1] - t->x->off[i];
    return 0;
}
