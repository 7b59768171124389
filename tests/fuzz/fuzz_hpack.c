/* fuzz_hpack.c -- libFuzzer harness for hpack.c.
 *
 *   clang -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_hpack.c hpack.c
 *
 * The first four bytes are settings: the table limit (byte 0), how many
 * header blocks (byte 1, 1 to 4) and where the rest is cut into them
 * (bytes 2 and 3).  One decoder reads the blocks in order, its table
 * carried from one to the next as on a connection, until one is refused.
 * Each block is copied to a buffer of its exact size so ASan sees any
 * read past it.  What must hold, or abort():
 *   - after every accepted block, the table's size <= its maximum <= the
 *     limit, its bytes fit in the limit, and the scratch buffer in what
 *     the largest block can decode to;
 *   - every decoded field, encoded alone with hpack_encode, decodes in a
 *     fresh decoder to the same field, the name lowercased; a smaller
 *     cap returns the same length and writes nothing;
 *   - the input's bytes survive a Huffman round trip, and when the input
 *     itself decodes as a Huffman string, encoding the result gives the
 *     input back (the code and its padding leave no choice).
 */
#include "hpack.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(int cond)
{
    if (!cond)
        abort();
}

static unsigned lower(unsigned c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* The fields one decoder call emitted, or the one a fresh decoder saw. */
typedef struct field { char *name, *value; size_t nn, vn; } field;
typedef struct seen { field f[64]; size_t n, total; } seen;

static void keep(void *ctx, const char *name, size_t nn, const char *value, size_t vn)
{
    seen *s = ctx;
    field *f;

    s->total++;
    if (s->n == sizeof s->f / sizeof s->f[0])
        return;                     /* enough to re-encode */
    f = &s->f[s->n++];
    f->name = malloc(nn + 1);
    f->value = malloc(vn + 1);
    check(f->name && f->value);
    memcpy(f->name, name, nn);
    memcpy(f->value, value, vn);
    f->nn = nn;
    f->vn = vn;
}

static void forget(seen *s)
{
    size_t i;

    for (i = 0; i < s->n; i++) {
        free(s->f[i].name);
        free(s->f[i].value);
    }
    s->n = s->total = 0;
}

/* Encode f alone, decode it with a fresh decoder: the same field. */
static void reencode(const field *f)
{
    size_t len = hpack_encode(NULL, 0, f->name, f->nn, f->value, f->vn), i;
    unsigned char *buf = malloc(len + 1);
    seen back = { .n = 0 };
    hpack_dec d;

    check(buf != NULL && len > 0);
    buf[0] = 0xA5;
    check(hpack_encode(buf, len - 1, f->name, f->nn, f->value, f->vn) == len && buf[0] == 0xA5);
    buf[len] = 0xA5;
    check(hpack_encode(buf, len, f->name, f->nn, f->value, f->vn) == len && buf[len] == 0xA5);
    hpack_dec_init(&d, 0);          /* nothing the encoder writes needs a table */
    check(hpack_decode(&d, buf, len, keep, &back) == 0 && back.total == 1);
    check(back.f[0].nn == f->nn && back.f[0].vn == f->vn &&
          memcmp(back.f[0].value, f->value, f->vn) == 0);
    for (i = 0; i < f->nn; i++)
        check((unsigned char)back.f[0].name[i] == lower((unsigned char)f->name[i]));
    check(d.size == 0 && d.nent == 0);
    hpack_dec_free(&d);
    forget(&back);
    free(buf);
}

static void huffman(const uint8_t *data, size_t size)
{
    size_t len = hpack_huff_len(data, size), cap = size * 8 / 5 + 1;
    unsigned char *enc = malloc(len + 1), *again;
    char *dec = malloc(size + 1), *out = malloc(cap);
    ssize_t r;

    check(enc && dec && out);
    check(hpack_huff_encode(enc, data, size) == len && len >= size * 5 / 8);
    check(hpack_huff_decode(dec, size, enc, len) == (ssize_t)size && memcmp(dec, data, size) == 0);

    r = hpack_huff_decode(out, cap, data, size);
    if (r >= 0) {
        again = malloc(size + 1);
        check(again && hpack_huff_len((unsigned char *)out, (size_t)r) == size);
        check(hpack_huff_encode(again, (unsigned char *)out, (size_t)r) == size &&
              memcmp(again, data, size) == 0);
        free(again);
    }
    free(enc);
    free(dec);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static seen s;
    size_t limit, nblocks, cut[5], m, i, j, t, biggest = 0;
    hpack_dec d;
    unsigned char *block;
    int r;

    huffman(data, size);
    if (size < 4)
        return 0;
    /* Small limits (eviction) half of the time, or the default. */
    limit = data[0] & 0x80 ? HPACK_TABLE_SIZE : (size_t)(data[0] & 0x7F) * 4;
    nblocks = 1 + (data[1] & 3);
    m = size - 4;
    cut[0] = 0;
    cut[1] = m * data[2] / 256;
    cut[2] = m * data[3] / 256;
    cut[3] = m * (data[2] ^ data[3]) / 256;
    for (i = 1; i < nblocks; i++)   /* sort the cuts in use */
        for (j = i + 1; j < nblocks; j++)
            if (cut[j] < cut[i]) {
                t = cut[i];
                cut[i] = cut[j];
                cut[j] = t;
            }
    cut[nblocks] = m;
    data += 4;

    hpack_dec_init(&d, limit);
    for (i = 0; i < nblocks; i++) {
        size_t n = cut[i + 1] - cut[i];

        block = malloc(n ? n : 1);
        check(block != NULL);
        memcpy(block, data + cut[i], n);
        r = hpack_decode(&d, block, n, keep, &s);
        free(block);
        biggest = n > biggest ? n : biggest;
        for (j = 0; j < s.n; j++)
            reencode(&s.f[j]);
        forget(&s);
        if (r != 0) {
            check(r == -1);
            break;                  /* a connection error: only free is left */
        }
        check(d.size <= d.max && d.max <= d.limit && d.limit == limit);
        check(d.dcap <= d.limit && d.nent <= d.limit / 32);
        check(d.scap <= 2 * (biggest * 8 / 5 + 1));
    }
    hpack_dec_free(&d);
    return 0;
}
