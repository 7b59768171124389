/* unit_h2.c -- TAP tests for h2.c, the HTTP/2 engine.
 *
 * A test plays the client: it builds frames by hand (a small frame
 * builder, hpack_encode for header blocks), feeds them to h2_recv, and
 * reads what the engine answered by parsing the frame headers in s->out.
 * The app's side is played directly on the stream (h2_head, st->out,
 * h2_trailers), as h2_conn.c's request operations do.  Single-threaded:
 * s->mu is never taken.  Links h2.c, hpack.c and http.c only.
 */
#include <stdint.h>

#define AREA_BYTES  (4 * 1024 * 1024)   /* the largest client stream */

#include "tap.h"
#include "granc.h"
#include "h2.h"
#include "hpack.h"
#include "http.h"

/* ---- helpers -------------------------------------------------------------- */

enum { DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY,
       WINDOW_UPDATE, CONTINUATION };
enum { END_STREAM = 1, ACK = 1, END_HEADERS = 4, PADDED = 8 };

static config cfg;

/* Granian's defaults for the http2_* options. */
static void cfg_default(void)
{
    memset(&cfg, 0, sizeof cfg);
    cfg.http2_initial_connection_window_size = 1048576;
    cfg.http2_initial_stream_window_size = 1048576;
    cfg.http2_max_frame_size = 16384;
    cfg.http2_max_headers_size = 16777216;
    cfg.http2_max_concurrent_streams = 200;
    cfg.http2_max_send_buffer_size = 409600;
}

/* The client's bytes, built up, then fed at once. */
static unsigned char cli[AREA_BYTES];
static size_t cl;

static void put(const void *p, size_t n)
{
    if (cl + n > sizeof cli) { fprintf(stderr, "client stream too large\n"); exit(2); }
    memcpy(cli + cl, p, n);
    cl += n;
}

static void put_frame(int type, int flags, uint32_t id, const void *p, size_t n)
{
    unsigned char h[9] = { (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n,
                           (unsigned char)type, (unsigned char)flags,
                           (unsigned char)(id >> 24), (unsigned char)(id >> 16),
                           (unsigned char)(id >> 8), (unsigned char)id };
    put(h, 9);
    if (n) put(p, n);
}

static void put32(int type, uint32_t id, uint32_t v)
{
    unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v };
    put_frame(type, 0, id, b, 4);
}

static void put_settings(int n, const uint32_t *kv)
{
    unsigned char b[64], *p = b;
    for (int i = 0; i < n; i++) {
        *p++ = (unsigned char)(kv[2 * i] >> 8);
        *p++ = (unsigned char)kv[2 * i];
        for (int sh = 24; sh >= 0; sh -= 8) *p++ = (unsigned char)(kv[2 * i + 1] >> sh);
    }
    put_frame(SETTINGS, 0, 0, b, (size_t)(p - b));
}

/* A header block from NULL-terminated name, value pairs. */
static unsigned char blk[1 << 20];
static size_t blen;

static void block_v(const char *const *nv)
{
    blen = 0;
    for (; nv[0]; nv += 2)
        blen += hpack_encode(blk + blen, sizeof blk - blen, nv[0], strlen(nv[0]), nv[1],
                             strlen(nv[1]));
}

/* HEADERS (END_HEADERS) with the fields given. */
#define REQ(id, flags, ...) \
    (block_v((const char *const[]){ __VA_ARGS__, NULL }), \
     put_frame(HEADERS, (flags) | END_HEADERS, (id), blk, blen))
#define GET(id, flags) \
    REQ(id, flags, ":method", "GET", ":scheme", "https", ":path", "/", ":authority", "x")

/* Feed what was built; the stream is cleared. */
static ssize_t feed(h2_sess *s)
{
    ssize_t r = h2_recv(s, guarded(cli, cl), cl);
    cl = 0;
    return r;
}

/* The frames in s->out, parsed (and s->out emptied). */
typedef struct outf {
    int type, flags;
    uint32_t id;
    size_t len;
    unsigned char *p;
} outf;

static unsigned char obytes[8 << 20];
static outf of[65536];
static int nof;

static void take_out(h2_sess *s)
{
    size_t n = s->out.len - s->out.off;
    nof = 0;
    if (n > sizeof obytes) n = sizeof obytes;
    memcpy(obytes, s->out.p + s->out.off, n);
    s->out.off = s->out.len = 0;
    for (size_t i = 0; i + 9 <= n && nof < 65536;) {
        const unsigned char *h = obytes + i;
        size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
        if (i + 9 + len > n) break;
        of[nof++] = (outf){ h[3], h[4],
                            ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8])
                                & 0x7fffffff,
                            len, obytes + i + 9 };
        i += 9 + len;
    }
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The first frame of a type (on id, or any id if id is -1): its index or -1. */
static int find_f(int type, long id)
{
    for (int i = 0; i < nof; i++)
        if (of[i].type == type && (id < 0 || of[i].id == (uint32_t)id)) return i;
    return -1;
}

static int count_f(int type, long id)
{
    int n = 0;
    for (int i = 0; i < nof; i++) n += of[i].type == type && (id < 0 || of[i].id == (uint32_t)id);
    return n;
}

/* The GOAWAY's error code, -1 if none. */
static long goaway_code(void)
{
    int i = find_f(GOAWAY, 0);
    return i < 0 || of[i].len < 8 ? -1 : (long)be32(of[i].p + 4);
}

static long rst_code(uint32_t id)
{
    int i = find_f(RST_STREAM, id);
    return i < 0 || of[i].len != 4 ? -1 : (long)be32(of[i].p);
}

/* A session past the preface and SETTINGS exchange; s->out emptied. */
static void start(h2_sess *s)
{
    h2_init(s, &cfg);
    put(H2_PREFACE, H2_PREFACE_LEN);
    put_frame(SETTINGS, 0, 0, NULL, 0);
    feed(s);
    take_out(s);
}

/* A session that got one request, and its stream. */
static h2_stream *one(h2_sess *s, int flags)
{
    start(s);
    GET(1, flags);
    feed(s);
    take_out(s);
    return h2_pop_start(s);
}

/* Decoded header blocks as "name: value\n" lines. */
static char dec_txt[65536];
static size_t dec_len;

static void collect(void *ctx, const char *n, size_t nn, const char *v, size_t vn)
{
    (void)ctx;
    if (dec_len + nn + vn + 3 > sizeof dec_txt) return;
    memcpy(dec_txt + dec_len, n, nn);
    dec_len += nn;
    memcpy(dec_txt + dec_len, ": ", 2);
    dec_len += 2;
    memcpy(dec_txt + dec_len, v, vn);
    dec_len += vn;
    dec_txt[dec_len++] = '\n';
    dec_txt[dec_len] = 0;
}

static int decode_block(const unsigned char *p, size_t n)
{
    hpack_dec d;
    hpack_dec_init(&d, HPACK_TABLE_SIZE);
    dec_len = 0;
    dec_txt[0] = 0;
    int r = hpack_decode(&d, p, n, collect, NULL);
    hpack_dec_free(&d);
    return r;
}

static int slice_is(slice s, const char *want)
{
    return s.n == strlen(want) && !memcmp(s.p, want, s.n);
}

/* Append body bytes to the response, as h2_conn.c's write and frame do. */
static void app_write(h2_stream *st, const char *p, size_t n)
{
    h2_buf *b = &st->out;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        b->p = realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    st->written += (int64_t)n;
    st->r.sent += (int64_t)n;
}

static http_header hf(const char *n, const char *v)
{
    return (http_header){ { n, strlen(n) }, { v, strlen(v) } };
}

/* The request with a malformed head gets RST_STREAM PROTOCOL_ERROR. */
static void malformed(const char *what, const char *const *nv)
{
    h2_sess s;
    start(&s);
    block_v(nv);
    put_frame(HEADERS, END_HEADERS | END_STREAM, 1, blk, blen);
    ssize_t r = feed(&s);
    take_out(&s);
    ok(r > 0 && rst_code(1) == H2_PROTOCOL_ERROR && !h2_pop_start(&s) && goaway_code() < 0,
       "malformed: %s -> RST_STREAM PROTOCOL_ERROR", what);
    h2_free(&s);
}

/* The session dies with GOAWAY code after what was built. */
static void conn_err(h2_sess *s, long code, const char *what)
{
    ssize_t r = feed(s);
    take_out(s);
    ok(r == -1 && s->dead && goaway_code() == code, "%s -> GOAWAY %ld (got %ld)", what, code,
       goaway_code());
    h2_free(s);
}

/* ---- tests ---------------------------------------------------------------- */

static void t_settings(void)
{
    h2_sess s;
    h2_init(&s, &cfg);
    take_out(&s);
    int i = find_f(SETTINGS, 0);
    uint32_t v[8] = { 0 };
    int good = i == 0 && of[i].flags == 0 && of[i].len % 6 == 0;
    for (size_t k = 0; good && k < of[i].len; k += 6) {
        unsigned id = (unsigned)of[i].p[k] << 8 | of[i].p[k + 1];
        if (id < 8) v[id] = be32(of[i].p + k + 2);
    }
    ok(good && v[3] == 200 && v[4] == 1048576 && v[5] == 16384 && v[6] == 65536 && v[2] == 0,
       "our SETTINGS first: streams 200, window 1048576, frame 16384, header list 65536, no push");
    i = find_f(WINDOW_UPDATE, 0);
    ok(i == 1 && be32(of[i].p) == 1048576 - 65535, "the connection window raised to 1048576");

    put(H2_PREFACE, H2_PREFACE_LEN);
    uint32_t kv[] = { 4, 100, 5, 20000 };
    put_settings(2, kv);
    size_t n = cl;
    ok(feed(&s) == (ssize_t)n, "preface and SETTINGS consumed");
    take_out(&s);
    i = find_f(SETTINGS, 0);
    ok(nof == 1 && i == 0 && of[i].flags == ACK && of[i].len == 0, "SETTINGS ACK for theirs");
    ok(s.peer_window == 100 && s.peer_frame == 20000, "their window and frame size kept");

    /* a partial frame stays the caller's */
    put_frame(PING, 0, 0, "12345678", 8);
    ok(h2_recv(&s, guarded(cli, 12), 12) == 0, "a partial frame is not consumed");
    ok(h2_recv(&s, guarded(cli, cl), cl) == 17, "then taken whole");
    cl = 0;
    h2_free(&s);
}

static void t_preface(void)
{
    h2_sess s;
    h2_init(&s, &cfg);
    take_out(&s);
    put("PRI * HTTP/1.1\r\n", 16);
    conn_err(&s, H2_PROTOCOL_ERROR, "a bad preface");

    h2_init(&s, &cfg);
    take_out(&s);
    put(H2_PREFACE, 10);
    ok(feed(&s) == 10, "a partial preface is consumed");
    put(&H2_PREFACE[10], H2_PREFACE_LEN - 10);
    put_frame(PING, 0, 0, "12345678", 8);
    conn_err(&s, H2_PROTOCOL_ERROR, "first frame not SETTINGS");

    h2_init(&s, &cfg);
    put(H2_PREFACE, H2_PREFACE_LEN);
    put_frame(SETTINGS, ACK, 0, NULL, 0);
    conn_err(&s, H2_PROTOCOL_ERROR, "first frame a SETTINGS ACK");
}

static void t_ping(void)
{
    h2_sess s;
    start(&s);
    put_frame(PING, 0, 0, "abcdefgh", 8);
    feed(&s);
    take_out(&s);
    int i = find_f(PING, 0);
    ok(nof == 1 && i == 0 && of[i].flags == ACK && of[i].len == 8 && !memcmp(of[i].p, "abcdefgh", 8),
       "PING -> PING ACK with its payload");
    put_frame(PING, ACK, 0, "abcdefgh", 8);
    feed(&s);
    take_out(&s);
    ok(nof == 0, "a PING ACK is not answered");
    put_frame(PING, 0, 0, "abcdefg", 7);
    conn_err(&s, H2_FRAME_SIZE_ERROR, "PING of 7 bytes");
    start(&s);
    put_frame(PING, 0, 1, "abcdefgh", 8);
    conn_err(&s, H2_PROTOCOL_ERROR, "PING on a stream");
}

static void t_get(void)
{
    h2_sess s;
    start(&s);
    REQ(1, END_STREAM, ":method", "GET", ":scheme", "https", ":path", "/a/b?x=1&y=2",
        ":authority", "example.com:8443", "cookie", "a=1", "user-agent", "t", "cookie", "b=2",
        "cookie", "c=3");
    ssize_t r = feed(&s);
    take_out(&s);
    h2_stream *st = h2_pop_start(&s);
    ok(r > 0 && st && st->id == 1 && !h2_pop_start(&s), "a GET joins the start queue");
    if (!st) { h2_free(&s); return; }
    const http_request *rq = st->head;
    ok(slice_is(rq->method, "GET") && slice_is(rq->path, "/a/b") && slice_is(rq->query, "x=1&y=2") &&
       slice_is(rq->target, "/a/b?x=1&y=2"), "method, path, query split");
    ok(slice_is(rq->authority, "example.com:8443") && rq->h2 && rq->content_length == -1 &&
       st->in_end && st->open && s.nopen == 1, "authority, h2, no content-length, ended");
    ok(rq->nheaders == 3 && slice_is(rq->headers[0].name, "host") &&
       slice_is(rq->headers[0].value, "example.com:8443"), "host inserted first from :authority");
    ok(slice_is(rq->headers[1].name, "cookie") && slice_is(rq->headers[1].value, "a=1; b=2; c=3") &&
       slice_is(rq->headers[2].name, "user-agent"), "cookie crumbs joined \"; \" into one field");
    h2_free(&s);

    start(&s);
    REQ(1, 0, ":method", "POST", ":scheme", "http", ":path", "/p", "content-length", "5",
        "host", "h");
    feed(&s);
    st = h2_pop_start(&s);
    ok(st && st->head->content_length == 5 && st->clen == 5 && !st->in_end &&
       st->head->nheaders == 2 && slice_is(st->head->headers[0].name, "content-length"),
       "POST: content-length kept, no host added over the client's");
    h2_free(&s);
}

static void t_continuation(void)
{
    h2_sess s;
    start(&s);
    block_v((const char *const[]){ ":method", "GET", ":scheme", "https", ":path", "/cont",
                                   "x-long", "0123456789", NULL });
    put_frame(HEADERS, END_STREAM, 1, blk, 5);
    put_frame(CONTINUATION, 0, 1, blk + 5, 7);
    put_frame(CONTINUATION, END_HEADERS, 1, blk + 12, blen - 12);
    feed(&s);
    h2_stream *st = h2_pop_start(&s);
    ok(st && slice_is(st->head->path, "/cont") && st->head->nheaders == 1 &&
       slice_is(st->head->headers[0].value, "0123456789"), "HEADERS + CONTINUATION x2");
    h2_free(&s);

    start(&s);
    put_frame(HEADERS, END_STREAM, 1, blk, 5);
    put_frame(PING, 0, 0, "abcdefgh", 8);
    conn_err(&s, H2_PROTOCOL_ERROR, "another frame inside a header block");
    start(&s);
    put_frame(CONTINUATION, END_HEADERS, 1, blk, blen);
    conn_err(&s, H2_PROTOCOL_ERROR, "CONTINUATION without HEADERS");
}

static void t_padding(void)
{
    h2_sess s;
    start(&s);
    block_v((const char *const[]){ ":method", "POST", ":scheme", "https", ":path", "/pad", NULL });
    unsigned char b[256];
    b[0] = 10;
    memcpy(b + 1, blk, blen);
    memset(b + 1 + blen, 0, 10);
    put_frame(HEADERS, END_HEADERS | PADDED, 1, b, 1 + blen + 10);
    b[0] = 3;
    memcpy(b + 1, "hello", 5);
    memset(b + 6, 0, 3);
    put_frame(DATA, PADDED, 1, b, 9);
    b[0] = 4;
    memset(b + 1, 0, 4);
    put_frame(DATA, PADDED | END_STREAM, 1, b, 5);    /* padding only */
    ssize_t r = feed(&s);
    h2_stream *st = h2_pop_start(&s);
    const char *p;
    size_t n = st ? h2_body_peek(st, &p) : 0;
    ok(r > 0 && st && slice_is(st->head->path, "/pad") && n == 5 && !memcmp(p, "hello", 5) &&
       st->in_end && st->got == 5, "padded HEADERS and DATA: the padding is dropped");
    h2_free(&s);

    start(&s);
    GET(1, 0);
    b[0] = 9;
    put_frame(DATA, PADDED, 1, b, 9);
    conn_err(&s, H2_PROTOCOL_ERROR, "DATA padding as long as the payload");
    start(&s);
    b[0] = 200;
    memcpy(b + 1, blk, blen);
    put_frame(HEADERS, END_HEADERS | PADDED, 1, b, 1 + blen);
    conn_err(&s, H2_PROTOCOL_ERROR, "HEADERS padding longer than the block");
}

static void t_data(void)
{
    h2_sess s;
    h2_stream *st = one(&s, 0);
    static char big[16384];
    memset(big, 'd', sizeof big);
    for (int i = 0; i < 32; i++) put_frame(DATA, 0, 1, big, sizeof big);   /* half the window */
    ssize_t r = feed(&s);
    take_out(&s);
    ok(r > 0 && st && st->in_bytes == 524288 && nof == 0, "512 KiB of DATA kept, no WINDOW_UPDATE yet");
    if (!st) { h2_free(&s); return; }
    size_t total = 0, n;
    const char *p;
    int same = 1;
    while ((n = h2_body_peek(st, &p)) && total + n < 524288) {
        for (size_t i = 0; i < n; i++) same &= p[i] == 'd';
        h2_body_take(&s, st, n);
        total += n;
    }
    take_out(&s);
    ok(same && total == 524288 - 16384 && nof == 0, "taken up to one frame short of half: no update");
    h2_body_take(&s, st, n);
    take_out(&s);
    int a = find_f(WINDOW_UPDATE, 1), c = find_f(WINDOW_UPDATE, 0);
    ok(nof == 2 && a >= 0 && be32(of[a].p) == 524288 && c >= 0 && be32(of[c].p) == 524288,
       "half taken: WINDOW_UPDATE 524288 on the stream and the connection");
    ok(st->in_bytes == 0 && h2_body_peek(st, &p) == 0, "nothing left to peek");

    put_frame(DATA, END_STREAM, 1, "tail", 4);
    feed(&s);
    n = h2_body_peek(st, &p);
    ok(n == 4 && !memcmp(p, "tail", 4) && st->in_end, "END_STREAM on DATA");
    h2_free(&s);
}

static void t_clen(void)
{
    h2_sess s;
    start(&s);
    REQ(1, 0, ":method", "POST", ":scheme", "https", ":path", "/", "content-length", "5");
    put_frame(DATA, END_STREAM, 1, "abc", 3);
    feed(&s);
    take_out(&s);
    ok(rst_code(1) == H2_PROTOCOL_ERROR && goaway_code() < 0, "content-length 5, 3 bytes -> RST PROTOCOL_ERROR");
    h2_free(&s);

    start(&s);
    REQ(1, 0, ":method", "POST", ":scheme", "https", ":path", "/", "content-length", "2");
    put_frame(DATA, 0, 1, "abc", 3);
    feed(&s);
    take_out(&s);
    ok(rst_code(1) == H2_PROTOCOL_ERROR, "content-length 2, 3 bytes -> RST PROTOCOL_ERROR");
    h2_free(&s);

    start(&s);
    REQ(1, END_STREAM, ":method", "POST", ":scheme", "https", ":path", "/", "content-length", "2");
    feed(&s);
    take_out(&s);
    ok(rst_code(1) == H2_PROTOCOL_ERROR && !h2_pop_start(&s),
       "content-length 2 with END_STREAM on HEADERS -> RST PROTOCOL_ERROR");
    h2_free(&s);
}

static void t_malformed(void)
{
    {   /* hpack_encode lowercases names: an uppercase one by hand */
        h2_sess s;
        start(&s);
        block_v((const char *const[]){ ":method", "GET", ":scheme", "https", ":path", "/", NULL });
        memcpy(blk + blen, "\x00\x04X-Up\x01\x31", 8);
        put_frame(HEADERS, END_HEADERS | END_STREAM, 1, blk, blen + 8);
        ssize_t r = feed(&s);
        take_out(&s);
        ok(r > 0 && rst_code(1) == H2_PROTOCOL_ERROR && !h2_pop_start(&s),
           "malformed: uppercase name -> RST_STREAM PROTOCOL_ERROR");
        h2_free(&s);
    }
#define M(what, ...) malformed(what, (const char *const[]){ __VA_ARGS__, NULL })
    M("connection header", ":method", "GET", ":scheme", "https", ":path", "/", "connection", "close");
    M("keep-alive header", ":method", "GET", ":scheme", "https", ":path", "/", "keep-alive", "1");
    M("transfer-encoding", ":method", "GET", ":scheme", "https", ":path", "/", "transfer-encoding",
      "chunked");
    M("te: gzip", ":method", "GET", ":scheme", "https", ":path", "/", "te", "gzip");
    M("missing :path", ":method", "GET", ":scheme", "https");
    M("empty :path", ":method", "GET", ":scheme", "https", ":path", "");
    M("missing :method", ":scheme", "https", ":path", "/");
    M("pseudo after regular", ":method", "GET", ":scheme", "https", "a", "1", ":path", "/");
    M("duplicate pseudo", ":method", "GET", ":method", "GET", ":scheme", "https", ":path", "/");
    M("unknown pseudo", ":method", "GET", ":scheme", "https", ":path", "/", ":foo", "1");
    M(":status in a request", ":method", "GET", ":scheme", "https", ":path", "/", ":status", "200");
    M("value with a newline", ":method", "GET", ":scheme", "https", ":path", "/", "a", "x\ny");
    M("value with a leading space", ":method", "GET", ":scheme", "https", ":path", "/", "a", " x");
    M("bad content-length", ":method", "GET", ":scheme", "https", ":path", "/", "content-length",
      "1x");
    M("CONNECT with :path", ":method", "CONNECT", ":authority", "h:1", ":path", "/");
#undef M
    h2_sess s;
    start(&s);
    REQ(1, END_STREAM, ":method", "GET", ":scheme", "https", ":path", "/", "te", "trailers");
    feed(&s);
    ok(h2_pop_start(&s) != NULL, "te: trailers is allowed");
    h2_free(&s);
}

static void t_ids(void)
{
    h2_sess s;
    start(&s);
    GET(2, END_STREAM);
    conn_err(&s, H2_PROTOCOL_ERROR, "an even stream id");
    start(&s);
    GET(5, END_STREAM);
    GET(3, END_STREAM);
    conn_err(&s, H2_PROTOCOL_ERROR, "a decreasing stream id");
    start(&s);
    GET(1, END_STREAM);
    put_frame(DATA, 0, 3, "x", 1);
    conn_err(&s, H2_PROTOCOL_ERROR, "DATA on an idle stream");
    start(&s);
    put32(RST_STREAM, 1, H2_CANCEL);
    conn_err(&s, H2_PROTOCOL_ERROR, "RST_STREAM on an idle stream");
    start(&s);
    put32(WINDOW_UPDATE, 1, 100);
    conn_err(&s, H2_PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
    start(&s);
    put_frame(PUSH_PROMISE, END_HEADERS, 1, "\0\0\0\2", 4);
    conn_err(&s, H2_PROTOCOL_ERROR, "PUSH_PROMISE from a client");

    start(&s);
    unsigned char h[9] = { 0, 0x40, 0x01, DATA, 0, 0, 0, 0, 1 };    /* 16385 */
    put(h, 9);
    conn_err(&s, H2_FRAME_SIZE_ERROR, "a frame over the max frame size (header alone)");
}

static void t_windows(void)
{
    h2_sess s;
    start(&s);
    put32(WINDOW_UPDATE, 0, 0x7fffffff);
    conn_err(&s, H2_FLOW_CONTROL_ERROR, "connection window over 2^31-1");

    h2_stream *st = one(&s, END_STREAM);
    put32(WINDOW_UPDATE, 1, 0x7fffffff);
    ssize_t r = feed(&s);
    take_out(&s);
    ok(r > 0 && rst_code(1) == H2_FLOW_CONTROL_ERROR && goaway_code() < 0 && st && st->reset,
       "stream window over 2^31-1 -> RST FLOW_CONTROL_ERROR");
    h2_free(&s);

    start(&s);
    uint32_t kv[] = { 4, 0x80000000u };
    put_settings(1, kv);
    conn_err(&s, H2_FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE 2^31");

    /* a stream whose response has ended has no send window any more */
    st = one(&s, END_STREAM);
    st->app = 1;
    st->r.res.code = 204;
    h2_head(st, NULL, 0, -1);
    st->out_end = 1;
    h2_produce(&s);
    put32(WINDOW_UPDATE, 1, 0x7fffffff - 65535);
    uint32_t kv2[] = { 4, 65536 };
    put_settings(1, kv2);
    r = feed(&s);
    take_out(&s);
    ok(r > 0 && goaway_code() < 0 && find_f(SETTINGS, 0) >= 0,
       "SETTINGS_INITIAL_WINDOW_SIZE: a finished stream's window does not count");
    h2_free(&s);

    start(&s);
    put32(WINDOW_UPDATE, 0, 0);
    conn_err(&s, H2_PROTOCOL_ERROR, "connection WINDOW_UPDATE of 0");

    /* the receive windows: a stream's over -> RST, the connection's -> GOAWAY */
    static char big[16384];
    cfg.http2_initial_stream_window_size = 65535;
    start(&s);
    GET(1, 0);
    for (int i = 0; i < 4; i++) put_frame(DATA, 0, 1, big, 16383);
    put_frame(DATA, 0, 1, big, 3);
    r = feed(&s);
    take_out(&s);
    ok(r > 0 && rst_code(1) < 0, "65535 bytes of DATA: within the stream window");
    put_frame(DATA, 0, 1, big, 1);
    r = feed(&s);
    take_out(&s);
    ok(r > 0 && rst_code(1) == H2_FLOW_CONTROL_ERROR && goaway_code() < 0,
       "one byte more -> RST FLOW_CONTROL_ERROR");
    h2_free(&s);
    /* a stream window under 65535 applies once the client ACKs it */
    cfg.http2_initial_stream_window_size = 1024;
    start(&s);
    GET(1, 0);
    put_frame(DATA, 0, 1, big, 2000);
    r = feed(&s);
    take_out(&s);
    ok(r > 0 && rst_code(1) < 0, "window 1024, not ACKed yet: 2000 bytes accepted");
    put_frame(SETTINGS, ACK, 0, NULL, 0);
    GET(3, 0);
    put_frame(DATA, 0, 3, big, 1024);
    r = feed(&s);
    take_out(&s);
    ok(r > 0 && rst_code(3) < 0 && rst_code(1) < 0, "ACKed: 1024 on a new stream");
    put_frame(DATA, 0, 3, big, 1);
    put_frame(DATA, 0, 1, big, 1);
    r = feed(&s);
    take_out(&s);
    ok(r > 0 && rst_code(3) == H2_FLOW_CONTROL_ERROR && rst_code(1) == H2_FLOW_CONTROL_ERROR,
       "then one byte more on it, or any on the old one (its window now -976) -> RST FLOW_CONTROL_ERROR");
    h2_free(&s);

    cfg_default();
    cfg.http2_initial_connection_window_size = 65535;
    start(&s);
    GET(1, 0);
    for (int i = 0; i < 4; i++) put_frame(DATA, 0, 1, big, 16384);
    conn_err(&s, H2_FLOW_CONTROL_ERROR, "65536 bytes over a connection window of 65535");
    cfg_default();
}

static void t_concurrency(void)
{
    h2_sess s;
    cfg.http2_max_concurrent_streams = 2;
    start(&s);
    GET(1, END_STREAM);
    GET(3, END_STREAM);
    GET(5, END_STREAM);
    feed(&s);
    take_out(&s);
    ok(rst_code(5) == H2_REFUSED_STREAM && rst_code(1) < 0 && s.nopen == 2,
       "the third stream over 2 -> RST REFUSED_STREAM");
    h2_stream *a = h2_pop_start(&s), *b = h2_pop_start(&s);
    ok(a && b && !h2_pop_start(&s), "two streams queued");
    h2_free(&s);
    cfg_default();
}

static void t_response(void)
{
    h2_sess s;
    h2_stream *st = one(&s, END_STREAM);
    if (!st) { ok(0, "response: no stream"); h2_free(&s); return; }
    st->app = 1;
    st->r.res.code = 200;
    http_header f[] = { hf("Content-Type", "text/plain"), hf("Connection", "close"),
                        hf("X-Mixed-Case", "v"), hf("date", "Thu, 01 Jan 1970 00:00:00 GMT") };
    ok(h2_head(st, f, 4, 40000) == 0 && st->r.res.clen == 40000, "h2_head");
    static char body[40000];
    for (size_t i = 0; i < sizeof body; i++) body[i] = (char)('a' + i % 26);
    app_write(st, body, sizeof body);
    st->out_end = 1;
    h2_produce(&s);
    take_out(&s);
    /* the default windows: 65535 for both */
    int h = find_f(HEADERS, 1);
    ok(h == 0 && (of[h].flags & END_HEADERS) && !(of[h].flags & END_STREAM) &&
       decode_block(of[h].p, of[h].len) == 0, "HEADERS first");
    ok(strstr(dec_txt, ":status: 200\n") == dec_txt && strstr(dec_txt, "content-type: text/plain\n") &&
       strstr(dec_txt, "x-mixed-case: v\n") && !strstr(dec_txt, "onnection") &&
       strstr(dec_txt, "content-length: 40000\n") && strstr(dec_txt, "server: granc\n") &&
       strstr(dec_txt, "date: Thu, 01 Jan 1970 00:00:00 GMT\n") &&
       !strstr(dec_txt + 10, "date: Thu, 01 Jan 1970 00:00:00 GMT\ndate"),
       "the head: lowercase names, Connection dropped, server added, content-length from total");
    int ok_split = count_f(DATA, 1) == 3;
    size_t got = 0;
    for (int i = 0; i < nof; i++)
        if (of[i].type == DATA) {
            ok_split &= of[i].len <= 16384 && !memcmp(of[i].p, body + got, of[i].len);
            got += of[i].len;
        }
    ok(ok_split && got == 40000 && (of[nof - 1].flags & END_STREAM) && s.nopen == 0 && !st->open,
       "DATA in frames of 16384 at most, END_STREAM on the last, stream closed");
    h2_free(&s);

    /* a small initial window: only that much until a WINDOW_UPDATE */
    start(&s);
    uint32_t kv[] = { 4, 100, 5, 32768 };
    put_settings(2, kv);
    GET(1, END_STREAM);
    feed(&s);
    take_out(&s);
    st = h2_pop_start(&s);
    st->app = 1;
    st->r.res.code = 200;
    h2_head(st, f, 1, -1);
    app_write(st, body, 1000);
    st->out_end = 1;
    h2_produce(&s);
    take_out(&s);
    int d = find_f(DATA, 1);
    ok(count_f(HEADERS, 1) == 1 && count_f(DATA, 1) == 1 && d >= 0 && of[d].len == 100 &&
       !(of[d].flags & END_STREAM) && st->out.len - st->out.off == 900,
       "peer window 100: 100 bytes of DATA, the rest waits");
    h2_produce(&s);
    take_out(&s);
    ok(nof == 0, "nothing more without a WINDOW_UPDATE");
    put32(WINDOW_UPDATE, 1, 500);
    feed(&s);
    h2_produce(&s);
    take_out(&s);
    d = find_f(DATA, 1);
    ok(nof == 1 && d == 0 && of[d].len == 500 && !(of[d].flags & END_STREAM), "WINDOW_UPDATE 500: 500 more");
    put32(WINDOW_UPDATE, 1, 100000);
    feed(&s);
    h2_produce(&s);
    take_out(&s);
    d = find_f(DATA, 1);
    ok(nof == 1 && d == 0 && of[d].len == 400 && (of[d].flags & END_STREAM) &&
       !memcmp(of[d].p, body + 600, 400), "the rest with END_STREAM");
    h2_free(&s);

    /* the connection window limits too: the peer's frame size 32768 */
    start(&s);
    uint32_t kv2[] = { 4, 1000000, 5, 32768 };
    put_settings(2, kv2);
    GET(1, END_STREAM);
    feed(&s);
    take_out(&s);
    st = h2_pop_start(&s);
    st->app = 1;
    st->r.res.code = 200;
    h2_head(st, f, 1, -1);
    static char big[100000];
    app_write(st, big, sizeof big);
    st->out_end = 1;
    h2_produce(&s);
    take_out(&s);
    got = 0;
    int maxlen = 0;
    for (int i = 0; i < nof; i++)
        if (of[i].type == DATA) { got += of[i].len; maxlen |= of[i].len == 32768; }
    ok(got == 65535 && maxlen && s.swin == 0, "connection window 65535: that much, frames of 32768");
    put32(WINDOW_UPDATE, 0, 50000);
    feed(&s);
    h2_produce(&s);
    take_out(&s);
    got = 0;
    for (int i = 0; i < nof; i++) got += of[i].type == DATA ? of[i].len : 0;
    ok(got == 34465 && (of[nof - 1].flags & END_STREAM), "the rest after a connection WINDOW_UPDATE");
    h2_free(&s);
}

static void t_trailers(void)
{
    h2_sess s;
    start(&s);
    REQ(1, 0, ":method", "POST", ":scheme", "https", ":path", "/t");
    put_frame(DATA, 0, 1, "abc", 3);
    REQ(1, END_STREAM, "x-trailer", "1");
    ssize_t r = feed(&s);
    take_out(&s);
    h2_stream *st = h2_pop_start(&s);
    ok(r > 0 && st && st->in_end && nof == 0 && st->open, "request trailers end the request body");
    if (!st) { h2_free(&s); return; }
    st->app = 1;
    st->r.res.code = 200;
    http_header f[] = { hf("date", "x") }, t[] = { hf("Grpc-Status", "0") };
    h2_head(st, f, 1, -1);
    app_write(st, "body", 4);
    ok(h2_trailers(st, t, 1) == 0, "h2_trailers");
    st->out_end = 1;
    h2_produce(&s);
    take_out(&s);
    int last = nof - 1;
    ok(nof == 3 && of[0].type == HEADERS && of[1].type == DATA && !(of[1].flags & END_STREAM) &&
       of[last].type == HEADERS && (of[last].flags & (END_STREAM | END_HEADERS)) == (END_STREAM | END_HEADERS) &&
       decode_block(of[last].p, of[last].len) == 0 && !strcmp(dec_txt, "grpc-status: 0\n"),
       "HEADERS, DATA, then trailers HEADERS with END_STREAM");
    h2_free(&s);

    /* the app ends before its framed bytes are written: the end waits */
    st = one(&s, END_STREAM);
    st->app = 1;
    st->r.res.code = 204;
    h2_head(st, f, 1, -1);
    st->r.sent = 3;                    /* framed, not written yet */
    st->out_end = 1;
    h2_produce(&s);
    take_out(&s);
    ok(nof == 1 && of[0].type == HEADERS && !(of[0].flags & END_STREAM), "the end waits for r.sent");
    st->r.sent = 0;
    h2_produce(&s);
    take_out(&s);
    ok(nof == 1 && of[0].type == DATA && of[0].len == 0 && (of[0].flags & END_STREAM),
       "then an empty DATA with END_STREAM");
    h2_free(&s);
}

static int nstreams(h2_sess *s)
{
    int n = 0;
    for (h2_stream *st = s->streams; st; st = st->next) n++;
    return n;
}

/* A stream the app let go of before it closed is freed once it closes. */
static void t_lifetime(void)
{
    h2_sess s;
    h2_stream *st = one(&s, END_STREAM);
    st->app = 1;
    st->r.res.code = 200;
    http_header f[] = { hf("date", "x") };
    h2_head(st, f, 1, -1);
    app_write(st, "abc", 3);
    st->out_end = 1;
    st->app = 0;                       /* the app is done: h2_conn.c's finished() */
    h2_release(&s, st);
    ok(nstreams(&s) == 1, "the app let go, the end not sent: the stream stays");
    h2_produce(&s);
    take_out(&s);
    ok(count_f(DATA, 1) == 1 && s.nopen == 0 && nstreams(&s) == 0,
       "the end sent: the stream is freed");
    h2_free(&s);

    /* answered before the body came: freed when the client's end comes */
    start(&s);
    REQ(1, 0, ":method", "POST", ":scheme", "https", ":path", "/");
    feed(&s);
    st = h2_pop_start(&s);
    st->app = 1;
    st->r.res.code = 200;
    h2_head(st, f, 1, -1);
    st->out_end = st->drop_in = 1;
    st->app = 0;
    h2_release(&s, st);
    h2_produce(&s);
    take_out(&s);
    ok(nstreams(&s) == 1 && s.nopen == 1, "answered, the body still coming: open");
    put_frame(DATA, END_STREAM, 1, "body", 4);
    feed(&s);
    h2_produce(&s);
    take_out(&s);
    ok(s.nopen == 0 && nstreams(&s) == 0, "the client's END_STREAM: closed and freed");
    h2_free(&s);
}

static void t_floods(void)
{
    h2_sess s;
    start(&s);
    for (uint32_t i = 0; i < 600; i++) {
        GET(2 * i + 1, END_STREAM);
        put32(RST_STREAM, 2 * i + 1, H2_CANCEL);
    }
    conn_err(&s, H2_ENHANCE_YOUR_CALM, "rapid reset: 600 HEADERS + RST_STREAM");

    start(&s);
    for (uint32_t i = 0; i < 600; i++)
        REQ(2 * i + 1, END_STREAM, ":method", "GET", ":scheme", "https", ":path", "");
    conn_err(&s, H2_ENHANCE_YOUR_CALM, "600 malformed requests in a second");

    start(&s);
    for (int i = 0; i < 2001; i++) put_frame(PING, 0, 0, "pingpong", 8);
    conn_err(&s, H2_ENHANCE_YOUR_CALM, "2001 PINGs in a second");

    start(&s);
    for (int i = 0; i < 2001; i++) put_frame(SETTINGS, 0, 0, NULL, 0);
    conn_err(&s, H2_ENHANCE_YOUR_CALM, "2001 SETTINGS in a second");

    start(&s);
    for (int i = 0; i < 1500; i++) put_frame(PING, 0, 0, "pingpong", 8);
    ssize_t r = feed(&s);
    h2_tick(&s, 1000, 0, 20000);
    for (int i = 0; i < 1500; i++) put_frame(PING, 0, 0, "pingpong", 8);
    r = r > 0 ? feed(&s) : r;
    take_out(&s);
    ok(r > 0 && goaway_code() < 0 && count_f(PING, 0) == 3000, "h2_tick resets the budget");
    h2_free(&s);

    start(&s);
    REQ(1, 0, ":method", "GET", ":scheme", "https", ":path", "/");
    for (int i = 0; i < 300; i++) { GET(3 + 2 * i, 0); put32(RST_STREAM, 3 + 2 * i, 0); }
    r = feed(&s);
    h2_tick(&s, 1000, 0, 20000);
    for (int i = 300; i < 600; i++) { GET(3 + 2 * i, 0); put32(RST_STREAM, 3 + 2 * i, 0); }
    r = r > 0 ? feed(&s) : r;
    take_out(&s);
    ok(r > 0 && goaway_code() < 0, "the reset budget is per second too");
    h2_free(&s);

    start(&s);
    static char junk[16384];
    GET(1, 0);
    cl -= blen + 9;
    put_frame(HEADERS, 0, 1, blk, blen);
    for (int i = 0; i < 65; i++) put_frame(CONTINUATION, 0, 1, junk, sizeof junk);
    conn_err(&s, H2_ENHANCE_YOUR_CALM, "CONTINUATION flood past 1 MiB of block");

    start(&s);
    GET(1, 0);
    cl -= blen + 9;
    put_frame(HEADERS, 0, 1, blk, blen);
    for (int i = 0; i < 2001; i++) put_frame(CONTINUATION, 0, 1, NULL, 0);
    conn_err(&s, H2_ENHANCE_YOUR_CALM, "2001 empty CONTINUATIONs");
}

static void t_431(void)
{
    h2_sess s;
    start(&s);
    static char v[4000];
    memset(v, 'v', sizeof v);
    v[sizeof v - 1] = 0;
    const char *nv[64] = { ":method", "GET", ":scheme", "https", ":path", "/" };
    int k = 6;
    char names[20][16];
    for (int i = 0; i < 20; i++) {
        snprintf(names[i], sizeof names[i], "x-%d", i);
        nv[k++] = names[i];
        nv[k++] = v;
    }
    nv[k] = NULL;
    block_v(nv);                       /* ~80 KB > 65536 */
    size_t off = 0;
    while (off < blen) {
        size_t n = blen - off < 16384 ? blen - off : 16384;
        put_frame(off ? CONTINUATION : HEADERS, (off ? 0 : END_STREAM) | (off + n == blen ? END_HEADERS : 0),
                  1, blk + off, n);
        off += n;
    }
    GET(3, END_STREAM);
    ssize_t r = feed(&s);
    take_out(&s);
    int h = find_f(HEADERS, 1);
    ok(r > 0 && h >= 0 && decode_block(of[h].p, of[h].len) == 0 && strstr(dec_txt, ":status: 431\n") &&
       (of[h].flags & END_STREAM), "a header list over 65536 -> 431 on that stream");
    h2_stream *st = h2_pop_start(&s);
    ok(st && st->id == 3 && !h2_pop_start(&s) && goaway_code() < 0,
       "the connection goes on: the next request is queued");
    h2_free(&s);

    /* HPACK bomb: one 4000-byte entry in the table, then 20000 one-byte references */
    start(&s);
    block_v((const char *const[]){ ":method", "GET", ":scheme", "https", ":path", "/", NULL });
    unsigned char *b = blk + blen;
    *b++ = 0x40;                       /* literal, incremental indexing, new name */
    *b++ = 3;
    memcpy(b, "x-b", 3);
    b += 3;
    *b++ = 0x7f;                       /* value length 3999: 127 + 3872 */
    size_t rest = 3999 - 127;
    while (rest >= 128) { *b++ = (unsigned char)(0x80 | (rest & 0x7f)); rest >>= 7; }
    *b++ = (unsigned char)rest;
    memset(b, 'b', 3999);
    b += 3999;
    for (int i = 0; i < 20000; i++) *b++ = 0x80 | 62;
    blen = (size_t)(b - blk);
    off = 0;
    while (off < blen) {
        size_t n = blen - off < 16384 ? blen - off : 16384;
        put_frame(off ? CONTINUATION : HEADERS, (off ? 0 : END_STREAM) | (off + n == blen ? END_HEADERS : 0),
                  1, blk + off, n);
        off += n;
    }
    r = feed(&s);
    take_out(&s);
    h = find_f(HEADERS, 1);
    ok(r > 0 && h >= 0 && decode_block(of[h].p, of[h].len) == 0 && strstr(dec_txt, ":status: 431\n") &&
       !h2_pop_start(&s), "HPACK bomb (80 MB decoded) -> 431");
    h2_free(&s);
}

static void t_misc(void)
{
    h2_sess s;
    h2_stream *st = one(&s, END_STREAM);
    if (st) st->app = 1;               /* the app holds it: not freed */
    put32(RST_STREAM, 1, H2_CANCEL);
    feed(&s);
    take_out(&s);
    ok(st && st->reset && st->peer_reset && s.nopen == 0 && nof == 0, "RST_STREAM from the client closes");
    put_frame(DATA, 0, 1, "x", 1);
    feed(&s);
    take_out(&s);
    ok(!s.dead, "DATA after its reset: not a connection error");
    h2_free(&s);

    /* frames in flight on a stream we reset (and freed) are ignored */
    start(&s);
    REQ(1, 0, ":method", "POST", ":scheme", "https", ":path", "", "content-length", "3");
    put_frame(DATA, 0, 1, "ab", 2);
    REQ(1, END_STREAM, "x-trailer", "1");
    GET(3, END_STREAM);
    ssize_t r = feed(&s);
    take_out(&s);
    ok(r > 0 && rst_code(1) == H2_PROTOCOL_ERROR && count_f(RST_STREAM, 1) == 1 && goaway_code() < 0 &&
       (st = h2_pop_start(&s)) && st->id == 3, "DATA and trailers after our RST_STREAM: ignored");
    h2_free(&s);

    start(&s);
    GET(1, 0);
    unsigned char pr[5] = { 0, 0, 0, 1, 16 };
    put_frame(PRIORITY, 0, 1, pr, 5);
    r = feed(&s);
    take_out(&s);
    st = h2_pop_start(&s);
    ok(r > 0 && rst_code(1) == H2_PROTOCOL_ERROR && st && st->reset && s.nopen == 0,
       "PRIORITY depending on itself -> RST PROTOCOL_ERROR, the stream closed");
    h2_free(&s);

    start(&s);
    GET(1, 0);
    put_frame(PRIORITY, 0, 1, pr, 4);
    r = feed(&s);
    take_out(&s);
    st = h2_pop_start(&s);
    ok(r > 0 && rst_code(1) == H2_FRAME_SIZE_ERROR && st && st->reset && s.nopen == 0,
       "PRIORITY of 4 bytes -> RST FRAME_SIZE_ERROR, the stream closed");
    h2_free(&s);

    st = one(&s, 0);
    put_frame(HEADERS, END_HEADERS, 1, "\x88", 1);      /* trailers without END_STREAM */
    feed(&s);
    take_out(&s);
    ok(rst_code(1) == H2_PROTOCOL_ERROR, "trailers without END_STREAM -> RST PROTOCOL_ERROR");
    h2_free(&s);

    st = one(&s, 0);
    put_frame(HEADERS, END_HEADERS, 1, "\xff\xff\xff\xff\x0f", 5);   /* bad index */
    conn_err(&s, H2_COMPRESSION_ERROR, "a bad HPACK block in trailers without END_STREAM");

    start(&s);
    put_frame(HEADERS, END_HEADERS | END_STREAM, 1, NULL, 0);   /* an empty block */
    r = feed(&s);
    take_out(&s);
    ok(r > 0 && rst_code(1) == H2_PROTOCOL_ERROR, "an empty header block -> RST PROTOCOL_ERROR");
    h2_free(&s);

    start(&s);
    h2_goaway(&s, H2_NO_ERROR);
    GET(1, END_STREAM);
    feed(&s);
    take_out(&s);
    ok(rst_code(1) == H2_REFUSED_STREAM && !h2_pop_start(&s), "a stream after our GOAWAY is refused");
    h2_free(&s);

    start(&s);
    h2_tick(&s, 1000, 500, 2000);
    take_out(&s);
    int i = find_f(PING, 0);
    ok(i >= 0 && !of[i].flags && s.ping_out, "h2_tick: keep-alive PING");
    ok(h2_tick(&s, 2000, 500, 2000) == 0 && h2_tick(&s, 3000, 500, 2000) == 1,
       "unanswered for the timeout: time to go");
    h2_free(&s);
}

/* Streams not started yet, and streams the app has not answered, send
 * nothing: not even the end of a body whose length is known (0 of 0). */
static void t_unanswered(void)
{
    h2_sess s;
    h2_stream *a = one(&s, END_STREAM);
    GET(3, END_STREAM);
    GET(5, END_STREAM);
    feed(&s);
    take_out(&s);
    if (!a) { ok(0, "unanswered: no stream"); h2_free(&s); return; }
    a->app = 1;
    a->r.res.code = 200;
    http_header f[] = { hf("date", "Thu, 01 Jan 1970 00:00:00 GMT") };
    h2_head(a, f, 1, 2);
    app_write(a, "ok", 2);
    h2_produce(&s);
    take_out(&s);
    ok(find_f(HEADERS, 1) >= 0 && count_f(DATA, 1) == 1 && count_f(DATA, 3) == 0 &&
       count_f(DATA, 5) == 0 && count_f(HEADERS, 3) == 0 && count_f(HEADERS, 5) == 0,
       "a body whole by its length ends at once; queued streams send nothing");
    h2_stream *b = h2_pop_start(&s);
    if (b) b->app = 1;                  /* started, no head yet */
    h2_produce(&s);
    take_out(&s);
    ok(b && nof == 0, "a started stream without a head sends nothing");
    h2_free(&s);
}

int main(void)
{
    tap_begin();
    cfg_default();
    t_settings();
    t_preface();
    t_ping();
    t_get();
    t_continuation();
    t_padding();
    t_data();
    t_clen();
    t_malformed();
    t_ids();
    t_windows();
    t_concurrency();
    t_response();
    t_trailers();
    t_lifetime();
    t_floods();
    t_431();
    t_misc();
    t_unanswered();
    return tap_end();
}
