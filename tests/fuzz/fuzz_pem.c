/* fuzz_pem.c -- libFuzzer harness for tls_load.c's loaders: PEM, certificate
 * chains, private keys (PKCS#1, SEC1, PKCS#8, encrypted PKCS#8), trust
 * anchors and CRLs.
 *
 *   clang -fsanitize=fuzzer,address,undefined -DGRANC_TLS -DGRANC_FUZZ -I. \
 *         tests/fuzz/fuzz_pem.c -lbearssl
 *
 * The loaders are static, so this file includes tls_load.c whole; GRANC_FUZZ
 * only lowers its PBKDF2 iteration cap so that no input costs seconds.
 * The input is one file, which the loaders read from a memfd as they would
 * read --ssl-certificate and the others.  PEM seeds are bundles
 * (certificate, key, CA, CRL in one file) so that every loader finds
 * something; an input that starts with 0x30 is DER instead, which the
 * harness wraps in PEM under each name the loaders look for.
 *
 * Checks, each abort()ing on failure:
 *   - PEM split invariance: pem_load() pushes the file to BearSSL's
 *     decoder in one piece.  A second reader pushes the same bytes one at a
 *     time (a split at every point), then cut once where the data says and
 *     in pieces of a size the data says, through the same pem_append(); the
 *     error or the list of objects (names, DER bytes) must be identical.
 *   - each loader with something to load (load_chain, load_key with the
 *     password "granc", load_anchors, load_crls) accepts or refuses without
 *     a sanitizer report or a leak;
 *   - a parsed CRL's issuer and serial numbers lie inside its DER, and the
 *     serials are sorted;
 *   - revocation: the file's certificates, taken as a client's chain, are
 *     judged by tls_chain_revoked() (binary search) as a linear search would.
 */
#include "tls_load.c"

#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static int memfd = -1;
static char path[64];

void log_msg(int level, const char *fmt, ...) { (void)level, (void)fmt; }

static void check(int cond)
{
    if (!cond)
        abort();
}

/* ---- PEM, piece by piece ------------------------------------------ */

typedef struct objs {
    pem_obj *v;
    size_t n;
    const char *why;                /* pem_load's error, or NULL */
} objs;

/* Push p[0..len) until it is all taken, handling events as pem_load does. */
static void push(br_pem_decoder_context *pc, const unsigned char *p, size_t len,
                 objs *r, pem_obj **cur, const unsigned char *text, size_t size)
{
    size_t off = 0;
    pem_obj *q;

    while (off < len && !r->why) {
        off += br_pem_decoder_push(pc, p + off, len - off);
        switch (br_pem_decoder_event(pc)) {
        case BR_PEM_BEGIN_OBJ:
            q = realloc(r->v, (r->n + 1) * sizeof *q);
            check(q != NULL);
            r->v = q;
            *cur = memset(&r->v[r->n++], 0, sizeof *q);
            snprintf((*cur)->name, sizeof (*cur)->name, "%.63s", br_pem_decoder_name(pc));
            br_pem_decoder_setdest(pc, pem_append, *cur);
            break;
        case BR_PEM_END_OBJ:
            check(*cur != NULL && !(*cur)->oom);
            *cur = NULL;
            break;
        case BR_PEM_ERROR:
            r->why = memmem(text, size, "Proc-Type:", 10) ? "legacy" : "malformed";
            break;
        }
    }
}

/* Read text[0..size) in pieces: cut once at cut, then every step bytes
 * (step 0: no further cuts); then the "\n" pem_load adds.  Each piece is
 * copied to a block of its exact size so ASan sees any read past it. */
static void pem_pieces(const unsigned char *text, size_t size, size_t cut, size_t step,
                       objs *r)
{
    br_pem_decoder_context pc;
    pem_obj *cur = NULL;
    size_t a = 0, b;
    unsigned char *p;

    memset(r, 0, sizeof *r);
    br_pem_decoder_init(&pc);
    while (a < size && !r->why) {
        b = a < cut ? cut : step ? a + step : size;
        b = b < size ? b : size;
        p = malloc(b - a);
        check(p != NULL);
        memcpy(p, text + a, b - a);
        push(&pc, p, b - a, r, &cur, text, size);
        free(p);
        a = b;
    }
    push(&pc, (const unsigned char *)"\n", 1, r, &cur, text, size);
    if (!r->why && cur)
        r->why = "truncated";
}

static void same_objs(const objs *a, const objs *b)
{
    check(!a->why == !b->why);
    if (a->why) {
        check(!strcmp(a->why, b->why));
        return;
    }
    check(a->n == b->n);
    for (size_t i = 0; i < a->n; i++)
        check(!strcmp(a->v[i].name, b->v[i].name) && a->v[i].len == b->v[i].len &&
              (a->v[i].len == 0 || !memcmp(a->v[i].der, b->v[i].der, a->v[i].len)));
}

/* pem_load's error message, in the reader's words. */
static const char *why_of(const char *err)
{
    static const char *const words[][2] = {
        { "legacy encrypted PEM key", "legacy" }, { "malformed PEM", "malformed" },
        { "truncated PEM", "truncated" },
    };

    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(err, words[i][0]))
            return words[i][1];
    return err;
}

/* What the loaders will find in the file. */
enum { HAS_CERT = 1, HAS_KEY = 2, HAS_CRL = 4 };

/* PEM as pem_load reads it, then in pieces (unless split is 0): one byte
 * at a time, and cut once then in steps, both where the data says.
 * Returns the HAS_* bits of the objects, or -1 if pem_load refused. */
static int fuzz_pem(const uint8_t *data, size_t size, int split)
{
    char err[512] = "";
    ld l = { err, sizeof err, "--fuzz", path };
    objs whole = { 0 }, piece;
    uint64_t h = 0;
    int has = 0;

    if (pem_load(&l, &whole.v, &whole.n, 0))
        whole.why = why_of(err);
    for (size_t i = 0; split && i < size; i++)
        h = h * 31 + data[i];
    for (int k = 0; split && k < 2; k++) {
        pem_pieces(data, size, k ? h % (size + 1) : 0, k ? 1 + h / 7 % 64 : 1, &piece);
        same_objs(&whole, &piece);
        pem_free(piece.v, piece.n, 0);
    }
    for (size_t i = 0; i < whole.n; i++) {
        const char *name = whole.v[i].name;
        has |= !strcmp(name, "CERTIFICATE") || !strcmp(name, "X509 CERTIFICATE") ? HAS_CERT
             : strstr(name, "PRIVATE KEY") ? HAS_KEY : !strcmp(name, "X509 CRL") ? HAS_CRL : 0;
    }
    pem_free(whole.v, whole.n, 0);
    return whole.why ? -1 : has;
}

/* ---- the loaders --------------------------------------------------- */

static void check_crls(const tls_ctx *c)
{
    for (size_t i = 0; i < c->ncrls; i++) {
        const crl *r = &c->crls[i];
        const unsigned char *lo = r->obj.der, *hi = lo + r->obj.len;

        check(r->issuer.p >= lo && r->issuer.p + r->issuer.n <= hi);
        for (size_t j = 0; j < r->nserials; j++) {
            check(r->serials[j].p >= lo && r->serials[j].p + r->serials[j].n <= hi);
            check(j == 0 || serial_cmp(&r->serials[j - 1], &r->serials[j]) <= 0);
        }
    }
}

/* tls_chain_revoked() with a linear search for the binary one. */
static unsigned revoked_linear(const xwrap *x)
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
            for (size_t k = 0; k < r->nserials; k++)
                if (span_eq(serial, r->serials[k].p, r->serials[k].n))
                    return BR_ERR_X509_NOT_TRUSTED;
        }
        if (!known && i == 0)
            return BR_ERR_X509_NOT_TRUSTED;
    }
    return 0;
}

/* The file's certificates as a client's chain, leaf first. */
static void check_revocation(tls_ctx *c)
{
    char err[512];
    ld l = { err, sizeof err, "--fuzz", path };
    xwrap x = { .ctx = c };
    pem_obj *v;
    size_t n;

    if (!c->ncrls || pem_load(&l, &v, &n, 0))
        return;
    for (size_t i = 0; i < n && x.n < TLS_MAX_CHAIN; i++)
        if (strstr(v[i].name, "CERTIFICATE")) {
            x.der = realloc(x.der, x.len + v[i].len + 1);
            check(x.der != NULL);
            if (v[i].len)
                memcpy(x.der + x.len, v[i].der, v[i].len);
            x.len += v[i].len;
            x.off[++x.n] = x.len;
        }
    check(tls_chain_revoked(&x) == revoked_linear(&x));
    free(x.der);
    pem_free(v, n, 0);
}

/* Each loader reads and decodes the file again, as tls_load does; those
 * that would find nothing are skipped (their "not found" is all they do
 * then), since BearSSL's PEM decoder is what each run spends most on. */
static void fuzz_loaders(int has)
{
    char err[512];
    ld l = { err, sizeof err, "--fuzz", path };
    tls_ctx *c = calloc(1, sizeof *c);

    check(c != NULL);
    if (has & HAS_CERT)
        load_chain(&l, c);
    /* Without a certificate, the key is still decoded: key_matches then
     * sees an empty one. */
    if (!c->chain)
        check((c->chain = calloc(1, sizeof *c->chain)) != NULL);
    if (has & HAS_KEY)
        load_key(&l, c, "granc");
    if (has & HAS_CERT)
        load_anchors(&l, c);
    if ((has & HAS_CRL) && load_crls(&l, c) == 0) {    /* tls_load keeps no bad file */
        check_crls(c);
        check_revocation(c);
    }
    ctx_free(c);
}

/* ---- libFuzzer ----------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    memfd = memfd_create("fuzz_pem", 0);
    check(memfd >= 0);
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    return 0;
}

/* One file through PEM and the loaders. */
static void fuzz_file(const unsigned char *text, size_t size, int split)
{
    int has;

    check(ftruncate(memfd, 0) == 0);
    check(pwrite(memfd, text, size, 0) == (ssize_t)size);
    if ((has = fuzz_pem(text, size, split)) > 0)
        fuzz_loaders(has);
}

/* DER input: the object under every name the loaders look for, so that
 * mutations reach the DER parsers without going through base64.  Keys go
 * last, as load_key takes the first "...PRIVATE KEY".  br_pem_encode's
 * regular PEM is not worth splitting: PEM inputs do that. */
static void fuzz_der(const uint8_t *data, size_t size)
{
    static const char *const files[][4] = {
        { "CERTIFICATE", "X509 CRL", "ENCRYPTED PRIVATE KEY", NULL },
        { "PRIVATE KEY", NULL },
    };

    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t len = 0, k;
        char *text;

        for (k = 0; files[f][k]; k++)
            len += br_pem_encode(NULL, data, size, files[f][k], 0);
        check((text = malloc(len + 1)) != NULL);
        for (k = 0, len = 0; files[f][k]; k++)
            len += br_pem_encode(text + len, data, size, files[f][k], 0);
        fuzz_file((const unsigned char *)text, len, 0);
        free(text);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] == 0x30)    /* a DER SEQUENCE; PEM text starts otherwise */
        fuzz_der(data, size);
    else
        fuzz_file(data, size, 1);
    return 0;
}
