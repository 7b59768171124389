/* fuzz_h2.c -- libFuzzer harness for h2.c, the HTTP/2 engine.
 *
 *   clang -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_h2.c h2.c hpack.c http.c
 *
 * The input is a client's byte stream after two bytes of knobs: byte 0
 * chooses whether the harness puts the connection preface in front, and
 * the server's options (max concurrent streams 1, 2, 4 or 200, windows of
 * 1024, 65535 or 1 MiB, max frame size, a small max header list); byte 1 salts
 * what the app does with each stream.
 *
 * The stream is fed to a session three times: whole, cut in pieces whose
 * sizes come from the data, and one byte at a time.  The caller keeps the
 * bytes h2_recv did not take (a partial frame) and feeds them again with
 * the next ones, as h2_conn.c does; each feed is copied to a buffer of its
 * exact size so ASan sees any read past it.  Then a tiny app plays: it
 * takes the started streams' bodies and answers (h2_head, some body,
 * trailers or not, or h2_rst) for a few rounds of h2_produce.  Everything
 * the engine wrote into s->out is recorded; the three transcripts must be
 * identical.  The app plays only once the input is all in, so that it acts
 * at the same point of every feed; a fourth run plays it after every feed
 * (one byte at a time), where the order legitimately differs, and checks
 * only the invariants.
 *
 * Invariants, checked after every call: each frame the engine wrote has a
 * valid header (a known type, a length within the peer's max frame size
 * and its type's rules, stream ids where they belong), header blocks are
 * never interleaved, nothing but RST_STREAM follows our END_STREAM on a
 * stream, windows stay within what RFC 9113 allows, s->nopen counts the
 * open streams, a closed stream is freed by h2_produce unless the app or
 * the start queue holds it, and h2_recv takes every complete frame
 * (unless the connection died).  Any failure abort()s.  Everything is freed (h2_free)
 * so LeakSanitizer checks the streams' lifetimes.
 */
#include "granc.h"
#include "h2.h"
#include "hpack.h"
#include "http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BYTE_MAX   4096        /* longest input fed one byte at a time (each
                                  feed copies the pending partial frame) */
#define WIN_MAX    0x7fffffffLL

enum { DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY,
       WINDOW_UPDATE, CONTINUATION };

static void check(int cond)
{
    if (!cond)
        abort();
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- the transcript: every byte the engine wrote, checked ---------------- */

typedef struct run {
    unsigned char *t;          /* transcript */
    size_t tlen, tcap;
    uint32_t blk_id;           /* a header block of ours is open on this stream */
    uint32_t ended[256];       /* streams we ended (END_STREAM): a small set */
    unsigned nended;
    h2_stream **app;           /* streams the app holds */
    size_t napp, appcap;
    unsigned salt;
    uint64_t body_sum;         /* request body bytes the app took */
    int dead;
} run;

static void tr_add(run *r, const void *p, size_t n)
{
    if (r->tlen + n > r->tcap) {
        size_t cap = r->tcap ? r->tcap : 4096;
        while (cap < r->tlen + n) cap *= 2;
        r->t = realloc(r->t, cap);
        check(r->t != NULL);
        r->tcap = cap;
    }
    memcpy(r->t + r->tlen, p, n);
    r->tlen += n;
}

static int was_ended(run *r, uint32_t id)
{
    for (unsigned i = 0; i < r->nended && i < 256; i++)
        if (r->ended[i] == id) return 1;
    return 0;
}

/* The session's own state: windows, the open count, bodies. */
static void check_sess(h2_sess *s)
{
    int open = 0;
    check(s->swin >= 0 && s->swin <= WIN_MAX);
    check(s->rwin >= 0 && s->rwin <= WIN_MAX);
    check(s->nopen >= 0);
    check(s->peer_frame >= 16384 && s->peer_frame <= 16777215);
    check(s->peer_window >= 0 && s->peer_window <= WIN_MAX);
    for (h2_stream *st = s->streams; st; st = st->next) {
        open += st->open;
        check(st->id & 1 && st->id <= s->max_id);
        /* a SETTINGS change may take a send window below zero (6.9.2) */
        check(st->swin <= WIN_MAX && st->swin >= -WIN_MAX);
        /* our SETTINGS ACKed may take a receive window below zero */
        check(st->rwin >= (s->my_window < 65535 ? (int64_t)s->my_window - 65535 : 0) && st->rwin <= WIN_MAX);
        check(st->clen < 0 || st->got <= st->clen || st->reset);
        size_t in = 0;
        for (h2_chunk *k = st->in; k; k = k->next) {
            check(k->off <= k->len);
            in += k->len - k->off;
        }
        check(st->in_bytes <= in);
        check(!st->open || st->in_bytes == in || st->drop_in);
        check(st->out.off <= st->out.len && st->out.len <= st->out.cap + 0);
    }
    check(open == s->nopen);
}

/* Parse, check and record s->out, then empty it. */
static void record(run *r, h2_sess *s)
{
    const unsigned char *p = (const unsigned char *)s->out.p + s->out.off;
    size_t n = s->out.len - s->out.off, i = 0;
    while (i < n) {
        check(n - i >= 9);
        const unsigned char *h = p + i;
        size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
        int type = h[3], flags = h[4];
        uint32_t id = be32(h + 5);
        check(!(id & 0x80000000u));
        check(n - i >= 9 + len);
        check(type <= CONTINUATION && type != PUSH_PROMISE && type != PRIORITY);
        /* a header block of ours is contiguous */
        check(!r->blk_id || (type == CONTINUATION && id == r->blk_id));
        switch (type) {
        case DATA:
        case HEADERS:
        case CONTINUATION:
            check(id & 1 && len <= s->peer_frame);
            check(!was_ended(r, id));
            if (type == CONTINUATION) check(r->blk_id == id);
            if (type != DATA) r->blk_id = flags & 0x4 ? 0 : id;
            if (type != CONTINUATION && (flags & 0x1) && r->nended < 256)
                r->ended[r->nended++] = id;
            check(!(flags & ~(type == DATA ? 0x1 : type == HEADERS ? 0x5 : 0x4)));
            break;
        case RST_STREAM:
            check(id && len == 4 && be32(h + 9) <= H2_HTTP_1_1_REQUIRED);
            break;
        case SETTINGS:
            check(id == 0 && len % 6 == 0 && (!(flags & 1) || len == 0));
            break;
        case PING:
            check(id == 0 && len == 8);
            break;
        case GOAWAY:
            check(id == 0 && len == 8 && be32(h + 13) <= H2_HTTP_1_1_REQUIRED);
            check(be32(h + 9) <= s->max_id);
            break;
        case WINDOW_UPDATE: {
            check(len == 4);
            uint32_t inc = be32(h + 9);
            check(inc > 0 && inc <= WIN_MAX);
            break;
        }
        }
        i += 9 + len;
    }
    tr_add(r, p, n);
    s->out.off = s->out.len = 0;
    check_sess(s);
}

/* ---- the app -------------------------------------------------------------- */

static http_header hf(const char *n, const char *v)
{
    return (http_header){ { n, strlen(n) }, { v, strlen(v) } };
}

/* n body bytes into the response, as h2_conn.c's frame and write do. */
static void app_write(h2_stream *st, size_t n)
{
    if (st->r.res.nobody) return;
    if (st->r.res.clen >= 0 && (int64_t)n > st->r.res.clen - st->r.sent)
        n = (size_t)(st->r.res.clen - st->r.sent);
    h2_buf *b = &st->out;
    if (b->off == b->len) b->off = b->len = 0;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        b->p = realloc(b->p, cap);
        check(b->p != NULL);
        b->cap = cap;
    }
    for (size_t i = 0; i < n; i++) b->p[b->len + i] = (char)('a' + (st->r.sent + (int64_t)i) % 26);
    b->len += n;
    st->written += (int64_t)n;
    st->r.sent += (int64_t)n;
}

/* The app is done with st, as h2_conn.c's finish and finished do. */
static void app_finish(h2_sess *s, h2_stream *st)
{
    if (st->r.broken || !st->r.res.code ||
        (st->r.res.clen >= 0 && st->r.sent < st->r.res.clen && !st->r.res.nobody)) {
        h2_rst(s, st, H2_INTERNAL_ERROR);
    } else {
        st->out_end = 1;
        st->drop_in = 1;
        h2_body_take(s, st, st->in_bytes);
    }
    st->app = 0;
    h2_release(s, st);
}

/* Answer st; returns 1 when the app is done with it. */
static int app_answer(run *r, h2_sess *s, h2_stream *st)
{
    const char *p;
    size_t n;
    while ((n = h2_body_peek(st, &p)) > 0) {
        for (size_t i = 0; i < n; i++) r->body_sum = r->body_sum * 31 + (unsigned char)p[i];
        h2_body_take(s, st, n);
    }
    if (st->reset) return 1;
    unsigned act = (st->id * 7 + r->salt) % 6;
    if (!st->in_end && act != 0 && act != 2) return 0;    /* wait for the body */
    if (st->r.res.code) return 1;
    http_header f[4] = { hf("Content-Type", "text/plain"), hf("date", "Thu, 01 Jan 1970 00:00:00 GMT"),
                         hf("Connection", "close"), hf("content-length", "77") };
    http_header t[2] = { hf("grpc-status", "0"), hf("X-Trailer", "yes") };
    size_t body = (st->id * 13 + r->salt) % 3000;
    switch (act) {
    case 0:                          /* at once, the body unread */
    case 1:
        st->r.res.code = 200;
        check(h2_head(st, f, 3, act ? (int64_t)body : -1) == 0);
        app_write(st, body);
        break;
    case 2:
        h2_rst(s, st, H2_CANCEL);
        break;
    case 3:                          /* content-length, trailers */
        st->r.res.code = 200;
        check(h2_head(st, f, 4, -1) == 0);
        app_write(st, 77);
        check(h2_trailers(st, t, 2) == 0);
        break;
    case 4:
        st->r.res.code = 204;
        check(h2_head(st, f, 2, -1) == 0);
        break;
    case 5:                          /* more than the windows let go at once */
        st->r.res.code = 200;
        check(h2_head(st, f, 2, -1) == 0);
        app_write(st, 70000 + body);
        break;
    }
    return 1;
}

/* One round: take the started streams, answer, frame. */
static void app_round(run *r, h2_sess *s)
{
    h2_stream *st;
    while ((st = h2_pop_start(s))) {
        if (s->dead || st->reset) { h2_release(s, st); continue; }
        st->app = 1;
        st->r.res = (resp_head){ .clen = -1 };
        if (r->napp == r->appcap) {
            r->appcap = r->appcap ? r->appcap * 2 : 16;
            r->app = realloc(r->app, r->appcap * sizeof(*r->app));
            check(r->app != NULL);
        }
        r->app[r->napp++] = st;
    }
    size_t j = 0;
    for (size_t i = 0; i < r->napp; i++) {
        st = r->app[i];
        if (app_answer(r, s, st)) app_finish(s, st);
        else r->app[j++] = st;
    }
    r->napp = j;
    h2_produce(s);
    /* after a produce, a closed stream is held by someone, or freed */
    for (st = s->streams; st; st = st->next) check(st->open || st->app || st->queued);
    record(r, s);
}

/* ---- feeding -------------------------------------------------------------- */

typedef struct feeder {
    unsigned char *pend;       /* bytes not taken yet */
    size_t plen, pcap;
} feeder;

/* Does in[0,n) hold a complete frame (the preface done)? */
static int whole_frame(const unsigned char *in, size_t n)
{
    return n >= 9 && n - 9 >= ((size_t)in[0] << 16 | (size_t)in[1] << 8 | in[2]);
}

static void feed(run *r, feeder *f, h2_sess *s, const unsigned char *p, size_t n, int play)
{
    if (r->dead) return;
    if (!f->pend || f->plen + n > f->pcap) {
        f->pcap = (f->plen + n) * 2 + 16;
        f->pend = realloc(f->pend, f->pcap);
        check(f->pend != NULL);
    }
    memcpy(f->pend + f->plen, p, n);
    f->plen += n;
    unsigned char *exact = malloc(f->plen ? f->plen : 1);
    check(exact != NULL);
    memcpy(exact, f->pend, f->plen);
    size_t pre = s->preface;
    ssize_t k = h2_recv(s, (const char *)exact, f->plen);
    free(exact);
    if (k < 0) {
        check(s->dead);
        r->dead = 1;
    } else {
        check((size_t)k <= f->plen && !s->dead);
        size_t rest = f->plen - (size_t)k;
        /* every complete frame is taken; a partial preface too */
        check(s->preface == H2_PREFACE_LEN ? !whole_frame(f->pend + k, rest)
                                           : rest == 0 && s->preface == pre + f->plen);
        memmove(f->pend, f->pend + k, rest);
        f->plen = rest;
    }
    record(r, s);
    if (play) app_round(r, s);
}

enum { WHOLE, PIECES, BYTES };

static config cfg;

/* Feed in[0,n) as mode says; play the app after every feed or at the end. */
static void run_one(run *r, const unsigned char *in, size_t n, int mode, int play_each)
{
    h2_sess *s = malloc(sizeof(*s));
    feeder f = { 0 };
    check(s != NULL);
    check(h2_init(s, &cfg) == 0);
    record(r, s);
    if (mode == WHOLE) {
        feed(r, &f, s, in, n, play_each);
    } else if (mode == PIECES) {
        for (size_t i = 0, j = 0; i < n; j++) {
            size_t k = 1 + (size_t)in[j % n] * 3 % 61;   /* 1..61, from the data */
            if (in[(j * 7) % n] & 0x80) k *= 37;
            if (k > n - i) k = n - i;
            feed(r, &f, s, in + i, k, play_each);
            i += k;
        }
    } else {
        for (size_t i = 0; i < n; i++) feed(r, &f, s, in + i, 1, play_each);
    }
    if (!r->dead) {
        check(!(s->preface == H2_PREFACE_LEN && whole_frame(f.pend, f.plen)));
        for (int round = 0; round < 4; round++) {
            app_round(r, s);
            h2_tick(s, 1000 * (round + 1), 0, 20000);
            record(r, s);
        }
    }
    tr_add(r, &r->body_sum, sizeof(r->body_sum));
    tr_add(r, &r->dead, sizeof(r->dead));
    for (size_t i = 0; i < r->napp; i++) r->app[i]->app = 0;
    h2_free(s);
    free(s);
    free(f.pend);
    free(r->app);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int streams[4] = { 1, 2, 4, 200 };
    if (size < 2) return 0;
    unsigned k = data[0];
    memset(&cfg, 0, sizeof cfg);
    cfg.http2_max_concurrent_streams = streams[k >> 1 & 3];
    /* windows: 1024 (the option's minimum) or 65535, or the default */
    cfg.http2_initial_stream_window_size = k & 0x08 ? (k & 0x80 ? 1024 : 65535) : 1048576;
    cfg.http2_initial_connection_window_size = k & 0x10 ? (k & 0x80 ? 1024 : 65535) : 1048576;
    cfg.http2_max_frame_size = k & 0x20 ? 32768 : 16384;
    cfg.http2_max_headers_size = k & 0x40 ? 1024 : 16777216;
    cfg.http2_max_send_buffer_size = 409600;

    /* the client's stream: the preface in front, half the time */
    size_t n = size - 2 + (k & 1 ? H2_PREFACE_LEN : 0);
    unsigned char *in = malloc(n ? n : 1);
    check(in != NULL);
    if (k & 1) memcpy(in, H2_PREFACE, H2_PREFACE_LEN);
    memcpy(in + (k & 1 ? H2_PREFACE_LEN : 0), data + 2, size - 2);

    run a = { .salt = data[1] }, b = { .salt = data[1] }, c = { .salt = data[1] };
    run_one(&a, in, n, WHOLE, 0);
    run_one(&b, in, n, PIECES, 0);
    check(a.tlen == b.tlen && !memcmp(a.t, b.t, a.tlen));
    if (n <= BYTE_MAX) {
        run_one(&c, in, n, BYTES, 0);
        check(a.tlen == c.tlen && !memcmp(a.t, c.t, a.tlen));
        free(c.t);
        run d = { .salt = data[1] };
        run_one(&d, in, n, BYTES, 1);     /* the app after every feed */
        free(d.t);
    } else {
        run d = { .salt = data[1] };
        run_one(&d, in, n, PIECES, 1);
        free(d.t);
    }
    free(a.t);
    free(b.t);
    free(in);
    return 0;
}
