/* tls.h -- TLS 1.2 with BearSSL (tls.c), built when bearssl.h is found
 * (the Makefile then defines GRANC_TLS).  This is the one place that
 * knows whether TLS is in: without it the calls below are inline stubs.
 */
#ifndef TLS_H
#define TLS_H

#include <errno.h>
#include <stdio.h>
#include "ev.h"
#include "granc.h"

#ifdef GRANC_TLS
#define TLS_BUILT 1

/* Load and check --ssl-* files (chain, key with its password, CA, CRLs)
 * in the master, before any worker starts; workers inherit the result.
 * NULL with a one-line reason in err (naming the file) on failure. */
tls_ctx *tls_load(const config *cfg, char *err, size_t errlen);
/* A server engine for one accepted connection; NULL when out of memory. */
tls_conn *tls_new(tls_ctx *ctx);
void tls_free(tls_conn *t);
/* Like read(2)/writev(2) on fd through the engine: bytes, 0 at a clean
 * end, -1 with errno (EAGAIN: see tls_want for the direction). */
ssize_t tls_read(tls_conn *t, int fd, void *buf, size_t n);
ssize_t tls_writev(tls_conn *t, int fd, const struct iovec *iov, int n);
/* After EAGAIN: EV_READ or EV_WRITE, what the engine waits for. */
int tls_want(tls_conn *t);
/* Decrypted bytes held by the engine: the fd will not signal them, so
 * read them before waiting for EV_READ. */
size_t tls_pending(tls_conn *t);
/* Send close_notify (best effort, non-blocking). */
void tls_close(tls_conn *t, int fd);
/* Facts for the app once the handshake is done: "TLSv1.2", the cipher
 * suite's IANA name, the ALPN protocol; the client's chain as DER. */
const char *tls_version(tls_conn *t);
const char *tls_cipher(tls_conn *t);
const char *tls_alpn(tls_conn *t);
int tls_client_chain(tls_conn *t, const unsigned char **der, size_t *len, int i);

#else
#define TLS_BUILT 0

/* Without BearSSL: the same calls, so that callers need no #ifdef.  No
 * connection ever has an engine (c->tls stays NULL), so only tls_load runs:
 * granc.c refuses the --ssl-* options before that. */
static inline tls_ctx *tls_load(const config *cfg, char *err, size_t errlen)
{
    (void)cfg;
    snprintf(err, errlen, "--ssl-certificate: granc was built without TLS (BearSSL)");
    return NULL;
}
static inline tls_conn *tls_new(tls_ctx *ctx) { (void)ctx; return NULL; }
static inline void tls_free(tls_conn *t) { (void)t; }
static inline ssize_t tls_read(tls_conn *t, int fd, void *buf, size_t n)
{
    (void)t, (void)fd, (void)buf, (void)n;
    errno = ENOSYS;
    return -1;
}
static inline ssize_t tls_writev(tls_conn *t, int fd, const struct iovec *iov, int n)
{
    (void)t, (void)fd, (void)iov, (void)n;
    errno = ENOSYS;
    return -1;
}
static inline int tls_want(tls_conn *t) { (void)t; return EV_READ; }
static inline size_t tls_pending(tls_conn *t) { (void)t; return 0; }
static inline void tls_close(tls_conn *t, int fd) { (void)t, (void)fd; }
static inline const char *tls_version(tls_conn *t) { (void)t; return NULL; }
static inline const char *tls_cipher(tls_conn *t) { (void)t; return NULL; }
static inline const char *tls_alpn(tls_conn *t) { (void)t; return NULL; }
static inline int tls_client_chain(tls_conn *t, const unsigned char **der, size_t *len, int i)
{
    (void)t, (void)der, (void)len, (void)i;
    return -1;
}

#endif

#endif
