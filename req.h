/* req.h -- a request, as the interfaces see it.
 *
 * The protocols produce requests and the interfaces consume them: conn.c
 * makes one per HTTP/1.1 request, embedded in the connection and reset
 * for each; an HTTP/2 stream will embed its own.  wsgi.c, asgi.c and
 * asgi_ws.c see its head, its peer and the operations below, never a
 * connection, so that two protocols and three interfaces stay five pieces
 * of code, not six.
 *
 * The response leaves in three steps, each the protocol's to frame: a
 * head (head), body bytes (frame says how many may go and what goes
 * around them: HTTP/1.1's chunk lines), and an end (end: the last chunk
 * and trailers).  write and file put the bytes on the wire, blocking
 * (application threads) or not (ASGI, on the loop thread).
 */
#ifndef REQ_H
#define REQ_H

#include <sys/types.h>
#include <sys/uio.h>
#include "granc.h"
#include "http.h"

typedef struct request request;

typedef struct req_ops {
    /* The body, decoded.  body makes at least want bytes ready (1 if 0,
     * or whatever is left of the body), points *p at them and returns
     * how many: 0 at the body's end, -1 when it failed (errno EFBIG: over
     * --http1-max-body-size; EBADMSG: malformed; EMSGSIZE: want exceeds
     * the buffer; else the client left).  Not waiting, HTTP_INCOMPLETE
     * when the socket has nothing yet.  *p holds until the next body
     * call, even past the take that consumes it.  take consumes n ready bytes and
     * returns 1 once the whole body is taken.  After a 101 the body is
     * the raw stream, to its end. */
    ssize_t (*body)(request *r, size_t want, int wait, const char **p);
    int (*take)(request *r, size_t n);
    /* The body is in and the app is still at work: has the client left?
     * (Bytes that arrive meanwhile are kept for the next request.) */
    int (*gone)(request *r);
    /* The response head for r->res.code (reason NULL: the standard
     * phrase) with the app's fields (checked: http_is_token,
     * http_value_ok) and total, the body's length if known (-1 not).
     * Fills r->res; *out holds until the thread's next head or end.
     * -1 with errno EINVAL (a bad Content-Length) or E2BIG. */
    int (*head)(request *r, const char *reason, size_t rn, const http_header *f, size_t nf,
                int64_t total, struct iovec *out);
    /* n body bytes are to go out: how many may (never more than the head
     * announced; none for a bodiless response), with what goes before
     * and after them (empty vectors if nothing; pre holds until the next
     * frame).  Counts them in r->sent. */
    size_t (*frame)(request *r, size_t n, struct iovec *pre, struct iovec *post);
    /* The end of the body, with trailers where the framing carries them:
     * *out as head's.  -1 (E2BIG) when they do not fit. */
    int (*end)(request *r, const http_header *f, size_t nf, struct iovec *out);
    /* Output.  Waiting: all of it, or -1 when the client failed.  Not
     * waiting: what the socket takes now (0: try again on EV_WRITE), -1
     * when the client left.  file sends n bytes of fd from *off on. */
    ssize_t (*write)(request *r, const struct iovec *v, int n, int wait);
    ssize_t (*file)(request *r, int fd, off_t *off, size_t n, int wait);
    /* Cut the exchange now (HTTP/1.1: shut the socket down): the client
     * sees it at once, and the request finishes broken. */
    void (*abort)(request *r);
    /* Loop-thread interfaces: call the interface's event hook when r is
     * readable or writable (EV_READ, EV_WRITE; 0: neither). */
    void (*watch)(request *r, int mask);
    /* The app is done with the response: decide whether the connection
     * lives on (the head said keep-alive, nothing broke, the body it left
     * unread drained: waiting for it, or as far as it has come) and write
     * the access log line with status. */
    void (*finish)(request *r, int status, int wait);
    /* A loop-thread interface hands r back after finish. */
    void (*done)(request *r);
} req_ops;

struct request {
    const req_ops *ops;
    const struct app_iface *ifc;     /* whose it is: the app's (W.ifc) or
                                        static files' (set at start) */
    const http_request *head;        /* method, target, headers, version */
    const listener *ls;              /* the server side */
    const char *client;              /* as the app sees it: the peer's, or
                                        a trusted proxy's word ("" on UDS) */
    int client_port;                 /* 0 when a proxy said */
    unsigned secure : 1;             /* https/wss: TLS, or the proxy says */
    unsigned ws : 1;                 /* a websocket request (the log says ws) */
    unsigned keep : 1;               /* finish: the connection lives on */
    unsigned broken : 1;             /* failed or cut: close, never reuse */
    unsigned queue : 1;              /* HTTP/2: to an application thread,
                                        never run by the loop's (pool.c) */
    tls_conn *tls;                   /* what the handshake settled (tls.h) */
    resp_head res;                   /* the response's framing, once headed */
    int64_t sent;                    /* body bytes framed */
    char scratch[24];                /* frame's chunk-size line */
    request *qnext;                  /* the interface's queues (pool.c) */
    void *app;                       /* the interface's state */
};

/* The application interfaces: one table each, chosen once per worker
 * (worker.c) from --interface.  A protocol calls start when a request is
 * ready and event when a request the interface watches is ready; the
 * interface answers through the request's operations.  A NULL hook is
 * one the interface does not need. */
typedef struct app_iface {
    const char *name;
    /* Python has started and the app is not loaded yet: what the app may
     * import (RSGI's exceptions); -1 with an exception set. */
    int (*prepare)(const config *cfg);
    /* The app is loaded (GIL held): set up; -1 with an exception set. */
    int (*init)(const config *cfg, void *app);
    /* Serve until the worker has stopped, driving its loop (loop_fd) from
     * the interface's own (asyncio); returns an exit code.  NULL: the
     * worker runs its loop itself. */
    int (*run)(int loop_fd);
    /* Run the worker's own loop (wk_turn) on threads of the interface's
     * (the WSGI pool); returns an exit code.  NULL: on the main thread. */
    int (*serve)(void);
    /* r is ready.  Returns 1 when it is already done (run inline: r->keep
     * says whether the connection lives on), 0 when the interface hands
     * it back later (r->ops->done). */
    int (*start)(request *r);
    void (*event)(request *r, int mask);   /* r is readable/writable (watch) */
    void (*sweep)(request *r, int64_t now, int64_t timeout_ms);  /* once a second */
    void (*stop)(request *r);              /* a graceful stop begins */
    void (*exit)(void);                    /* the loop has ended; Python is about to go */
} app_iface;

/* pool.c: WSGI on the loop thread (--blocking-threads 1) or on threads */
extern const app_iface wsgi_inline_iface, wsgi_pool_iface;
/* asgi.c: ASGI on asyncio (the websocket requests in asgi_ws.c) */
extern const app_iface asgi_iface;
/* rsgi.c: RSGI on asyncio (the websocket requests in rsgi_ws.c) */
extern const app_iface rsgi_iface;

#endif
