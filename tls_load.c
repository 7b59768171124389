/* tls_load.c -- tls_load and its parts: reading the --ssl-* files, PEM,
 * DER, encrypted PKCS#8, the certificate and its key, CA bundles and CRLs,
 * into the tls_ctx that tls.c's engines use; and tls_chain_revoked, the
 * check of a client's chain against those CRLs.
 *
 * tls_load reads and checks the files once, in the master; the workers
 * inherit the result read-only (the session cache excepted: each worker
 * allocates its own on its first connection, in tls_new).
 */
#include "tls_int.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TLS_MAX_FILE        (64u << 20)   /* largest --ssl-* file; CRLs can be big */
#ifndef GRANC_FUZZ
#define TLS_MAX_PBKDF2_ITER 10000000u     /* an encrypted key costing more is refused */
#else
#define TLS_MAX_PBKDF2_ITER 1000u         /* tests/fuzz_pem.c: keep every run fast */
#endif

static const uint16_t suites_ec[] = {
    BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 };
static const uint16_t suites_rsa[] = {
    BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 };

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
unsigned tls_chain_revoked(const xwrap *x)
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
    c->http = cfg->http;
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
