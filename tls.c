/* tls.c -- TLS 1.2 server side with BearSSL.
 *
 * tls_load reads and checks the --ssl-* files once, in the master; the
 * workers inherit the result read-only (the session cache excepted: each
 * worker allocates its own on its first connection).  Each connection runs
 * its own BearSSL server engine, driven by one pump (engine_run) that maps
 * the engine's state onto non-blocking send/read and EV_READ/EV_WRITE, the
 * way libtls-bearssl's tls_run_until does.
 *
 * Profile, chosen by hand rather than with br_ssl_server_init_full_* (which
 * also enables TLS 1.0/1.1, 3DES and suites without forward secrecy):
 * TLS 1.2 only, ECDHE key exchange with AEAD suites only (AES-GCM and
 * ChaCha20-Poly1305), no renegotiation, ALPN "http/1.1".
 */
#include "tls.h"
#include "ev.h"
#include "log.h"

#include <bearssl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TLS_CACHE_BYTES     (256u << 10)  /* session cache per worker: 2,621
                                             sessions of 100 bytes each */
#define TLS_MAX_FILE        (64u << 20)   /* largest --ssl-* file; CRLs can be big */
#define TLS_MAX_CHAIN       8             /* client certificates kept per connection */
#define TLS_MAX_CHAIN_BYTES (64u << 10)   /* ... and their total size */
#ifndef GRANC_FUZZ
#define TLS_MAX_PBKDF2_ITER 10000000u     /* an encrypted key costing more is refused */
#else
#define TLS_MAX_PBKDF2_ITER 1000u         /* tests/fuzz_pem.c: keep every run fast */
#endif

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

static const uint16_t suites_ec[] = {
    BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 };
static const uint16_t suites_rsa[] = {
    BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 };
#define NSUITES 3
static const char *alpn_names[] = { "http/1.1" };
/* SHA-1 and SHA-2, in BearSSL's id order (br_sha1_ID .. br_sha512_ID). */
static const br_hash_class *const sha_hashes[] = {
    &br_sha1_vtable, &br_sha224_vtable, &br_sha256_vtable, &br_sha384_vtable,
    &br_sha512_vtable };

static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/* ---- loading: files, PEM, DER ------------------------------------- */

typedef struct ld {                 /* where tls_load reports its error */
    char *err;
    size_t errlen;
    const char *opt, *file;         /* the option and file being loaded */
} ld;

static int bad(ld *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(ld *l, const char *fmt, ...)
{
    char why[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(l->err, l->errlen, "%s: %s: %s", l->opt, l->file, why);
    return -1;
}

static unsigned char *read_file(ld *l, size_t *len)
{
    FILE *f = fopen(l->file, "rb");
    unsigned char *p = NULL, *q;
    size_t cap = 0, n = 0;

    while (f && !ferror(f) && !feof(f)) {
        if (n == cap) {
            if (cap >= TLS_MAX_FILE || !(q = realloc(p, cap = cap * 2 + 16384))) {
                bad(l, n >= TLS_MAX_FILE ? "file too large" : "out of memory");
                break;
            }
            p = q;
        }
        n += fread(p + n, 1, cap - n, f);
    }
    if (!f || ferror(f))
        bad(l, "%s", strerror(errno));
    if (!f || ferror(f) || !feof(f))
        free(p), p = NULL;
    if (f)
        fclose(f);
    *len = n;
    return p;
}

static void pem_append(void *ctx, const void *data, size_t len)
{
    pem_obj *o = ctx;

    if (o->len + len > o->cap) {
        size_t cap = 2 * (o->len + len);
        unsigned char *q = o->oom ? NULL : realloc(o->der, cap);
        if (!q) {
            o->oom = 1;
            return;
        }
        o->der = q;
        o->cap = cap;
    }
    memcpy(o->der + o->len, data, len);
    o->len += len;
}

static void pem_free(pem_obj *v, size_t n, int secret)
{
    for (size_t i = 0; v && i < n; i++) {
        if (secret && v[i].der)
            wipe(v[i].der, v[i].cap);
        free(v[i].der);
    }
    free(v);
}

/* All PEM objects of l->file; key files are wiped from memory after use. */
static int pem_load(ld *l, pem_obj **out, size_t *nobj, int secret)
{
    br_pem_decoder_context pc;
    size_t len, off = 0, n = 0;
    unsigned char *text = read_file(l, &len);
    pem_obj *v = NULL, *cur = NULL;
    const char *why = NULL;

    if (!text)
        return -1;
    br_pem_decoder_init(&pc);
    while (!why && off <= len) {    /* one extra "\n" ends a last line */
        int last = off == len;
        off += br_pem_decoder_push(&pc, last ? (const unsigned char *)"\n" : text + off,
                                   last ? 1 : len - off);
        switch (br_pem_decoder_event(&pc)) {
        case BR_PEM_BEGIN_OBJ:
            if (!(cur = realloc(v, (n + 1) * sizeof *v))) {
                why = "out of memory";
                break;
            }
            v = cur;
            cur = memset(&v[n++], 0, sizeof *v);
            snprintf(cur->name, sizeof cur->name, "%.63s", br_pem_decoder_name(&pc));
            br_pem_decoder_setdest(&pc, pem_append, cur);
            break;
        case BR_PEM_END_OBJ:
            why = cur && cur->oom ? "out of memory" : NULL;
            cur = NULL;
            break;
        case BR_PEM_ERROR:          /* headers: OpenSSL's old encrypted keys */
            why = memmem(text, len, "Proc-Type:", 10) ? "legacy encrypted PEM key "
                  "unsupported: convert it with openssl pkcs8 -topk8" : "malformed PEM";
            break;
        }
    }
    if (!why && cur)
        why = "truncated PEM";
    if (secret)
        wipe(text, len);
    free(text);
    if (why) {
        pem_free(v, n, secret);
        return bad(l, "%s", why);
    }
    *out = v;
    *nobj = n;
    return 0;
}

/* Take the next DER element off the front of in.  Its tag must be tag (-1:
 * any); val gets its contents, tlv (if not NULL) the whole element.
 * Returns the tag, or -1.  Single-byte tags and definite lengths only,
 * which is all that certificates, CRLs and PKCS#8 use. */
static int der_get(span *in, int tag, span *val, span *tlv)
{
    size_t h = 2, len, k;

    if (in->n < 2 || (in->p[0] & 0x1F) == 0x1F || (tag >= 0 && in->p[0] != tag))
        return -1;
    len = in->p[1];
    if (len & 0x80) {
        k = len & 0x7F;
        if (k == 0 || k > 4 || in->n < 2 + k)
            return -1;
        for (len = 0; k--; h++)
            len = len << 8 | in->p[h];
    }
    if (len > in->n - h)
        return -1;
    tag = in->p[0];
    if (tlv)
        *tlv = (span){ in->p, h + len };
    *val = (span){ in->p + h, len };
    in->p += h + len;
    in->n -= h + len;
    return tag;
}

static int der_peek(const span *in)
{
    return in->n ? in->p[0] : -1;
}

static int span_eq(span a, const unsigned char *b, size_t n)
{
    return a.n == n && !memcmp(a.p, b, n);
}

/* ---- encrypted PKCS#8: PBES2 = PBKDF2 + AES-CBC (RFC 8018) ---------- */

static const unsigned char OID_PBES2[] = { 0x2A,0x86,0x48,0x86,0xF7,0x0D,0x01,0x05,0x0D };
static const unsigned char OID_PBKDF2[] = { 0x2A,0x86,0x48,0x86,0xF7,0x0D,0x01,0x05,0x0C };
/* + 7..11: HMAC with SHA-1, SHA-224 .. SHA-512, as in sha_hashes[] */
static const unsigned char OID_HMAC[] = { 0x2A,0x86,0x48,0x86,0xF7,0x0D,0x02 };
static const unsigned char OID_AES_CBC[] = { 0x60,0x86,0x48,0x01,0x65,0x03,0x04,0x01 };

static void pbkdf2(const br_hash_class *h, const char *pw, span salt, uint32_t iter,
                   unsigned char *out, size_t olen)
{
    br_hmac_key_context kc;
    br_hmac_context hc;
    unsigned char u[64], t[64], ctr[4];
    size_t hlen, k;

    br_hmac_key_init(&kc, h, pw, strlen(pw));
    for (uint32_t blk = 1; olen > 0; blk++) {
        ctr[0] = (unsigned char)(blk >> 24), ctr[1] = (unsigned char)(blk >> 16);
        ctr[2] = (unsigned char)(blk >> 8), ctr[3] = (unsigned char)blk;
        br_hmac_init(&hc, &kc, 0);
        hlen = br_hmac_size(&hc);
        br_hmac_update(&hc, salt.p, salt.n);
        br_hmac_update(&hc, ctr, 4);
        br_hmac_out(&hc, u);
        memcpy(t, u, hlen);
        for (uint32_t i = 1; i < iter; i++) {
            br_hmac_init(&hc, &kc, 0);
            br_hmac_update(&hc, u, hlen);
            br_hmac_out(&hc, u);
            for (size_t j = 0; j < hlen; j++)
                t[j] ^= u[j];
        }
        k = olen < hlen ? olen : hlen;
        memcpy(out, t, k);
        out += k;
        olen -= k;
    }
    wipe(&kc, sizeof kc), wipe(&hc, sizeof hc), wipe(u, sizeof u), wipe(t, sizeof t);
}

/* Decrypt an EncryptedPrivateKeyInfo into a PKCS#8 PrivateKeyInfo, in
 * place in o.  Anything but PBES2 with PBKDF2 (HMAC-SHA1/SHA-2) and
 * AES-CBC is refused: that is what OpenSSL and Python's cryptography write. */
static int pkcs8_decrypt(ld *l, pem_obj *o, const char *pw)
{
    span in = { o->der, o->len }, epki, alg, oid, params, kdf, kp, salt, it, x, enc, iv, data;
    const br_hash_class *prf = &br_sha1_vtable;      /* RFC 8018's default */
    br_aes_ct_cbcdec_keys aes;
    unsigned char key[32], ivb[16];
    size_t klen, declared = 0, pad;
    uint32_t iter = 0;

    if (der_get(&in, 0x30, &epki, NULL) < 0 || der_get(&epki, 0x30, &alg, NULL) < 0
        || der_get(&alg, 0x06, &oid, NULL) < 0)
        return bad(l, "malformed encrypted key");
    if (!span_eq(oid, OID_PBES2, sizeof OID_PBES2)
        || der_get(&alg, 0x30, &params, NULL) < 0 || der_get(&params, 0x30, &kdf, NULL) < 0
        || der_get(&kdf, 0x06, &oid, NULL) < 0 || !span_eq(oid, OID_PBKDF2, sizeof OID_PBKDF2))
        return bad(l, "unsupported key encryption (PBES2 with PBKDF2 only)");
    if (der_get(&kdf, 0x30, &kp, NULL) < 0 || der_get(&kp, 0x04, &salt, NULL) < 0
        || der_get(&kp, 0x02, &it, NULL) < 0 || it.n > 4)
        return bad(l, "malformed encrypted key");
    for (size_t i = 0; i < it.n; i++)
        iter = iter << 8 | it.p[i];
    if (der_peek(&kp) == 0x02 && (der_get(&kp, 0x02, &x, NULL) < 0 || x.n != 1
                                  || !(declared = x.p[0])))
        return bad(l, "malformed encrypted key");
    if (der_peek(&kp) == 0x30) {
        if (der_get(&kp, 0x30, &x, NULL) < 0 || der_get(&x, 0x06, &oid, NULL) < 0)
            return bad(l, "malformed encrypted key");
        if (oid.n != 8 || memcmp(oid.p, OID_HMAC, 7) || oid.p[7] < 7 || oid.p[7] > 11)
            return bad(l, "unsupported key encryption (PBKDF2 with HMAC-SHA1/SHA2 only)");
        prf = sha_hashes[oid.p[7] - 7];
    }
    if (der_get(&params, 0x30, &enc, NULL) < 0 || der_get(&enc, 0x06, &oid, NULL) < 0
        || oid.n != 9 || memcmp(oid.p, OID_AES_CBC, 8)
        || (oid.p[8] != 2 && oid.p[8] != 22 && oid.p[8] != 42))
        return bad(l, "unsupported key encryption (AES-CBC only)");
    klen = oid.p[8] == 2 ? 16 : oid.p[8] == 22 ? 24 : 32;
    if (der_get(&enc, 0x04, &iv, NULL) < 0 || iv.n != 16 || (declared && declared != klen)
        || iter < 1 || iter > TLS_MAX_PBKDF2_ITER
        || der_get(&epki, 0x04, &data, NULL) < 0 || !data.n || data.n % 16)
        return bad(l, "malformed encrypted key");

    pbkdf2(prf, pw, salt, iter, key, klen);
    memcpy(ivb, iv.p, 16);
    memmove(o->der, data.p, data.n);
    o->len = data.n;
    br_aes_ct_cbcdec_init(&aes, key, klen);
    br_aes_ct_cbcdec_run(&aes, ivb, o->der, o->len);
    wipe(key, sizeof key), wipe(&aes, sizeof aes);
    pad = o->der[o->len - 1];       /* PKCS#7 padding; a wrong key garbles it */
    for (size_t i = 1; i <= pad; i++)
        if (pad > 16 || o->der[o->len - i] != pad)
            pad = 0;
    if (!pad)
        return bad(l, "wrong password");
    o->len -= pad;
    return 0;
}

/* ---- the certificate and its key ---------------------------------- */

static int load_chain(ld *l, tls_ctx *c)
{
    size_t n = 0;
    pem_obj *v = NULL;

    if (pem_load(l, &v, &n, 0))
        return -1;
    if (!(c->chain = calloc(n ? n : 1, sizeof *c->chain))) {
        pem_free(v, n, 0);
        return bad(l, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].name, "CERTIFICATE") || !strcmp(v[i].name, "X509 CERTIFICATE")) {
            c->chain[c->nchain++] = (br_x509_certificate){ v[i].der, v[i].len };
            v[i].der = NULL;        /* now owned by the chain */
        }
    pem_free(v, n, 0);
    return c->nchain ? 0 : bad(l, "no certificate found");
}

/* Does our private key belong to the leaf certificate?  For RSA, a test
 * signature must verify with the certificate's key (BearSSL keeps no n or
 * e in a private key, and br_rsa_compute_pubexp fails unless p and q are
 * 3 mod 4); for EC, the public point is recomputed and compared. */
static int key_matches(tls_ctx *c)
{
    br_x509_decoder_context dc;
    const br_x509_pkey *pk;
    int type = br_skey_decoder_key_type(&c->key);

    br_x509_decoder_init(&dc, 0, NULL);
    br_x509_decoder_push(&dc, c->chain[0].data, c->chain[0].data_len);
    if (!(pk = br_x509_decoder_get_pkey(&dc)) || pk->key_type != type)
        return 0;
    c->signer = br_x509_decoder_get_signer_key_type(&dc);
    if (type == BR_KEYTYPE_RSA) {
        const br_rsa_private_key *sk = br_skey_decoder_get_rsa(&c->key);
        unsigned char sig[512], hash[32] = "granc key check", back[32];
        size_t len = (sk->n_bitlen + 7) / 8;

        return len <= sizeof sig && len == pk->key.rsa.nlen
            && br_rsa_pkcs1_sign_get_default()(BR_HASH_OID_SHA256, hash, 32, sk, sig)
            && br_rsa_pkcs1_vrfy_get_default()(sig, len, BR_HASH_OID_SHA256, 32,
                                               &pk->key.rsa, back)
            && !memcmp(hash, back, 32);
    }
    br_ec_public_key pub;
    unsigned char q[BR_EC_KBUF_PUB_MAX_SIZE];
    return br_ec_compute_pub(br_ec_get_default(), &pub, q, br_skey_decoder_get_ec(&c->key))
        && pub.curve == pk->key.ec.curve
        && span_eq((span){ pub.q, pub.qlen }, pk->key.ec.q, pk->key.ec.qlen);
}

static int load_key(ld *l, tls_ctx *c, const char *pw)
{
    size_t n = 0, i;
    pem_obj *v = NULL;
    int rc = 0, enc = 0;

    if (pem_load(l, &v, &n, 1))
        return -1;
    for (i = 0; i < n; i++)
        if (strstr(v[i].name, "PRIVATE KEY"))
            break;
    if (i == n)
        rc = bad(l, "no private key found");
    else if ((enc = !strcmp(v[i].name, "ENCRYPTED PRIVATE KEY")) && (!pw || !*pw))
        rc = bad(l, "the key is encrypted: --ssl-keyfile-password is required");
    else if (enc)
        rc = pkcs8_decrypt(l, &v[i], pw);
    if (!rc) {
        br_skey_decoder_init(&c->key);
        br_skey_decoder_push(&c->key, v[i].der, v[i].len);
        if ((rc = br_skey_decoder_last_error(&c->key)))
            rc = enc ? bad(l, "wrong password")
                 : rc == BR_ERR_X509_UNSUPPORTED ? bad(l, "unsupported key type (RSA or EC only)")
                 : bad(l, "cannot decode the private key (BearSSL error %d)", rc);
    }
    pem_free(v, n, 1);
    if (rc)
        return rc;
    if (!key_matches(c))
        return -2;                  /* tls_load names both files */
    c->suites = br_skey_decoder_key_type(&c->key) == BR_KEYTYPE_EC ? suites_ec : suites_rsa;
    return 0;
}

/* ---- client certificates: anchors and CRLs ------------------------ */

static int load_anchors(ld *l, tls_ctx *c)
{
    size_t n = 0;
    pem_obj *v = NULL;
    int rc = 0;

    if (pem_load(l, &v, &n, 0))
        return -1;
    if (!(c->tas = calloc(n ? n : 1, sizeof *c->tas)))
        rc = bad(l, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        br_x509_decoder_context dc;
        pem_obj dn = { .len = 0 };
        const br_x509_pkey *pk;
        br_x509_trust_anchor *ta = &c->tas[c->ntas];
        unsigned char *k;

        if (strcmp(v[i].name, "CERTIFICATE") && strcmp(v[i].name, "X509 CERTIFICATE"))
            continue;
        br_x509_decoder_init(&dc, pem_append, &dn);
        br_x509_decoder_push(&dc, v[i].der, v[i].len);
        if (!(pk = br_x509_decoder_get_pkey(&dc)) || dn.oom) {
            free(dn.der);
            rc = bad(l, "cannot decode certificate %zu (BearSSL error %d)", i + 1,
                     br_x509_decoder_last_error(&dc));
            break;
        }
        /* Every certificate of the bundle is a CA: it may sign client
         * certificates, whatever its own extensions say, as in rustls. */
        *ta = (br_x509_trust_anchor){ { dn.der, dn.len }, BR_X509_TA_CA, *pk };
        if (pk->key_type == BR_KEYTYPE_RSA && (k = malloc(pk->key.rsa.nlen + pk->key.rsa.elen))) {
            ta->pkey.key.rsa.n = memcpy(k, pk->key.rsa.n, pk->key.rsa.nlen);
            ta->pkey.key.rsa.e = memcpy(k + pk->key.rsa.nlen, pk->key.rsa.e, pk->key.rsa.elen);
        } else if (pk->key_type == BR_KEYTYPE_EC && (k = malloc(pk->key.ec.qlen))) {
            ta->pkey.key.ec.q = memcpy(k, pk->key.ec.q, pk->key.ec.qlen);
        } else {
            free(dn.der);
            rc = bad(l, "out of memory");
            break;
        }
        c->ntas++;
    }
    pem_free(v, n, 0);
    return rc ? rc : c->ntas ? 0 : bad(l, "no certificate found");
}

static int serial_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->n != y->n ? (x->n < y->n ? -1 : 1) : memcmp(x->p, y->p, x->n);
}

/* Keep the issuer and the revoked serial numbers of a CertificateList
 * (RFC 5280 5.1).  The signature is not checked: the file comes from the
 * operator, and a CRL can only take access away. */
static int crl_parse(crl *r)
{
    span in = { r->obj.der, r->obj.len }, cl, tbs, x, list, entry, serial;
    size_t cap = 0;

    if (der_get(&in, 0x30, &cl, NULL) < 0 || der_get(&cl, 0x30, &tbs, NULL) < 0
        || (der_peek(&tbs) == 0x02 && der_get(&tbs, 0x02, &x, NULL) < 0)
        || der_get(&tbs, 0x30, &x, NULL) < 0                    /* signature */
        || der_get(&tbs, 0x30, &x, &r->issuer) < 0
        || (der_peek(&tbs) != 0x17 && der_peek(&tbs) != 0x18)  /* thisUpdate */
        || der_get(&tbs, -1, &x, NULL) < 0
        || ((der_peek(&tbs) == 0x17 || der_peek(&tbs) == 0x18)
            && der_get(&tbs, -1, &x, NULL) < 0))               /* nextUpdate */
        return -1;
    if (der_peek(&tbs) != 0x30)
        return 0;                   /* nothing revoked */
    if (der_get(&tbs, 0x30, &list, NULL) < 0)
        return -1;
    while (list.n) {
        if (der_get(&list, 0x30, &entry, NULL) < 0 || der_get(&entry, 0x02, &serial, NULL) < 0)
            return -1;
        if (r->nserials == cap) {
            span *q = realloc(r->serials, (cap = cap ? 2 * cap : 16) * sizeof *q);
            if (!q)
                return -1;
            r->serials = q;
        }
        r->serials[r->nserials++] = serial;
    }
    if (r->nserials)                /* qsort and bsearch want a real array */
        qsort(r->serials, r->nserials, sizeof *r->serials, serial_cmp);
    return 0;
}

static int load_crls(ld *l, tls_ctx *c)
{
    size_t n = 0, before = c->ncrls;
    pem_obj *v = NULL;
    int rc = 0;

    if (pem_load(l, &v, &n, 0))
        return -1;
    for (size_t i = 0; !rc && i < n; i++) {
        crl *q;
        if (strcmp(v[i].name, "X509 CRL"))
            continue;
        if (!(q = realloc(c->crls, (c->ncrls + 1) * sizeof *q))) {
            rc = bad(l, "out of memory");
            break;
        }
        c->crls = q;
        q = memset(&c->crls[c->ncrls++], 0, sizeof *q);
        q->obj = v[i];
        v[i].der = NULL;
        if (crl_parse(q))
            rc = bad(l, "cannot decode CRL %zu", i + 1);
    }
    pem_free(v, n, 0);
    return rc ? rc : c->ncrls > before ? 0 : bad(l, "no X509 CRL found");
}

/* The serial number and the issuer (whole Name element) of a certificate. */
static int cert_ids(const unsigned char *der, size_t len, span *serial, span *issuer)
{
    span in = { der, len }, cert, tbs, x;

    return der_get(&in, 0x30, &cert, NULL) < 0 || der_get(&cert, 0x30, &tbs, NULL) < 0
        || (der_peek(&tbs) == 0xA0 && der_get(&tbs, 0xA0, &x, NULL) < 0)
        || der_get(&tbs, 0x02, serial, NULL) < 0 || der_get(&tbs, 0x30, &x, NULL) < 0
        || der_get(&tbs, 0x30, &x, issuer) < 0 ? -1 : 0;
}

/* Revocation, after BearSSL accepted the chain: a certificate that a CRL of
 * its issuer lists is refused; so is a leaf whose issuer has no CRL at all
 * (its status is unknown: rustls and OpenSSL refuse it too).  Other
 * certificates of the chain without a CRL pass. */
static unsigned chain_revoked(const xwrap *x)
{
    const tls_ctx *c = x->ctx;

    for (int i = 0; i < x->n; i++) {
        span serial, issuer;
        int known = 0;

        if (cert_ids(x->der + x->off[i], x->off[i + 1] - x->off[i], &serial, &issuer))
            return BR_ERR_X509_UNEXPECTED;
        for (size_t j = 0; j < c->ncrls; j++) {
            const crl *r = &c->crls[j];
            if (!span_eq(issuer, r->issuer.p, r->issuer.n))
                continue;
            known = 1;
            if (r->nserials && bsearch(&serial, r->serials, r->nserials, sizeof serial, serial_cmp)) {
                log_debug("TLS: client certificate %d of the chain is revoked", i);
                return BR_ERR_X509_NOT_TRUSTED;
            }
        }
        if (!known && i == 0) {
            log_debug("TLS: no CRL for the client certificate's issuer");
            return BR_ERR_X509_NOT_TRUSTED;
        }
    }
    return 0;
}

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
        err = chain_revoked(x);
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

/* ---- the context --------------------------------------------------- */

static void ctx_free(tls_ctx *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nchain; i++)
        free(c->chain[i].data);
    for (size_t i = 0; i < c->ntas; i++) {
        br_x509_pkey *pk = &c->tas[i].pkey;
        free(c->tas[i].dn.data);
        free(pk->key_type == BR_KEYTYPE_RSA ? pk->key.rsa.n : pk->key.ec.q);
    }
    for (size_t i = 0; i < c->ncrls; i++) {
        free(c->crls[i].obj.der);
        free(c->crls[i].serials);
    }
    free(c->chain), free(c->tas), free(c->crls), free(c->cache_store);
    wipe(&c->key, sizeof c->key);
    free(c);
}

/* granc.c has refused --ssl-protocol-min tls1.3: BearSSL speaks TLS 1.2 only. */
tls_ctx *tls_load(const config *cfg, char *err, size_t errlen)
{
    tls_ctx *c = calloc(1, sizeof *c);
    ld l;
    int rc;

    if (!c) {
        snprintf(err, errlen, "TLS: out of memory");
        return NULL;
    }
    if (!cfg->ssl_certificate || !cfg->ssl_keyfile) {
        snprintf(err, errlen, "%s: required with %s",
                 cfg->ssl_certificate ? "--ssl-keyfile" : "--ssl-certificate",
                 cfg->ssl_certificate ? "--ssl-certificate" : "--ssl-keyfile");
        goto fail;
    }
    l = (ld){ err, errlen, "--ssl-certificate", cfg->ssl_certificate };
    if (load_chain(&l, c))
        goto fail;
    l = (ld){ err, errlen, "--ssl-keyfile", cfg->ssl_keyfile };
    if ((rc = load_key(&l, c, cfg->ssl_keyfile_password)) == -2)
        snprintf(err, errlen, "--ssl-certificate: %s: the key does not match the "
                 "certificate (--ssl-keyfile %s)", cfg->ssl_certificate, cfg->ssl_keyfile);
    if (rc)
        goto fail;
    if (cfg->ssl_ca) {
        l = (ld){ err, errlen, "--ssl-ca", cfg->ssl_ca };
        if (load_anchors(&l, c))
            goto fail;
        c->client_auth = cfg->ssl_client_verify ? 2 : 1;
    } else if (cfg->ssl_client_verify) {
        log_warn("--ssl-client-verify without --ssl-ca: client certificates not requested");
    }
    for (int i = 0; i < cfg->ssl_crl.n && c->client_auth; i++) {
        l = (ld){ err, errlen, "--ssl-crl", cfg->ssl_crl.v[i] };
        if (load_crls(&l, c))
            goto fail;
    }
    if (cfg->ssl_crl.n && !c->client_auth)
        log_warn("--ssl-crl without --ssl-ca: ignored");
    return c;
fail:
    ctx_free(c);
    return NULL;
}

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
    br_ssl_engine_set_protocol_names(e, alpn_names, 1);   /* a mismatch is no error */

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
