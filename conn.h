/* conn.h -- one client connection and its HTTP/1.1 requests (conn.c).
 *
 * The loop thread reads and parses request heads; the interfaces (wsgi.c,
 * asgi.c, asgi_ws.c) take a connection in CS_APP and do its body and
 * response I/O through the conn_* calls below.
 */
#ifndef CONN_H
#define CONN_H

#include "granc.h"
#include "http.h"
#include "net.h"

/* -2 is HTTP_INCOMPLETE everywhere: nothing more yet.  A read buffer at its
 * cap is a code of its own. */
#define CONN_FULL (-3)

/* A connection is owned by exactly one thread at a time: the loop thread
 * while it reads a request head (CS_HEAD), reads ahead a small body
 * (CS_BODY) or lingers before closing (CS_LINGER); an application thread
 * while the request runs (CS_APP).  Handing it over is the only
 * synchronisation it needs. */
enum conn_state { CS_HEAD, CS_BODY, CS_APP, CS_LINGER };

typedef struct conn {
    int fd;
    int state;                       /* enum conn_state */
    const listener *ls;              /* the listener it came from */
    char addr[64];                   /* client IP as text ("" on UDS) */
    int port;                        /* client port */
    /* the read buffer: [0,len) holds bytes read; the request head is
     * [0,head), decoded body bytes not yet given to the app are
     * [dpos,dend), raw bytes not yet decoded are [dend,len) */
    char *buf;
    size_t len, cap, scanned, head, dpos, dend;
    http_request *req;               /* allocated with buf */
    int64_t body_left;               /* Content-Length bytes still to decode */
    http_chunked chunk;              /* chunked decoder state */
    unsigned body_chunked : 1;
    unsigned body_done : 1;          /* whole body decoded */
    unsigned continue_sent : 1;      /* "100 Continue" written (or not owed) */
    unsigned keep : 1;               /* set by the app side: reuse it */
    unsigned broken : 1;             /* I/O failed: close, never reuse */
    time_t since;                    /* start of the current wait */
    double started;                  /* wall clock when the head arrived */
    struct conn *prev, *next;        /* all connections of the worker */
    struct conn *qnext;              /* pool queue / done list link */
    void *app;                       /* the interface's state while CS_APP */
    tls_conn *tls;                   /* the TLS engine, or NULL */
    unsigned trusted : 1;            /* the peer is in --forwarded-allow-ips */
    unsigned counted : 1;            /* TLS: handshake done, in the metrics */
    signed char fwd_proto;           /* X-Forwarded-Proto: 1 https, -1 http, 0 none */
    char fwd[PROXY_ADDR_MAX];        /* X-Forwarded-For's client, or "" */
} conn;

/* The client and scheme as the app sees them: the peer's, unless a
 * trusted proxy said otherwise (then the port is 0, as in uvicorn). */
static inline const char *conn_client(const conn *c) { return c->fwd[0] ? c->fwd : c->addr; }
static inline int conn_client_port(const conn *c) { return c->fwd[0] ? 0 : c->port; }
static inline int conn_secure(const conn *c)
{
    return c->fwd_proto ? c->fwd_proto > 0 : c->tls != NULL;
}
/* Blocking I/O for the application threads (call without the GIL).
 * conn_body makes decoded body bytes available in [dpos,dend) and returns
 * how many, 0 at the end of the body, -1 when the client failed. */
/* All connection I/O: read(2)/writev(2)/sendfile(2) alike, through TLS
 * when the connection is encrypted. */
ssize_t conn_rd(conn *c, void *buf, size_t n);
ssize_t conn_wrv(conn *c, const struct iovec *iov, int n);
ssize_t conn_file(conn *c, int fd, off_t *off, size_t n);
/* The request body as the interfaces see it: decoded bytes ready now
 * (conn_body makes more), taken by conn_body_take; conn_body_ended once
 * the last of them is taken.  Inline: they run per body chunk. */
static inline const char *conn_body_data(const conn *c) { return c->buf + c->dpos; }
static inline size_t conn_body_ready(const conn *c) { return c->dend - c->dpos; }
static inline void conn_body_take(conn *c, size_t n) { c->dpos += n; }
static inline int conn_body_ended(const conn *c) { return c->body_done && c->dpos == c->dend; }
/* Whether the read buffer has room: a full one cannot see the client go. */
static inline int conn_has_room(const conn *c) { return c->len < c->cap; }
/* ASGI, once the app is done: discard the body it left unread, as far as
 * it has arrived.  Returns 1 if the whole body is in (c can be kept). */
int conn_body_drop_nb(conn *c);
ssize_t conn_body(conn *c);
ssize_t conn_body_nb(conn *c);      /* as conn_body; HTTP_INCOMPLETE: nothing yet */
int conn_gone(conn *c);
ssize_t conn_write_nb(conn *c, const struct iovec *iov, int n);
int conn_send(conn *c, const struct iovec *iov, int n);
int conn_sendfile(conn *c, int fd, off_t off, size_t n);
/* Discard what is left of the body; 1 if the connection is reusable.
 * conn_can_keep tells beforehand when it surely is not: the client or
 * the configuration says close, the worker is stopping, or the body the
 * app left unread cannot be drained. */
int conn_drain(conn *c);
int conn_can_keep(conn *c);
/* The app is done with c's request (ASGI: its response has left). */
void conn_request_done(conn *c);
/* Interest in c's events while the app owns it (ASGI). */
void conn_watch(conn *c, int mask);
/* One access log line for c's request, if --access-log. */
void conn_access_log(conn *c, int status, const char *scheme);

/* For the worker (worker.c): a new accepted socket; closing; a refusal
 * (408 from the sweep); an idle connection's buffer back to the stash;
 * a request finished by a pool thread (1: c lives on, serve it); requests
 * held back by --backpressure. */
void conn_new(int fd, const listener *ls, struct sockaddr_storage *sa);
void conn_close(conn *c);
void conn_reply_error(conn *c, int status);
void conn_buf_put(conn *c);
int conn_finish(conn *c);
void conn_serve(conn *c);
void conn_drain_waitq(void);


/* ===================================================================
 * The application interfaces: one table each, chosen once per worker
 * (worker.c) from --interface.  conn.c calls start when a request is
 * ready and event when a connection the interface watches is ready; the
 * interface answers through conn.h.  A NULL hook is one the interface
 * does not need.
 * =================================================================== */

typedef struct app_iface {
    const char *name;
    /* The app is loaded (GIL held): set up; -1 with an exception set. */
    int (*init)(const config *cfg, void *app);
    /* Serve until the worker has stopped, driving its loop (loop_fd) from
     * the interface's own (asyncio); returns an exit code.  NULL: the
     * worker runs its loop itself. */
    int (*run)(int loop_fd);
    /* c's request is ready (CS_APP).  Returns 1 when it is already done
     * (run inline), 0 when the interface finishes it later. */
    int (*start)(conn *c);
    void (*event)(conn *c, int mask);   /* c is readable/writable in CS_APP */
    void (*sweep)(conn *c, int64_t now, int64_t timeout_ms);  /* once a second, CS_APP */
    void (*stop)(conn *c);              /* a graceful stop begins; c is in CS_APP */
    void (*exit)(void);                 /* the loop has ended; Python is about to go */
} app_iface;

/* pool.c: WSGI on the loop thread (--blocking-threads 1) or on threads */
extern const app_iface wsgi_inline_iface, wsgi_pool_iface;
/* asgi.c: ASGI on asyncio (the websocket requests in asgi_ws.c) */
extern const app_iface asgi_iface;
/* RSGI: not supported yet (granc.c refuses --interface rsgi). */

#endif
