/* tls_int.h -- what tls.c (the per-connection engine) and tls_load.c (the
 * --ssl-* files) share: the loaded context, the client-chain validator
 * whose chain tls_chain_revoked checks, and small helpers.  Nothing else
 * includes it but tests/fuzz/fuzz_pem.c, through tls_load.c.
 */
#ifndef TLS_INT_H
#define TLS_INT_H

#include "tls.h"

#include <bearssl.h>

#define TLS_MAX_CHAIN       8             /* client certificates kept per connection */
#define NSUITES 3                         /* in suites_ec, suites_rsa (tls_load.c) */

typedef struct span {               /* bytes owned by someone else */
    const unsigned char *p;
    size_t n;
} span;

typedef struct pem_obj {            /* one decoded PEM object */
    char name[64];
    unsigned char *der;
    size_t len, cap;
    int oom;
} pem_obj;

typedef struct crl {                /* what granc uses of an X.509 CRL */
    pem_obj obj;                    /* its DER, which the spans point into */
    span issuer;                    /* the issuer Name, whole DER element */
    span *serials;                  /* revoked serial numbers, sorted */
    size_t nserials;
} crl;

struct tls_ctx {
    br_x509_certificate *chain;     /* ours, leaf first */
    size_t nchain;
    br_skey_decoder_context key;    /* the private key lives in here */
    const uint16_t *suites;
    br_x509_trust_anchor *tas;      /* --ssl-ca */
    size_t ntas;
    crl *crls;                      /* --ssl-crl */
    size_t ncrls;
    int client_auth;                /* 0: none, 1: optional, 2: required */
    int http;                       /* --http: the ALPN names offered */
    int signer;                     /* key type of our certificate's issuer */
    br_ssl_session_cache_lru cache; /* per worker: see tls_new */
    unsigned char *cache_store;
};

/* The client's X.509 validation: BearSSL's minimal engine, plus a copy of
 * each certificate for tls_client_chain and the CRL check in end_chain,
 * since BearSSL itself knows nothing of CRLs. */
typedef struct xwrap {
    const br_x509_class *vtable;    /* first: BearSSL passes &vtable around */
    br_x509_minimal_context inner;
    const tls_ctx *ctx;
    unsigned char *der;             /* the chain, certificate i at [off[i], off[i+1]) */
    size_t len, cap, off[TLS_MAX_CHAIN + 1];
    int n, overflow;
    int verified;                   /* end_chain accepted it: only then is it shown */
} xwrap;

/* SHA-1 and SHA-2, in BearSSL's id order (br_sha1_ID .. br_sha512_ID). */
static const br_hash_class *const sha_hashes[] = {
    &br_sha1_vtable, &br_sha224_vtable, &br_sha256_vtable, &br_sha384_vtable,
    &br_sha512_vtable };

static inline void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/* tls_load.c: the revocation check of a client's chain, for xw_end_chain. */
unsigned tls_chain_revoked(const xwrap *x);

#endif
