/* ws.c -- RFC 6455 WebSocket protocol, server side: frame headers, message
 * sequencing, unmasking, UTF-8 of text, the handshake key and close codes.
 * No I/O and no Python: the worker owns the bytes, this file judges them.
 *
 * Policy: strict wherever RFC 6455 says "MUST fail the connection"; that
 * is what Autobahn|Testsuite checks, and what a client may rely on.
 *
 *   - No extension is ever negotiated, so any RSV bit is 1002.
 *   - Opcodes 3-7 and 0xB-0xF are reserved: 1002.
 *   - Every client frame must be masked (5.1): an unmasked one is 1002.
 *   - Control frames (opcode >= 8) carry at most 125 bytes, in the 7-bit
 *     length field, and are never fragmented: otherwise 1002.
 *   - A 64-bit length with its top bit set is 1002.  Lengths that are not
 *     minimally encoded are accepted: 5.2 asks senders for the minimum but
 *     names no failure, and refusing them protects nothing.
 *   - A data frame that makes its message exceed max_message is 1009.
 *   - Errors are reported as soon as the bytes that prove them are there
 *     (byte 0, byte 1, then the length), in that fixed order, so a header
 *     fed in pieces gets the same answer as the header fed whole.
 *
 * The message protocol between ws_frame_parse() and its caller:
 *
 *   - Control frames never touch s->msg_*, so a ping, pong or close may
 *     arrive between the fragments of a message.
 *   - WS_TEXT or WS_BINARY opens a message: s->msg_opcode becomes that
 *     opcode, s->msg_len the frame's length, s->utf8 the initial state.
 *     It is a 1002 while s->msg_opcode is not 0.
 *   - WS_CONT continues the open message (1002 if s->msg_opcode is 0):
 *     s->msg_len grows by the frame's length, s->msg_opcode is unchanged.
 *   - So after any data frame is accepted, s->msg_opcode is the opcode of
 *     the message the frame belongs to -- that is how the caller learns
 *     whether a WS_CONT frame carries text or bytes.  It stays set after
 *     the final (fin) frame too: the parser does not close the message.
 *     The CALLER closes it, once it has consumed that final payload, with
 *     "s->msg_opcode = 0" (msg_len and utf8 are reset by the next open).
 *     A caller that forgets gets 1002 on its next message, never silence.
 *   - Nothing in s changes unless the frame is accepted (return > 0), so
 *     an HTTP_INCOMPLETE parse can simply be repeated with more bytes.
 *
 * ws_utf8() validates the payload of a text message in any number of
 * pieces, keeping its place in s->utf8, which belongs to the open text
 * message: the parser resets it when a message opens.  A valid message
 * ends (fin) back in the initial state; after an error the state stays
 * invalid, so every later call fails too, however the bytes were cut.
 */
#include "granc.h"
#include "http.h"
#include "ws.h"

#include <string.h>


/* Header bits (RFC 6455 5.2). */
#define WS_B0_FIN       0x80
#define WS_B0_RSV       0x70        /* RSV1-3: meaningful only with extensions */
#define WS_B0_OPCODE    0x0F
#define WS_B1_MASK      0x80
#define WS_B1_LEN       0x7F
#define WS_LEN_16       126         /* 7-bit length value: a 16-bit length follows */
#define WS_LEN_64       127         /* ... a 64-bit length follows */
#define WS_CONTROL      0x8         /* opcodes from here on are control frames */
#define WS_MAX_CONTROL  125         /* control payload limit (5.5) */
#define WS_MASK_BYTES   4

/* Close codes this file produces (RFC 6455 7.4.1). */
#define WS_CLOSE_PROTOCOL 1002
#define WS_CLOSE_TOO_BIG  1009

/* The handshake's fixed suffix (RFC 6455 1.3, 4.2.2). */
#define WS_GUID         "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_CHARS    24          /* base64 of 16 bytes, with "==" */
#define WS_SHA1_BYTES   20
#define WS_ACCEPT_CHARS 28          /* base64 of the 20-byte digest */

/* UTF-8 (RFC 3629 4) as a state machine over bytes.  The states name what
 * the next byte must be.  The narrow states after E0, ED, F0 and F4 are
 * what rule out overlong forms, UTF-16 surrogates (U+D800-DFFF) and code
 * points above U+10FFFF; C0, C1 and F5-FF can never start a sequence. */
enum {
    U8_OK,                      /* between characters; the initial state */
    U8_CONT1,                   /* one more 80-BF */
    U8_CONT2,                   /* two more 80-BF */
    U8_CONT3,                   /* three more 80-BF */
    U8_AFTER_E0,                /* A0-BF, then one 80-BF (no overlong 3-byte) */
    U8_AFTER_ED,                /* 80-9F, then one 80-BF (no surrogates) */
    U8_AFTER_F0,                /* 90-BF, then two 80-BF (no overlong 4-byte) */
    U8_AFTER_F4,                /* 80-8F, then two 80-BF (nothing > U+10FFFF) */
    U8_BAD                      /* invalid; sticky */
};

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ---- frame headers ------------------------------------------------------- */

static int fail(int *close_code, int code)
{
    *close_code = code;
    return HTTP_BAD;
}

static int is_known_opcode(int op)
{
    return op == WS_CONT || op == WS_TEXT || op == WS_BINARY ||
           op == WS_CLOSE || op == WS_PING || op == WS_PONG;
}

int ws_frame_parse(ws_state *s, const uint8_t *buf, size_t n, uint64_t max_message,
                   ws_frame *f, int *close_code)
{
    size_t lenbytes, head, i;
    uint64_t len;
    int op, fin, len7;

    /* Byte 0: flags, opcode and the message sequence. */
    if (n < 1)
        return HTTP_INCOMPLETE;
    fin = (buf[0] & WS_B0_FIN) != 0;
    op = buf[0] & WS_B0_OPCODE;
    if ((buf[0] & WS_B0_RSV) || !is_known_opcode(op) || (op >= WS_CONTROL && !fin))
        return fail(close_code, WS_CLOSE_PROTOCOL);
    if (op == WS_CONT ? s->msg_opcode == 0 : op < WS_CONTROL && s->msg_opcode != 0)
        return fail(close_code, WS_CLOSE_PROTOCOL);

    /* Byte 1: mask bit and the 7-bit length. */
    if (n < 2)
        return HTTP_INCOMPLETE;
    len7 = buf[1] & WS_B1_LEN;
    if (!(buf[1] & WS_B1_MASK))
        return fail(close_code, WS_CLOSE_PROTOCOL);
    if (op >= WS_CONTROL && len7 > WS_MAX_CONTROL)
        return fail(close_code, WS_CLOSE_PROTOCOL);

    /* The extended length, big-endian (network order). */
    lenbytes = len7 == WS_LEN_64 ? 8 : len7 == WS_LEN_16 ? 2 : 0;
    if (n < 2 + lenbytes)
        return HTTP_INCOMPLETE;
    len = lenbytes ? 0 : (uint64_t)len7;
    for (i = 0; i < lenbytes; i++)
        len = len << 8 | buf[2 + i];
    if (len >> 63)
        return fail(close_code, WS_CLOSE_PROTOCOL);

    /* Message size.  msg_len never exceeds max_message once accepted; the
     * first test only guards against a caller lowering max_message. */
    if (op == WS_CONT && (s->msg_len > max_message ||
                          len > max_message - s->msg_len))
        return fail(close_code, WS_CLOSE_TOO_BIG);
    if ((op == WS_TEXT || op == WS_BINARY) && len > max_message)
        return fail(close_code, WS_CLOSE_TOO_BIG);

    head = 2 + lenbytes + WS_MASK_BYTES;
    if (n < head)
        return HTTP_INCOMPLETE;

    f->fin = (unsigned)fin;
    f->masked = 1;
    f->opcode = op;
    f->len = len;
    memcpy(f->mask, buf + 2 + lenbytes, WS_MASK_BYTES);

    /* Accepted: only now does the message state move. */
    if (op == WS_TEXT || op == WS_BINARY) {
        s->msg_opcode = op;
        s->msg_len = len;
        s->utf8 = U8_OK;
    } else if (op == WS_CONT) {
        s->msg_len += len;
    }
    return (int)head;
}

size_t ws_frame_head(uint8_t out[10], int opcode, uint64_t len, int fin)
{
    size_t i, lenbytes;

    out[0] = (uint8_t)((fin ? WS_B0_FIN : 0) | (opcode & WS_B0_OPCODE));
    if (len < WS_LEN_16) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = WS_LEN_16;
        lenbytes = 2;
    } else {
        out[1] = WS_LEN_64;
        lenbytes = 8;
    }
    for (i = 0; i < lenbytes; i++)
        out[2 + i] = (uint8_t)(len >> (8 * (lenbytes - 1 - i)));
    return 2 + lenbytes;
}

/* ---- payloads ------------------------------------------------------------ */

/* Eight bytes at a time: the mask repeats every 4 bytes, so a word of
 * 8 mask bytes starting at the right phase fits every aligned-or-not
 * 8-byte step; memcpy keeps it legal for any p alignment and byte order. */
void ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    uint8_t m[8];
    uint64_t word, m64;
    size_t i;

    for (i = 0; i < sizeof m; i++)
        m[i] = mask[(offset + i) % 4];
    memcpy(&m64, m, sizeof m64);
    for (i = 0; i + 8 <= n; i += 8) {
        memcpy(&word, p + i, sizeof word);
        word ^= m64;
        memcpy(p + i, &word, sizeof word);
    }
    for (; i < n; i++)
        p[i] ^= m[i % 8];       /* i % 8 keeps the phase: 8 is a multiple of 4 */
}

/* One byte through the UTF-8 state machine (the U8_* states above). */
static uint32_t utf8_in(uint8_t b, uint8_t lo, uint8_t hi, uint32_t next)
{
    return b >= lo && b <= hi ? next : U8_BAD;
}

static uint32_t utf8_step(uint32_t st, uint8_t b)
{
    switch (st) {
    case U8_OK:
        if (b < 0x80)
            return U8_OK;
        if (b < 0xC2)
            return U8_BAD;      /* a stray 80-BF, or an overlong C0/C1 lead */
        if (b < 0xE0)
            return U8_CONT1;
        if (b == 0xE0)
            return U8_AFTER_E0;
        if (b == 0xED)
            return U8_AFTER_ED;
        if (b < 0xF0)
            return U8_CONT2;
        if (b == 0xF0)
            return U8_AFTER_F0;
        if (b < 0xF4)
            return U8_CONT3;
        return b == 0xF4 ? U8_AFTER_F4 : U8_BAD;
    case U8_CONT1:    return utf8_in(b, 0x80, 0xBF, U8_OK);
    case U8_CONT2:    return utf8_in(b, 0x80, 0xBF, U8_CONT1);
    case U8_CONT3:    return utf8_in(b, 0x80, 0xBF, U8_CONT2);
    case U8_AFTER_E0: return utf8_in(b, 0xA0, 0xBF, U8_CONT1);
    case U8_AFTER_ED: return utf8_in(b, 0x80, 0x9F, U8_CONT1);
    case U8_AFTER_F0: return utf8_in(b, 0x90, 0xBF, U8_CONT2);
    case U8_AFTER_F4: return utf8_in(b, 0x80, 0x8F, U8_CONT2);
    default:          return U8_BAD;
    }
}

#define ASCII_HIGH_BITS 0x8080808080808080ull

int ws_utf8(ws_state *s, const uint8_t *p, size_t n, int fin)
{
    uint32_t st = s->utf8;
    uint64_t word;
    size_t i = 0;

    while (i < n && st != U8_BAD) {
        /* Text is mostly ASCII: skip 8 plain bytes at once between characters. */
        if (st == U8_OK && n - i >= 8) {
            memcpy(&word, p + i, sizeof word);
            if ((word & ASCII_HIGH_BITS) == 0) {
                i += 8;
                continue;
            }
        }
        st = utf8_step(st, p[i++]);
    }
    if (fin && st != U8_OK)
        st = U8_BAD;            /* the message ends inside a character */
    s->utf8 = st;
    return st == U8_BAD ? -1 : 0;
}

/* ---- handshake ----------------------------------------------------------- */

/* SHA-1 (FIPS 180-4 6.1), one copy for every build (with or without
 * BearSSL).  Only ever hashes a public handshake key, where SHA-1's
 * weakness does not matter. */
static uint32_t rol32(uint32_t x, int k)
{
    return x << k | x >> (32 - k);
}

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    static const uint32_t sha1_k[4] = { 0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6 };
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f, t;
    int i;

    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (i = 0; i < 80; i++) {
        switch (i / 20) {
        case 0:  f = (b & c) | (~b & d); break;
        case 2:  f = (b & c) | (b & d) | (c & d); break;
        default: f = b ^ c ^ d; break;
        }
        t = rol32(a, 5) + f + e + sha1_k[i / 20] + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static void sha1(const uint8_t *msg, size_t n, uint8_t out[WS_SHA1_BYTES])
{
    uint32_t h[5] = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 };
    uint8_t tail[128];          /* the last partial block, 0x80, zeros, length */
    size_t full = n - n % 64, rest = n % 64, tn, i;
    uint64_t bits = (uint64_t)n * 8;

    for (i = 0; i < full; i += 64)
        sha1_block(h, msg + i);
    memset(tail, 0, sizeof tail);
    memcpy(tail, msg + full, rest);
    tail[rest] = 0x80;
    tn = rest + 1 + 8 <= 64 ? 64 : 128;
    for (i = 0; i < 8; i++)
        tail[tn - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (i = 0; i < tn; i += 64)
        sha1_block(h, tail + i);
    for (i = 0; i < WS_SHA1_BYTES; i++)
        out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static int is_b64_char(char c)
{
    return c != '\0' && strchr(b64_alphabet, c) != NULL;
}

/* The key must be the base64 of 16 bytes: 22 alphabet characters and
 * "==".  The unused low bits of the 22nd character are not checked
 * (RFC 4648 3.5 makes that optional; the key is only hashed, as text). */
int ws_accept_key(const char *key, size_t n, char out[29])
{
    uint8_t msg[WS_KEY_CHARS + sizeof WS_GUID - 1], d[WS_SHA1_BYTES + 1];
    size_t i, o = 0;
    uint32_t v;

    if (n != WS_KEY_CHARS || key[22] != '=' || key[23] != '=')
        return -1;
    for (i = 0; i < 22; i++)
        if (!is_b64_char(key[i]))
            return -1;
    memcpy(msg, key, WS_KEY_CHARS);
    memcpy(msg + WS_KEY_CHARS, WS_GUID, sizeof WS_GUID - 1);
    sha1(msg, sizeof msg, d);

    /* 20 bytes = six 3-byte groups and 2 bytes: the last group reads
     * d[20] as zero and its fourth character becomes the '=' pad. */
    d[WS_SHA1_BYTES] = 0;
    for (i = 0; i < WS_SHA1_BYTES; i += 3) {
        v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = b64_alphabet[v >> 6 & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    out[WS_ACCEPT_CHARS - 1] = '=';
    out[WS_ACCEPT_CHARS] = '\0';
    return 0;
}

/* ---- close codes --------------------------------------------------------- */

/* RFC 6455 7.4.1 and the IANA registry: 1000-1003 and 1007-1014 may be
 * sent; 1004 is reserved, 1005, 1006 and 1015 must never appear on the
 * wire; 3000-3999 are registered for libraries, 4000-4999 private. */
int ws_close_code_ok(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}
