/* unit_hpack.c -- TAP tests for hpack.c.
 *
 * The vectors of RFC 7541 Appendix C, the Huffman code, the decoder's
 * refusals, and encoder -> decoder round trips.  Every block is copied to
 * the end of a mapping followed by a PROT_NONE page (tap.h), so a read
 * past the block crashes.  Build with ASan/UBSan; links only hpack.c.
 */
#include <stdint.h>

#define AREA_BYTES  (64 * 1024)     /* the largest block is about 5 KiB */

#include "tap.h"
#include "hpack.h"

/* ---- helpers -------------------------------------------------------------- */

/* The fields of a block as "name: value\n" lines. */
static char got[64 * 1024];
static size_t got_len;
static int got_overflow;

static void collect(void *ctx, const char *name, size_t nn, const char *value, size_t vn)
{
    (void)ctx;
    if (got_len + nn + vn + 3 > sizeof got) {
        got_overflow = 1;
        return;
    }
    memcpy(got + got_len, name, nn);
    got_len += nn;
    memcpy(got + got_len, ": ", 2);
    got_len += 2;
    memcpy(got + got_len, value, vn);
    got_len += vn;
    got[got_len++] = '\n';
}

static size_t unhex(unsigned char *out, const char *hex)
{
    size_t n = 0;
    unsigned v;

    for (; *hex; hex++) {
        if (*hex == ' ')
            continue;
        sscanf(hex, "%2x", &v);
        out[n++] = (unsigned char)v;
        hex++;
    }
    return n;
}

/* Decode the block in hex with d; the fields land in got. */
static int dec_bytes(hpack_dec *d, const unsigned char *b, size_t n)
{
    got_len = 0;
    got_overflow = 0;
    return hpack_decode(d, guarded(b, n), n, collect, NULL);
}

static int dec(hpack_dec *d, const char *hex)
{
    unsigned char b[4096];

    return dec_bytes(d, b, unhex(b, hex));
}

/* Decoded without error, to exactly these fields. */
static int dec_is(hpack_dec *d, const char *hex, const char *want)
{
    return dec(d, hex) == 0 && !got_overflow && got_len == strlen(want) &&
           memcmp(got, want, got_len) == 0;
}

/* Refused by a fresh decoder with the default limit. */
static int refused(const char *hex)
{
    hpack_dec d;
    int r;

    hpack_dec_init(&d, HPACK_TABLE_SIZE);
    r = dec(&d, hex);
    hpack_dec_free(&d);
    return r == -1;
}

/* ---- Appendix C ----------------------------------------------------------- */

static void test_integers(void)
{
    hpack_dec d;

    hpack_dec_init(&d, HPACK_TABLE_SIZE);
    ok(dec_is(&d, "2a", "") && d.max == 10, "C.1.1: 10 in a 5-bit prefix (size update)");
    ok(dec_is(&d, "3f 9a 0a", "") && d.max == 1337, "C.1.2: 1337 in a 5-bit prefix");
    ok(dec_is(&d, "aa", "if-range: \n"), "C.1.3: 42 (as a 7-bit index)");
    ok(dec(&d, "ff 00") == -1, "index 127 (7-bit prefix, zero continuation) refused");
    hpack_dec_free(&d);
}

static void test_c2(void)
{
    hpack_dec d;

    hpack_dec_init(&d, HPACK_TABLE_SIZE);
    ok(dec_is(&d, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
              "custom-key: custom-header\n") && d.size == 55 && d.nent == 1,
       "C.2.1: literal with indexing, size 55");
    ok(dec_is(&d, "be", "custom-key: custom-header\n"), "C.2.1: then index 62");
    hpack_dec_free(&d);

    hpack_dec_init(&d, HPACK_TABLE_SIZE);
    ok(dec_is(&d, "040c 2f73 616d 706c 652f 7061 7468", ":path: /sample/path\n") &&
       d.size == 0 && d.nent == 0, "C.2.2: literal without indexing, table empty");
    ok(dec_is(&d, "1008 7061 7373 776f 7264 0673 6563 7265 74", "password: secret\n") &&
       d.size == 0, "C.2.3: literal never indexed, table empty");
    ok(dec_is(&d, "82", ":method: GET\n") && d.size == 0, "C.2.4: indexed field");
    hpack_dec_free(&d);
}

static const char *const req_blocks[2][3] = {
    { "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      "8286 84be 5808 6e6f 2d63 6163 6865",
      "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65" },
    { "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
      "8286 84be 5886 a8eb 1064 9cbf",
      "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf" },
};
static const char *const req_fields[3] = {
    ":method: GET\n:scheme: http\n:path: /\n:authority: www.example.com\n",
    ":method: GET\n:scheme: http\n:path: /\n:authority: www.example.com\n"
    "cache-control: no-cache\n",
    ":method: GET\n:scheme: https\n:path: /index.html\n:authority: www.example.com\n"
    "custom-key: custom-value\n",
};

static const char *const resp_blocks[2][3] = {
    { "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133"
      " 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70"
      " 6c65 2e63 6f6d",
      "4803 3330 37c1 c0bf",
      "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d"
      " 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049"
      " 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e"
      " 3d31" },
    { "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6"
      " 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
      "4883 640e ffc1 c0bf",
      "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab"
      " 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f"
      " 9587 3160 65c0 03ed 4ee5 b106 3d50 07" },
};
#define RESP_TAIL "cache-control: private\ndate: Mon, 21 Oct 2013 20:13:21 GMT\n" \
                  "location: https://www.example.com\n"
static const char *const resp_fields[3] = {
    ":status: 302\n" RESP_TAIL,
    ":status: 307\n" RESP_TAIL,
    ":status: 200\ncache-control: private\ndate: Mon, 21 Oct 2013 20:13:22 GMT\n"
    "location: https://www.example.com\ncontent-encoding: gzip\n"
    "set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1\n",
};

static void test_c3_to_c6(void)
{
    static const size_t req_size[3] = { 57, 110, 164 }, resp_size[3] = { 222, 222, 215 };
    static const size_t req_nent[3] = { 1, 2, 3 }, resp_nent[3] = { 4, 4, 3 };
    hpack_dec d;
    int h, i;

    for (h = 0; h < 2; h++) {
        hpack_dec_init(&d, HPACK_TABLE_SIZE);
        for (i = 0; i < 3; i++)
            ok(dec_is(&d, req_blocks[h][i], req_fields[i]) && d.size == req_size[i] &&
               d.nent == req_nent[i], "C.%d.%d: request %d%s, table size %zu", 3 + h, i + 1,
               i + 1, h ? " (Huffman)" : "", req_size[i]);
        ok(dec_is(&d, "be bf c0", "custom-key: custom-value\ncache-control: no-cache\n"
                  ":authority: www.example.com\n"), "C.%d: table order, newest first", 3 + h);
        hpack_dec_free(&d);
    }
    for (h = 0; h < 2; h++) {
        hpack_dec_init(&d, 256);
        for (i = 0; i < 3; i++)
            ok(dec_is(&d, resp_blocks[h][i], resp_fields[i]) && d.size == resp_size[i] &&
               d.nent == resp_nent[i] && d.dcap <= 256, "C.%d.%d: response %d%s, table size %zu",
               5 + h, i + 1, i + 1, h ? " (Huffman)" : "", resp_size[i]);
        ok(dec_is(&d, "be bf c0", "set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; "
                  "max-age=3600; version=1\ncontent-encoding: gzip\n"
                  "date: Mon, 21 Oct 2013 20:13:22 GMT\n") && dec(&d, "c1") == -1,
           "C.%d: table after eviction, 3 entries", 5 + h);
        hpack_dec_free(&d);
    }
}

/* ---- Huffman --------------------------------------------------------------- */

static int huff_round(const unsigned char *s, size_t n)
{
    static unsigned char enc[8192];
    static char back[8192];
    size_t len = hpack_huff_len(s, n), e;
    unsigned char *g;

    memset(enc, 0xAA, sizeof enc);
    e = hpack_huff_encode(enc, s, n);
    if (e != len || enc[len] != 0xAA)
        return 0;
    g = guarded(enc, e);
    if (hpack_huff_decode(back, n, g, e) != (ssize_t)n || memcmp(back, s, n) != 0)
        return 0;
    return n == 0 || hpack_huff_decode(back, n - 1, g, e) == -1;  /* cap is honoured */
}

static ssize_t huff_dec_hex(const char *hex, char *out, size_t cap)
{
    unsigned char b[64];
    size_t n = unhex(b, hex);

    return hpack_huff_decode(out, cap, guarded(b, n), n);
}

static void test_huffman(void)
{
    unsigned char all[256], s[3000], one[1];
    unsigned char enc[64];
    char out[64];
    size_t i, n;
    int good = 1, k;

    for (i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    ok(huff_round(all, 256), "Huffman round trip: all 256 byte values in one string");
    for (i = 0; i < 256; i++) {
        one[0] = (unsigned char)i;
        good &= huff_round(one, 1);
    }
    ok(good, "Huffman round trip: each byte value alone");
    srand(7541);
    for (good = 1, k = 0; k < 2000; k++) {
        n = (size_t)rand() % (k < 1000 ? 40 : sizeof s);
        for (i = 0; i < n; i++)
            s[i] = (unsigned char)(k & 1 ? rand() : "abcdefghij0123456789-./:=; "[rand() % 27]);
        good &= huff_round(s, n);
    }
    ok(good, "Huffman round trip: 2000 random strings up to %zu bytes", sizeof s);
    ok(huff_round((const unsigned char *)"", 0) && hpack_huff_len(all, 0) == 0,
       "Huffman: empty string");

    n = hpack_huff_encode(enc, (const unsigned char *)"www.example.com", 15);
    ok(n == 12 && memcmp(enc, "\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff", 12) == 0,
       "Huffman: www.example.com as in C.4.1");
    ok(huff_dec_hex("a8eb 1064 9cbf", out, sizeof out) == 8 && memcmp(out, "no-cache", 8) == 0,
       "Huffman: no-cache from C.4.2");

    ok(huff_dec_hex("ffff ffff", out, sizeof out) == -1, "Huffman: EOS alone refused");
    ok(huff_dec_hex("1fff ffff fc", out, sizeof out) == -1 &&  /* 'a' then EOS */
       huff_dec_hex("1f", out, sizeof out) == 1,
       "Huffman: EOS after a symbol refused");
    ok(huff_dec_hex("a8eb 1064 9cbf ff", out, sizeof out) == -1,
       "Huffman: padding of 8 bits or more refused");
    ok(huff_dec_hex("ff", out, sizeof out) == -1 && huff_dec_hex("fe", out, sizeof out) == -1,
       "Huffman: a byte of padding alone refused");
    ok(huff_dec_hex("18", out, sizeof out) == -1 && huff_dec_hex("1e", out, sizeof out) == -1,
       "Huffman: padding not all ones refused");
    ok(huff_dec_hex("", out, sizeof out) == 0, "Huffman: empty input is the empty string");
}

/* ---- decoder refusals and limits ------------------------------------------ */

static void test_refusals(void)
{
    hpack_dec d;
    unsigned char big[4200];
    size_t n;

    ok(refused("80"), "index 0 refused");
    ok(refused("be"), "index 62 with an empty dynamic table refused");
    ok(!refused("bd"), "index 61 (the last static entry) accepted");
    ok(refused("7e 01 61"), "literal with indexed name 62 (empty table) refused");
    ok(refused("0f 80 80 80 80 80 00"), "integer with 6 continuation bytes refused");
    ok(refused("ff ff ff ff ff 0f"), "integer over 32 bits refused");
    ok(refused("ff"), "integer cut after the prefix refused");
    ok(refused("ff 80"), "integer cut in its continuation refused");
    ok(refused("40 0a 63"), "string longer than the block refused");
    ok(refused("40"), "literal without its name refused");
    ok(refused("00 01 61"), "literal without its value refused");
    ok(refused("00 7f ff ff ff ff 0f"), "string length over 32 bits refused");
    ok(refused("00 81 ff 01 61"), "invalid Huffman name refused");
    ok(refused("00 01 61 82 a8eb 1064 9cbf ff"), "invalid Huffman value refused");
    ok(refused("3f e2 1f"), "size update to 4097 over the limit 4096 refused");
    ok(!refused("3f e1 1f"), "size update to 4096 accepted");
    ok(refused("82 20"), "size update after a field refused");
    ok(refused("82 3f e1 1f"), "size update to the limit after a field refused");

    hpack_dec_init(&d, HPACK_TABLE_SIZE);
    ok(dec_is(&d, "20 3f 9a 0a 82", ":method: GET\n") && d.max == 1337,
       "two size updates at the start of a block");
    ok(dec_is(&d, req_blocks[0][0], req_fields[0]) && d.size == 57 &&
       dec_is(&d, "20", "") && d.size == 0 && d.nent == 0 && d.max == 0 && dec(&d, "be") == -1,
       "size update to 0 empties the table");
    ok(dec_is(&d, "40 01 61 01 62", "a: b\n") && d.size == 0 && d.nent == 0,
       "entry over the maximum: emitted, not stored");
    hpack_dec_free(&d);

    /* Found by fuzz_hpack: an empty first entry left the byte buffer NULL. */
    hpack_dec_init(&d, HPACK_TABLE_SIZE);
    ok(dec_is(&d, "40 00 00", ": \n") && d.size == 32 && dec_is(&d, "be be", ": \n: \n") &&
       dec_is(&d, "7e 01 78 be", ": x\n: x\n") && d.size == 65,
       "empty name and value: a 32-byte entry, indexed and named");
    hpack_dec_free(&d);

    hpack_dec_init(&d, 256);
    n = 0;
    big[n++] = 0x40;
    big[n++] = 0x01;
    big[n++] = 'x';
    big[n++] = 0x7f;                /* a 300-byte value: 127 + 173 (45 + 1 << 7) */
    big[n++] = 0x80 | 45;
    big[n++] = 1;
    memset(big + n, 'v', 300);
    n += 300;
    ok(dec_is(&d, req_blocks[0][0], req_fields[0]) && dec_bytes(&d, big, n) == 0 &&
       got_len == 304 && d.size == 0 && d.nent == 0,
       "entry larger than the table empties it (not an error)");
    hpack_dec_free(&d);

    /* The new entry names the entry it evicts (4.4). */
    hpack_dec_init(&d, HPACK_TABLE_SIZE);
    ok(dec_is(&d, "3f 45 40 0a 6375 7374 6f6d 2d6b 6579 05 6669 7273 74",
              "custom-key: first\n") && d.max == 100 && d.size == 47 &&
       dec_is(&d, "7e 28 7979797979797979797979797979797979797979797979797979797979797979"
                  "7979797979797979",
              "custom-key: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\n") &&
       d.nent == 1 && d.size == 82 &&
       dec_is(&d, "be", "custom-key: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\n"),
       "new entry whose indexed name is evicted by it");
    hpack_dec_free(&d);
}

/* The sum of the entries' sizes is the table's size. */
static int size_adds_up(const hpack_dec *d)
{
    size_t i, sum = 0;

    for (i = 0; i < d->nent; i++)
        sum += d->ent[(d->head + d->entcap - i) % d->entcap].nlen +
               d->ent[(d->head + d->entcap - i) % d->entcap].vlen + 32;
    return sum == d->size;
}

/* Many insertions into a small table, a third of them naming the newest
 * entry (which they may evict): the bounds hold, the entries are right. */
static void test_churn(void)
{
    hpack_dec d;
    unsigned char b[300];
    char want[300], nm[2] = { 0, 0 };
    size_t n, vn, i;
    int k, good = 1, wn;

    hpack_dec_init(&d, 300);
    srand(1);
    for (k = 0; k < 5000 && good; k++) {
        vn = (size_t)rand() % 120;
        n = 0;
        if (k % 3 == 2 && d.nent > 0) {
            b[n++] = 0x7e;          /* name of index 62 */
        } else {
            nm[0] = (char)('a' + k % 26);
            nm[1] = (char)('a' + k / 26 % 26);
            b[n++] = 0x40;
            b[n++] = 2;
            b[n++] = (unsigned char)nm[0];
            b[n++] = (unsigned char)nm[1];
        }
        b[n++] = (unsigned char)vn;
        for (i = 0; i < vn; i++)
            b[n++] = (unsigned char)('0' + (k + i) % 10);
        wn = snprintf(want, sizeof want, "%c%c: ", nm[0], nm[1]);
        memcpy(want + wn, b + n - vn, vn);
        want[wn + vn] = '\n';
        good &= dec_bytes(&d, b, n) == 0 && got_len == wn + vn + 1 &&
                memcmp(got, want, got_len) == 0;
        good &= d.size <= d.max && d.max <= d.limit && d.dcap <= d.limit && size_adds_up(&d);
        /* the newest entry reads back */
        good &= dec(&d, "be") == 0 && got_len == wn + vn + 1 && memcmp(got, want, got_len) == 0;
    }
    ok(good, "5000 insertions into a 300-byte table, some naming an evicted entry: "
       "size <= max <= limit, buffer <= limit");
    ok(d.entcap <= 32, "entry ring stays small (%zu slots)", d.entcap);
    hpack_dec_free(&d);

    /* 100 entries of 34 bytes: the ring grows (16, 32, 64, 128 slots)
     * around its wrap point, and every entry keeps its index. */
    hpack_dec_init(&d, HPACK_TABLE_SIZE);
    for (k = 0; k < 100; k++) {
        b[0] = 0x40;
        b[1] = 1;
        b[2] = (unsigned char)('A' + k % 50);
        b[3] = 1;
        b[4] = (unsigned char)('0' + k / 50);
        good &= dec_bytes(&d, b, 5) == 0;
    }
    good &= d.nent == 100 && d.size == 3400 && size_adds_up(&d);
    for (k = 0; k < 100; k++) {
        int idx = 62 + 99 - k;

        b[0] = 0xff;                /* 127 + (idx - 127) in one byte */
        b[1] = (unsigned char)(idx - 127);
        snprintf(want, sizeof want, "%c: %c\n", 'A' + k % 50, '0' + k / 50);
        good &= (idx < 127 ? (b[0] = (unsigned char)(0x80 | idx), dec_bytes(&d, b, 1))
                           : dec_bytes(&d, b, 2)) == 0 && got_len == 5 &&
                memcmp(got, want, 5) == 0;
    }
    ok(good, "100 entries: the ring grows and keeps their order");
    hpack_dec_free(&d);
}

/* ---- encoder --------------------------------------------------------------- */

static unsigned char ebuf[8192];

/* Encode, check the length rules, decode with a fresh decoder. */
static int enc_round(const char *name, size_t nn, const char *value, size_t vn)
{
    char want[8300];
    size_t len, i, w = 0;
    hpack_dec d;
    int r;

    memset(ebuf, 0xAA, sizeof ebuf);
    len = hpack_encode(ebuf, 0, name, nn, value, vn);
    if (len == 0 || ebuf[0] != 0xAA || hpack_encode(ebuf, len - 1, name, nn, value, vn) != len ||
        ebuf[0] != 0xAA || hpack_encode(ebuf, sizeof ebuf, name, nn, value, vn) != len ||
        ebuf[len] != 0xAA)
        return 0;
    for (i = 0; i < nn; i++)
        want[w++] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    memcpy(want + w, ": ", 2);
    memcpy(want + w + 2, value, vn);
    w += 2 + vn;
    want[w++] = '\n';
    hpack_dec_init(&d, HPACK_TABLE_SIZE);
    r = dec_bytes(&d, ebuf, len) == 0 && got_len == w && memcmp(got, want, w) == 0 &&
        d.size == 0;
    hpack_dec_free(&d);
    return r;
}

static int enc_is(const char *name, const char *value, const char *hex)
{
    unsigned char want[64];
    size_t n = unhex(want, hex);

    return hpack_encode(ebuf, sizeof ebuf, name, strlen(name), value, strlen(value)) == n &&
           memcmp(ebuf, want, n) == 0 && enc_round(name, strlen(name), value, strlen(value));
}

static void test_encoder(void)
{
    static const int indexed[] = { 200, 204, 206, 304, 400, 404, 500 };
    static const char *const names[] = {
        ":authority", ":method", ":path", ":scheme", ":status", "accept-encoding",
        "content-type", "set-cookie", "www-authenticate", "user-agent", "via",
    };
    char value[4097], name[64];
    unsigned char b[16];
    size_t n, i;
    int good = 1, k;
    hpack_dec d;

    ok(enc_is(":method", "GET", "82"), "encode :method GET: indexed 2");
    ok(enc_is(":METHOD", "GET", "82"), "encode :METHOD GET: name case ignored");
    ok(enc_is(":method", "get", "02 82 98a9"), "encode :method get: value case kept");
    ok(enc_is("accept-encoding", "gzip, deflate", "90"), "encode accept-encoding: indexed 16");
    ok(enc_is(":path", "/sample/path", "04 89 6103 a6ba 0ac5 634c ff"),  /* Huffman-coded */
       "encode :path /sample/path: name index 4, value Huffman-coded");
    ok(enc_is("Content-Type", "text/html", "0f 10 87 497c a589 d34d 1f"),
       "encode Content-Type: name index 31 in a 4-bit prefix");
    ok(enc_is("X-Custom", "1", "00 86 f2b1 2d42 4f4f 01 31"),
       "encode X-Custom: literal name lowercased, Huffman-coded");
    ok(enc_is("custom-key", "", "00 88 25a8 49e9 5ba9 7d7f 00"), "encode an empty value");
    ok(enc_is("a", "b", "00 01 61 01 62"), "encode short strings raw (Huffman not shorter)");
    ok(enc_round("", 0, "", 0), "encode empty name and value");

    for (i = 1; i <= 61; i++) {
        /* every static entry, through the decoder's table */
        hpack_dec_init(&d, HPACK_TABLE_SIZE);
        b[0] = (unsigned char)(0x80 | i);
        good &= dec_bytes(&d, b, 1) == 0;
        hpack_dec_free(&d);
        {
            char nm[64], val[64];
            char *colon = memchr(got, ':', got_len) == got ? memchr(got + 1, ':', got_len - 1)
                                                           : memchr(got, ':', got_len);
            size_t nlen = (size_t)(colon - got), vlen = got_len - nlen - 3;

            memcpy(nm, got, nlen);
            memcpy(val, colon + 2, vlen);
            good &= hpack_encode(ebuf, sizeof ebuf, nm, nlen, val, vlen) == 1 &&
                    ebuf[0] == (0x80 | i) && enc_round(nm, nlen, val, vlen) &&
                    enc_round(nm, nlen, "other", 5);
        }
    }
    ok(good, "every static entry: encoded as its index, and round trip");

    for (good = 1, k = 0; k < 7; k++)
        good &= hpack_encode_status(ebuf, sizeof ebuf, indexed[k]) == 1 &&
                ebuf[0] == 0x88 + k;
    ok(good, "status 200 204 206 304 400 404 500: one indexed byte each");
    for (good = 1, k = 100; k < 600; k++) {
        char want[32];
        n = hpack_encode_status(ebuf, sizeof ebuf, k);
        snprintf(want, sizeof want, ":status: %d\n", k);
        hpack_dec_init(&d, HPACK_TABLE_SIZE);
        good &= (n == 1 || (ebuf[0] == 0x08 && n <= 5)) && dec_bytes(&d, ebuf, n) == 0 &&
                got_len == strlen(want) && memcmp(got, want, got_len) == 0;
        hpack_dec_free(&d);
    }
    ok(good, "status 100..599 round trip; literals use name index 8");
    ok(hpack_encode_status(ebuf, 0, 302) > 0 && hpack_encode_status(NULL, 0, 200) == 1,
       "status: length with cap 0");

    srand(42);
    for (good = 1, n = 0; n <= 4096; n += n < 300 ? 1 : 97) {
        for (i = 0; i < n; i++)
            value[i] = (char)(n % 3 == 0 ? rand() : n % 3 == 1 ? 'a' + rand() % 26 : '7');
        good &= enc_round("x-Value", 7, value, n);
        good &= enc_round(names[n % (sizeof names / sizeof names[0])],
                          strlen(names[n % (sizeof names / sizeof names[0])]), value, n);
    }
    good &= enc_round("v", 1, value, 4096);
    ok(good, "values of 0..4096 bytes (random bytes, letters, one digit) round trip");

    for (good = 1, k = 0; k < 500; k++) {
        size_t nn = 1 + (size_t)rand() % 60;

        for (i = 0; i < nn; i++)
            name[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[rand() % 64];
        n = (size_t)rand() % 200;
        for (i = 0; i < n; i++)
            value[i] = (char)rand();
        good &= enc_round(name, nn, value, n);
    }
    ok(good, "500 random mixed-case names with random values round trip, lowercased");
}

int main(void)
{
    tap_begin();
    test_integers();
    test_c2();
    test_c3_to_c6();
    test_huffman();
    test_refusals();
    test_churn();
    test_encoder();
    return tap_end();
}
