/* unit_ws.c -- TAP tests for ws.c.
 *
 * Every input is copied to the very end of a writable mapping that is
 * followed by a PROT_NONE page, so reading one byte too far crashes
 * instead of passing by luck.  Build with ASan/UBSan (see the Makefile);
 * links only ws.c.
 */
#include "granc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef GRANC_TLS
#define SHA1_PATH "BearSSL SHA-1"
#else
#define SHA1_PATH "in-tree SHA-1"
#endif

#define AREA_BYTES  (8 * 1024)      /* the largest input is a few hundred bytes */
#define MAX         1000            /* max_message for most parses */
#define MASK_KEY    "\x37\xfa\x21\x3d"

#include "tap.h"
#include "http.h"
#include "ws.h"

/* ---- handshake ----------------------------------------------------------- */

static int accept_is(const char *key, const char *want)
{
    char got[29];

    memset(got, 'x', sizeof got);
    return ws_accept_key((const char *)guarded(key, strlen(key)), strlen(key),
                         got) == 0 && strcmp(got, want) == 0;
}

static int key_refused(const char *key, size_t n)
{
    char got[29];

    return ws_accept_key((const char *)guarded(key, n), n, got) == -1;
}

static void test_accept_key(void)
{
    /* Expected values from Python's hashlib and base64. */
    static const char *const vec[][2] = {
        { "AAAAAAAAAAAAAAAAAAAAAA==", "ICX+Yqv66kxgM0FcWaLWlFLwTAI=" },
        { "/////////////////////w==", "XXpj4jYzLM2yUE0C7TIgMwTQh2g=" },
        { "x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk=" },
        { "+/+/+/+/+/+/+/+/+/+/+/==", "d2eRHn4P8v3oIXxyXLb4lHM2A90=" },
    };
    size_t i;
    int good = 1;

    ok(accept_is("dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
       "accept key: RFC 6455 1.3 example (%s)", SHA1_PATH);
    for (i = 0; i < sizeof vec / sizeof vec[0]; i++)
        good &= accept_is(vec[i][0], vec[i][1]);
    ok(good, "accept key: four more keys (%s)", SHA1_PATH);

    ok(key_refused("dGhlIHNhbXBsZSBub25jZQ=", 23), "bad key: 23 chars");
    ok(key_refused("dGhlIHNhbXBsZSBub25jZQ==A", 25), "bad key: 25 chars");
    ok(key_refused("", 0), "bad key: empty");
    ok(key_refused("dGhlIHNhbXBsZSBub25jZQ==", 22), "bad key: no padding");
    ok(key_refused("dGhlIHNhbXBsZSBub25jZQAA", 24), "bad key: 18 bytes, no '='");
    ok(key_refused("dGhlIHNhbXBsZSBub25jZQA=", 24), "bad key: 17 bytes, one '='");
    ok(key_refused("dGhlIHNhbXBsZSBub25jZ===", 24), "bad key: '=' too early");
    ok(key_refused("dGhlIHNhbXBsZSBub25jZQ=A", 24), "bad key: one '=' then data");
    ok(key_refused("dGhlIHNhbXBs=SBub25jZQ==", 24), "bad key: '=' inside");
    ok(key_refused("dGhlIHNhbXBsZSBub25j-Q==", 24) &&
       key_refused("dGhlIHNhbXBsZSBub25j_Q==", 24),
       "bad key: base64url characters");
    ok(key_refused("dGhlIHNhbXBsZSBub25j Q==", 24) &&
       key_refused("dGhlIHNhbXBsZSBub25j\0Q==", 24) &&
       key_refused("dGhlIHNhbXBsZSBub25j\xd1Q==", 24),
       "bad key: space, NUL, 8-bit byte");
}

/* ---- frame parsing ------------------------------------------------------- */

/* Length encodings for build(). */
enum { ENC_MIN, ENC_16, ENC_64 };

/* A client frame header: b0 (FIN|RSV|opcode), the length in the chosen
 * encoding, the mask bit (unless unmasked) and MASK_KEY. */
static size_t build(uint8_t *h, int b0, uint64_t len, int enc, int masked)
{
    size_t n = 2, i, lenbytes;

    if (enc == ENC_MIN)
        enc = len < 126 ? ENC_MIN : len <= 0xFFFF ? ENC_16 : ENC_64;
    h[0] = (uint8_t)b0;
    h[1] = (uint8_t)(enc == ENC_MIN ? len : enc == ENC_16 ? 126 : 127);
    if (masked)
        h[1] |= 0x80;
    lenbytes = enc == ENC_MIN ? 0 : enc == ENC_16 ? 2 : 8;
    for (i = 0; i < lenbytes; i++)
        h[n++] = (uint8_t)(len >> (8 * (lenbytes - 1 - i)));
    if (masked) {
        memcpy(h + n, MASK_KEY, 4);
        n += 4;
    }
    return n;
}

static int same_state(const ws_state *a, const ws_state *b)
{
    return a->msg_opcode == b->msg_opcode && a->msg_len == b->msg_len &&
           a->utf8 == b->utf8;
}

static int parse(ws_state *s, const uint8_t *h, size_t n, uint64_t max,
                 ws_frame *f, int *code)
{
    *code = 0;
    return ws_frame_parse(s, guarded(h, n), n, max, f, code);
}

/* A valid header h[0..n) with state s: every shorter prefix is
 * INCOMPLETE and leaves s alone; the whole header (and the header with
 * payload bytes after it) is accepted with the expected fields. */
static void accept_frame(const char *desc, ws_state *s, const uint8_t *h, size_t n,
                         uint64_t max, int fin, int op, uint64_t len)
{
    ws_state before = *s, s2 = *s;
    uint8_t buf[64];
    ws_frame f;
    size_t k;
    int code, r, prefixes = 1;

    for (k = 0; k < n; k++) {
        s2 = before;
        if (parse(&s2, h, k, max, &f, &code) != HTTP_INCOMPLETE ||
            !same_state(&s2, &before))
            prefixes = 0;
    }
    ok(prefixes, "%s: every prefix (0..%zu) is incomplete", desc, n - 1);
    memcpy(buf, h, n);
    memset(buf + n, 0xEE, 8);
    s2 = before;
    r = parse(&s2, buf, n + 8, max, &f, &code);
    memset(&f, 0x55, sizeof f);
    r = r == parse(s, h, n, max, &f, &code) ? r : -100;
    ok(r == (int)n && f.fin == (unsigned)fin && f.masked && f.opcode == op &&
       f.len == len && memcmp(f.mask, MASK_KEY, 4) == 0 && same_state(s, &s2),
       "%s: accepted, %zu-byte header (got %d)", desc, n, r);
}

/* An invalid header: the whole of it is refused with code and every
 * prefix is either incomplete or refused the same way; s never changes. */
static void reject_frame(const char *desc, const ws_state *s, const uint8_t *h,
                         size_t n, uint64_t max, int want)
{
    ws_state s2;
    ws_frame f;
    size_t k;
    int code, r = 0, good = 1;

    for (k = 0; k <= n; k++) {
        s2 = *s;
        r = parse(&s2, h, k, max, &f, &code);
        if (!same_state(&s2, s) ||
            !(r == HTTP_INCOMPLETE || (r == HTTP_BAD && code == want)))
            good = 0;
    }
    ok(good && r == HTTP_BAD && code == want, "reject %d: %s", want, desc);
}

static void test_parse_accept(void)
{
    static const struct {
        const char *desc;
        int b0, enc;
        uint64_t len;
    } cases[] = {
        { "text, 7-bit length 0", 0x81, ENC_MIN, 0 },
        { "text, 7-bit length 5", 0x81, ENC_MIN, 5 },
        { "binary, 7-bit length 125", 0x82, ENC_MIN, 125 },
        { "binary, 16-bit length 126", 0x82, ENC_MIN, 126 },
        { "binary, 16-bit length 65535", 0x82, ENC_MIN, 65535 },
        { "binary, 64-bit length 65536", 0x82, ENC_MIN, 65536 },
        { "binary, 64-bit length 2^32", 0x82, ENC_MIN, 1ull << 32 },
        { "binary, 64-bit length 2^63-1", 0x82, ENC_MIN, (1ull << 63) - 1 },
        { "text, 16-bit length 5 (not minimal)", 0x81, ENC_16, 5 },
        { "text, 64-bit length 5 (not minimal)", 0x81, ENC_64, 5 },
        { "text without fin", 0x01, ENC_MIN, 3 },
        { "ping, empty", 0x89, ENC_MIN, 0 },
        { "ping, 125 bytes", 0x89, ENC_MIN, 125 },
        { "pong", 0x8A, ENC_MIN, 4 },
        { "close", 0x88, ENC_MIN, 2 },
    };
    uint8_t h[16];
    ws_state s;
    size_t i, n;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&s, 0, sizeof s);
        n = build(h, cases[i].b0, cases[i].len, cases[i].enc, 1);
        accept_frame(cases[i].desc, &s, h, n, UINT64_MAX, cases[i].b0 >> 7,
                     cases[i].b0 & 0xF, cases[i].len);
        if ((cases[i].b0 & 0xF) < 8)
            ok(s.msg_opcode == (cases[i].b0 & 0xF) && s.msg_len == cases[i].len,
               "%s: message opened", cases[i].desc);
        else
            ok(s.msg_opcode == 0 && s.msg_len == 0 && s.utf8 == 0,
               "%s: message state untouched", cases[i].desc);
    }
}

static void test_parse_reject(void)
{
    static const struct {
        const char *desc;
        int b0, enc, masked;
        uint64_t len;
    } cases[] = {
        { "RSV1", 0xC1, ENC_MIN, 1, 5 },
        { "RSV2", 0xA1, ENC_MIN, 1, 5 },
        { "RSV3", 0x91, ENC_MIN, 1, 5 },
        { "RSV3 on a ping", 0x99, ENC_MIN, 1, 0 },
        { "unmasked text", 0x81, ENC_MIN, 0, 5 },
        { "unmasked 64-bit binary", 0x82, ENC_64, 0, 70000 },
        { "unmasked ping", 0x89, ENC_MIN, 0, 0 },
        { "ping without fin", 0x09, ENC_MIN, 1, 0 },
        { "pong without fin", 0x0A, ENC_MIN, 1, 0 },
        { "close without fin", 0x08, ENC_MIN, 1, 2 },
        { "ping of 126 bytes", 0x89, ENC_MIN, 1, 126 },
        { "ping, 5 bytes in a 16-bit length", 0x89, ENC_16, 1, 5 },
        { "close, 2 bytes in a 64-bit length", 0x88, ENC_64, 1, 2 },
        { "64-bit length with the top bit", 0x82, ENC_64, 1, 1ull << 63 },
        { "64-bit length of all ones", 0x82, ENC_64, 1, UINT64_MAX },
        { "continuation without a message", 0x80, ENC_MIN, 1, 1 },
        { "unfinished continuation without a message", 0x00, ENC_MIN, 1, 1 },
    };
    uint8_t h[16];
    ws_state s, open;
    size_t i, n;
    int op, good;

    memset(&s, 0, sizeof s);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        n = build(h, cases[i].b0, cases[i].len, cases[i].enc, cases[i].masked);
        reject_frame(cases[i].desc, &s, h, n, UINT64_MAX, 1002);
    }
    for (op = 3; op <= 0xF; op++) {
        if (op >= 8 && op <= 0xA)
            continue;
        n = build(h, 0x80 | op, 0, ENC_MIN, 1);
        s.msg_opcode = 0;
        reject_frame("reserved opcode", &s, h, n, UINT64_MAX, 1002);
    }

    /* The sequence rules while a message is open. */
    memset(&open, 0, sizeof open);
    open.msg_opcode = WS_TEXT;
    open.msg_len = 7;
    open.utf8 = 1;
    n = build(h, 0x81, 1, ENC_MIN, 1);
    reject_frame("text inside an open message", &open, h, n, MAX, 1002);
    n = build(h, 0x02, 1, ENC_MIN, 1);
    reject_frame("binary inside an open message", &open, h, n, MAX, 1002);

    /* Sizes: max_message counts the whole message. */
    memset(&s, 0, sizeof s);
    n = build(h, 0x81, MAX + 1, ENC_MIN, 1);
    reject_frame("text one byte over max_message", &s, h, n, MAX, 1009);
    n = build(h, 0x82, 1ull << 62, ENC_MIN, 1);
    reject_frame("2^62-byte binary, default max", &s, h, n,
                 WS_MAX_MESSAGE_DEFAULT, 1009);
    n = build(h, 0x81, MAX, ENC_MIN, 1);
    ok(parse(&s, h, n, MAX, &(ws_frame){0}, &(int){0}) == (int)n,
       "text of exactly max_message is accepted");
    n = build(h, 0x00, MAX - 6, ENC_MIN, 1);
    reject_frame("continuation one byte over max_message", &open, h, n, MAX, 1009);
    open.msg_len = UINT64_MAX - 10;
    n = build(h, 0x00, UINT64_MAX >> 1, ENC_64, 1);
    reject_frame("continuation whose sum would wrap", &open, h, n,
                 UINT64_MAX - 3, 1009);
    open.msg_len = MAX + 5;
    n = build(h, 0x00, 0, ENC_MIN, 1);
    reject_frame("continuation after max_message was lowered", &open, h, n,
                 MAX, 1009);
    open.msg_len = 7;
    n = build(h, 0x80, MAX - 7, ENC_MIN, 1);
    s = open;
    ok(parse(&s, h, n, MAX, &(ws_frame){0}, &(int){0}) == (int)n &&
       s.msg_len == MAX, "continuation up to exactly max_message");
    n = build(h, 0x89, 125, ENC_MIN, 1);
    s = open;
    ok(parse(&s, h, n, 10, &(ws_frame){0}, &(int){0}) == (int)n &&
       same_state(&s, &open), "ping larger than max_message inside a message");

    /* Early rejection: byte 0 alone proves these. */
    good = 1;
    memset(&s, 0, sizeof s);
    for (op = 0; op < 256; op++) {
        int code = 0, r = parse(&s, (uint8_t[]){ (uint8_t)op }, 1, MAX,
                                &(ws_frame){0}, &code);
        int bad = (op & 0x70) || ((op & 0xF) > 2 && (op & 0xF) < 8) ||
                  (op & 0xF) > 0xA || (op & 0xF) == 0 ||
                  ((op & 0xF) >= 8 && !(op & 0x80));

        if (bad ? r != HTTP_BAD || code != 1002 : r != HTTP_INCOMPLETE)
            good = 0;
    }
    ok(good, "every first byte: refused at once or incomplete");
}

static int step(ws_state *s, int b0, uint64_t len, ws_frame *f)
{
    uint8_t h[16];
    size_t n = build(h, b0, len, ENC_MIN, 1);
    int code;

    return parse(s, h, n, MAX, f, &code) == (int)n ? 0 : -code;
}

static void test_fragments(void)
{
    ws_state s;
    ws_frame f;
    int good;

    memset(&s, 0, sizeof s);
    good = step(&s, 0x01, 10, &f) == 0 && s.msg_opcode == WS_TEXT &&
           s.msg_len == 10 && f.opcode == WS_TEXT && !f.fin;
    good &= step(&s, 0x00, 20, &f) == 0 && s.msg_opcode == WS_TEXT &&
            s.msg_len == 30 && f.opcode == WS_CONT && !f.fin;
    good &= step(&s, 0x80, 30, &f) == 0 && s.msg_opcode == WS_TEXT &&
            s.msg_len == 60 && f.opcode == WS_CONT && f.fin;
    ok(good, "text + cont + cont(fin): msg_opcode names the message");
    ok(step(&s, 0x81, 1, &f) == -1002,
       "message not closed by the caller: a new text is 1002");
    s.msg_opcode = 0;       /* the caller has consumed the message */
    ok(step(&s, 0x80, 1, &f) == -1002, "after close: continuation is 1002");
    ok(step(&s, 0x82, 4, &f) == 0 && s.msg_opcode == WS_BINARY &&
       s.msg_len == 4 && f.fin, "single binary frame opens and ends a message");
    s.msg_opcode = 0;

    good = step(&s, 0x02, 5, &f) == 0;
    good &= step(&s, 0x89, 3, &f) == 0 && f.opcode == WS_PING &&
            s.msg_opcode == WS_BINARY && s.msg_len == 5;
    good &= step(&s, 0x8A, 0, &f) == 0 && s.msg_len == 5;
    good &= step(&s, 0x00, 6, &f) == 0 && s.msg_opcode == WS_BINARY;
    good &= step(&s, 0x88, 2, &f) == 0 && f.opcode == WS_CLOSE;
    good &= step(&s, 0x80, 7, &f) == 0 && s.msg_opcode == WS_BINARY &&
            s.msg_len == 18;
    ok(good, "ping, pong and close between fragments leave the message alone");
    s.msg_opcode = 0;

    ok(step(&s, 0x00, 1, &f) == -1002, "continuation without a start");
    good = step(&s, 0x01, 1, &f) == 0;
    ok(good && step(&s, 0x81, 1, &f) == -1002, "text inside an open message");
    ok(step(&s, 0x02, 1, &f) == -1002, "binary inside an open message");

    memset(&s, 0, sizeof s);
    s.utf8 = 3;             /* left over by an earlier, broken message */
    ok(step(&s, 0x81, 2, &f) == 0 && s.utf8 == 0 && s.msg_len == 2,
       "a new message resets utf8 and msg_len");
    s.msg_opcode = 0;
    good = step(&s, 0x01, 600, &f) == 0 && step(&s, 0x00, 400, &f) == 0;
    ok(good && step(&s, 0x80, 1, &f) == -1009,
       "fragments summing over max_message: 1009");
}

/* ---- unmasking ----------------------------------------------------------- */

static void test_unmask(void)
{
    static const uint8_t mask[4] = { 0x12, 0xA5, 0xFF, 0x00 };
    uint8_t src[67], want[67], *p;
    size_t n, i, cut;
    unsigned off;
    int good = 1, pieces = 1;

    for (i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 37 + 11);
    for (off = 0; off < 8; off++)
        for (n = 0; n <= sizeof src; n++) {
            for (i = 0; i < n; i++)
                want[i] = src[i] ^ mask[(off + i) % 4];
            p = guarded(src, n);
            ws_unmask(p, n, mask, off);
            if (memcmp(p, want, n) != 0)
                good = 0;
            /* Misaligned start, same end. */
            if (n > 1) {
                p = guarded(src + 1, n - 1);
                ws_unmask(p, n - 1, mask, off);
                for (i = 0; i + 1 < n; i++)
                    if (p[i] != (src[i + 1] ^ mask[(off + i) % 4]))
                        good = 0;
            }
        }
    ok(good, "unmask at offsets 0..7, lengths 0..67 equals the byte-wise mask");

    for (cut = 0; cut <= sizeof src; cut++) {
        for (i = 0; i < sizeof src; i++)
            want[i] = src[i] ^ mask[i % 4];
        p = guarded(src, sizeof src);
        ws_unmask(p, cut, mask, 0);
        ws_unmask(p + cut, sizeof src - cut, mask, cut);
        if (memcmp(p, want, sizeof src) != 0)
            pieces = 0;
    }
    ok(pieces, "unmask in two pieces at every cut equals unmask whole");
    p = guarded(src, 8);
    ws_unmask(p, 8, mask, (1ull << 40) + 3);
    ok(p[0] == (src[0] ^ mask[3]) && p[1] == (src[1] ^ mask[0]),
       "unmask offset above 2^32");
}

/* ---- UTF-8 --------------------------------------------------------------- */

/* Whole-message validation of s[0..n) through the guard page. */
static int utf8_whole(const char *s, size_t n)
{
    ws_state st;

    memset(&st, 0, sizeof st);
    return ws_utf8(&st, guarded(s, n), n, 1);
}

/* An independent reference: decode by bit pattern, then check the length
 * is minimal and the code point a Unicode scalar value. */
static int utf8_reference(const uint8_t *p, size_t n)
{
    size_t i = 0, k, len;
    uint32_t cp;

    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        len = (p[i] & 0xE0) == 0xC0 ? 2 : (p[i] & 0xF0) == 0xE0 ? 3 :
              (p[i] & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || i + len > n)
            return -1;
        cp = p[i] & (0x7F >> len);
        for (k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return -1;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
            (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return -1;
        i += len;
    }
    return 0;
}

#define U8(desc, s, want) \
    ok(utf8_whole(s, sizeof(s) - 1) == (want), "utf8 %s: %s", \
       (want) ? "invalid" : "valid", desc)

static void test_utf8(void)
{
    static const uint8_t clef[4] = { 0xF0, 0x9D, 0x84, 0x9E };  /* U+1D11E */
    static const uint8_t bad[] = { 0xF0, 0x9D, 0xC4, 0x9E };
    uint8_t buf[4];
    ws_state st;
    size_t a, b;
    uint32_t x;
    int good, r;

    U8("empty", "", 0);
    U8("ASCII", "Hello, world! 0123456789 abcdefghij", 0);
    U8("2, 3 and 4 bytes", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e", 0);
    U8("boundaries U+0080 U+07FF U+0800", "\xc2\x80\xdf\xbf\xe0\xa0\x80", 0);
    U8("boundaries U+D7FF U+E000 U+FFFF", "\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf", 0);
    U8("boundaries U+10000 U+10FFFF", "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 0);
    U8("multi-byte after 8 ASCII bytes", "abcdefgh\xc3\xa9ijklmnopq\xe2\x82\xac", 0);
    U8("overlong 2-byte C0 80", "\xc0\x80", -1);
    U8("overlong 2-byte C1 BF", "\xc1\xbf", -1);
    U8("overlong 3-byte E0 9F BF", "\xe0\x9f\xbf", -1);
    U8("overlong 4-byte F0 8F BF BF", "\xf0\x8f\xbf\xbf", -1);
    U8("surrogate U+D800", "\xed\xa0\x80", -1);
    U8("surrogate U+DFFF", "\xed\xbf\xbf", -1);
    U8("U+110000", "\xf4\x90\x80\x80", -1);
    U8("F5 lead", "\xf5\x80\x80\x80", -1);
    U8("FF byte", "abc\xff", -1);
    U8("stray continuation", "ab\x80", -1);
    U8("lead followed by ASCII", "\xc3\x41", -1);
    U8("invalid after 8 ASCII bytes", "abcdefghij\xed\xa0\x80xyz", -1);
    U8("truncated 2-byte at fin", "ab\xc3", -1);
    U8("truncated 3-byte at fin", "\xe2\x82", -1);
    U8("truncated 4-byte at fin", "\xf0\x9d\x84", -1);

    /* The 8-byte ASCII skip must not hide a byte at any position. */
    good = 1;
    for (a = 0; a < 16; a++) {
        char text[24];

        memset(text, 'a', sizeof text);
        text[a] = (char)0xFF;
        if (utf8_whole(text, sizeof text) != -1)
            good = 0;
        text[a] = (char)0xC3;
        text[a + 1] = (char)0xA9;
        if (utf8_whole(text, sizeof text) != 0)
            good = 0;
    }
    ok(good, "utf8: a bad byte or a character at each of 16 positions");

    /* U+1D11E cut at every boundary, in two and in four pieces. */
    good = 1;
    for (a = 0; a <= 4; a++) {
        memset(&st, 0, sizeof st);
        memcpy(buf, clef, 4);
        r = ws_utf8(&st, guarded(buf, a), a, 0);
        r |= ws_utf8(&st, guarded(clef + a, 4 - a), 4 - a, 1);
        if (r != 0)
            good = 0;
        for (b = a; b <= 4; b++) {
            memset(&st, 0, sizeof st);
            r = ws_utf8(&st, guarded(clef, a), a, 0);
            r |= ws_utf8(&st, guarded(clef + a, b - a), b - a, 0);
            r |= ws_utf8(&st, guarded(clef + b, 4 - b), 4 - b, 1);
            if (r != 0)
                good = 0;
        }
    }
    ok(good, "utf8: a 4-byte character split at every boundary");
    good = 1;
    for (a = 1; a < 4; a++) {
        memset(&st, 0, sizeof st);
        r = ws_utf8(&st, guarded(bad, a), a, 0);
        r = r ? r : ws_utf8(&st, guarded(bad + a, 4 - a), 4 - a, 1);
        if (r != -1)
            good = 0;
    }
    ok(good, "utf8: a bad 4-byte sequence split at every boundary");
    memset(&st, 0, sizeof st);
    r = ws_utf8(&st, guarded("\xf0\x9d", 2), 2, 0);
    ok(r == 0 && ws_utf8(&st, NULL, 0, 1) == -1 &&
       ws_utf8(&st, guarded("a", 1), 1, 1) == -1,
       "utf8: unfinished at an empty fin frame; the error is sticky");
    memset(&st, 0, sizeof st);
    r = ws_utf8(&st, guarded("\xc3", 1), 1, 0);
    r |= ws_utf8(&st, guarded("\xa9", 1), 1, 1);
    ok(r == 0 && st.utf8 == 0, "utf8: a valid message ends in the initial state");
    memset(&st, 0, sizeof st);
    r = ws_utf8(&st, guarded("\xed\xa0", 2), 2, 0);
    ok(r == -1 && ws_utf8(&st, guarded("a", 1), 1, 0) == -1,
       "utf8: an error is early and sticky");

    /* All 1-, 2- and 3-byte inputs against the reference; 4-byte inputs
     * with each byte from a set that covers every boundary. */
    good = 1;
    for (x = 0; x < 1u << 24; x++) {
        buf[0] = (uint8_t)(x >> 16);
        buf[1] = (uint8_t)(x >> 8);
        buf[2] = (uint8_t)x;
        memset(&st, 0, sizeof st);
        if (ws_utf8(&st, buf, 3, 1) != utf8_reference(buf, 3))
            good = 0;
        if (x < 1u << 16) {
            memset(&st, 0, sizeof st);
            if (ws_utf8(&st, buf + 1, 2, 1) != utf8_reference(buf + 1, 2))
                good = 0;
        }
    }
    ok(good, "utf8: every 2- and 3-byte input agrees with a reference decoder");
    {
        static const uint8_t v[] = { 0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0,
                                     0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF,
                                     0xF0, 0xF3, 0xF4, 0xF5, 0xFF };
        size_t i, j, k, l, nv = sizeof v;

        good = 1;
        for (i = 0; i < nv; i++)
            for (j = 0; j < nv; j++)
                for (k = 0; k < nv; k++)
                    for (l = 0; l < nv; l++) {
                        uint8_t q[4] = { v[i], v[j], v[k], v[l] };

                        memset(&st, 0, sizeof st);
                        if (ws_utf8(&st, q, 4, 1) != utf8_reference(q, 4))
                            good = 0;
                    }
        ok(good, "utf8: 4-byte inputs over boundary bytes agree with the reference");
    }
}

/* ---- server frame headers ------------------------------------------------ */

static void test_frame_head(void)
{
    static const struct {
        uint64_t len;
        size_t n;
        const char *bytes;
    } cases[] = {
        { 0, 2, "\x81\x00" },
        { 125, 2, "\x81\x7d" },
        { 126, 4, "\x81\x7e\x00\x7e" },
        { 65535, 4, "\x81\x7e\xff\xff" },
        { 65536, 10, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00" },
        { 1ull << 32, 10, "\x81\x7f\x00\x00\x00\x01\x00\x00\x00\x00" },
    };
    uint8_t h[16];
    ws_state s;
    ws_frame f;
    size_t i, n;
    int code;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(h, 0xEE, sizeof h);
        n = ws_frame_head(h, WS_TEXT, cases[i].len, 1);
        ok(n == cases[i].n && memcmp(h, cases[i].bytes, n) == 0,
           "frame head: length %llu in %zu bytes",
           (unsigned long long)cases[i].len, cases[i].n);
        /* Masked as a client would send it, it parses back. */
        h[1] |= 0x80;
        memcpy(h + n, MASK_KEY, 4);
        memset(&s, 0, sizeof s);
        ok(parse(&s, h, n + 4, UINT64_MAX, &f, &code) == (int)(n + 4) &&
           f.len == cases[i].len && f.opcode == WS_TEXT && f.fin,
           "frame head: length %llu parses back",
           (unsigned long long)cases[i].len);
    }
    n = ws_frame_head(h, WS_BINARY, 3, 0);
    ok(n == 2 && h[0] == 0x02 && h[1] == 3, "frame head: binary without fin");
    n = ws_frame_head(h, WS_CLOSE, 2, 1);
    ok(n == 2 && h[0] == 0x88 && h[1] == 2, "frame head: close");
    n = ws_frame_head(h, WS_PONG, 0, 1);
    ok(n == 2 && h[0] == 0x8A && h[1] == 0, "frame head: pong");
}

/* ---- close codes --------------------------------------------------------- */

static void test_close_codes(void)
{
    static const int valid[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                 1010, 1011, 1012, 1013, 1014, 3000, 3999,
                                 4000, 4999 };
    static const int invalid[] = { -1, 0, 999, 1004, 1005, 1006, 1015, 1016,
                                   1100, 2000, 2999, 5000, 65535, 70000 };
    size_t i;
    int code, good = 1;

    for (i = 0; i < sizeof valid / sizeof valid[0]; i++)
        good &= ws_close_code_ok(valid[i]) != 0;
    ok(good, "close codes: 1000-1003, 1007-1014, 3000-4999 edges valid");
    good = 1;
    for (i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        good &= ws_close_code_ok(invalid[i]) == 0;
    ok(good, "close codes: 0, 999, 1004-1006, 1015, 1016, 2999, 5000 invalid");
    good = 1;
    for (code = -10; code < 70000; code++) {
        int want = (code >= 1000 && code <= 1003) ||
                   (code >= 1007 && code <= 1014) ||
                   (code >= 3000 && code <= 4999);

        if ((ws_close_code_ok(code) != 0) != want)
            good = 0;
    }
    ok(good, "close codes: every code from -10 to 69999");
}

int main(void)
{
    tap_begin();
    test_accept_key();
    test_parse_accept();
    test_parse_reject();
    test_fragments();
    test_unmask();
    test_utf8();
    test_frame_head();
    test_close_codes();
    return tap_end();
}
