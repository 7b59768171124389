/* hpack.h -- HPACK, header compression for HTTP/2 (RFC 7541), in hpack.c.
 *
 * The decoder keeps the dynamic table the client's encoder fills; every
 * header block must pass through it in order, even one the server then
 * refuses, or the two tables part.  The encoder is stateless: static-
 * table references and literals never indexed, Huffman-coded when that
 * is shorter, so that response heads can be encoded on any thread and
 * sent in any order.
 */
#ifndef HPACK_H
#define HPACK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HPACK_TABLE_SIZE 4096       /* SETTINGS_HEADER_TABLE_SIZE, the default */

typedef struct hpack_dec {
    /* the dynamic table: a ring of entries, newest first when indexed */
    struct hpack_ent { uint32_t off, nlen, vlen; } *ent;
    size_t nent, head, entcap;      /* ring of entries */
    char *data;                     /* their bytes (names and values) */
    size_t dlen, dcap;
    size_t size;                    /* RFC 7541 size: sum of name + value + 32 */
    size_t max;                     /* current maximum (size updates) */
    size_t limit;                   /* what the server's SETTINGS allow */
    char *scratch;                  /* Huffman-decoded strings */
    size_t scap;
} hpack_dec;

/* One decoded field; name and value hold only during the call. */
typedef void (*hpack_emit)(void *ctx, const char *name, size_t nn, const char *value,
                           size_t vn);

void hpack_dec_init(hpack_dec *d, size_t limit);
void hpack_dec_free(hpack_dec *d);
/* Decode one complete header block in[0,n), calling emit for each field
 * in order.  Returns 0, or -1 on a compression error (a connection error
 * COMPRESSION_ERROR: bad index, bad integer or Huffman code, a size
 * update over the limit or after the first field, out of memory). */
int hpack_decode(hpack_dec *d, const unsigned char *in, size_t n, hpack_emit emit, void *ctx);

/* Encode one field into out[0,cap): the name lowercased; returns the
 * length, which may exceed cap (then nothing past cap is written).
 * hpack_encode(NULL, 0, ...) only measures. */
size_t hpack_encode(unsigned char *out, size_t cap, const char *name, size_t nn,
                    const char *value, size_t vn);
/* The ":status" field for a three-digit code. */
size_t hpack_encode_status(unsigned char *out, size_t cap, int code);

/* Huffman code (Appendix B): the encoded length of in[0,n), encoding into
 * out (room for hpack_huff_len), and decoding (-1: invalid code or
 * padding, or more than cap bytes). */
size_t hpack_huff_len(const unsigned char *in, size_t n);
size_t hpack_huff_encode(unsigned char *out, const unsigned char *in, size_t n);
ssize_t hpack_huff_decode(char *out, size_t cap, const unsigned char *in, size_t n);

#endif
