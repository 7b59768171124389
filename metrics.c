/* metrics.c -- --metrics: worker counters in shared memory, and the
 * master's Prometheus exporter.
 *
 * Each worker adds to its own slot of a MAP_SHARED mapping made before the
 * first fork, and the master reads the slots when scraped: a scrape is
 * always current.  (Granian's workers push snapshots every
 * --metrics-scrape-interval instead; here that option changes nothing.)
 * The exporter is a small HTTP/1.1 server in the master's poll loop, which
 * must never block.  Like Granian's it answers any path and keeps
 * connections alive, and a request head must come within 5 s of the
 * connection or of the previous answer.  Unlike Granian's, which answers
 * every method, only GET and HEAD get the metrics: others get 405.
 *
 * The meanings, from Granian's src/workers.rs and src/blocking.rs:
 * connections_handled counts accepts (for TLS, completed handshakes),
 * connections_err failed accepts (for TLS, failed handshakes);
 * requests_handled every request, static ones included, and
 * static_requests_err the static ones answered 404.  The *_cumulative
 * counters are microseconds (Duration::as_micros): idle waiting for a
 * task, py_wait waiting for the GIL once one came, busy py_wait plus the
 * run.  blocking_queue is signed there (isize); every value prints signed
 * here, as no counter gets near 2^63.
 */
#include "granc.h"
#include "http.h"
#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MX_CLIENTS    16        /* scrapers served at once; more wait in the backlog */
#define MX_HEAD       2048      /* request head bytes; a longer head gets 431 */
#define MX_REST       0.5       /* seconds without accepting after EMFILE */
#define MX_TIMEOUT    5.0       /* seconds; Granian's exporter: hyper's header_read_timeout */
#define MX_BACKLOG    64        /* scrapers are few */

static wk_metrics dummy;
wk_metrics *wk_m = &dummy;

static wk_metrics *slots;       /* the shared mapping; NULL when off */
static int nslots;
static uint64_t mc[MC_N];       /* the master's own: nobody else reads them */
static int lfd = -1;            /* the exporter's listener */
static double lfd_rest;         /* out of descriptors: accept again after this */

/* A growable output buffer; bad is set once an allocation failed. */
typedef struct buf {
    char *p;
    size_t n, cap, pos;         /* [pos, n) is still to send */
    int bad;
} buf;

typedef struct client {
    int fd;                     /* -1: free */
    char head[MX_HEAD];         /* bytes read and not yet answered */
    size_t len;
    buf out;
    double deadline;            /* monotonic s: closed if still open then */
    unsigned eof : 1;           /* the client sent all it will send */
    unsigned closing : 1;       /* close once out is sent */
    unsigned linger : 1;        /* write side shut: read and drop until EOF */
} client;

static client cl[MX_CLIENTS];
static buf body;                /* scratch for the rendered exposition */

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    while (!b->bad) {
        va_start(ap, fmt);
        n = vsnprintf(b->p ? b->p + b->n : NULL, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->n) {
            b->n += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n + 4096;
        char *p = n < 0 ? NULL : realloc(b->p, cap);
        b->bad = !p;
        b->p = p ? p : b->p;
        b->cap = p ? cap : b->cap;
    }
}

/* ---- rendering ----------------------------------------------------------- */

/* The smallest worker id above `after` among live slots; 0 when none. */
static int next_id(int after)
{
    int id = 0;

    for (int i = 0; i < nslots; i++)
        if (slots[i].pid && slots[i].id > after && (!id || slots[i].id < id))
            id = slots[i].id;
    return id;
}

/* Granian's exposition, grouped by metric.  Two live slots with one id (a
 * rolling restart) print as one worker: the sum of their counters, and
 * the lifetime of the older. */
static void render(buf *b)
{
    static const char *const mname[MC_N] = {
        [MC_SPAWNS] = "workers_spawns", [MC_RESPAWN_ERR] = "workers_respawns_for_err",
        [MC_RESPAWN_LIFETIME] = "workers_respawns_for_lifetime",
        [MC_RESPAWN_RSS] = "workers_respawns_for_rss",
    };
#define F(name, type) { #name, type, offsetof(wk_metrics, name) }
    static const struct { const char *name, *type; size_t off; } f[] = {
        F(connections_active, "gauge"), F(connections_handled, "counter"),
        F(connections_err, "counter"), F(requests_handled, "counter"),
        F(static_requests_handled, "counter"), F(static_requests_err, "counter"),
        F(blocking_threads, "gauge"), F(blocking_queue, "gauge"),
        F(blocking_idle_cumulative, "counter"), F(blocking_busy_cumulative, "counter"),
        F(py_wait_cumulative, "counter"),
    };
#undef F
    double t = clock_s();

    b->n = 0;
    for (int i = 0; i < MC_N; i++)
        put(b, "# TYPE granian_%s counter\ngranian_%s %llu\n", mname[i], mname[i],
            (unsigned long long)mc[i]);
    put(b, "# TYPE granian_worker_lifetime counter\n");
    for (int id = next_id(0); id; id = next_id(id)) {
        double born = t;
        for (int i = 0; i < nslots; i++)
            if (slots[i].pid && slots[i].id == id && slots[i].born < born)
                born = slots[i].born;
        put(b, "granian_worker_lifetime{worker=\"%d\"} %lld\n", id, (long long)(t - born));
    }
    for (size_t k = 0; k < sizeof f / sizeof f[0]; k++) {
        put(b, "# TYPE granian_%s %s\n", f[k].name, f[k].type);
        for (int id = next_id(0); id; id = next_id(id)) {
            uint64_t v = 0;
            for (int i = 0; i < nslots; i++)
                if (slots[i].pid && slots[i].id == id)
                    v += __atomic_load_n((uint64_t *)((char *)&slots[i] + f[k].off),
                                         __ATOMIC_RELAXED);
            put(b, "granian_%s{worker=\"%d\"} %lld\n", f[k].name, id, (long long)(int64_t)v);
        }
    }
}

/* ---- the exporter's connections ------------------------------------------ */

static void client_close(client *c)
{
    close(c->fd);
    free(c->out.p);
    c->out = (buf){ 0 };
    c->fd = -1;
}

static int again(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

/* Send what out holds: 0 once sent or on EAGAIN (poll then asks for
 * POLLOUT), -1 on error.  Progress moves the deadline. */
static int flush(client *c)
{
    while (c->out.pos < c->out.n) {
        ssize_t w = send(c->fd, c->out.p + c->out.pos, c->out.n - c->out.pos, MSG_NOSIGNAL);
        if (w < 0)
            return again() ? 0 : -1;
        c->out.pos += (size_t)w;
        c->deadline = clock_s() + MX_TIMEOUT;
    }
    c->out.n = c->out.pos = 0;
    return 0;
}

static void respond(client *c, int status, int head_only)
{
    buf *o = &c->out;

    put(o, "HTTP/1.1 %d %s\r\ndate: %s\r\n", status, http_reason(status), http_date());
    if (status == 200) {
        render(&body);
        put(o, "content-type: text/plain; version=0.0.4; charset=utf-8\r\n"
               "content-length: %zu\r\n", body.n);
    } else {
        put(o, "%scontent-length: 0\r\n", status == 405 ? "allow: GET, HEAD\r\n" : "");
    }
    put(o, "%s\r\n", c->closing ? "connection: close\r\n" : "");
    if (status == 200 && !head_only && !body.bad)
        put(o, "%.*s", (int)body.n, body.p);
    o->bad |= body.bad;
    body.bad = 0;
}

/* Answer the complete requests in head, one at a time: the next one is
 * parsed only once the answer to the previous one has left.  A request
 * with a body, or another method than GET and HEAD, is answered and the
 * connection closed, so that no body ever needs reading. */
static void serve(client *c)
{
    http_request req;
    int status, r;

    while (!c->closing && c->out.pos == c->out.n) {
        r = http_parse_request(c->head, c->len, 0, &req, &status);
        if (r == HTTP_INCOMPLETE && c->len < sizeof c->head) {
            c->closing = c->eof;
            return;
        }
        int is_get = r > 0 && http_name_is(req.method, "get");
        int is_head = r > 0 && http_name_is(req.method, "head");
        status = r == HTTP_INCOMPLETE ? 431 : r < 0 ? status : is_get || is_head ? 200 : 405;
        c->closing = status != 200 || !req.keep_alive || req.minor == 0
                     || req.content_length > 0 || req.chunked;
        respond(c, status, is_head);
        if (c->out.bad || flush(c) < 0) {
            client_close(c);
            return;
        }
        if (r > 0) {
            c->len -= (size_t)r;
            memmove(c->head, c->head + r, c->len);
        }
    }
}

/* A readable or writable client. */
static void on_client(client *c)
{
    char junk[512];
    ssize_t r;

    if (c->out.pos < c->out.n) {
        if (flush(c) < 0)
            goto fail;
    } else if (c->linger) {
        if ((r = read(c->fd, junk, sizeof junk)) == 0 || (r < 0 && !again()))
            goto fail;
    } else if (c->len < sizeof c->head) {
        r = read(c->fd, c->head + c->len, sizeof c->head - c->len);
        if (r < 0 && !again())
            goto fail;
        c->eof |= r == 0;
        c->len += r > 0 ? (size_t)r : 0;
    }
    serve(c);
    /* Closing at once with unread input would send a reset, which can
     * destroy the answer before the client reads it: shut the write side
     * and drop what still comes until EOF or the deadline. */
    if (c->fd >= 0 && c->closing && c->out.pos == c->out.n && !c->linger) {
        if (c->eof || shutdown(c->fd, SHUT_WR) < 0)
            goto fail;
        c->linger = 1;
    }
    return;
fail:
    client_close(c);
}

int metrics_pollfds(struct pollfd *p, int max, int *timeout_ms)
{
    double t = clock_s();
    int n = 0, room = 0;

    if (lfd < 0)
        return 0;
    for (int i = 0; i < MX_CLIENTS; i++) {
        if (cl[i].fd >= 0 && t >= cl[i].deadline)
            client_close(&cl[i]);
        room |= cl[i].fd < 0;
    }
    if (room && n < max && t >= lfd_rest)   /* full: scrapers wait in the backlog */
        p[n++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
    else if (room && t < lfd_rest) {
        int left = (int)((lfd_rest - t) * 1000) + 1;
        if (*timeout_ms < 0 || left < *timeout_ms)
            *timeout_ms = left;
    }
    for (int i = 0; i < MX_CLIENTS && n < max; i++) {
        client *c = &cl[i];
        if (c->fd < 0)
            continue;
        p[n++] = (struct pollfd){ .fd = c->fd,
                                  .events = c->out.pos < c->out.n ? POLLOUT : POLLIN };
        int left = c->deadline > t ? (int)((c->deadline - t) * 1000) + 1 : 0;
        if (*timeout_ms < 0 || left < *timeout_ms)
            *timeout_ms = left;
    }
    return n;
}

/* Clients past their deadline are closed by the next metrics_pollfds. */
void metrics_handle(const struct pollfd *p, int n)
{
    for (int i = 0; i < n; i++) {
        if (!p[i].revents)
            continue;
        if (p[i].fd == lfd) {
            for (int k = 0; k < MX_CLIENTS; k++) {
                if (cl[k].fd >= 0)
                    continue;
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                /* the pending connection stays readable: without a rest,
                 * EMFILE would spin the master */
                if (fd < 0 && (errno == EMFILE || errno == ENFILE))
                    lfd_rest = clock_s() + MX_REST;
                if (fd < 0)
                    break;
                cl[k] = (client){ .fd = fd, .deadline = clock_s() + MX_TIMEOUT };
            }
            continue;
        }
        for (int k = 0; k < MX_CLIENTS; k++)
            if (cl[k].fd == p[i].fd)
                on_client(&cl[k]);
    }
}

/* ---- set-up ---------------------------------------------------------------- */

static void drop_fds(void)
{
    if (lfd < 0)                /* off, or closed already: no clients either */
        return;
    for (int k = 0; k < MX_CLIENTS; k++)
        if (cl[k].fd >= 0)
            client_close(&cl[k]);
    close(lfd);
    lfd = -1;
}

static int listen_on(const struct addrinfo *ai)
{
    int one = 1, fd = socket(ai->ai_family, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, MX_BACKLOG) < 0
        || fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

void metrics_open(const config *cfg, int n)
{
    struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
                              .ai_socktype = SOCK_STREAM }, *res, *ai;
    struct sockaddr_storage sa;
    socklen_t salen = sizeof sa;
    char port[16], addr[64] = "?";
    int err;

    if (!cfg->metrics)
        return;
    slots = mmap(NULL, (size_t)n * sizeof *slots, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED)
        die("%s: mmap: %s", opt_label("metrics"), strerror(errno));
    nslots = n;
    for (int k = 0; k < MX_CLIENTS; k++)
        cl[k].fd = -1;
    snprintf(port, sizeof port, "%d", cfg->metrics_port);
    if ((err = getaddrinfo(cfg->metrics_address, port, &hints, &res)))
        die("%s: %s: %s", opt_label("metrics-address"), cfg->metrics_address, gai_strerror(err));
    /* IPv4 first: a name such as "localhost" then means 127.0.0.1, the
     * default address, and not ::1. */
    err = EAFNOSUPPORT;
    for (int pass = 0; pass < 2 && lfd < 0; pass++)
        for (ai = res; ai && lfd < 0; ai = ai->ai_next)
            if (ai->ai_family == (pass ? AF_INET6 : AF_INET) && (lfd = listen_on(ai)) < 0)
                err = errno;
    freeaddrinfo(res);
    if (lfd < 0)
        die("%s/%s: cannot bind %s:%d: %s", opt_label("metrics-address"),
            opt_label("metrics-port"), cfg->metrics_address, cfg->metrics_port, strerror(err));
    getsockname(lfd, (struct sockaddr *)&sa, &salen);       /* the port --metrics-port 0 got */
    getnameinfo((struct sockaddr *)&sa, salen, addr, sizeof addr, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
    log_info("Metrics exporter listening at: http://%s%s%s:%s", sa.ss_family == AF_INET6 ? "[" : "",
             addr, sa.ss_family == AF_INET6 ? "]" : "", port);
}

static wk_metrics *metrics_slot(int i)
{
    return slots && i >= 0 && i < nslots ? &slots[i] : NULL;
}

void metrics_worker(int i, pid_t pid, int id)
{
    wk_metrics *s = metrics_slot(i);

    if (s) {
        s->pid = pid;
        s->id = pid ? id : 0;
        s->born = clock_s();
    }
}

/* A worker is forked, not exec'd, so FD_CLOEXEC does not keep the
 * exporter's descriptors out of it: a copy there would keep a keep-alive
 * scraper's connection open after the master closed it (its next scrape
 * would hang) and the port bound after the master is gone. */
void metrics_child(int i)
{
    wk_metrics *s = metrics_slot(i);

    drop_fds();
    if (!s)
        return;
    for (uint64_t *v = &s->connections_active; v <= &s->py_wait_cumulative; v++)
        __atomic_store_n(v, 0, __ATOMIC_RELAXED);   /* the master may be reading */
    wk_m = s;
}

void metrics_count(int which)
{
    if (which >= 0 && which < MC_N)
        mc[which]++;
}

void metrics_close(void)
{
    drop_fds();
    free(body.p);
    body = (buf){ 0 };
    if (slots)
        munmap(slots, (size_t)nslots * sizeof *slots);
    slots = NULL;
    wk_m = &dummy;
}
