/* conn.h -- one client connection and its HTTP/1.1 requests (conn.c).
 *
 * The loop thread reads and parses request heads; each request goes to
 * the interface as the request object embedded here (req.h), whose
 * operations conn.c implements for HTTP/1.1.
 */
#ifndef CONN_H
#define CONN_H

#include <sys/uio.h>
#include "ev.h"
#include "granc.h"
#include "http.h"
#include "net.h"
#include "req.h"
#include <stddef.h>

/* -2 is HTTP_INCOMPLETE everywhere: nothing more yet.  A read buffer at its
 * cap is a code of its own. */
#define CONN_FULL (-3)

/* A connection is owned by exactly one thread at a time: the loop thread
 * while it reads a request head (CS_HEAD), reads ahead a small body
 * (CS_BODY) or lingers before closing (CS_LINGER); an application thread
 * while the request runs (CS_APP).  Handing it over is the only
 * synchronisation it needs.  A connection that speaks HTTP/2 (CS_H2) is
 * its session's (h2_conn.c), which has a lock of its own. */
enum conn_state { CS_HEAD, CS_BODY, CS_APP, CS_LINGER, CS_H2 };

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
    request r;                       /* the request the app sees (req.h) */
    int64_t body_left;               /* Content-Length bytes still to decode */
    http_chunked chunk;              /* chunked decoder state */
    unsigned body_chunked : 1;
    unsigned body_done : 1;          /* whole body decoded */
    unsigned body_bad : 1;           /* malformed or too large: answered, then closed */
    unsigned continue_sent : 1;      /* "100 Continue" written (or not owed) */
    unsigned proto_known : 1;        /* HTTP/1.1 or HTTP/2 decided */
    struct h2c *h2;                  /* the HTTP/2 session (h2_conn.c) */
    time_t since;                    /* start of the current wait */
    double started;                  /* wall clock when the head arrived */
    struct conn *prev, *next;        /* all connections of the worker */
    struct conn *qnext;              /* the --backpressure queue */
    tls_conn *tls;                   /* the TLS engine, or NULL */
    unsigned trusted : 1;            /* the peer is in --forwarded-allow-ips */
    unsigned counted : 1;            /* TLS: handshake done, in the metrics */
    signed char fwd_proto;           /* X-Forwarded-Proto: 1 https, -1 http, 0 none */
    char fwd[PROXY_ADDR_MAX];        /* X-Forwarded-For's client, or "" */
} conn;

/* For the worker (worker.c): a new accepted socket; closing; a refusal
 * (408 from the sweep); an idle connection's buffer back to the stash;
 * a request finished by a pool thread (1: c lives on, serve it); requests
 * held back by --backpressure. */
void conn_new(int fd, const listener *ls, struct sockaddr_storage *sa);
void conn_close(conn *c);
void conn_reply_error(conn *c, int status);
void conn_buf_put(conn *c);
int conn_finish(conn *c);
/* For h2_conn.c: the socket through TLS when there is TLS (read(2) and
 * writev(2) on a non-blocking socket), what to wait for after EAGAIN,
 * the loop's handler, and an orderly close. */
ssize_t conn_read(conn *c, void *buf, size_t n);
ssize_t conn_writev(conn *c, const struct iovec *iov, int n);
int conn_want(conn *c, int mask);
void conn_on_event(ev_loop *l, int fd, void *udata, int mask);
void conn_linger(conn *c);
void conn_serve(conn *c);
void conn_drain_waitq(void);
/* The connection a request belongs to. */
static inline conn *conn_of(request *r) { return (conn *)((char *)r - offsetof(conn, r)); }

#endif
