/* h2_conn.c -- HTTP/2 connections: the socket, the threads and the
 * interfaces around the engine (h2.c).
 *
 * A connection that speaks HTTP/2 (conn.c decides: ALPN, or the preface)
 * becomes a session here.  The loop thread reads frames into it and hands
 * each complete request head to the interface as the stream's request
 * (req.h), whose operations below put the response into the stream and
 * take its body out.  Whoever holds the session's lock may write the
 * socket: an application thread sends its own response, as on HTTP/1.1,
 * and asks the loop (h2_wake) only when the socket is full.  A thread
 * that must wait (a body not here yet, a send buffer full) sleeps on the
 * session's condition variable; the loop thread itself (--blocking-threads
 * 1) instead reads and writes the socket until what it waits for comes.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "conn.h"
#include "h2.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "static.h"
#include "worker.h"
#include "worker_int.h"

#define READS_PER_EVENT 16       /* reads per readiness event, for fairness */

typedef struct h2c {
    h2_sess s;
    conn *c;
    char *in;                    /* bytes read, not yet a whole frame */
    size_t ilen, icap;
    int busy;                    /* loop handlers running: closing waits */
    int napp;                    /* streams the interface holds */
    int closing;                 /* close once busy and napp are 0 */
    int kicked, waitq;           /* in the kick list, the --backpressure
                                    list (kick_mu; not bit-fields: other
                                    threads write them) */
    int64_t wrote_at;            /* ms: output last moved */
    struct h2c *knext, *wnext;
    h2_stream *held, *held_tail; /* heads held back by --backpressure */
} h2c;

static const req_ops h2_ops;
static void close_now(h2c *h);

/* Sessions an application thread left output in, and sessions with heads
 * held back by --backpressure: both for the loop thread. */
static pthread_mutex_t kick_mu = PTHREAD_MUTEX_INITIALIZER;
static h2c *kicks, *waiting;

#define ST(r) ((h2_stream *)(r))     /* r is a stream's first member */
#define H(st) ((h2c *)(st)->s)       /* and a session its h2c's */

/* On the thread running the loop now (the WSGI pool moves it, pool.c). */
static int on_loop(h2c *h) { (void)h; return wk_owner; }

/* ---------------------------------------------------------------------
 * Socket I/O, with s->mu held
 * ------------------------------------------------------------------- */

/* Frame and write what the streams have, as far as the socket takes it. */
static void flush_locked(h2c *h)
{
    h2_sess *s = &h->s;
    for (;;) {
        h2_produce(s);
        size_t n = s->out.len - s->out.off;
        if (!n) break;
        struct iovec v = { s->out.p + s->out.off, n };
        ssize_t w = conn_writev(h->c, &v, 1);
        if (w > 0) {
            s->out.off += (size_t)w;
            h->wrote_at = clock_ms();
            continue;
        }
        if (w < 0 && errno == EAGAIN) break;
        s->dead = 1;                    /* the client is gone */
        s->out.off = s->out.len = 0;
        break;
    }
    if (s->out.off == s->out.len) s->out.off = s->out.len = 0;
    if (s->waiters) pthread_cond_broadcast(&s->cv);    /* room, maybe */
}

/* Read and feed the engine; 0 when nothing more is there now, -1 when the
 * connection is over (EOF, an error, a connection error).  It reads until
 * the socket is empty, even after a short read, before any stream starts:
 * a client that opens more streams than allowed at once is told so, however
 * fast the app answers the first (h2spec 5.1.2). */
static int read_locked(h2c *h)
{
    /* Whole frames are read in the loop thread's scratch buffer and no
     * connection keeps one: only a frame cut by the read stays, in h->in
     * (the engine copies what it keeps: bodies, header blocks) */
    static char *scratch;
    static size_t scap;
    h2_sess *s = &h->s;
    size_t room = h2_frame_room(s) + 16384;
    if (scap < room) {
        free(scratch);
        scap = 0;
        if (!(scratch = malloc(room))) { s->dead = 1; return -1; }
        scap = room;
    }
    for (int i = 0; i < READS_PER_EVENT; i++) {
        if (s->dead) return -1;
        if (s->out.len - s->out.off >= H2_OUT_HIGH) return 0;  /* it reads nothing */
        char *buf = scratch;
        size_t len = h->ilen;
        if (len) {                      /* a cut frame first */
            if (h->icap < len + room) {
                char *p = realloc(h->in, len + room);
                if (!p) { s->dead = 1; return -1; }
                h->in = p;
                h->icap = len + room;
            }
            buf = h->in;
        }
        ssize_t n = conn_read(h->c, buf + len, room);
        if (n < 0 && errno == EAGAIN) return 0;
        if (n <= 0) { s->dead = 1; return -1; }
        len += (size_t)n;
        ssize_t k = h2_recv(s, buf, len);
        if (k < 0) return -1;
        h->ilen = len - (size_t)k;
        if (h->ilen && buf == scratch) {
            if (h->icap < h->ilen + room) {
                char *p = realloc(h->in, h->ilen + room);
                if (!p) { s->dead = 1; return -1; }
                h->in = p;
                h->icap = h->ilen + room;
            }
            memcpy(h->in, buf + k, h->ilen);
        } else if (h->ilen) {
            memmove(h->in, h->in + k, h->ilen);
        }
        s->last_active = clock_ms();
    }
    return 0;
}

/* Tell whoever waits on a changed stream: application threads on cv, and
 * loop-thread interfaces (ASGI, RSGI) through a list for after the lock. */
static h2_stream *news_locked(h2c *h)
{
    h2_stream *list = NULL;
    int wake = 0;
    for (h2_stream *st = h->s.streams; st; st = st->next) {
        if (!st->changed) continue;
        st->changed = 0;
        wake = 1;
        if (st->app && st->watch && st->r.ifc->event) {
            st->qnext = list;
            list = st;
        }
    }
    if (wake && h->s.waiters) pthread_cond_broadcast(&h->s.cv);
    return list;
}

static void tell(h2_stream *list)
{
    while (list) {
        h2_stream *st = list;
        list = st->qnext;
        st->r.ifc->event(&st->r, st->watch);
    }
}

/* What the loop waits for on the socket. */
static void rearm(h2c *h)
{
    conn *c = h->c;
    int mask = EV_READ;
    if (h->s.out.len > h->s.out.off) mask |= EV_WRITE;
    if (h->s.out.len - h->s.out.off >= H2_OUT_HIGH) mask = EV_WRITE;
    if (c->tls) mask |= conn_want(c, mask & EV_READ ? EV_READ : EV_WRITE);
    ev_del(W.loop, c->fd, ~mask & (EV_READ | EV_WRITE));
    if (ev_add(W.loop, c->fd, mask, conn_on_event, c) < 0) h->s.dead = 1;
}

/* An application thread could not write it all: the loop takes over. */
static void kick(h2c *h)
{
    pthread_mutex_lock(&kick_mu);
    int first = !h->kicked;
    if (first) {
        h->kicked = 1;
        h->knext = kicks;
        kicks = h;
    }
    pthread_mutex_unlock(&kick_mu);
    if (first) {
        ssize_t w = write(W.wake[1], "h", 1);
        (void)w;
    }
}

/* After an operation changed what goes out: write it now.  The loop
 * takes over what the socket did not take, and the news for streams that
 * wait (ASGI's send(): room in their buffers) when no pass of it is
 * running to tell them. */
static void push_locked(h2c *h)
{
    flush_locked(h);
    int loop = on_loop(h);
    if ((h->s.out.len > h->s.out.off && !loop) || (h->s.news && loop && !h->busy)) kick(h);
}

/* Wait for the stream to change (with s->mu held): an application thread
 * sleeps on cv; the loop thread works the socket itself.  -1 on timeout. */
static int wait_locked(h2c *h)
{
    h2_sess *s = &h->s;
    if (!on_loop(h)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += IO_TIMEOUT_MS / 1000;
        s->waiters++;
        int rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        s->waiters--;
        return rc == ETIMEDOUT ? -1 : 0;
    }
    flush_locked(h);
    int want = conn_want(h->c, h->s.out.len > h->s.out.off ? EV_WRITE : EV_READ);
    struct pollfd p = { .fd = h->c->fd, .events = POLLIN };
    if (want == EV_WRITE || h->s.out.len > h->s.out.off) p.events |= POLLOUT;
    pthread_mutex_unlock(&s->mu);
    int r;
    do r = poll(&p, 1, IO_TIMEOUT_MS);
    while (r < 0 && errno == EINTR);
    pthread_mutex_lock(&s->mu);
    if (r <= 0) return -1;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) read_locked(h);
    flush_locked(h);
    news_locked(h);                     /* the loop's own apps do not watch */
    return 0;
}

/* ---------------------------------------------------------------------
 * Streams to the interface
 * ------------------------------------------------------------------- */

static void finished(h2c *h, h2_stream *st);

static void start(h2c *h, h2_stream *st)
{
    request *r = &st->r;
    r->ops = &h2_ops;
    r->queue = 1;                       /* (pool.c) */
    r->head = st->head;
    r->ls = h->c->ls;
    r->tls = h->c->tls;
    /* the client and scheme as on HTTP/1.1: a trusted proxy's word, per
     * request */
    signed char proto = 0;
    st->fwd[0] = 0;
    if (h->c->trusted) proxy_forwarded(st->head, st->fwd, &proto);
    r->client = st->fwd[0] ? st->fwd : h->c->addr;
    r->client_port = st->fwd[0] ? 0 : h->c->port;
    r->secure = proto ? proto > 0 : h->c->tls != NULL;
    r->res = (resp_head){ .clen = -1 };
    st->started = clock_wall();
    st->app = 1;
    h->napp++;
    W.inflight++;
    pthread_mutex_unlock(&h->s.mu);
    r->ifc = static_match(st->head) ? &static_iface : W.ifc;
    int inline_done = r->ifc->start(r);
    pthread_mutex_lock(&h->s.mu);
    if (inline_done) finished(h, st);
}

/* Give the heads that came to the interface, as --backpressure allows. */
static void start_all(h2c *h)
{
    h2_sess *s = &h->s;
    h2_stream *st;
    while ((st = h2_pop_start(s))) {
        if (s->dead || st->reset) { h2_release(s, st); continue; }
        st->queued = 1;                 /* held, or being started */
        if (W.inflight >= W.cfg->backpressure || h->held) {
            st->qnext = NULL;
            if (h->held_tail) h->held_tail->qnext = st; else h->held = st;
            h->held_tail = st;
            pthread_mutex_lock(&kick_mu);
            if (!h->waitq) { h->waitq = 1; h->wnext = waiting; waiting = h; }
            pthread_mutex_unlock(&kick_mu);
            continue;
        }
        st->queued = 0;
        start(h, st);
    }
}

/* The request is over for the interface (on the loop thread). */
static void finished(h2c *h, h2_stream *st)
{
    st->app = 0;
    st->r.app = NULL;
    h->napp--;
    wk_request_done();
    h2_release(&h->s, st);
}

/* One pass of the loop thread over the session: read, start, write. */
static void work(h2c *h, int readable)
{
    h2_sess *s = &h->s;
    h->busy++;
    pthread_mutex_lock(&s->mu);
    if (readable) read_locked(h);
    start_all(h);
    /* what the interface does when told may make news for others (its
     * output framed makes room, or ends a stream): tell them too */
    for (int round = 0; round < 16; round++) {
        flush_locked(h);
        s->news = 0;
        h2_stream *list = news_locked(h);
        if (!list) break;
        pthread_mutex_unlock(&s->mu);
        tell(list);
        pthread_mutex_lock(&s->mu);
        if (round == 15) kick(h);       /* more next time round the loop */
    }
    int idle = !s->nopen && !h->napp && !s->startq && !h->held;
    int over = s->dead || ((s->goaway || s->peer_gone) && idle);
    if (!over) rearm(h);
    pthread_mutex_unlock(&s->mu);
    h->busy--;
    if (over || h->closing) close_now(h);
}

/* ---------------------------------------------------------------------
 * The connection's life (conn.c, worker.c)
 * ------------------------------------------------------------------- */

int h2_start(conn *c)
{
    h2c *h = calloc(1, sizeof(*h));
    if (!h || h2_init(&h->s, W.cfg) < 0) {
        free(h);
        conn_close(c);
        return -1;
    }
    h->c = c;
    h->wrote_at = h->s.last_active = clock_ms();
    c->h2 = h;
    c->state = CS_H2;
    if (c->len) {                       /* what conn.c read: the preface */
        ssize_t k = h2_recv(&h->s, c->buf, c->len);
        if (k >= 0 && (size_t)k < c->len) {     /* a frame cut short */
            h->ilen = c->len - (size_t)k;
            h->icap = h->ilen + h2_frame_room(&h->s) + 16384;
            if (!(h->in = malloc(h->icap))) { close_now(h); return -1; }
            memcpy(h->in, c->buf + k, h->ilen);
        }
    }
    conn_buf_put(c);
    work(h, 1);
    return 0;
}

void h2_io(conn *c, int mask)
{
    work(c->h2, (mask & EV_READ) || c->tls);
}

/* Close when nothing needs the connection any more: the GOAWAY (if any)
 * flushed, then conn.c lingers so that it arrives before the close. */
static void close_now(h2c *h)
{
    if (h->busy) { h->closing = 1; return; }
    pthread_mutex_lock(&h->s.mu);
    if (h->napp) {                      /* the interface still holds streams */
        h->s.dead = 1;
        h->closing = 1;
        flush_locked(h);                /* the GOAWAY, if it can go */
        shutdown(h->c->fd, SHUT_RDWR);
        ev_del(W.loop, h->c->fd, EV_READ | EV_WRITE);
        /* every stream hears of it: threads wake, tasks are told, and the
         * last done() closes the connection */
        for (h2_stream *st = h->s.streams; st; st = st->next) st->changed = 1;
        h2_stream *list = news_locked(h);
        pthread_cond_broadcast(&h->s.cv);
        pthread_mutex_unlock(&h->s.mu);
        h->busy++;
        tell(list);
        h->busy--;
        return;
    }
    flush_locked(h);
    int clean = h->s.goaway || h->s.dead;
    pthread_mutex_unlock(&h->s.mu);
    conn *c = h->c;
    h2_conn_free(c);
    if (clean) conn_linger(c); else conn_close(c);
}

void h2_conn_free(conn *c)
{
    h2c *h = c->h2;
    if (!h) return;
    pthread_mutex_lock(&kick_mu);
    for (h2c **pp = &kicks; *pp; pp = &(*pp)->knext)
        if (*pp == h) { *pp = h->knext; break; }
    for (h2c **pp = &waiting; *pp; pp = &(*pp)->wnext)
        if (*pp == h) { *pp = h->wnext; break; }
    pthread_mutex_unlock(&kick_mu);
    for (h2_stream *st = h->held; st; st = st->qnext) st->queued = 0;
    h2_free(&h->s);
    free(h->in);
    free(h);
    c->h2 = NULL;
}

void h2_wake(void)
{
    pthread_mutex_lock(&kick_mu);
    h2c *list = kicks;
    kicks = NULL;
    for (h2c *h = list; h; h = h->knext) h->kicked = 0;
    pthread_mutex_unlock(&kick_mu);
    while (list) {
        h2c *h = list;
        list = h->knext;
        work(h, 0);
    }
}

void h2_drain_waitq(void)
{
    while (W.inflight < W.cfg->backpressure) {
        pthread_mutex_lock(&kick_mu);
        h2c *h = waiting;
        if (h) { waiting = h->wnext; h->waitq = 0; }
        pthread_mutex_unlock(&kick_mu);
        if (!h) return;
        h->busy++;
        pthread_mutex_lock(&h->s.mu);
        while (h->held && W.inflight < W.cfg->backpressure) {
            h2_stream *st = h->held;
            h->held = st->qnext;
            if (!h->held) h->held_tail = NULL;
            st->queued = 0;
            if (h->s.dead || st->reset) h2_release(&h->s, st);
            else start(h, st);
        }
        if (h->held) {                  /* still more: back in the list */
            pthread_mutex_lock(&kick_mu);
            if (!h->waitq) { h->waitq = 1; h->wnext = waiting; waiting = h; }
            pthread_mutex_unlock(&kick_mu);
        }
        pthread_mutex_unlock(&h->s.mu);
        h->busy--;
        work(h, 0);
    }
}

void h2_sweep(conn *c, int64_t now)
{
    h2c *h = c->h2;
    h2_sess *s = &h->s;
    int kill = 0;
    h->busy++;
    pthread_mutex_lock(&s->mu);
    int64_t ping = W.cfg->http2_keep_alive_interval_ms;
    if (h2_tick(s, now, ping, (int64_t)W.cfg->http2_keep_alive_timeout_s * 1000)) kill = 1;
    /* the preface and SETTINGS, as a request head, within the head timeout */
    if (!s->settings_seen && now - c->since >= W.cfg->http1_header_read_timeout_ms) kill = 1;
    /* idle, or stalled: a peer that never opens its windows or never reads */
    int pending = s->out.len > s->out.off;
    for (h2_stream *st = s->streams; st && !pending; st = st->next)
        pending = st->out.len > st->out.off && !st->reset;
    if (pending && now - h->wrote_at >= IO_TIMEOUT_MS) kill = 1;
    if (!pending) h->wrote_at = now;
    if (s->nopen || h->napp) s->last_active = now;
    else if (now - s->last_active >= IO_TIMEOUT_MS) kill = 1;
    /* a connection idle since the last sweep keeps no buffers (freeing
     * them after every request made the heap shrink and grow: page faults) */
    if (!s->nopen && !h->napp && !h->ilen && now - s->last_active >= 1000) {
        free(h->in);
        h->in = NULL;
        h->icap = 0;
        if (s->out.off == s->out.len) {
            free(s->out.p);
            s->out = (h2_buf){ 0 };
        }
    }
    if (kill) {
        h2_goaway(s, pending ? H2_ENHANCE_YOUR_CALM : H2_NO_ERROR);
        s->dead = 1;
        pthread_cond_broadcast(&s->cv);
    }
    /* the interface's own timeouts (an ASGI body read): listed first, as
     * a sweep may finish its request */
    h2_stream *list = NULL;
    for (h2_stream *st = s->streams; st; st = st->next)
        if (st->app && st->r.ifc->sweep) { st->qnext = list; list = st; }
    pthread_mutex_unlock(&s->mu);
    for (h2_stream *st = list, *next; st; st = next) {
        next = st->qnext;
        st->r.ifc->sweep(&st->r, now, IO_TIMEOUT_MS);
    }
    h->busy--;
    work(h, 0);
}

void h2_stop(conn *c)
{
    h2c *h = c->h2;
    h2_stream *list = NULL;
    h->busy++;
    pthread_mutex_lock(&h->s.mu);
    h2_goaway(&h->s, H2_NO_ERROR);
    for (h2_stream *st = h->s.streams; st; st = st->next)
        if (st->app && st->r.app && st->r.ifc->stop) { st->qnext = list; list = st; }
    pthread_mutex_unlock(&h->s.mu);
    for (h2_stream *st = list, *next; st; st = next) {   /* websockets: none here */
        next = st->qnext;
        st->r.ifc->stop(&st->r);
    }
    h->busy--;
    work(h, 0);
}

void h2_force(conn *c)
{
    h2c *h = c->h2;
    pthread_mutex_lock(&h->s.mu);
    h->s.dead = 1;
    pthread_cond_broadcast(&h->s.cv);
    pthread_mutex_unlock(&h->s.mu);
    shutdown(c->fd, SHUT_RDWR);
    close_now(h);
}

int h2_idle(conn *c)
{
    h2c *h = c->h2;
    return !h->napp && !h->s.nopen && !h->s.startq && !h->held;
}

/* ---------------------------------------------------------------------
 * The request's operations for HTTP/2 (req.h)
 * ------------------------------------------------------------------- */

static ssize_t h2r_body(request *r, size_t want, int wait, const char **p)
{
    h2_stream *st = ST(r);
    h2c *h = H(st);
    ssize_t n;
    (void)want;                         /* no websockets here: 1 byte is enough */
    pthread_mutex_lock(&h->s.mu);
    for (;;) {
        n = (ssize_t)h2_body_peek(st, p);
        if (n > 0) break;
        if (st->in_end && !st->reset) { n = 0; break; }
        if (st->reset || h->s.dead) { r->broken = 1; n = -1; break; }
        if (!wait) { n = HTTP_INCOMPLETE; break; }
        if (wait_locked(h) < 0) { r->broken = 1; n = -1; break; }
    }
    pthread_mutex_unlock(&h->s.mu);
    return n;
}

static int h2r_take(request *r, size_t n)
{
    h2_stream *st = ST(r);
    h2c *h = H(st);
    pthread_mutex_lock(&h->s.mu);
    h2_body_take(&h->s, st, n);
    int done = st->in_end && !st->in_bytes;
    if (h->s.out.len > h->s.out.off) push_locked(h);      /* a WINDOW_UPDATE */
    pthread_mutex_unlock(&h->s.mu);
    return done;
}

static int h2r_gone(request *r)
{
    h2_stream *st = ST(r);
    return st->reset || st->s->dead || r->broken;
}

static int h2r_head(request *r, const char *reason, size_t rn, const http_header *f, size_t nf,
                    int64_t total, struct iovec *out)
{
    h2_stream *st = ST(r);
    h2c *h = H(st);
    (void)reason, (void)rn;             /* HTTP/2 has no reason phrase */
    *out = (struct iovec){ NULL, 0 };
    pthread_mutex_lock(&h->s.mu);
    int rc = h2_head(st, f, nf, total);
    pthread_mutex_unlock(&h->s.mu);
    return rc;
}

static size_t h2r_frame(request *r, size_t n, struct iovec *pre, struct iovec *post)
{
    h2c *h = H(ST(r));
    *pre = *post = (struct iovec){ NULL, 0 };
    if (r->res.nobody) return 0;
    pthread_mutex_lock(&h->s.mu);      /* the engine reads r->sent (h2_produce) */
    if (r->res.clen >= 0 && (int64_t)n > r->res.clen - r->sent)
        n = (size_t)(r->res.clen - r->sent);
    r->sent += (int64_t)n;
    pthread_mutex_unlock(&h->s.mu);
    return n;
}

static int h2r_end(request *r, const http_header *f, size_t nf, struct iovec *out)
{
    h2_stream *st = ST(r);
    h2c *h = H(st);
    *out = (struct iovec){ NULL, 0 };
    pthread_mutex_lock(&h->s.mu);
    int rc = h2_trailers(st, f, nf);
    if (rc == 0) {
        st->out_end = 1;
        /* bytes framed and not written yet (ASGI queues them): the write
         * that brings them sends the end too, in one go */
        if (st->written >= r->sent) push_locked(h);
    }
    pthread_mutex_unlock(&h->s.mu);
    return rc;
}

/* Room in the stream's send buffer, waiting for it if asked. */
static ssize_t room_locked(h2c *h, h2_stream *st, int wait)
{
    size_t max = (size_t)W.cfg->http2_max_send_buffer_size;
    for (;;) {
        if (st->reset || h->s.dead || st->r.broken) { st->r.broken = 1; return -1; }
        size_t used = st->out.len - st->out.off;
        if (used < max) return (ssize_t)(max - used);
        flush_locked(h);
        if (st->out.len - st->out.off < max) continue;
        if (!wait) return 0;
        if (!on_loop(h) && h->s.out.len > h->s.out.off) kick(h);
        if (wait_locked(h) < 0) { st->r.broken = 1; return -1; }
    }
}

static ssize_t h2r_write(request *r, const struct iovec *v, int n, int wait)
{
    h2_stream *st = ST(r);
    h2c *h = H(st);
    ssize_t total = 0;
    pthread_mutex_lock(&h->s.mu);
    for (int i = 0; i < n; i++) {
        size_t done = 0;
        while (done < v[i].iov_len) {
            ssize_t room = room_locked(h, st, wait);
            if (room <= 0) {
                pthread_mutex_unlock(&h->s.mu);
                return room < 0 ? -1 : total;
            }
            size_t k = v[i].iov_len - done < (size_t)room ? v[i].iov_len - done : (size_t)room;
            if (h2_buf_room(&st->out, k) < 0) { r->broken = 1; break; }
            memcpy(st->out.p + st->out.len, (char *)v[i].iov_base + done, k);
            st->out.len += k;
            st->written += (int64_t)k;
            done += k;
            total += (ssize_t)k;
        }
    }
    if (total) push_locked(h);
    pthread_mutex_unlock(&h->s.mu);
    return r->broken ? -1 : total;
}

/* A file goes through the stream's send buffer in bounded pieces: HTTP/2
 * frames every byte, so there is no sendfile for it. */
static ssize_t h2r_file(request *r, int fd, off_t *off, size_t n, int wait)
{
    h2_stream *st = ST(r);
    h2c *h = H(st);
    ssize_t total = 0;
    pthread_mutex_lock(&h->s.mu);
    while (n > 0) {
        ssize_t room = room_locked(h, st, wait);
        if (room < 0) { total = -1; break; }
        if (room == 0) break;
        size_t k = n < (size_t)room ? n : (size_t)room;
        if (k > 65536) k = 65536;
        if (h2_buf_room(&st->out, k) < 0) { r->broken = 1; total = -1; break; }
        ssize_t got = pread(fd, st->out.p + st->out.len, k, *off);
        if (got <= 0) { r->broken = 1; total = -1; break; }   /* the file shrank */
        st->out.len += (size_t)got;
        st->written += got;
        *off += got;
        n -= (size_t)got;
        total += got;
        push_locked(h);
        if (!wait) break;
    }
    pthread_mutex_unlock(&h->s.mu);
    return total;
}

static void h2r_abort(request *r)
{
    h2_stream *st = ST(r);
    h2c *h = H(st);
    pthread_mutex_lock(&h->s.mu);
    h2_rst(&h->s, st, H2_INTERNAL_ERROR);
    r->broken = 1;
    push_locked(h);
    pthread_mutex_unlock(&h->s.mu);
}

static void h2r_watch(request *r, int mask)
{
    ST(r)->watch = mask;
}

static void h2r_finish(request *r, int status, int wait)
{
    h2_stream *st = ST(r);
    h2c *h = H(st);
    (void)wait;
    pthread_mutex_lock(&h->s.mu);
    if (r->res.clen >= 0 && r->sent < r->res.clen && !r->res.nobody) r->broken = 1;
    if (r->broken || !st->r.res.code) {
        h2_rst(&h->s, st, H2_INTERNAL_ERROR);    /* cut short: the client must see it */
    } else {
        st->out_end = 1;
        /* a body the app left unread is let in and discarded, as HTTP/1.1
         * drains it: a RST_STREAM would end a stream the client may still
         * count on (RFC 9113 8.1 allows either) */
        st->drop_in = 1;
        h2_body_take(&h->s, st, st->in_bytes);
    }
    push_locked(h);
    r->keep = 0;
    pthread_mutex_unlock(&h->s.mu);
    if (W.cfg->access_log) {
        const http_request *rq = st->head;
        access_rec a = {
            .addr = r->client, .start = st->started, .status = status,
            .scheme = r->secure ? "https" : "http",
            .dt_ms = (clock_wall() - st->started) * 1000.0,
            .method = rq->method, .path = rq->path, .query = rq->query,
            .protocol = "HTTP/2", .headers = rq->headers, .nheaders = rq->nheaders,
        };
        log_access(&a);
    }
}

static void h2r_done(request *r)
{
    h2_stream *st = ST(r);
    h2c *h = H(st);
    h->busy++;
    pthread_mutex_lock(&h->s.mu);
    finished(h, st);
    pthread_mutex_unlock(&h->s.mu);
    h->busy--;
    conn_drain_waitq();
    work(h, 0);
}

static const req_ops h2_ops = {
    .body = h2r_body, .take = h2r_take, .gone = h2r_gone,
    .head = h2r_head, .frame = h2r_frame, .end = h2r_end,
    .write = h2r_write, .file = h2r_file, .abort = h2r_abort,
    .watch = h2r_watch, .finish = h2r_finish, .done = h2r_done,
};
