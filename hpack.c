/* hpack.c -- HPACK (RFC 7541): the decoder with its dynamic table, a
 * stateless encoder, and the Huffman code of Appendix B.  See hpack.h.
 *
 * The decoder trusts nothing: every integer is bounded to 32 bits, every
 * length to the input left, every index to the tables, and the memory it
 * keeps is bounded by the table limit and by the largest block seen.
 */
#include "hpack.h"

#include <stdlib.h>
#include <string.h>

/* ---- static table (Appendix A) -------------------------------------------- */

#define S(n, v) { n, v, sizeof n - 1, sizeof v - 1 }
static const struct { const char *name, *value; size_t nn, vn; } stat_tab[] = {
    S("", ""),                      /* index 0 is not a field */
    S(":authority", ""), S(":method", "GET"), S(":method", "POST"), S(":path", "/"),
    S(":path", "/index.html"), S(":scheme", "http"), S(":scheme", "https"),
    S(":status", "200"), S(":status", "204"), S(":status", "206"), S(":status", "304"),
    S(":status", "400"), S(":status", "404"), S(":status", "500"), S("accept-charset", ""),
    S("accept-encoding", "gzip, deflate"), S("accept-language", ""), S("accept-ranges", ""),
    S("accept", ""), S("access-control-allow-origin", ""), S("age", ""), S("allow", ""),
    S("authorization", ""), S("cache-control", ""), S("content-disposition", ""),
    S("content-encoding", ""), S("content-language", ""), S("content-length", ""),
    S("content-location", ""), S("content-range", ""), S("content-type", ""), S("cookie", ""),
    S("date", ""), S("etag", ""), S("expect", ""), S("expires", ""), S("from", ""),
    S("host", ""), S("if-match", ""), S("if-modified-since", ""), S("if-none-match", ""),
    S("if-range", ""), S("if-unmodified-since", ""), S("last-modified", ""), S("link", ""),
    S("location", ""), S("max-forwards", ""), S("proxy-authenticate", ""),
    S("proxy-authorization", ""), S("range", ""), S("referer", ""), S("refresh", ""),
    S("retry-after", ""), S("server", ""), S("set-cookie", ""),
    S("strict-transport-security", ""), S("transfer-encoding", ""), S("user-agent", ""),
    S("vary", ""), S("via", ""), S("www-authenticate", ""),
};
#undef S
#define NSTATIC 61

/* ---- Huffman code (Appendix B) -------------------------------------------- */

/* The code of each symbol, 0..255 and EOS (256): bits right-aligned. */
static const struct { uint32_t code; uint8_t len; } huff[257] = {
    {0x1ff8, 13}, {0x7fffd8, 23}, {0xfffffe2, 28}, {0xfffffe3, 28},
    {0xfffffe4, 28}, {0xfffffe5, 28}, {0xfffffe6, 28}, {0xfffffe7, 28},
    {0xfffffe8, 28}, {0xffffea, 24}, {0x3ffffffc, 30}, {0xfffffe9, 28},
    {0xfffffea, 28}, {0x3ffffffd, 30}, {0xfffffeb, 28}, {0xfffffec, 28},
    {0xfffffed, 28}, {0xfffffee, 28}, {0xfffffef, 28}, {0xffffff0, 28},
    {0xffffff1, 28}, {0xffffff2, 28}, {0x3ffffffe, 30}, {0xffffff3, 28},
    {0xffffff4, 28}, {0xffffff5, 28}, {0xffffff6, 28}, {0xffffff7, 28},
    {0xffffff8, 28}, {0xffffff9, 28}, {0xffffffa, 28}, {0xffffffb, 28},
    {0x14, 6}, {0x3f8, 10}, {0x3f9, 10}, {0xffa, 12},
    {0x1ff9, 13}, {0x15, 6}, {0xf8, 8}, {0x7fa, 11},
    {0x3fa, 10}, {0x3fb, 10}, {0xf9, 8}, {0x7fb, 11},
    {0xfa, 8}, {0x16, 6}, {0x17, 6}, {0x18, 6},
    {0x0, 5}, {0x1, 5}, {0x2, 5}, {0x19, 6},
    {0x1a, 6}, {0x1b, 6}, {0x1c, 6}, {0x1d, 6},
    {0x1e, 6}, {0x1f, 6}, {0x5c, 7}, {0xfb, 8},
    {0x7ffc, 15}, {0x20, 6}, {0xffb, 12}, {0x3fc, 10},
    {0x1ffa, 13}, {0x21, 6}, {0x5d, 7}, {0x5e, 7},
    {0x5f, 7}, {0x60, 7}, {0x61, 7}, {0x62, 7},
    {0x63, 7}, {0x64, 7}, {0x65, 7}, {0x66, 7},
    {0x67, 7}, {0x68, 7}, {0x69, 7}, {0x6a, 7},
    {0x6b, 7}, {0x6c, 7}, {0x6d, 7}, {0x6e, 7},
    {0x6f, 7}, {0x70, 7}, {0x71, 7}, {0x72, 7},
    {0xfc, 8}, {0x73, 7}, {0xfd, 8}, {0x1ffb, 13},
    {0x7fff0, 19}, {0x1ffc, 13}, {0x3ffc, 14}, {0x22, 6},
    {0x7ffd, 15}, {0x3, 5}, {0x23, 6}, {0x4, 5},
    {0x24, 6}, {0x5, 5}, {0x25, 6}, {0x26, 6},
    {0x27, 6}, {0x6, 5}, {0x74, 7}, {0x75, 7},
    {0x28, 6}, {0x29, 6}, {0x2a, 6}, {0x7, 5},
    {0x2b, 6}, {0x76, 7}, {0x2c, 6}, {0x8, 5},
    {0x9, 5}, {0x2d, 6}, {0x77, 7}, {0x78, 7},
    {0x79, 7}, {0x7a, 7}, {0x7b, 7}, {0x7ffe, 15},
    {0x7fc, 11}, {0x3ffd, 14}, {0x1ffd, 13}, {0xffffffc, 28},
    {0xfffe6, 20}, {0x3fffd2, 22}, {0xfffe7, 20}, {0xfffe8, 20},
    {0x3fffd3, 22}, {0x3fffd4, 22}, {0x3fffd5, 22}, {0x7fffd9, 23},
    {0x3fffd6, 22}, {0x7fffda, 23}, {0x7fffdb, 23}, {0x7fffdc, 23},
    {0x7fffdd, 23}, {0x7fffde, 23}, {0xffffeb, 24}, {0x7fffdf, 23},
    {0xffffec, 24}, {0xffffed, 24}, {0x3fffd7, 22}, {0x7fffe0, 23},
    {0xffffee, 24}, {0x7fffe1, 23}, {0x7fffe2, 23}, {0x7fffe3, 23},
    {0x7fffe4, 23}, {0x1fffdc, 21}, {0x3fffd8, 22}, {0x7fffe5, 23},
    {0x3fffd9, 22}, {0x7fffe6, 23}, {0x7fffe7, 23}, {0xffffef, 24},
    {0x3fffda, 22}, {0x1fffdd, 21}, {0xfffe9, 20}, {0x3fffdb, 22},
    {0x3fffdc, 22}, {0x7fffe8, 23}, {0x7fffe9, 23}, {0x1fffde, 21},
    {0x7fffea, 23}, {0x3fffdd, 22}, {0x3fffde, 22}, {0xfffff0, 24},
    {0x1fffdf, 21}, {0x3fffdf, 22}, {0x7fffeb, 23}, {0x7fffec, 23},
    {0x1fffe0, 21}, {0x1fffe1, 21}, {0x3fffe0, 22}, {0x1fffe2, 21},
    {0x7fffed, 23}, {0x3fffe1, 22}, {0x7fffee, 23}, {0x7fffef, 23},
    {0xfffea, 20}, {0x3fffe2, 22}, {0x3fffe3, 22}, {0x3fffe4, 22},
    {0x7ffff0, 23}, {0x3fffe5, 22}, {0x3fffe6, 22}, {0x7ffff1, 23},
    {0x3ffffe0, 26}, {0x3ffffe1, 26}, {0xfffeb, 20}, {0x7fff1, 19},
    {0x3fffe7, 22}, {0x7ffff2, 23}, {0x3fffe8, 22}, {0x1ffffec, 25},
    {0x3ffffe2, 26}, {0x3ffffe3, 26}, {0x3ffffe4, 26}, {0x7ffffde, 27},
    {0x7ffffdf, 27}, {0x3ffffe5, 26}, {0xfffff1, 24}, {0x1ffffed, 25},
    {0x7fff2, 19}, {0x1fffe3, 21}, {0x3ffffe6, 26}, {0x7ffffe0, 27},
    {0x7ffffe1, 27}, {0x3ffffe7, 26}, {0x7ffffe2, 27}, {0xfffff2, 24},
    {0x1fffe4, 21}, {0x1fffe5, 21}, {0x3ffffe8, 26}, {0x3ffffe9, 26},
    {0xffffffd, 28}, {0x7ffffe3, 27}, {0x7ffffe4, 27}, {0x7ffffe5, 27},
    {0xfffec, 20}, {0xfffff3, 24}, {0xfffed, 20}, {0x1fffe6, 21},
    {0x3fffe9, 22}, {0x1fffe7, 21}, {0x1fffe8, 21}, {0x7ffff3, 23},
    {0x3fffea, 22}, {0x3fffeb, 22}, {0x1ffffee, 25}, {0x1ffffef, 25},
    {0xfffff4, 24}, {0xfffff5, 24}, {0x3ffffea, 26}, {0x7ffff4, 23},
    {0x3ffffeb, 26}, {0x7ffffe6, 27}, {0x3ffffec, 26}, {0x3ffffed, 26},
    {0x7ffffe7, 27}, {0x7ffffe8, 27}, {0x7ffffe9, 27}, {0x7ffffea, 27},
    {0x7ffffeb, 27}, {0xffffffe, 28}, {0x7ffffec, 27}, {0x7ffffed, 27},
    {0x7ffffee, 27}, {0x7ffffef, 27}, {0x7fffff0, 27}, {0x3ffffee, 26},
    {0x3fffffff, 30},
};

/* The code is canonical: codes of one length are consecutive, in the
 * order of their symbols, and each length continues where the shorter
 * one ended.  So a decoder needs only how many codes each length has and
 * the symbols in code order (from the table above, sorted by length). */
static const uint8_t huff_count[31] = {
    0, 0, 0, 0, 0, 10, 26, 32, 6, 0, 5, 3, 2, 6, 2, 3,
    0, 0, 0, 3, 8, 13, 26, 29, 12, 4, 15, 19, 29, 0, 4,
};
static const uint16_t huff_sym[257] = {
    48, 49, 50, 97, 99, 101, 105, 111, 115, 116, 32, 37, 45, 46, 47, 51,
    52, 53, 54, 55, 56, 57, 61, 65, 95, 98, 100, 102, 103, 104, 108, 109,
    110, 112, 114, 117, 58, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76,
    77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 89, 106, 107, 113, 118,
    119, 120, 121, 122, 38, 42, 44, 59, 88, 90, 33, 34, 40, 41, 63, 39,
    43, 124, 35, 62, 0, 36, 64, 91, 93, 126, 94, 125, 60, 96, 123, 92,
    195, 208, 128, 130, 131, 162, 184, 194, 224, 226, 153, 161, 167, 172, 176, 177,
    179, 209, 216, 217, 227, 229, 230, 129, 132, 133, 134, 136, 146, 154, 156, 160,
    163, 164, 169, 170, 173, 178, 181, 185, 186, 187, 189, 190, 196, 198, 228, 232,
    233, 1, 135, 137, 138, 139, 140, 141, 143, 147, 149, 150, 151, 152, 155, 157,
    158, 165, 166, 168, 174, 175, 180, 182, 183, 188, 191, 197, 231, 239, 9, 142,
    144, 145, 148, 159, 171, 206, 215, 225, 236, 237, 199, 207, 234, 235, 192, 193,
    200, 201, 202, 205, 210, 213, 218, 219, 238, 240, 242, 243, 255, 203, 204, 211,
    212, 214, 221, 222, 223, 241, 244, 245, 246, 247, 248, 250, 251, 252, 253, 254,
    2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 20,
    21, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127, 220, 249, 10, 13, 22,
    256,
};

static unsigned lower(unsigned c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;  /* ASCII only, no locale */
}

/* Encoded length in bytes, of the bytes lowercased when low is set. */
static size_t huff_len(const unsigned char *in, size_t n, int low)
{
    uint64_t bits = 0;
    size_t i;

    for (i = 0; i < n; i++)
        bits += huff[low ? lower(in[i]) : in[i]].len;
    return (size_t)((bits + 7) / 8);
}

static size_t huff_encode(unsigned char *out, const unsigned char *in, size_t n, int low)
{
    uint64_t acc = 0;               /* only its low `bits` bits are pending */
    unsigned bits = 0;
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        unsigned c = low ? lower(in[i]) : in[i];

        acc = acc << huff[c].len | huff[c].code;
        bits += huff[c].len;
        while (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits)                       /* pad with the most significant bits of EOS */
        out[o++] = (unsigned char)(acc << (8 - bits) | 0xFF >> bits);
    return o;
}

size_t hpack_huff_len(const unsigned char *in, size_t n)
{
    return huff_len(in, n, 0);
}

size_t hpack_huff_encode(unsigned char *out, const unsigned char *in, size_t n)
{
    return huff_encode(out, in, n, 0);
}

/* Bit by bit, as a canonical code: after len bits, the codes of length
 * len are first .. first+count-1, and index counts the symbols of the
 * shorter lengths.  The code is complete, so a symbol ends within 30. */
ssize_t hpack_huff_decode(char *out, size_t cap, const unsigned char *in, size_t n)
{
    uint32_t code = 0, first = 0;
    unsigned len = 0, index = 0, sym;
    size_t i, o = 0;
    int b;

    for (i = 0; i < n; i++) {
        for (b = 7; b >= 0; b--) {
            code = code << 1 | ((in[i] >> b) & 1);
            len++;
            if (code - first < huff_count[len]) {
                sym = huff_sym[index + code - first];
                if (sym == 256 || o == cap)  /* EOS in a string is an error (5.2) */
                    return -1;
                out[o++] = (char)sym;
                code = first = index = len = 0;
            } else {
                index += huff_count[len];
                first = (first + huff_count[len]) << 1;
            }
        }
    }
    /* Padding: a prefix of EOS (all ones), shorter than a byte. */
    if (len > 7 || code != (1u << len) - 1)
        return -1;
    return (ssize_t)o;
}

/* ---- decoder --------------------------------------------------------------- */

void hpack_dec_init(hpack_dec *d, size_t limit)
{
    memset(d, 0, sizeof *d);
    d->limit = d->max = limit < UINT32_MAX ? limit : UINT32_MAX;  /* offsets are 32-bit */
}

void hpack_dec_free(hpack_dec *d)
{
    free(d->ent);
    free(d->data);
    free(d->scratch);
    d->ent = NULL;
    d->data = d->scratch = NULL;
    d->nent = d->entcap = d->dlen = d->dcap = d->scap = d->size = 0;
}

/* The ring slot of dynamic index i (0 = the newest entry). */
static struct hpack_ent *ent_at(hpack_dec *d, size_t i)
{
    return &d->ent[(d->head + d->entcap - i) % d->entcap];
}

/* Drop the oldest entries until the table's size is at most want.  Their
 * bytes stay where they are, so a name being copied from one survives. */
static void evict(hpack_dec *d, size_t want)
{
    while (d->nent > 0 && d->size > want) {
        struct hpack_ent *e = ent_at(d, d->nent - 1);

        d->size -= (size_t)e->nlen + e->vlen + 32;
        d->nent--;
    }
}

/* Add an entry (4.4).  The name may point into d->data (an indexed name).
 * Bytes are appended after the newest entry; when they do not fit, the
 * live entries move to a fresh buffer of d->max bytes, which holds them
 * and the new one since names and values count in the size. */
static int insert(hpack_dec *d, const char *name, size_t nn, const char *value, size_t vn)
{
    size_t need = nn + vn + 32, start, live, i;
    struct hpack_ent *e;

    if (need > d->max) {            /* too large: the table ends up empty */
        evict(d, 0);
        return 0;
    }
    evict(d, d->max - need);
    if (d->nent == d->entcap) {     /* unroll the ring into a larger one */
        size_t cap = d->entcap ? d->entcap * 2 : 16;
        struct hpack_ent *ne = malloc(cap * sizeof *ne);

        if (!ne)
            return -1;
        for (i = 0; i < d->nent; i++)
            ne[i] = *ent_at(d, d->nent - 1 - i);
        free(d->ent);
        d->ent = ne;
        d->entcap = cap;
        d->head = d->nent ? d->nent - 1 : cap - 1;
    }
    start = d->nent ? ent_at(d, d->nent - 1)->off : d->dlen;
    if (!d->data || d->dlen + nn + vn > d->dcap) {  /* (an empty entry needs data too) */
        char *nd = malloc(d->max);

        if (!nd)
            return -1;
        live = d->dlen - start;
        if (live)
            memcpy(nd, d->data + start, live);
        for (i = 0; i < d->nent; i++)
            ent_at(d, i)->off -= (uint32_t)start;
        if (nn)                     /* before the old buffer goes */
            memcpy(nd + live, name, nn);
        free(d->data);
        d->data = nd;
        d->dcap = d->max;
        d->dlen = live;
    } else if (nn) {
        memcpy(d->data + d->dlen, name, nn);  /* name, if in data, is below dlen */
    }
    if (vn)
        memcpy(d->data + d->dlen + nn, value, vn);
    d->head = (d->head + 1) % d->entcap;
    e = &d->ent[d->head];
    e->off = (uint32_t)d->dlen;
    e->nlen = (uint32_t)nn;
    e->vlen = (uint32_t)vn;
    d->dlen += nn + vn;
    d->size += need;
    d->nent++;
    return 0;
}

/* An integer with an N-bit prefix (5.1), *pp < end.  At most 5 bytes
 * follow the prefix, and the value must fit in 32 bits. */
static int get_int(const unsigned char **pp, const unsigned char *end, unsigned bits,
                   uint32_t *out)
{
    const unsigned char *p = *pp;
    uint32_t mask = (1u << bits) - 1;
    uint64_t v = *p++ & mask;
    unsigned shift = 0;

    if (v == mask) {
        do {
            if (p == end || shift > 28)
                return -1;
            v += (uint64_t)(*p & 0x7F) << shift;
            shift += 7;
        } while (*p++ & 0x80);
        if (v > UINT32_MAX)
            return -1;
    }
    *pp = p;
    *out = (uint32_t)v;
    return 0;
}

/* A string literal (5.2): its bytes as they are in the input. */
struct str { const char *p; size_t n; int huff; };

static int get_str(const unsigned char **pp, const unsigned char *end, struct str *s)
{
    uint32_t n;

    if (*pp == end)
        return -1;
    s->huff = **pp & 0x80;
    if (get_int(pp, end, 7, &n) || n > (size_t)(end - *pp))
        return -1;
    s->p = (const char *)*pp;
    s->n = n;
    *pp += n;
    return 0;
}

/* Field idx of the static or dynamic table into s (name) and v (value). */
static int lookup(hpack_dec *d, uint32_t idx, struct str *s, struct str *v)
{
    if (idx >= 1 && idx <= NSTATIC) {
        s->p = stat_tab[idx].name;
        s->n = stat_tab[idx].nn;
        v->p = stat_tab[idx].value;
        v->n = stat_tab[idx].vn;
    } else if (idx > NSTATIC && idx - NSTATIC - 1 < d->nent) {
        struct hpack_ent *e = ent_at(d, idx - NSTATIC - 1);

        s->p = d->data + e->off;
        s->n = e->nlen;
        v->p = s->p + e->nlen;
        v->n = e->vlen;
    } else {
        return -1;                  /* 0, or past both tables (2.3.3) */
    }
    s->huff = v->huff = 0;
    return 0;
}

/* The longest output of n Huffman-coded bytes: the shortest code is 5 bits. */
#define HUFF_MAX(n) ((n) * 8 / 5 + 1)

/* Huffman-decode s into scratch at *at. */
static int unhuff(hpack_dec *d, struct str *s, size_t *at)
{
    ssize_t r;

    if (!s->huff)
        return 0;
    r = hpack_huff_decode(d->scratch + *at, d->scap - *at, (const unsigned char *)s->p, s->n);
    if (r < 0)
        return -1;
    s->p = d->scratch + *at;
    s->n = (size_t)r;
    *at += (size_t)r;
    return 0;
}

int hpack_decode(hpack_dec *d, const unsigned char *in, size_t n, hpack_emit emit, void *ctx)
{
    const unsigned char *p = in, *end = in + n;
    int seen_field = 0, incr;
    struct str name, value;
    size_t need, at;
    uint32_t v;

    while (p < end) {
        if (*p & 0x80) {            /* indexed field (6.1) */
            if (get_int(&p, end, 7, &v) || lookup(d, v, &name, &value))
                return -1;
            emit(ctx, name.p, name.n, value.p, value.n);
            seen_field = 1;
            continue;
        }
        if ((*p & 0xE0) == 0x20) {  /* size update (6.3), only before fields (4.2) */
            if (seen_field || get_int(&p, end, 5, &v) || v > d->limit)
                return -1;
            d->max = v;
            evict(d, v);
            continue;
        }
        /* A literal (6.2): with incremental indexing (01), or without or
         * never indexed (0000, 0001), which a decoder treats alike. */
        incr = *p & 0x40;
        if (get_int(&p, end, incr ? 6 : 4, &v))
            return -1;
        if (v ? lookup(d, v, &name, &value) : get_str(&p, end, &name))
            return -1;
        if (get_str(&p, end, &value))
            return -1;
        /* Room for both decoded strings, before either points into it. */
        need = (name.huff ? HUFF_MAX(name.n) : 0) + (value.huff ? HUFF_MAX(value.n) : 0);
        if (need > d->scap) {
            char *s = realloc(d->scratch, need);

            if (!s)
                return -1;
            d->scratch = s;
            d->scap = need;
        }
        at = 0;
        if (unhuff(d, &name, &at) || unhuff(d, &value, &at))
            return -1;
        emit(ctx, name.p, name.n, value.p, value.n);
        if (incr && insert(d, name.p, name.n, value.p, value.n))
            return -1;
        seen_field = 1;
    }
    return 0;
}

/* ---- encoder --------------------------------------------------------------- */

/* Output, or with out NULL only the length. */
typedef struct { unsigned char *out; size_t len; } wr;

static void put_byte(wr *w, unsigned c)
{
    if (w->out)
        w->out[w->len] = (unsigned char)c;
    w->len++;
}

static void put_int(wr *w, unsigned flags, unsigned bits, size_t v)
{
    size_t mask = (1u << bits) - 1;

    if (v < mask) {
        put_byte(w, flags | (unsigned)v);
        return;
    }
    put_byte(w, flags | (unsigned)mask);
    for (v -= mask; v >= 0x80; v >>= 7)
        put_byte(w, (v & 0x7F) | 0x80);
    put_byte(w, (unsigned)v);
}

static void put_str(wr *w, const char *s, size_t n, int low)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t h = huff_len(u, n, low), i;

    if (h < n) {
        put_int(w, 0x80, 7, h);
        if (w->out)
            huff_encode(w->out + w->len, u, n, low);
        w->len += h;
        return;
    }
    put_int(w, 0, 7, n);
    for (i = 0; i < n; i++)
        put_byte(w, low ? lower(u[i]) : u[i]);
}

static int name_is(size_t i, const char *name, size_t nn)
{
    size_t k;

    if (stat_tab[i].nn != nn)
        return 0;
    for (k = 0; k < nn; k++)
        if (lower((unsigned char)name[k]) != (unsigned char)stat_tab[i].name[k])
            return 0;
    return 1;
}

/* An indexed field for a full static match, else a literal never added
 * to a table (6.2.2): the encoder keeps no state to share with a peer. */
static void put_field(wr *w, size_t idx, int full, const char *name, size_t nn,
                      const char *value, size_t vn)
{
    if (full) {
        put_int(w, 0x80, 7, idx);
        return;
    }
    put_int(w, 0, 4, idx);
    if (!idx)
        put_str(w, name, nn, 1);
    put_str(w, value, vn, 0);
}

size_t hpack_encode(unsigned char *out, size_t cap, const char *name, size_t nn,
                    const char *value, size_t vn)
{
    size_t i, idx = 0;
    int full = 0;
    wr w = { NULL, 0 };

    for (i = 1; i <= NSTATIC && !full; i++) {
        if (!name_is(i, name, nn))
            continue;
        if (!idx)
            idx = i;
        if (stat_tab[i].vn == vn && memcmp(stat_tab[i].value, value, vn) == 0) {
            idx = i;
            full = 1;
        }
    }
    put_field(&w, idx, full, name, nn, value, vn);  /* measure first */
    if (w.len > cap)
        return w.len;
    w.out = out;
    w.len = 0;
    put_field(&w, idx, full, name, nn, value, vn);
    return w.len;
}

size_t hpack_encode_status(unsigned char *out, size_t cap, int code)
{
    char digits[3];
    unsigned c = (unsigned)code % 1000;

    digits[0] = (char)('0' + c / 100);
    digits[1] = (char)('0' + c / 10 % 10);
    digits[2] = (char)('0' + c % 10);
    return hpack_encode(out, cap, ":status", 7, digits, 3);
}
