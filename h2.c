/* h2.c -- the HTTP/2 engine (RFC 9113): frames in, frames out, streams,
 * flow control, HPACK (hpack.c).  No sockets, no threads: h2_conn.c does
 * the I/O and the locking (h2.h).
 *
 * Flow control is the backpressure.  A stream's receive window is granted
 * again only as the app takes its body (h2_body_take), so a body never
 * waits in memory beyond the windows we advertised; the response waits
 * in st->out, at most --http2-max-send-buffer-size, until the peer's
 * windows let it go (h2_produce).
 *
 * Every frame that costs us work and does the client no good (PING,
 * SETTINGS, PRIORITY, empty DATA and CONTINUATION, resets) is counted
 * against a budget per second; over it, GOAWAY ENHANCE_YOUR_CALM.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "ev.h"
#include "h2.h"
#include "http.h"

enum { F_DATA, F_HEADERS, F_PRIORITY, F_RST_STREAM, F_SETTINGS, F_PUSH_PROMISE, F_PING,
       F_GOAWAY, F_WINDOW_UPDATE, F_CONTINUATION };
enum { FL_END_STREAM = 0x1, FL_ACK = 0x1, FL_END_HEADERS = 0x4, FL_PADDED = 0x8,
       FL_PRIORITY = 0x20 };
enum { S_HEADER_TABLE_SIZE = 1, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS,
       S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE };

#define WIN_MAX     0x7fffffff
#define CALM_MAX    2000         /* frames that do no work, per second */
#define BLOCK_MAX   (1 << 20)    /* a header block's compressed bytes */
#define ADAPT_MAX   (16 << 20)   /* --http2-adaptive-window's largest window */

static void grant(h2_sess *s, h2_stream *st, size_t n);

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int h2_buf_room(h2_buf *b, size_t n)
{
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->len + n <= b->cap) return 0;
    if (b->off) {                        /* slide the live bytes down first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + n <= b->cap) return 0;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void buf_free(h2_buf *b)
{
    free(b->p);
    *b = (h2_buf){ 0 };
}

/* One frame into s->out (the payload may be NULL: reserved, not copied). */
static char *frame(h2_sess *s, int type, int flags, uint32_t id, const void *p, size_t n)
{
    if (h2_buf_room(&s->out, 9 + n) < 0) {
        s->dead = 1;
        return NULL;
    }
    unsigned char *h = (unsigned char *)s->out.p + s->out.len;
    h[0] = (unsigned char)(n >> 16);
    h[1] = (unsigned char)(n >> 8);
    h[2] = (unsigned char)n;
    h[3] = (unsigned char)type;
    h[4] = (unsigned char)flags;
    h[5] = (unsigned char)(id >> 24 & 0x7f);
    h[6] = (unsigned char)(id >> 16);
    h[7] = (unsigned char)(id >> 8);
    h[8] = (unsigned char)id;
    if (p && n) memcpy(h + 9, p, n);
    s->out.len += 9 + n;
    return (char *)h + 9;
}

static void frame32(h2_sess *s, int type, uint32_t id, uint32_t v)
{
    unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v };
    frame(s, type, 0, id, b, 4);
}

void h2_goaway(h2_sess *s, int code)
{
    if (!s->goaway || code) {
        unsigned char b[8] = { (unsigned char)(s->max_id >> 24 & 0x7f),
                               (unsigned char)(s->max_id >> 16), (unsigned char)(s->max_id >> 8),
                               (unsigned char)s->max_id, 0, 0, 0, (unsigned char)code };
        frame(s, F_GOAWAY, 0, 0, b, 8);
    }
    s->goaway = 1;
    if (code) s->dead = 1;
}

/* A connection error: GOAWAY, then the connection ends (h2_conn.c). */
static ssize_t conn_error(h2_sess *s, int code)
{
    h2_goaway(s, code);
    s->dead = 1;
    return -1;
}

static int was_closed(h2_sess *s, uint32_t id)
{
    for (unsigned i = 0; i < 16 && i < s->nclosed; i++)
        if ((s->closed[i] & WIN_MAX) == id) return s->closed[i] >> 31 ? 2 : 1;
    return 0;
}

static void close_stream(h2_sess *s, h2_stream *st)
{
    if (!st->open) return;
    st->open = 0;
    s->nopen--;
    /* the high bit: we reset it, and frames still in flight are ignored */
    s->closed[s->nclosed++ % 16] = st->id | (st->reset && !st->peer_reset ? 0x80000000u : 0);
    /* a body nobody will take: its bytes go back to the connection window
     * (the chunks stay until the stream goes: an app thread may hold one) */
    s->unacked += st->in_bytes;
    st->in_bytes = 0;
}

/* The stream is over for the protocol: reset by either side. */
static void stream_dead(h2_sess *s, h2_stream *st)
{
    st->reset = st->end_sent = st->changed = 1;
    st->out.off = st->out.len = 0;
    free(st->hblock);
    free(st->tblock);
    st->hblock = st->tblock = NULL;
    close_stream(s, st);
}

void h2_rst(h2_sess *s, h2_stream *st, int code)
{
    if (!st->reset) frame32(s, F_RST_STREAM, st->id, (uint32_t)code);
    stream_dead(s, st);
}

static h2_stream *find(h2_sess *s, uint32_t id)
{
    for (h2_stream *st = s->streams; st; st = st->next)
        if (st->id == id) return st;
    return NULL;
}

void h2_release(h2_sess *s, h2_stream *st)
{
    if (st->app || st->queued || (st->open && !s->dead)) return;
    h2_stream **pp = &s->streams;
    while (*pp && *pp != st) pp = &(*pp)->next;
    if (*pp) *pp = st->next;
    if (st->open) close_stream(s, st);
    while (st->in) {
        h2_chunk *k = st->in;
        st->in = k->next;
        free(k);
    }
    free(st->spent);
    buf_free(&st->out);
    buf_free(&st->hmem);
    free(st->hblock);
    free(st->tblock);
    free(st->head);
    free(st->cookie);
    free(st);
}

h2_stream *h2_pop_start(h2_sess *s)
{
    h2_stream *st = s->startq;
    if (!st) return NULL;
    s->startq = st->qnext;
    if (!s->startq) s->startq_tail = NULL;
    st->queued = 0;
    return st;
}

int h2_init(h2_sess *s, const config *cfg)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    hpack_dec_init(&s->dec, HPACK_TABLE_SIZE);
    s->my_window = (uint32_t)cfg->http2_initial_stream_window_size;
    s->my_conn_window = (uint32_t)cfg->http2_initial_connection_window_size;
    if ((s->adaptive = cfg->http2_adaptive_window))     /* as hyper: both start at the RFC's */
        s->my_window = s->my_conn_window = 65535;
    s->cwin = s->my_conn_window;
    s->my_frame = (uint32_t)cfg->http2_max_frame_size;
    s->my_hlist = cfg->http2_max_headers_size < H2_HEAD_MAX ? (uint32_t)cfg->http2_max_headers_size
                                                            : H2_HEAD_MAX;
    s->my_streams = (uint32_t)cfg->http2_max_concurrent_streams;
    s->peer_frame = 16384;
    s->peer_window = 65535;
    s->swin = 65535;
    s->rwin = 65535;
    unsigned char set[36], *p = set;
    uint32_t kv[][2] = { { S_MAX_CONCURRENT_STREAMS, s->my_streams },
                         { S_INITIAL_WINDOW_SIZE, s->my_window },
                         { S_MAX_FRAME_SIZE, s->my_frame },
                         { S_MAX_HEADER_LIST_SIZE, s->my_hlist },
                         { S_ENABLE_PUSH, 0 } };
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
        *p++ = (unsigned char)(kv[i][0] >> 8);
        *p++ = (unsigned char)kv[i][0];
        for (int sh = 24; sh >= 0; sh -= 8) *p++ = (unsigned char)(kv[i][1] >> sh);
    }
    frame(s, F_SETTINGS, 0, 0, set, (size_t)(p - set));
    if (s->my_conn_window > 65535) {
        frame32(s, F_WINDOW_UPDATE, 0, s->my_conn_window - 65535);
        s->rwin = s->my_conn_window;
    }
    return s->dead ? -1 : 0;
}

void h2_free(h2_sess *s)
{
    while (s->streams) {
        h2_stream *st = s->streams;
        st->app = st->queued = 0;
        s->dead = 1;
        h2_release(s, st);
    }
    hpack_dec_free(&s->dec);
    buf_free(&s->out);
    buf_free(&s->blk);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

size_t h2_frame_room(const h2_sess *s) { return 9 + s->my_frame; }

/* ---------------------------------------------------------------------
 * Request heads: the decoded fields become an http_request
 * ------------------------------------------------------------------- */

typedef struct head_in {
    h2_sess *s;
    h2_stream *st;               /* NULL: a block decoded only to keep the table */
    int trailers;
    int bad, big;                /* malformed (PROTOCOL_ERROR); too large (431) */
    int regular;                 /* a regular field came: no pseudo after it */
    size_t size;                 /* RFC 7541 size of the list */
    slice method, scheme, authority, path, protocol;   /* offsets + 1 in hmem */
    int cookies;                 /* cookie fields: crumbs to join */
} head_in;

/* Connection-specific fields: malformed in a request, dropped from a
 * response (RFC 9113 8.2.2). */
static int conn_specific(slice k)
{
    return http_name_is(k, "connection") || http_name_is(k, "keep-alive") ||
           http_name_is(k, "transfer-encoding") || http_name_is(k, "upgrade") ||
           http_name_is(k, "proxy-connection");
}

/* Keep n bytes in m; returns their offset + 1 (0 stays "none"). */
static size_t keep(h2_buf *m, const char *p, size_t n, int *fail)
{
    if (h2_buf_room(m, n + !m->cap) < 0) { *fail = 1; return 0; }
    memcpy(m->p + m->len, p, n);
    m->len += n;
    return m->len - n + 1;
}

/* Slices are kept as offsets (+ 1) into hmem while it may still move. */
#define OFF(x) ((const char *)(uintptr_t)(x))

static int name_ok(const char *p, size_t n)
{
    if (!n) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || (c >= 'A' && c <= 'Z') || (i && c == ':')) return 0;
    }
    return 1;
}

static int value_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == 0 || p[i] == '\r' || p[i] == '\n') return 0;
    return !n || (p[0] != ' ' && p[0] != '\t' && p[n - 1] != ' ' && p[n - 1] != '\t');
}

static int is(const char *p, size_t n, const char *lower)
{
    return strlen(lower) == n && !memcmp(p, lower, n);
}

static void on_field(void *ctx, const char *name, size_t nn, const char *value, size_t vn)
{
    head_in *h = ctx;
    h->size += nn + vn + 32;
    if (h->size > h->s->my_hlist) h->big = 1;
    if (!h->st || h->bad || h->big) return;
    int pseudo = nn && name[0] == ':';
    if (!name_ok(name + pseudo, nn - (size_t)pseudo) || !value_ok(value, vn)) {
        h->bad = 1;
        return;
    }
    h2_stream *st = h->st;
    int fail = 0;
    if (pseudo) {
        slice *ps = is(name, nn, ":method") ? &h->method : is(name, nn, ":scheme") ? &h->scheme
                  : is(name, nn, ":authority") ? &h->authority : is(name, nn, ":path") ? &h->path
                  : is(name, nn, ":protocol") ? &h->protocol : NULL;
        if (!ps || ps->p || h->regular || h->trailers) { h->bad = 1; return; }
        *ps = (slice){ OFF(keep(&st->hmem, value, vn, &fail)), vn };
    } else {
        h->regular = 1;
        if (conn_specific((slice){ name, nn }) ||
            (is(name, nn, "te") && !is(value, vn, "trailers"))) {
            h->bad = 1;
            return;
        }
        if (h->trailers) return;         /* checked, then dropped, as Granian */
        http_request *rq = st->head;
        if (rq->nheaders == HTTP_MAX_HEADERS) {
            h->big = 1;
            return;
        }
        http_header *f = &rq->headers[rq->nheaders++];
        f->name = (slice){ OFF(keep(&st->hmem, name, nn, &fail)), nn };
        f->value = (slice){ OFF(keep(&st->hmem, value, vn, &fail)), vn };
        h->cookies += is(name, nn, "cookie");
    }
    if (fail) h->big = 1;
}

static slice fix(h2_stream *st, slice v)
{
    return v.p ? (slice){ st->hmem.p + (uintptr_t)v.p - 1, v.n } : (slice){ "", 0 };
}

/* Cookie crumbs become one field, "; "-joined (8.2.3), where the first
 * was: the apps, and WSGI's environ above all, know one cookie header. */
static int join_cookies(h2_stream *st)
{
    http_request *rq = st->head;
    size_t n = 0, j = 0, k = 0;
    http_header *first = NULL;
    for (size_t i = 0; i < rq->nheaders; i++)
        if (http_name_is(rq->headers[i].name, "cookie")) n += rq->headers[i].value.n + 2;
    if (!(st->cookie = malloc(n))) return -1;
    for (size_t i = 0; i < rq->nheaders; i++) {
        http_header f = rq->headers[i];
        if (!http_name_is(f.name, "cookie")) { rq->headers[j++] = f; continue; }
        if (k) { memcpy(st->cookie + k, "; ", 2); k += 2; }
        memcpy(st->cookie + k, f.value.p, f.value.n);
        k += f.value.n;
        if (!first) { first = &rq->headers[j]; rq->headers[j++] = f; }
    }
    rq->nheaders = j;
    first->value = (slice){ st->cookie, k };
    return 0;
}

/* The pseudo-header fields make the request line (8.3.1). */
static int make_head(h2_stream *st, head_in *h)
{
    http_request *rq = st->head;
    slice m = fix(st, h->method);
    int connect = is(m.p, m.n, "CONNECT");
    if (!h->method.p || h->protocol.p || (connect ? (h->scheme.p || h->path.p || !h->authority.p)
                                                  : (!h->scheme.p || !h->path.p || !h->path.n)))
        return -1;
    for (size_t i = 0; i < rq->nheaders; i++) {
        rq->headers[i].name = fix(st, rq->headers[i].name);
        rq->headers[i].value = fix(st, rq->headers[i].value);
    }
    if (h->cookies > 1 && join_cookies(st) < 0) return -2;
    rq->method = fix(st, h->method);
    rq->target = rq->path = fix(st, h->path);
    rq->query = (slice){ "", 0 };
    const char *q = memchr(rq->path.p, '?', rq->path.n);
    if (q) {
        rq->query = (slice){ q + 1, rq->path.n - (size_t)(q + 1 - rq->path.p) };
        rq->path.n = (size_t)(q - rq->path.p);
    }
    rq->authority = fix(st, h->authority);
    rq->minor = 1;
    rq->h2 = 1;
    rq->keep_alive = 1;
    rq->content_length = -1;
    const http_header *cl = http_find_header(rq, "content-length", 0);
    if (cl && http_decimal(cl->value, &rq->content_length) < 0) return -1;
    /* a host field for the apps that know only HTTP/1.1 (Granian: ASGI's
     * first header) */
    if (rq->authority.n && !http_find_header(rq, "host", 0)) {
        if (rq->nheaders == HTTP_MAX_HEADERS) return -2;
        memmove(rq->headers + 1, rq->headers, sizeof(http_header) * rq->nheaders++);
        rq->headers[0] = (http_header){ { "host", 4 }, rq->authority };
    }
    st->clen = rq->content_length;
    return 0;
}

/* Canned answer with no app: 431 for a head too large. */
static void answer(h2_sess *s, h2_stream *st, int code)
{
    unsigned char b[64];
    size_t n = hpack_encode_status(b, sizeof(b), code);
    n += hpack_encode(b + n, sizeof(b) - n, "content-length", 14, "0", 1);
    frame(s, F_HEADERS, FL_END_HEADERS | FL_END_STREAM, st->id, b, n);
    st->end_sent = 1;
    if (st->in_end) close_stream(s, st);
    else h2_rst(s, st, H2_NO_ERROR);     /* don't send the body (8.1) */
}

/* The block through the decoder (an empty one has no buffer: no NULL
 * pointer arithmetic in hpack_decode). */
static int decode_blk(h2_sess *s, head_in *h)
{
    const unsigned char *p = s->blk.p ? (const unsigned char *)s->blk.p : (const unsigned char *)"";
    return hpack_decode(&s->dec, p, s->blk.len, on_field, h);
}

/* A complete header block for stream id. */
static ssize_t on_block(h2_sess *s, uint32_t id, int end_stream)
{
    head_in h = { .s = s };
    h2_stream *st = find(s, id);
    int fresh = 0;
    if (st && !st->open) {              /* reset: ignored; ended: too late */
        if (decode_blk(s, &h) < 0)
            return conn_error(s, H2_COMPRESSION_ERROR);
        return st->reset && !st->peer_reset ? 0 : conn_error(s, H2_STREAM_CLOSED);
    } else if (st) {                    /* trailers */
        if (st->in_end || !end_stream) {
            if (decode_blk(s, &h) < 0)
                return conn_error(s, H2_COMPRESSION_ERROR);
            if (st->in_end) return conn_error(s, H2_STREAM_CLOSED);
            h2_rst(s, st, H2_PROTOCOL_ERROR);
            return 0;
        }
        h.st = st;
        h.trailers = 1;
    } else if (id <= s->max_id) {       /* a stream that has closed */
        if (decode_blk(s, &h) < 0)
            return conn_error(s, H2_COMPRESSION_ERROR);
        int c = was_closed(s, id);
        if (c == 2) return 0;            /* ours reset it: ignored (5.1, closed) */
        return conn_error(s, c ? H2_STREAM_CLOSED : H2_PROTOCOL_ERROR);
    } else {
        s->max_id = id;
        st = calloc(1, sizeof(*st));
        if (st) st->head = calloc(1, sizeof(*st->head));
        if (!st || !st->head) {
            free(st);
            return conn_error(s, H2_INTERNAL_ERROR);
        }
        st->s = s;
        st->id = id;
        st->open = 1;
        st->swin = s->peer_window;
        st->r.res.clen = -1;
        /* before our SETTINGS are acknowledged the client may count on
         * the default window (RFC 9113 6.5.3, 6.9.2) */
        st->win = s->my_window;
        st->rwin = s->settings_acked || s->my_window >= 65535 ? s->my_window : 65535;
        st->next = s->streams;
        s->streams = st;
        s->nopen++;
        h.st = st;
        fresh = 1;
    }
    if (decode_blk(s, &h) < 0)
        return conn_error(s, H2_COMPRESSION_ERROR);
    if (end_stream) st->in_end = 1;
    if (!fresh) {                       /* trailers: the body's end */
        if (h.bad || (st->clen >= 0 && st->got != st->clen)) h2_rst(s, st, H2_PROTOCOL_ERROR);
        st->changed = 1;
        return 0;
    }
    int r = h.bad || s->blk_bad ? -1 : h.big ? -2 : make_head(st, &h);
    if (r == 0 && end_stream && st->clen > 0) r = -1;
    if (r == -1 || (unsigned)s->nopen > s->my_streams || s->goaway) {
        /* malformed (8.1.1), over the limit (5.1.2), or after our GOAWAY */
        h2_rst(s, st, r == -1 ? H2_PROTOCOL_ERROR : H2_REFUSED_STREAM);
        /* malformed ones count too: each costs a decode and a reset */
        if (++s->resets > (int)s->my_streams * 2 + 100)
            return conn_error(s, H2_ENHANCE_YOUR_CALM);
        h2_release(s, st);
        return 0;
    }
    if (r == -2) {
        answer(s, st, 431);
        h2_release(s, st);
        return 0;
    }
    st->queued = 1;
    if (s->startq_tail) s->startq_tail->qnext = st; else s->startq = st;
    s->startq_tail = st;
    st->qnext = NULL;
    return 0;
}

/* ---------------------------------------------------------------------
 * Frames in
 * ------------------------------------------------------------------- */

static ssize_t on_data(h2_sess *s, uint32_t id, int flags, const unsigned char *p, size_t n)
{
    if (id == 0) return conn_error(s, H2_PROTOCOL_ERROR);
    size_t len = n, pad = 0;
    if (flags & FL_PADDED) {
        if (n < 1 || (pad = p[0]) >= n) return conn_error(s, H2_PROTOCOL_ERROR);
        p++;
        n -= 1 + pad;
    }
    if ((int64_t)len > s->rwin) return conn_error(s, H2_FLOW_CONTROL_ERROR);
    s->rwin -= (int64_t)len;
    h2_stream *st = find(s, id);
    if (!st && id > s->max_id) return conn_error(s, H2_PROTOCOL_ERROR);
    if (!st || !st->open || st->in_end) {
        s->unacked += len;              /* dropped: back to the connection */
        if (st && st->reset && !st->peer_reset) return 0;   /* ours: frames may still fly */
        if (st && st->open) h2_rst(s, st, H2_STREAM_CLOSED);
        else if (st || was_closed(s, id) != 2) frame32(s, F_RST_STREAM, id, H2_STREAM_CLOSED);
        return 0;
    }
    if ((int64_t)len > st->rwin) {
        s->unacked += len;
        h2_rst(s, st, H2_FLOW_CONTROL_ERROR);
        return 0;
    }
    st->rwin -= (int64_t)len;
    if (n == 0 && !(flags & FL_END_STREAM) && ++s->calm > CALM_MAX)
        return conn_error(s, H2_ENHANCE_YOUR_CALM);
    st->got += (int64_t)n;
    if (flags & FL_END_STREAM) st->in_end = 1;
    if (st->clen >= 0 && (st->got > st->clen || (st->in_end && st->got != st->clen))) {
        s->unacked += len;
        h2_rst(s, st, H2_PROTOCOL_ERROR);          /* malformed (8.1.1) */
        return 0;
    }
    if (st->drop_in) {                  /* answered: what comes is let in, unread */
        grant(s, st, len);
    } else if (n) {
        s->unacked += len - n;          /* padding is consumed at once */
        st->unacked += len - n;
        h2_chunk *k = malloc(sizeof(*k) + n);
        if (!k) return conn_error(s, H2_INTERNAL_ERROR);
        *k = (h2_chunk){ NULL, 0, n };
        memcpy(k->data, p, n);
        if (st->in_tail) st->in_tail->next = k; else st->in = k;
        st->in_tail = k;
        st->in_bytes += n;
    } else {
        s->unacked += len;
        st->unacked += len;
    }
    if (st->in_end && st->end_sent) close_stream(s, st);
    st->changed = 1;
    return 0;
}

static ssize_t on_headers(h2_sess *s, uint32_t id, int type, int flags,
                          const unsigned char *p, size_t n)
{
    if (id == 0 || !(id & 1)) return conn_error(s, H2_PROTOCOL_ERROR);
    if (type == F_HEADERS) {
        size_t pad = 0;
        int bad = 0;
        if (flags & FL_PADDED) {
            if (n < 1) return conn_error(s, H2_PROTOCOL_ERROR);
            pad = p[0];
            p++;
            n--;
        }
        if (flags & FL_PRIORITY) {
            if (n < 5) return conn_error(s, H2_PROTOCOL_ERROR);
            bad = (get32(p) & WIN_MAX) == id;     /* depends on itself (5.3.1) */
            p += 5;
            n -= 5;
        }
        if (pad > n) return conn_error(s, H2_PROTOCOL_ERROR);
        n -= pad;
        s->blk.off = s->blk.len = 0;
        s->blk_id = id;
        s->blk_end_stream = flags & FL_END_STREAM;
        s->blk_bad = bad;
    } else if (!n && !(flags & FL_END_HEADERS) && ++s->calm > CALM_MAX) {
        return conn_error(s, H2_ENHANCE_YOUR_CALM);
    }
    if (s->blk.len + n > BLOCK_MAX) return conn_error(s, H2_ENHANCE_YOUR_CALM);
    if (n && h2_buf_room(&s->blk, n) < 0) return conn_error(s, H2_INTERNAL_ERROR);
    if (n) memcpy(s->blk.p + s->blk.len, p, n);
    s->blk.len += n;
    if (!(flags & FL_END_HEADERS)) return 0;
    s->blk_id = 0;
    ssize_t r = on_block(s, id, s->blk_end_stream);
    if (s->blk.cap > 65536) buf_free(&s->blk);
    return r;
}

static ssize_t on_settings(h2_sess *s, int flags, const unsigned char *p, size_t n)
{
    if (flags & FL_ACK) {
        if (n) return conn_error(s, H2_FRAME_SIZE_ERROR);
        if (!s->settings_acked && s->my_window < 65535)   /* our smaller window applies */
            for (h2_stream *st = s->streams; st; st = st->next)
                st->rwin -= 65535 - (int64_t)s->my_window;
        s->settings_acked = 1;
        return 0;
    }
    if (n % 6) return conn_error(s, H2_FRAME_SIZE_ERROR);
    for (; n; p += 6, n -= 6) {
        uint32_t v = get32(p + 2);
        switch (p[0] << 8 | p[1]) {
        case S_ENABLE_PUSH:
            if (v > 1) return conn_error(s, H2_PROTOCOL_ERROR);
            break;
        case S_INITIAL_WINDOW_SIZE: {
            if (v > WIN_MAX) return conn_error(s, H2_FLOW_CONTROL_ERROR);
            int64_t d = (int64_t)v - s->peer_window;
            s->peer_window = v;
            for (h2_stream *st = s->streams; st; st = st->next) {
                if (st->reset || st->end_sent) continue;   /* sends nothing more */
                if (st->swin + d > WIN_MAX) return conn_error(s, H2_FLOW_CONTROL_ERROR);
                st->swin += d;
            }
            break;
        }
        case S_MAX_FRAME_SIZE:
            if (v < 16384 || v > 16777215) return conn_error(s, H2_PROTOCOL_ERROR);
            s->peer_frame = v;
            break;
        }
    }
    frame(s, F_SETTINGS, FL_ACK, 0, NULL, 0);
    return 0;
}

static ssize_t on_frame(h2_sess *s, int type, int flags, uint32_t id,
                        const unsigned char *p, size_t n)
{
    if (s->blk_id && (type != F_CONTINUATION || id != s->blk_id))
        return conn_error(s, H2_PROTOCOL_ERROR);     /* a block is contiguous (6.10) */
    if (!s->settings_seen) {
        if (type != F_SETTINGS || (flags & FL_ACK)) return conn_error(s, H2_PROTOCOL_ERROR);
        s->settings_seen = 1;
    }
    h2_stream *st;
    switch (type) {
    case F_DATA:
        return on_data(s, id, flags, p, n);
    case F_HEADERS:
        return on_headers(s, id, type, flags, p, n);
    case F_CONTINUATION:
        if (!s->blk_id) return conn_error(s, H2_PROTOCOL_ERROR);
        return on_headers(s, id, type, flags, p, n);
    case F_PRIORITY:                    /* accepted, ignored (RFC 9113 5.3.2) */
        if (id == 0) return conn_error(s, H2_PROTOCOL_ERROR);
        if (n != 5) {                   /* a stream error (6.3): the stream ends */
            if ((st = find(s, id))) h2_rst(s, st, H2_FRAME_SIZE_ERROR);
            else frame32(s, F_RST_STREAM, id, H2_FRAME_SIZE_ERROR);
            return 0;
        }
        if ((get32(p) & WIN_MAX) == id) {
            if ((st = find(s, id))) h2_rst(s, st, H2_PROTOCOL_ERROR);
            else frame32(s, F_RST_STREAM, id, H2_PROTOCOL_ERROR);
        }
        return ++s->calm > CALM_MAX ? conn_error(s, H2_ENHANCE_YOUR_CALM) : 0;
    case F_RST_STREAM:
        if (id == 0) return conn_error(s, H2_PROTOCOL_ERROR);
        if (n != 4) return conn_error(s, H2_FRAME_SIZE_ERROR);
        if (id > s->max_id) return conn_error(s, H2_PROTOCOL_ERROR);
        if ((st = find(s, id))) {
            st->peer_reset = 1;
            stream_dead(s, st);         /* no RST_STREAM for a RST_STREAM */
            h2_release(s, st);
        }
        /* rapid reset (CVE-2023-44487): streams opened only to be reset */
        return ++s->resets > (int)s->my_streams * 2 + 100 ? conn_error(s, H2_ENHANCE_YOUR_CALM) : 0;
    case F_SETTINGS:
        if (id) return conn_error(s, H2_PROTOCOL_ERROR);
        if (++s->calm > CALM_MAX) return conn_error(s, H2_ENHANCE_YOUR_CALM);
        return on_settings(s, flags, p, n);
    case F_PUSH_PROMISE:
        return conn_error(s, H2_PROTOCOL_ERROR);
    case F_PING:
        if (id) return conn_error(s, H2_PROTOCOL_ERROR);
        if (n != 8) return conn_error(s, H2_FRAME_SIZE_ERROR);
        if (flags & FL_ACK) { s->ping_out = 0; return 0; }
        if (++s->calm > CALM_MAX) return conn_error(s, H2_ENHANCE_YOUR_CALM);
        frame(s, F_PING, FL_ACK, 0, p, 8);
        return 0;
    case F_GOAWAY:
        if (id) return conn_error(s, H2_PROTOCOL_ERROR);
        if (n < 8) return conn_error(s, H2_FRAME_SIZE_ERROR);
        s->peer_gone = 1;
        return 0;
    case F_WINDOW_UPDATE: {
        if (n != 4) return conn_error(s, H2_FRAME_SIZE_ERROR);
        uint32_t inc = get32(p) & WIN_MAX;
        if (id == 0) {
            if (!inc) return conn_error(s, H2_PROTOCOL_ERROR);
            if (s->swin + inc > WIN_MAX) return conn_error(s, H2_FLOW_CONTROL_ERROR);
            s->swin += inc;
            return 0;
        }
        if (id > s->max_id) return conn_error(s, H2_PROTOCOL_ERROR);
        if (!(st = find(s, id)) || st->reset) return 0;
        if (!inc) h2_rst(s, st, H2_PROTOCOL_ERROR);
        else if (st->swin + inc > WIN_MAX) h2_rst(s, st, H2_FLOW_CONTROL_ERROR);
        else st->swin += inc;
        return 0;
    }
    }
    return 0;                           /* unknown types are ignored (5.5) */
}

ssize_t h2_recv(h2_sess *s, const char *in, size_t n)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t used = 0;
    if (s->dead) return -1;
    while (s->preface < H2_PREFACE_LEN) {
        if (used == n) return (ssize_t)used;
        if (p[used] != (unsigned char)H2_PREFACE[s->preface]) return conn_error(s, H2_PROTOCOL_ERROR);
        used++;
        s->preface++;
    }
    while (n - used >= 9 && !s->dead) {
        const unsigned char *h = p + used;
        size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
        if (len > s->my_frame) return conn_error(s, H2_FRAME_SIZE_ERROR);
        if (n - used < 9 + len) break;
        used += 9 + len;
        if (on_frame(s, h[3], h[4], get32(h + 5) & WIN_MAX, h + 9, len) < 0) return -1;
        /* grant the connection window again, after the frame that filled
         * it: the answer must not depend on how reads split the input */
        grant(s, NULL, 0);
    }
    return s->dead ? -1 : (ssize_t)used;
}

size_t h2_body_peek(h2_stream *st, const char **p)
{
    free(st->spent);
    st->spent = NULL;
    h2_chunk *k = st->in;
    while (k && k->off == k->len) k = k->next;
    if (!k || !st->in_bytes) { *p = ""; return 0; }
    *p = k->data + k->off;
    return k->len - k->off;
}

void h2_body_take(h2_sess *s, h2_stream *st, size_t n)
{
    if (n > st->in_bytes) n = st->in_bytes;
    st->in_bytes -= n;
    for (size_t left = n; left && st->in;) {
        h2_chunk *k = st->in;
        size_t m = k->len - k->off < left ? k->len - k->off : left;
        k->off += m;
        left -= m;
        if (k->off == k->len) {
            st->in = k->next;
            if (!st->in) st->in_tail = NULL;
            free(st->spent);
            st->spent = k;
        }
    }
    if (st->open) grant(s, st, n);      /* else granted back when it closed */
}

/* How much a window grows: --http2-adaptive-window doubles one that the
 * client had all but used up when the app caught up (its bandwidth-delay
 * product is larger than the window), up to ADAPT_MAX; else nothing. */
static uint32_t grow(h2_sess *s, uint32_t *win, int64_t left)
{
    if (!s->adaptive || left > *win / 4 || *win >= ADAPT_MAX) return 0;
    uint32_t more = *win;
    *win *= 2;
    return more;
}

/* n bytes of st (NULL: none) are gone: open the windows again once half
 * has gone. */
static void grant(h2_sess *s, h2_stream *st, size_t n)
{
    s->unacked += n;
    if (st) st->unacked += n;
    if (st && st->open && !st->in_end && st->unacked >= st->win / 2) {
        uint32_t k = (uint32_t)st->unacked + grow(s, &st->win, st->rwin);
        frame32(s, F_WINDOW_UPDATE, st->id, k);
        st->rwin += k;
        st->unacked = 0;
    }
    if (s->unacked && s->unacked >= s->cwin / 2) {
        uint32_t k = (uint32_t)s->unacked + grow(s, &s->cwin, s->rwin);
        frame32(s, F_WINDOW_UPDATE, 0, k);
        s->rwin += k;
        s->unacked = 0;
    }
}

int h2_tick(h2_sess *s, int64_t now, int64_t ping_ms, int64_t timeout_ms)
{
    s->calm = s->resets = 0;
    if (s->ping_out && now - s->ping_at >= timeout_ms) return 1;
    if (ping_ms && !s->ping_out && now - s->ping_at >= ping_ms) {
        frame(s, F_PING, 0, 0, "granc-ka", 8);
        s->ping_out = 1;
        s->ping_at = now;
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * Frames out
 * ------------------------------------------------------------------- */

/* A header block as HEADERS and CONTINUATION frames, never interleaved. */
static void block_out(h2_sess *s, uint32_t id, const unsigned char *b, size_t n, int end_stream)
{
    size_t k = n < s->peer_frame ? n : s->peer_frame;
    frame(s, F_HEADERS, (k == n ? FL_END_HEADERS : 0) | (end_stream ? FL_END_STREAM : 0), id, b, k);
    while (k < n) {
        size_t m = n - k < s->peer_frame ? n - k : s->peer_frame;
        frame(s, F_CONTINUATION, k + m == n ? FL_END_HEADERS : 0, id, b + k, m);
        k += m;
    }
}

static void ended(h2_sess *s, h2_stream *st)
{
    st->end_sent = 1;
    if (st->in_end) close_stream(s, st);
}

/* What st may send now; 1 if it sent anything. */
static int stream_out(h2_sess *s, h2_stream *st)
{
    int did = 0;
    if (st->reset || st->end_sent) return 0;
    size_t left = st->out.len - st->out.off;
    /* the interface may end the response before the last bytes it framed
     * are written (ASGI queues them): the end waits for them.  A body whole
     * by its content-length (or with none: HEAD, 204, 304) ends with its
     * last frame unless trailers are to come: waiting for the app's end
     * would cost a frame and a write of their own */
    const resp_head *rh = &st->r.res;
    if (!st->hblock && !st->head_sent) return 0;    /* nothing before the head */
    int ending = (st->out_end || (!rh->trailers && (rh->nobody || (rh->clen >= 0 &&
                  st->r.sent == rh->clen)))) && st->written >= st->r.sent;
    if (st->hblock) {
        int end = ending && !left && !st->tblock;
        block_out(s, st->id, st->hblock, st->hblen, end);
        free(st->hblock);
        st->hblock = NULL;
        st->head_sent = 1;
        if (end) { ended(s, st); return 1; }
        did = 1;
    }
    if (left) {
        int64_t w = st->swin < s->swin ? st->swin : s->swin;
        size_t k = left < s->peer_frame ? left : s->peer_frame;
        if ((int64_t)k > w) k = w > 0 ? (size_t)w : 0;
        if (!k) return did;
        int end = ending && k == left && !st->tblock;
        frame(s, F_DATA, end ? FL_END_STREAM : 0, st->id, st->out.p + st->out.off, k);
        st->out.off += k;
        st->swin -= (int64_t)k;
        s->swin -= (int64_t)k;
        st->changed = 1;                /* room for more */
        s->news |= (st->watch & EV_WRITE) != 0;
        if (end) ended(s, st);
        return 1;
    }
    if (!ending) return did;
    if (st->tblock) {
        block_out(s, st->id, st->tblock, st->tblen, 1);
        free(st->tblock);
        st->tblock = NULL;
    } else {
        frame(s, F_DATA, FL_END_STREAM, st->id, NULL, 0);
    }
    ended(s, st);
    return 1;
}

void h2_produce(h2_sess *s)
{
    /* a pass gives each stream one frame, so that one big response does
     * not starve the others */
    for (int more = 1; more && s->out.len - s->out.off < H2_OUT_HIGH && !s->dead;) {
        more = 0;
        for (h2_stream *st = s->streams; st; st = st->next)
            more |= stream_out(s, st);
    }
    /* streams that closed after the app let go of them (its h2_release
     * came while they were open: the end still to send, or the client's
     * body still coming) have no one left to free them */
    for (h2_stream *st = s->streams, *next; st; st = next) {
        next = st->next;
        if (!st->open && !st->app && !st->queued) h2_release(s, st);
    }
}

/* ---------------------------------------------------------------------
 * Response heads
 * ------------------------------------------------------------------- */


static unsigned char *encode(const http_header *f, size_t nf, int code, size_t extra,
                             size_t *len, const char *tail, size_t tn)
{
    size_t cap = 64 + extra + tn;
    for (size_t i = 0; i < nf; i++) cap += f[i].name.n + f[i].value.n + 12;
    unsigned char *b = malloc(cap), *p = b;
    if (!b) return NULL;
    if (code) p += hpack_encode_status(p, cap, code);
    for (size_t i = 0; i < nf; i++) {
        if (conn_specific(f[i].name)) continue;
        p += hpack_encode(p, cap - (size_t)(p - b), f[i].name.p, f[i].name.n,
                          f[i].value.p, f[i].value.n);
    }
    memcpy(p, tail, tn);
    *len = (size_t)(p - b) + tn;
    return b;
}

int h2_head(h2_stream *st, const http_header *f, size_t nf, int64_t total)
{
    resp_head *h = &st->r.res;
    int server = 0, date = 0, code = h->code;
    h->clen = -1;
    h->chunked = 0;
    h->keep = 1;
    for (size_t i = 0; i < nf; i++) {
        server |= http_name_is(f[i].name, "server");
        date |= http_name_is(f[i].name, "date");
        if (http_name_is(f[i].name, "content-length") &&
            http_decimal(f[i].value, &h->clen) < 0) {
            errno = EINVAL;
            return -1;
        }
    }
    int bodyless = code < 200 || code == 204 || code == 304;
    const slice *m = &st->head->method;
    h->nobody = bodyless || (m->n == 4 && !memcmp(m->p, "HEAD", 4));
    unsigned char tail[128];
    size_t tn = 0;
    if (!server) tn += hpack_encode(tail + tn, sizeof(tail) - tn, "server", 6, "granc", 5);
    if (!date) tn += hpack_encode(tail + tn, sizeof(tail) - tn, "date", 4, http_date(), 29);
    if (h->clen < 0 && total >= 0 && !bodyless) {
        char num[24], *d = http_utoa(num + sizeof(num), (uint64_t)total);
        tn += hpack_encode(tail + tn, sizeof(tail) - tn, "content-length", 14, d,
                           (size_t)(num + sizeof(num) - d));
        h->clen = total;
    }
    free(st->hblock);
    if (!(st->hblock = encode(f, nf, code, 0, &st->hblen, (char *)tail, tn))) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

int h2_trailers(h2_stream *st, const http_header *f, size_t nf)
{
    free(st->tblock);
    st->tblock = NULL;
    if (!nf) return 0;
    if (!(st->tblock = encode(f, nf, 0, 0, &st->tblen, "", 0))) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}
