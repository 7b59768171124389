/* fuzz_ws.c -- libFuzzer harness for ws.c.
 *
 *   clang -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_ws.c ws.c
 *
 * The input is a client's byte stream.  A small reader plays the worker:
 * it parses frame headers, unmasks payloads piece by piece as they
 * arrive, validates text with ws_utf8() and close frames with
 * ws_close_code_ok(), and ends messages as ws.c's header comment says.
 * Everything it learns goes into a list of events.
 *
 * The stream is read four times: whole, cut in two at a point derived
 * from the data, in small pieces whose size comes from the data, and one
 * byte at a time (split at every point).  The four event lists must be
 * identical, the invariants of the contract must hold on every header,
 * and every text frame's UTF-8 verdict must match a reference decoder;
 * any failure abort()s.  Each piece is copied to a buffer of its exact
 * size so ASan sees any read past it.
 */
#include "granc.h"
#include "http.h"
#include "ws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_MAX 14                 /* 2 + 8 length bytes + 4 mask bytes */

enum { EV_FRAME, EV_REFUSED, EV_FRAME_END, EV_MESSAGE, EV_CLOSE, EV_EOF };

typedef struct event {
    int kind;
    int a, b, c;                    /* kind-specific, see the readers */
    uint64_t len, msg_len;
    uint32_t hash;
} event;

typedef struct reader {
    ws_state s;
    uint64_t max;
    uint8_t head[HEAD_MAX];         /* header bytes not parsed yet */
    size_t nhead;
    int in_payload, dead, utf8_bad;
    ws_frame f;
    uint64_t done;                  /* payload bytes of f seen so far */
    uint32_t hash;                  /* FNV-1a of the unmasked payload */
    uint8_t ctl[125];               /* a control frame's payload */
    uint8_t *text;                  /* the open text message, unmasked */
    size_t ntext;
    event *ev;
    size_t nev, cap;
} reader;

static void check(int cond)
{
    if (!cond)
        abort();
}

static int same_state(const ws_state *a, const ws_state *b)
{
    return a->msg_opcode == b->msg_opcode && a->msg_len == b->msg_len &&
           a->utf8 == b->utf8;
}

/* One character of len bytes at p, decoded by bit pattern: it must use
 * continuation bytes, the shortest form, and be a Unicode scalar value. */
static int utf8_char(const uint8_t *p, size_t len)
{
    uint32_t cp = p[0] & (0x7F >> len);
    size_t k;

    for (k = 1; k < len; k++) {
        if ((p[k] & 0xC0) != 0x80)
            return -1;
        cp = cp << 6 | (p[k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
        (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return -1;
    return 0;
}

/* A reference for ws_utf8(), written differently.  Without fin, a
 * character cut at the end passes if some completion is valid: only the
 * second byte has a narrowed range, and trying the ends of every range
 * (then 0x80s) finds a completion whenever there is one. */
static int utf8_reference(const uint8_t *p, size_t n, int fin)
{
    static const uint8_t second[] = { 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF };
    uint8_t tmp[4];
    size_t i = 0, len, j;

    while (i < n) {
        len = p[i] < 0x80 ? 1 : (p[i] & 0xE0) == 0xC0 ? 2 :
              (p[i] & 0xF0) == 0xE0 ? 3 : (p[i] & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0)
            return -1;
        if (i + len <= n) {
            if (utf8_char(p + i, len) != 0)
                return -1;
            i += len;
            continue;
        }
        if (fin)
            return -1;
        for (j = 0; j < sizeof second; j++) {
            memset(tmp, 0x80, sizeof tmp);
            memcpy(tmp, p + i, n - i);
            if (n - i == 1)
                tmp[1] = second[j];
            if (utf8_char(tmp, len) == 0)
                return 0;
        }
        return -1;
    }
    return 0;
}

static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);

    check(q != NULL);
    memcpy(q, p, n);
    return q;
}

static void emit(reader *r, int kind, int a, int b, int c, uint64_t len)
{
    event *e;

    check(r->nev < r->cap);
    e = &r->ev[r->nev++];
    e->kind = kind;
    e->a = a;
    e->b = b;
    e->c = c;
    e->len = len;
    e->msg_len = r->s.msg_len;
    e->hash = kind == EV_FRAME_END ? r->hash : 0;
}

static int is_text(const reader *r)
{
    return r->f.opcode < WS_CLOSE && r->s.msg_opcode == WS_TEXT;
}

/* The whole payload of r->f has been seen. */
static void frame_end(reader *r)
{
    ws_state tmp;
    int code = -1, reason = 0;

    emit(r, EV_FRAME_END, r->f.opcode, r->utf8_bad, 0, r->f.len);
    if (is_text(r))
        check(r->utf8_bad == (utf8_reference(r->text, r->ntext, r->f.fin) != 0));
    if (r->utf8_bad) {
        r->dead = 1;                /* close 1007 */
        return;
    }
    if (r->f.opcode == WS_CLOSE && r->f.len >= 2) {
        code = r->ctl[0] << 8 | r->ctl[1];
        memset(&tmp, 0, sizeof tmp);
        reason = ws_utf8(&tmp, r->ctl + 2, (size_t)r->f.len - 2, 1);
        check(reason == utf8_reference(r->ctl + 2, (size_t)r->f.len - 2, 1));
        emit(r, EV_CLOSE, code, ws_close_code_ok(code), reason, r->f.len);
    }
    if (r->f.opcode < WS_CLOSE && r->f.fin) {
        check(r->s.msg_opcode == WS_TEXT || r->s.msg_opcode == WS_BINARY);
        emit(r, EV_MESSAGE, r->s.msg_opcode, 0, 0, r->s.msg_len);
        r->s.msg_opcode = 0;        /* the caller closes the message */
    }
    r->in_payload = 0;
}

/* Take header bytes from p; returns how many were used. */
static size_t read_head(reader *r, const uint8_t *p, size_t n)
{
    size_t take = n < HEAD_MAX - r->nhead ? n : HEAD_MAX - r->nhead, had = r->nhead;
    ws_state before = r->s;
    uint8_t *buf;
    int ret, code = 0;

    memcpy(r->head + r->nhead, p, take);
    r->nhead += take;
    buf = dup_exact(r->head, r->nhead);
    memset(&r->f, 0xA5, sizeof r->f);
    ret = ws_frame_parse(&r->s, buf, r->nhead, r->max, &r->f, &code);
    free(buf);
    if (ret == HTTP_INCOMPLETE) {
        check(r->nhead < HEAD_MAX && take == n);
        check(same_state(&before, &r->s));
        return take;
    }
    if (ret == HTTP_BAD) {
        check(code == 1002 || code == 1009);
        check(same_state(&before, &r->s));
        emit(r, EV_REFUSED, code, 0, 0, 0);
        r->dead = 1;
        return take;
    }

    /* Accepted: the invariants of the contract. */
    check(ret >= 6 && ret <= HEAD_MAX && (size_t)ret > had &&
          (size_t)ret <= r->nhead);
    check(r->f.masked && (r->f.len >> 63) == 0);
    switch (r->f.opcode) {
    case WS_CLOSE: case WS_PING: case WS_PONG:
        check(r->f.fin && r->f.len <= 125 && same_state(&before, &r->s));
        break;
    case WS_TEXT: case WS_BINARY:
        check(before.msg_opcode == 0 && r->s.msg_opcode == r->f.opcode &&
              r->s.msg_len == r->f.len && r->s.utf8 == 0);
        break;
    case WS_CONT:
        check(before.msg_opcode != 0 && r->s.msg_opcode == before.msg_opcode &&
              r->s.msg_len == before.msg_len + r->f.len);
        break;
    default:
        check(0);
    }
    if (r->f.opcode < WS_CLOSE)
        check(r->s.msg_len <= r->max);
    emit(r, EV_FRAME, r->f.opcode, r->f.fin, ret, r->f.len);

    r->in_payload = 1;
    r->done = 0;
    r->hash = 2166136261u;
    r->utf8_bad = 0;
    r->nhead = 0;
    if (r->f.opcode == WS_TEXT)
        r->ntext = 0;
    if (r->f.len == 0) {
        /* An empty final text frame still ends the message's UTF-8. */
        if (is_text(r) && r->f.fin && ws_utf8(&r->s, NULL, 0, 1) != 0)
            r->utf8_bad = 1;
        frame_end(r);
    }
    return (size_t)ret - had;       /* the rest of take is payload */
}

static size_t read_payload(reader *r, const uint8_t *p, size_t n)
{
    uint64_t left = r->f.len - r->done;
    size_t take = left < n ? (size_t)left : n, i;
    uint8_t *buf = dup_exact(p, take);
    int last = r->done + take == r->f.len;

    ws_unmask(buf, take, r->f.mask, r->done);
    for (i = 0; i < take; i++) {
        check((buf[i] ^ r->f.mask[(r->done + i) % 4]) == p[i]);
        r->hash = (r->hash ^ buf[i]) * 16777619u;
    }
    if (r->f.opcode >= WS_CLOSE)
        memcpy(r->ctl + r->done, buf, take);
    if (is_text(r)) {
        memcpy(r->text + r->ntext, buf, take);
        r->ntext += take;
    }
    if (is_text(r) && !r->utf8_bad &&
        ws_utf8(&r->s, buf, take, last && r->f.fin) != 0)
        r->utf8_bad = 1;
    free(buf);
    r->done += take;
    if (last)
        frame_end(r);
    return take;
}

static void feed(reader *r, const uint8_t *p, size_t n)
{
    size_t used;

    while (n > 0 && !r->dead) {
        used = r->in_payload ? read_payload(r, p, n) : read_head(r, p, n);
        p += used;
        n -= used;
    }
}

/* Read data[0..size) in pieces: cut once at cut, then every step bytes
 * (step 0: no further cuts).  At the end, an unfinished frame is noted. */
static void run(reader *r, const uint8_t *data, size_t size, size_t cut,
                size_t step, uint64_t max)
{
    size_t a = 0, b;

    memset(r, 0, sizeof *r);
    r->max = max;
    r->cap = size + 16;
    r->ev = calloc(r->cap, sizeof *r->ev);
    r->text = malloc(size + 1);     /* payload bytes all come from data */
    check(r->ev != NULL && r->text != NULL);
    while (a < size) {
        b = a < cut ? cut : step ? a + step : size;
        b = b < size ? b : size;
        feed(r, data + a, b - a);
        a = b;
    }
    /* A refused header may stop early, at a point that depends on the
     * pieces: where a dead reader stopped is not part of the answer. */
    if (r->dead)
        emit(r, EV_EOF, 1, 0, 0, 0);
    else
        emit(r, EV_EOF, 0, r->in_payload, (int)r->nhead, r->done);
}

static void same(const reader *x, const reader *y)
{
    const event *a, *b;
    size_t i;

    check(x->nev == y->nev && same_state(&x->s, &y->s));
    for (i = 0; i < x->nev; i++) {
        a = &x->ev[i];
        b = &y->ev[i];
        check(a->kind == b->kind && a->a == b->a && a->b == b->b &&
              a->c == b->c && a->len == b->len && a->msg_len == b->msg_len &&
              a->hash == b->hash);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static reader whole, split, small, bytes;
    size_t cut = 0, i;
    uint64_t max;

    /* A cut point and a piece size that move with the content. */
    for (i = 0; i < size; i++)
        cut = cut * 31 + data[i];
    /* A small max_message half of the time, to reach 1009. */
    max = size && (data[size - 1] & 1) ? data[size - 1] * 3u
                                       : WS_MAX_MESSAGE_DEFAULT;

    run(&whole, data, size, 0, 0, max);
    run(&split, data, size, size ? cut % (size + 1) : 0, 0, max);
    run(&small, data, size, 0, 2 + cut / 7 % 9, max);
    run(&bytes, data, size, 0, 1, max);
    same(&whole, &split);
    same(&whole, &small);
    same(&whole, &bytes);
    free(whole.ev);
    free(split.ev);
    free(small.ev);
    free(bytes.ev);
    free(whole.text);
    free(split.text);
    free(small.text);
    free(bytes.text);
    return 0;
}
