/* conn.c -- client connections and their HTTP/1.1 requests.
 *
 * The loop thread owns a connection while it reads a request head: it
 * reads, parses (http.c), reads a small body ahead and answers bad input
 * itself.  A complete request goes to the application (start_request):
 * inline, to the thread pool (pool.c) or to an ASGI task; the app side then
 * does its body and response I/O with the conn_* calls of the second half,
 * blocking (application threads) or not (ASGI).  Nothing here buffers a
 * body whole: body bytes pass through the connection's read buffer, one
 * buffer at a time.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/sendfile.h>
#endif
#include "conn.h"
#include "h2.h"
#include "tls.h"
#include "worker_int.h"
#include "ev.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "static.h"
#include "worker.h"

#define BUF_INIT        16384    /* first read buffer; grows up to --http1-buffer-size */
#define BODY_ROOM       65536    /* buffer room kept after a head for body reads */
#define DRAIN_MAX       (1 << 20)/* unread body discarded to keep a connection */

static int body_decode(conn *c);
static int start_request(conn *c);
static const req_ops h1_ops;

/* One access log line for c's request, if --access-log. */
static void access_log(conn *c, int status)
{
    if (!W.cfg->access_log) return;
    request *r = &c->r;
    access_rec a = {
        .addr = r->client, .start = c->started, .status = status,
        .scheme = r->ws ? (r->secure ? "wss" : "ws") : (r->secure ? "https" : "http"),
        .dt_ms = (clock_wall() - c->started) * 1000.0,
        .method = c->req->method, .path = c->req->path, .query = c->req->query,
        .protocol = c->req->minor ? "HTTP/1.1" : "HTTP/1.0",
        .headers = c->req->headers, .nheaders = c->req->nheaders,
    };
    log_access(&a);
}

/* Every byte of a connection passes through these two (and conn_file),
 * so that an encrypted connection is one branch here, not one per caller.
 * They behave as read(2) and writev(2) on a non-blocking socket. */
ssize_t conn_read(conn *c, void *buf, size_t n)
{
    if (c->tls) return tls_read(c->tls, c->fd, buf, n);
    ssize_t r;
    do r = read(c->fd, buf, n);
    while (r < 0 && errno == EINTR);
    return r;
}

ssize_t conn_writev(conn *c, const struct iovec *iov, int n)
{
    if (c->tls) return tls_writev(c->tls, c->fd, iov, n > 64 ? 64 : n);
    ssize_t w;
    do w = writev(c->fd, iov, n > 64 ? 64 : n);
    while (w < 0 && errno == EINTR);
    return w;
}

/* Part of a file, as sendfile(2) on Linux; *off advances. */
static ssize_t conn_file(conn *c, int fd, off_t *off, size_t n)
{
#ifdef __linux__
    if (!c->tls)                /* encrypted bytes must pass through the engine */
        return sendfile(c->fd, fd, off, n > (1 << 30) ? (1 << 30) : n);
#endif
    {
    char tmp[65536];
    ssize_t r = pread(fd, tmp, n < sizeof(tmp) ? n : sizeof(tmp), *off);
    if (r <= 0) return r < 0 ? -1 : 0;
    struct iovec v = { tmp, (size_t)r };
    ssize_t w = conn_writev(c, &v, 1);
    if (w > 0) *off += w;
    return w;
    }
}

/* What a connection waits for after EAGAIN: TLS may need to write to read
 * (a handshake flight) or the reverse. */
int conn_want(conn *c, int mask)
{
    if (c->tls) return tls_want(c->tls);
    return mask;
}

/* The size a connection's buffer starts at (and the only size stashed). */
static size_t buf_first(void)
{
    return BUF_INIT < W.cfg->http1_buffer_size ? BUF_INIT : W.cfg->http1_buffer_size;
}

/* c is between requests (or closing): its buffer goes back to the stash,
 * or to malloc when the stash is full or the buffer grew. */
void conn_buf_put(conn *c)
{
    if (!c->buf) return;
    if (c->req && c->cap == buf_first() && W.nstash < BUF_STASH) {
        W.stash[W.nstash].buf = c->buf;
        W.stash[W.nstash++].req = c->req;
    } else {
        free(c->buf);
        free(c->req);
        W.freed++;
    }
    c->buf = NULL;
    c->req = NULL;
    c->cap = c->len = c->scanned = 0;
}

void conn_close(conn *c)
{
    if (c->h2) h2_conn_free(c);
    ev_del(W.loop, c->fd, EV_READ | EV_WRITE);
    if (c->tls) tls_free(c->tls);
    close(c->fd);
    M_SUB(connections_active, 1);
    if (c->prev) c->prev->next = c->next; else W.conns = c->next;
    if (c->next) c->next->prev = c->prev;
    W.nconns--;
    conn_buf_put(c);
    free(c);
    W.freed++;
    if (W.accept_resume && !W.waitq) {  /* out of descriptors: one just freed */
        W.accept_resume = 0;
        wk_accept_resume();
    }
}

static int want_read(conn *c)
{
    int mask = conn_want(c, EV_READ);
    ev_del(W.loop, c->fd, ~mask & (EV_READ | EV_WRITE));
    if (ev_add(W.loop, c->fd, mask, conn_on_event, c) < 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

/* Stop writing, keep reading (and discarding) for a moment, then close:
 * closing a socket with unread input makes the kernel send RST, which can
 * destroy the answer before the client has read it. */
void conn_linger(conn *c)
{
    if (c->tls) tls_close(c->tls, c->fd);
    char b;
    if (atomic_load(&W.stopping) && c->len == c->dend
        && recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN) {
        conn_close(c);          /* draining, nothing unread: no RST to fear */
        if (W.ifc->run) {       /* the drain may be over: have asyncio poll */
            ssize_t w = write(W.wake[1], "c", 1);
            (void)w;
        }
        return;
    }
    shutdown(c->fd, SHUT_WR);
    c->state = CS_LINGER;
    c->since = clock_ms();
    want_read(c);
}

/* Answer a request we refuse ourselves, then close. */
void conn_reply_error(conn *c, int status)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nserver: granc\r\ndate: %s\r\n"
                     "content-length: 0\r\nconnection: close\r\n\r\n",
                     status, http_reason(status), http_date());
    struct iovec v = { head, (size_t)n };
    ssize_t w = conn_writev(c, &v, 1);
    (void)w;                    /* best effort: the socket buffer is empty */
    log_debug("worker-%d: answered %d to %s", W.id, status, c->addr);
    conn_linger(c);
}

/* Read what the socket has into the buffer.  Returns bytes read, 0 at
 * EOF, -1 on error or EAGAIN (errno tells), CONN_FULL when the buffer is full at
 * its limit. */
static ssize_t conn_fill(conn *c)
{
    if (!c->buf) {
        if (W.nstash) {
            W.nstash--;
            c->buf = W.stash[W.nstash].buf;
            c->req = W.stash[W.nstash].req;
        } else {
            c->buf = malloc(buf_first());
            c->req = malloc(sizeof(*c->req));
            if (!c->buf || !c->req) { errno = ENOMEM; return -1; }
        }
        c->cap = buf_first();
    }
    if (c->len == c->cap) {
        if (c->cap >= W.cfg->http1_buffer_size || c->state == CS_BODY) return CONN_FULL;
        size_t cap = c->cap * 2;
        if (cap > W.cfg->http1_buffer_size) cap = W.cfg->http1_buffer_size;
        char *b = realloc(c->buf, cap);
        if (!b) { errno = ENOMEM; return -1; }
        c->buf = b;
        c->cap = cap;
    }
    ssize_t n = conn_read(c, c->buf + c->len, c->cap - c->len);
    if (n > 0) c->len += (size_t)n;
    return n;
}

/* Set up the body of the request whose head is buf[0,head).  Returns -1
 * after answering the request itself. */
static int begin_request(conn *c, size_t head)
{
    http_request *rq = c->req;
    if (W.cfg->http1_max_body_size > 0 && rq->content_length > W.cfg->http1_max_body_size) {
        conn_reply_error(c, 413);
        return -1;
    }
    /* keep room after the head for body reads, unless the whole body fits
     * already (a buffer starts small for each request: see buf_put);
     * moving the buffer moves the head, so parse it again where it lives */
    size_t room = c->cap - head;
    if (room < BODY_ROOM && (rq->chunked || rq->upgrade ||
                             (rq->content_length > 0 && (uint64_t)rq->content_length > room))) {
        char *b = realloc(c->buf, head + BODY_ROOM);
        if (!b) { conn_reply_error(c, 503); return -1; }
        c->buf = b;
        c->cap = head + BODY_ROOM;
        int st;
        http_parse_request(c->buf, c->len, 0, rq, &st);
    }
    c->head = head;
    c->dpos = c->dend = head;
    c->body_chunked = rq->chunked;
    c->body_left = rq->chunked ? 0 : (rq->content_length > 0 ? rq->content_length : 0);
    c->body_done = !rq->chunked && c->body_left == 0;
    memset(&c->chunk, 0, sizeof(c->chunk));
    c->continue_sent = !(rq->expect_continue && rq->minor == 1);
    c->body_bad = 0;
    c->started = clock_wall();
    if (c->trusted) {
        proxy_forwarded(c->req, c->fwd, &c->fwd_proto);
    } else {
        c->fwd[0] = 0;
        c->fwd_proto = 0;
    }
    /* the request as the app sees it: the client and scheme are the
     * peer's, unless a trusted proxy said otherwise (then the port is 0,
     * as in uvicorn) */
    request *r = &c->r;                 /* (its ops, ls and tls are set once) */
    r->head = rq;
    r->client = c->fwd[0] ? c->fwd : c->addr;
    r->client_port = c->fwd[0] ? 0 : c->port;
    r->secure = c->fwd_proto ? c->fwd_proto > 0 : c->tls != NULL;
    r->ws = r->keep = r->broken = 0;
    r->res = (resp_head){ .clen = -1 };
    r->sent = 0;
    return 0;
}

/* The request is done: keep the connection for the next one (moving any
 * pipelined bytes to the front), or close it.  Returns 1 if c lives on. */
int conn_finish(conn *c)
{
    wk_request_done();
    if (c->r.broken) { conn_close(c); return 0; }
    /* a response that promised keep-alive is kept even when stopping: the
     * client may already be sending its next request (stop_sweep) */
    if (!c->r.keep) { conn_linger(c); return 0; }
    size_t rest = c->len - c->dend;
    memmove(c->buf, c->buf + c->dend, rest);
    c->len = rest;
    c->scanned = c->head = c->dpos = c->dend = 0;
    c->state = CS_HEAD;
    c->since = clock_ms();
    return 1;
}

/* Read a body ahead in the loop while it fits the buffer, so that no
 * application thread (or, inline, the loop itself) waits on a slow client
 * for a small upload.  Leaves c in CS_BODY while more is to come, in
 * CS_HEAD when the request is ready to start.  A client waiting for
 * "100 Continue" sends nothing more: it starts at once. */
static int read_ahead(conn *c)
{
    if (c->len > c->dend && body_decode(c) < 0) {
        conn_reply_error(c, errno == EFBIG ? 413 : 400);
        return -1;
    }
    c->state = !c->body_done && c->len < c->cap && c->continue_sent ? CS_BODY : CS_HEAD;
    return 0;
}

/* HTTP/2 or HTTP/1.1, once for a connection: ALPN decides where TLS
 * negotiated it (RFC 9113 3.2: after "h2" only the preface is valid, the
 * engine checks it); else --http 2, or the first bytes: the client
 * preface means HTTP/2 (Granian sniffs on TLS too; granc follows the
 * RFC).  Returns 2, 1, or -1 for a preface not yet whole. */
static int sniff(conn *c)
{
    if (W.cfg->http == HTTPM_1) return 1;
    const char *alpn = c->tls ? tls_alpn(c->tls) : NULL;
    if (alpn && *alpn) return strcmp(alpn, "h2") ? 1 : 2;
    if (W.cfg->http == HTTPM_2) return 2;
    size_t n = c->len < H2_PREFACE_LEN ? c->len : H2_PREFACE_LEN;
    if (memcmp(c->buf, H2_PREFACE, n)) return 1;
    return n < H2_PREFACE_LEN ? -1 : 2;
}

/* Parse and start as many requests as the buffer holds.  Inline requests
 * finish before start_request returns, so pipelined requests are served
 * in this loop, in order, without recursion. */
void conn_serve(conn *c)
{
    while (c->state == CS_HEAD) {
        if (!c->proto_known && c->len) {
            int v = sniff(c);
            if (v < 0) { want_read(c); return; }
            c->proto_known = 1;
            if (v == 2) { h2_start(c); return; }
        }
        int status = 400;
        int r = http_parse_request(c->buf, c->len, c->scanned, c->req, &status);
        if (r == HTTP_INCOMPLETE) {
            if (c->len >= W.cfg->http1_buffer_size) { conn_reply_error(c, 431); return; }
            c->scanned = c->len;
            /* TLS may hold decrypted bytes no readiness event will announce */
            if (c->tls && c->len < c->cap && conn_fill(c) > 0) continue;
            if (c->len == 0) conn_buf_put(c);    /* idle: see W.stash */
            want_read(c);
            return;
        }
        if (r == HTTP_BAD) { conn_reply_error(c, status); return; }
        if ((size_t)r > W.cfg->http1_buffer_size) { conn_reply_error(c, 431); return; }
        if (begin_request(c, (size_t)r) < 0) return;
        if (read_ahead(c) < 0) return;
        if (c->state == CS_BODY) { want_read(c); return; }
        if (!start_request(c)) return;
    }
}

/* Hand a request over to the application: inline, to the pool, or to the
 * queue of requests over --backpressure.  Returns 1 when the request is
 * already done and c lives on in CS_HEAD (inline, keep-alive); c must not
 * be touched after 0. */
static int start_request(conn *c)
{
    c->state = CS_APP;
    c->r.ifc = static_match(c->req) ? &static_iface : W.ifc;
    if (W.inflight >= W.cfg->backpressure) {
        ev_del(W.loop, c->fd, EV_READ | EV_WRITE);
        c->qnext = NULL;
        if (W.waitq_tail) W.waitq_tail->qnext = c; else W.waitq = c;
        W.waitq_tail = c;
        wk_accept_pause();
        return 0;
    }
    W.inflight++;
    return c->r.ifc->start(&c->r) && conn_finish(c);
}

/* Requests held back by --backpressure, now that a slot is free.  A
 * request run inline may cost this thread the loop (wk_owner): then the
 * rest is the new owner's. */
void conn_drain_waitq(void)
{
    if (!wk_owner) return;
    h2_drain_waitq();
    while (W.waitq && W.inflight < W.cfg->backpressure) {
        conn *c = W.waitq;
        W.waitq = c->qnext;
        if (!W.waitq) W.waitq_tail = NULL;
        W.inflight++;
        if (c->r.ifc->start(&c->r) && conn_finish(c))
            conn_serve(c);          /* inline: c is back in CS_HEAD */
        if (!wk_owner) return;
    }
    if (!W.waitq && !W.accept_resume) wk_accept_resume();
}

void conn_on_event(ev_loop *l, int fd, void *udata, int mask)
{
    (void)l; (void)fd; (void)mask;
    conn *c = udata;
    if (c->state == CS_H2) {
        h2_io(c, mask);
        return;
    }
    if (c->state == CS_APP) {           /* ASGI: body, disconnect, output */
        if (c->r.ifc->event) c->r.ifc->event(&c->r, mask);
        return;
    }
    if (c->state == CS_LINGER) {
        char sink[4096];
        ssize_t n = conn_read(c, sink, sizeof(sink));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            conn_close(c);
        return;
    }
    size_t before = c->len;
    ssize_t n = conn_fill(c);
    /* the head clock starts with its first byte (a TLS handshake counts
     * from the accept: its bytes never reach the buffer) */
    if (before == 0 && c->len > 0) c->since = clock_ms();
    if (c->tls && !c->counted && c->len > 0) {      /* Granian: handshake done */
        c->counted = 1;
        M_ADD(connections_handled, 1);
    }
    if (n == CONN_FULL && c->state == CS_BODY) n = 1;  /* room full: the app reads on */
    if (n == CONN_FULL) { conn_reply_error(c, 431); return; }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        if (c->tls && !c->counted && n < 0) M_ADD(connections_err, 1);   /* handshake */
        conn_close(c);
        return;
    }
    if (n < 0) return;
    if (c->state == CS_BODY) {
        if (read_ahead(c) < 0 || c->state == CS_BODY) return;
        if (!start_request(c)) return;
    }
    conn_serve(c);
}

void conn_new(int fd, const listener *ls, struct sockaddr_storage *sa)
{
    conn *c = calloc(1, sizeof(*c));
    if (!c) { close(fd); return; }
    c->fd = fd;
    c->ls = ls;
    c->state = CS_HEAD;
    c->since = clock_ms();
    if (sa->ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, c->addr, sizeof(c->addr));
        c->port = ntohs(in->sin_port);
    } else if (sa->ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, c->addr, sizeof(c->addr));
        c->port = ntohs(in6->sin6_port);
    }
    if (ls->family != AF_UNIX) {
        int one = 1;     /* a response leaves in one write: no Nagle stalls */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (W.cfg->tls && !(c->tls = tls_new(W.cfg->tls))) {
        close(fd);
        free(c);
        return;
    }
    c->trusted = proxy_trusted(c->addr, ls->family);
    c->r.ops = &h1_ops;
    c->r.ls = ls;
    c->r.tls = c->tls;
    c->next = W.conns;
    if (W.conns) W.conns->prev = c;
    W.conns = c;
    W.nconns++;
    if (!c->tls) M_ADD(connections_handled, 1);    /* TLS: after its handshake */
    M_ADD(connections_active, 1);
    want_read(c);
}

/* ---------------------------------------------------------------------
 * The request's operations for HTTP/1.1 (req.h): blocking on application
 * threads (wait), or not on the loop thread
 * ------------------------------------------------------------------- */

/* After EAGAIN, an application thread waits for what c needs. */
static int conn_wait(conn *c, short events)
{
    int want = conn_want(c, events == POLLIN ? EV_READ : EV_WRITE);
    struct pollfd p = { .fd = c->fd, .events = want == EV_READ ? POLLIN : POLLOUT };
    int r;
    do r = poll(&p, 1, IO_TIMEOUT_MS);
    while (r < 0 && errno == EINTR);
    return r > 0 ? 0 : -1;
}

static ssize_t h1_write(request *r, const struct iovec *iov, int n, int wait)
{
    conn *c = conn_of(r);
    struct iovec v[64];
    ssize_t total = 0;
    if (n > 64 || r->broken) return -1;
    if (!wait) {                        /* what the socket takes now */
        ssize_t w = conn_writev(c, iov, n);
        if (w >= 0 || errno == EAGAIN) return w >= 0 ? w : 0;
        r->broken = 1;
        return -1;
    }
    memcpy(v, iov, sizeof(*v) * (size_t)n);
    struct iovec *p = v;
    while (n > 0) {
        ssize_t w = conn_writev(c, p, n);
        if (w < 0) {
            if (errno == EAGAIN && conn_wait(c, POLLOUT) == 0) continue;
            r->broken = 1;
            return -1;
        }
        total += w;
        while (n > 0 && (size_t)w >= p->iov_len) { w -= (ssize_t)p->iov_len; p++; n--; }
        if (n > 0) { p->iov_base = (char *)p->iov_base + w; p->iov_len -= (size_t)w; }
    }
    return total;
}

static ssize_t h1_file(request *r, int fd, off_t *off, size_t n, int wait)
{
    conn *c = conn_of(r);
    ssize_t total = 0;
    while (n > 0 && !r->broken) {
        ssize_t w = conn_file(c, fd, off, n);
        if (w > 0) {
            n -= (size_t)w;
            total += w;
            if (!wait) return total;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN && !wait) return 0;
        if (w < 0 && errno == EAGAIN && conn_wait(c, POLLOUT) == 0) continue;
        r->broken = 1;          /* the client failed, or the file shrank */
    }
    return r->broken ? -1 : total;
}

/* Turn raw bytes [dend,len) into body bytes. */
static int body_decode(conn *c)
{
    if (!c->body_chunked) {
        size_t k = c->len - c->dend;
        if ((uint64_t)k > (uint64_t)c->body_left) k = (size_t)c->body_left;
        c->dend += k;
        c->body_left -= (int64_t)k;
        c->body_done = c->body_left == 0;
        return 0;
    }
    size_t n = c->len - c->dend;
    ssize_t r = http_chunked_decode(&c->chunk, c->buf + c->dend, &n);
    if (r == HTTP_BAD) {
        c->r.broken = c->body_bad = 1;
        errno = EBADMSG;
        return -1;
    }
    c->dend += n;
    c->body_left += (int64_t)n;          /* chunked: counts bytes decoded */
    if (W.cfg->http1_max_body_size > 0 && c->body_left > W.cfg->http1_max_body_size) {
        c->r.broken = c->body_bad = 1;
        errno = EFBIG;
        return -1;
    }
    if (r >= 0) { c->body_done = 1; c->len = c->dend + (size_t)r; }
    else c->len = c->dend;
    return 0;
}

/* Make at least want decoded body bytes available at [dpos,dend); wait:
 * block in poll() (application threads) or return HTTP_INCOMPLETE when
 * the socket has nothing yet (the loop thread). */
static ssize_t body_more(conn *c, size_t want, int wait)
{
    if (want == 0) want = 1;
    for (;;) {
        size_t ready = c->dend - c->dpos;
        if (ready >= want || (ready && c->body_done)) return (ssize_t)ready;
        if (c->body_done) return 0;
        if (c->r.broken) return -1;
        if (c->len > c->dend) {
            if (body_decode(c) < 0) return -1;
            continue;
        }
        if (!c->continue_sent) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            struct iovec v = { (void *)cont, sizeof(cont) - 1 };
            c->continue_sent = 1;
            /* not once the response head has left (a stream that reads
             * as it answers): the 100 would land in its body */
            if (!c->r.res.code && h1_write(&c->r, &v, 1, 1) < 0) return -1;
        }
        /* room for more: what is left moves to just after the head */
        if (c->dpos > c->head) {
            size_t keep = c->len - c->dpos;
            if (keep) memmove(c->buf + c->head, c->buf + c->dpos, keep);
            c->dend -= c->dpos - c->head;
            c->len = c->head + keep;
            c->dpos = c->head;
        }
        if (c->len == c->cap) { errno = EMSGSIZE; return -1; }
        ssize_t n = conn_read(c, c->buf + c->len, c->cap - c->len);
        if (n > 0) { c->len += (size_t)n; continue; }
        if (n < 0 && errno == EAGAIN && !wait) return HTTP_INCOMPLETE;
        if (n < 0 && errno == EAGAIN && conn_wait(c, POLLIN) == 0) continue;
        c->r.broken = 1;        /* EOF, error or timeout inside a body */
        return -1;
    }
}

static ssize_t h1_body(request *r, size_t want, int wait, const char **p)
{
    conn *c = conn_of(r);
    ssize_t n = body_more(c, want, wait);
    *p = c->buf + c->dpos;
    return n;
}

static int h1_take(request *r, size_t n)
{
    conn *c = conn_of(r);
    c->dpos += n;
    return c->body_done && c->dpos == c->dend;
}

/* Once the body is read: has the client gone?  Bytes that arrive
 * meanwhile (a pipelined request) are kept for later. */
static int h1_gone(request *r)
{
    conn *c = conn_of(r);
    if (r->broken) return 1;
    if (c->len == c->cap) return 0;     /* cannot tell without reading on */
    ssize_t n = conn_read(c, c->buf + c->len, c->cap - c->len);
    if (n > 0) { c->len += (size_t)n; return 0; }
    if (n < 0 && errno == EAGAIN) return 0;
    r->broken = 1;
    return 1;
}

/* Whether the connection can serve another request after this one, as
 * far as can be known before the response head says so: the client and
 * the configuration allow it, the worker is not stopping, and the body
 * the app may leave unread can be drained. */
static int can_keep(conn *c)
{
    if (!c->req->keep_alive || !W.cfg->http1_keep_alive || atomic_load(&W.stopping) ||
        c->body_bad)
        return 0;
    if (c->body_done) return 1;
    if (!c->continue_sent) return 0;    /* the client still waits for 100 */
    return c->body_chunked || c->body_left + (int64_t)(c->dend - c->dpos) <= DRAIN_MAX;
}

/* The thread's buffer for response heads and ends: one leaves (or is
 * copied) before the next is built on the same thread. */
static _Thread_local struct { char *p; size_t cap; } tbuf;

static int tbuf_grow(size_t n)
{
    if (n > HTTP_HEAD_MAX) { errno = E2BIG; return -1; }
    size_t cap = tbuf.cap ? tbuf.cap : 1024;
    while (cap < n) cap *= 2;
    char *p = realloc(tbuf.p, cap);
    if (!p) { errno = ENOMEM; return -1; }
    tbuf.p = p;
    tbuf.cap = cap;
    return 0;
}

static int h1_head(request *r, const char *reason, size_t rn, const http_header *f, size_t nf,
                   int64_t total, struct iovec *out)
{
    conn *c = conn_of(r);
    for (;;) {
        ssize_t n = http_resp_head(&r->res, reason, rn, f, nf, total, c->req, can_keep(c),
                                   tbuf.p, tbuf.cap);
        if (n == HTTP_BAD) { errno = EINVAL; return -1; }
        if ((size_t)n <= tbuf.cap) { *out = (struct iovec){ tbuf.p, (size_t)n }; break; }
        if (tbuf_grow((size_t)n) < 0) return -1;
    }
    if (r->res.code == 101) {           /* the connection is the app's stream now */
        c->body_chunked = 0;
        c->body_left = INT64_MAX;
        c->body_done = 0;
    }
    return 0;
}

static size_t h1_frame(request *r, size_t n, struct iovec *pre, struct iovec *post)
{
    *pre = *post = (struct iovec){ NULL, 0 };
    if (r->res.nobody) return 0;
    if (r->res.clen >= 0 && (int64_t)n > r->res.clen - r->sent)
        n = (size_t)(r->res.clen - r->sent);     /* never more than announced */
    r->sent += (int64_t)n;
    if (n && r->res.chunked) {
        int k = snprintf(r->scratch, sizeof(r->scratch), "%zx\r\n", n);
        *pre = (struct iovec){ r->scratch, (size_t)k };
        *post = (struct iovec){ "\r\n", 2 };
    }
    return n;
}

/* The last chunk, with the trailer fields (only chunked bodies have an
 * end of their own, and only they can carry trailers). */
static int h1_end(request *r, const http_header *f, size_t nf, struct iovec *out)
{
    *out = (struct iovec){ NULL, 0 };
    if (!r->res.chunked) return 0;
    if (nf == 0) { *out = (struct iovec){ "0\r\n\r\n", 5 }; return 0; }
    size_t n = 5;
    for (size_t i = 0; i < nf; i++) n += f[i].name.n + f[i].value.n + 4;
    if (n > tbuf.cap && tbuf_grow(n) < 0) return -1;
    char *p = tbuf.p;
    memcpy(p, "0\r\n", 3);
    p += 3;
    for (size_t i = 0; i < nf; i++) {
        memcpy(p, f[i].name.p, f[i].name.n);
        p += f[i].name.n;
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, f[i].value.p, f[i].value.n);
        p += f[i].value.n;
        *p++ = '\r';
        *p++ = '\n';
    }
    memcpy(p, "\r\n", 2);
    *out = (struct iovec){ tbuf.p, n };
    return 0;
}

static void h1_abort(request *r)
{
    shutdown(conn_of(r)->fd, SHUT_RDWR);
    r->broken = 1;
}

static void h1_watch(request *r, int mask)
{
    conn *c = conn_of(r);
    /* once the body is all taken, READ only watches for the client
     * leaving, which a full buffer cannot see: it would only spin.
     * (With mask 0 only c->fd is read: pool.c unwatches a request whose
     * app still runs on another thread.) */
    if ((mask & EV_READ) && c->len == c->cap && c->body_done && c->dpos == c->dend)
        mask &= ~EV_READ;
    if (c->tls && (mask & EV_READ))
        mask |= conn_want(c, EV_READ);
    ev_del(W.loop, c->fd, ~mask & (EV_READ | EV_WRITE));
    if (mask && ev_add(W.loop, c->fd, mask, conn_on_event, c) < 0)
        r->broken = 1;
}

/* Discard the body the app left unread, so that the connection can serve
 * the next request: waiting for up to DRAIN_MAX bytes, or (not waiting)
 * as far as it has come.  Returns 1 if the connection is reusable. */
static int drain(conn *c, int wait)
{
    /* all of it is here (can_keep promised keep-alive on that, even with
     * no 100 Continue sent): drop it.  Closing then, after a head that
     * said keep-alive, made a proxy send its next request into the close
     * (HAProxy: 502). */
    if (c->body_done) {
        c->dpos = c->dend;
        return 1;
    }
    if (!c->continue_sent) return 0;    /* the client still waits for 100 */
    size_t left = DRAIN_MAX;
    for (;;) {
        c->dpos = c->dend;
        ssize_t n = body_more(c, 1, wait);
        if (n == 0) return 1;
        if (n < 0 || (size_t)n > left) return 0;
        left -= (size_t)n;
    }
}

static void h1_finish(request *r, int status, int wait)
{
    conn *c = conn_of(r);
    if (r->res.clen >= 0 && r->sent < r->res.clen && !r->res.nobody)
        r->broken = 1;          /* shorter than announced: the client must see it */
    r->keep = r->res.keep && !r->broken && r->res.code != 101 && drain(c, wait);
    access_log(c, status);
}

static void h1_done(request *r)
{
    conn *c = conn_of(r);
    if (conn_finish(c))
        conn_serve(c);
    conn_drain_waitq();
}

static const req_ops h1_ops = {
    .body = h1_body, .take = h1_take, .gone = h1_gone,
    .head = h1_head, .frame = h1_frame, .end = h1_end,
    .write = h1_write, .file = h1_file, .abort = h1_abort,
    .watch = h1_watch, .finish = h1_finish, .done = h1_done,
};
