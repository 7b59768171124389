/* h2.h -- HTTP/2 (RFC 9113): the protocol engine (h2.c) and the
 * connections that run it (h2_conn.c).
 *
 * h2.c knows frames, streams, flow control and HPACK, and no socket: bytes
 * go in through h2_recv, frames come out into s->out through h2_produce,
 * and what happens to a stream is left in its flags for h2_conn.c, which
 * does the I/O, hands the requests to the interface (req.h), and wakes
 * the threads and tasks that wait on them.  The fuzz harness
 * (tests/fuzz/fuzz_h2.c) drives h2.c alone.
 *
 * Locking: a session and its streams belong to whichever thread holds
 * s->mu; application threads (the WSGI pool) take it for every request
 * operation, the loop thread for reading and writing the socket.
 */
#ifndef H2_H
#define H2_H

#include <pthread.h>
#include <stdint.h>
#include "hpack.h"
#include "req.h"

#define H2_PREFACE      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN  24
#define H2_HEAD_MAX     65536    /* decoded request head (RFC 7541 sizes) kept
                                    per stream, whatever the option says: a
                                    header block of a few bytes can name a
                                    4 KiB table entry thousands of times */
#define H2_OUT_HIGH     (256 << 10)  /* frames queued for the socket: past
                                    this, stop reading (a peer that sends
                                    PINGs and never reads their ACKs) */

enum h2_err {
    H2_NO_ERROR, H2_PROTOCOL_ERROR, H2_INTERNAL_ERROR, H2_FLOW_CONTROL_ERROR,
    H2_SETTINGS_TIMEOUT, H2_STREAM_CLOSED, H2_FRAME_SIZE_ERROR, H2_REFUSED_STREAM,
    H2_CANCEL, H2_COMPRESSION_ERROR, H2_CONNECT_ERROR, H2_ENHANCE_YOUR_CALM,
    H2_INADEQUATE_SECURITY, H2_HTTP_1_1_REQUIRED
};

/* A byte buffer: bytes [off,len) are live. */
typedef struct h2_buf {
    char *p;
    size_t off, len, cap;
} h2_buf;

typedef struct h2_sess h2_sess;
typedef struct h2_stream h2_stream;

/* Request body bytes, one DATA frame's worth each: a chunk never moves, so
 * an application thread may read one while the loop appends the next. */
typedef struct h2_chunk {
    struct h2_chunk *next;
    size_t off, len;
    char data[];
} h2_chunk;

struct h2_stream {
    request r;                   /* what the app sees (req.h); h2_conn.c's ops */
    h2_sess *s;
    h2_stream *next;             /* the session's streams */
    h2_stream *qnext;            /* the start queue */
    uint32_t id;
    unsigned open : 1;           /* counted against MAX_CONCURRENT_STREAMS */
    unsigned in_end : 1;         /* the client's END_STREAM came */
    unsigned out_end : 1;        /* the app ended the response: the end goes
                                    once all it framed (r.sent) is written */
    unsigned head_sent : 1;      /* the response's HEADERS went */
    unsigned end_sent : 1;       /* our END_STREAM (or RST_STREAM) went */
    unsigned reset : 1;          /* RST_STREAM sent or received */
    unsigned peer_reset : 1;     /* received: later frames are errors */
    unsigned app : 1;            /* the interface holds r */
    unsigned queued : 1;         /* in the start queue */
    unsigned changed : 1;        /* news for the app: body, end, reset, room */
    unsigned drop_in : 1;        /* the app is done: body bytes are discarded */
    int watch;                   /* EV_READ|EV_WRITE a loop-thread app waits on */
    int64_t swin, rwin;          /* send window; receive window left */
    uint32_t win;                /* the receive window granted at most */
    size_t unacked;              /* body bytes taken, not yet re-granted */
    int64_t clen, got;           /* request content-length (-1) and DATA so far */
    h2_chunk *in, *in_tail;      /* request body not taken */
    h2_chunk *spent;             /* the last chunk taken: the app may still
                                    copy from it until its next body() */
    size_t in_bytes;
    h2_buf out;                  /* response body not framed yet */
    int64_t written;             /* body bytes written into out, in all */
    unsigned char *hblock;       /* response HEADERS to frame (END_HEADERS) */
    size_t hblen;
    unsigned char *tblock;       /* trailers, framed after the body */
    size_t tblen;
    http_request *head;          /* the request head; its slices point into hmem */
    h2_buf hmem;
    char *cookie;                /* the joined cookie crumbs */
    char fwd[64];                /* X-Forwarded-For's client (PROXY_ADDR_MAX) */
    double started;              /* wall clock when the head came */
};

struct h2_sess {
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* broadcast when a stream changed */
    int waiters;                 /* application threads in cv */
    hpack_dec dec;
    h2_stream *streams;
    h2_stream *startq, *startq_tail;   /* heads in, not given to the app yet */
    int nopen;                   /* streams open or half-closed */
    uint32_t max_id;             /* the highest stream id the client opened */
    uint32_t closed[16];         /* recently closed ids (STREAM_CLOSED, not
                                    PROTOCOL_ERROR, for frames on them) */
    unsigned nclosed;
    size_t preface;              /* preface bytes matched */
    unsigned settings_seen : 1;  /* the client's first frame was SETTINGS */
    unsigned settings_acked : 1; /* the client ACKed ours: until then, its
                                    streams may use the default windows */
    unsigned goaway : 1;         /* our GOAWAY went: no new streams */
    unsigned dead : 1;           /* a connection error, or the socket failed */
    unsigned peer_gone : 1;      /* the client's GOAWAY came: close once idle */
    unsigned ping_out : 1;       /* our keep-alive PING awaits its ACK */
    /* what we said (SETTINGS) and what the client did */
    uint32_t my_window, my_conn_window, my_frame, my_hlist, my_streams;
    uint32_t peer_frame;
    int64_t peer_window;         /* its SETTINGS_INITIAL_WINDOW_SIZE */
    int64_t swin, rwin;          /* the connection's windows */
    uint32_t cwin;               /* the connection's receive window at most */
    unsigned adaptive : 1;       /* --http2-adaptive-window: windows grow */
    size_t unacked;              /* connection bytes consumed, not re-granted */
    /* a header block arriving over HEADERS and CONTINUATION frames */
    uint32_t blk_id;
    int blk_end_stream, blk_bad;
    h2_buf blk;
    /* flood budgets, reset once a second (h2_tick) */
    int calm, resets;
    int news;                    /* h2_produce made room for a watching stream */
    h2_buf out;                  /* frames for the socket */
    int64_t last_active;         /* ms: a stream was open, or a frame came */
    int64_t ping_at;             /* ms: when our PING went */
    void *conn;                  /* h2_conn.c's */
};

/* Room for n more bytes at b's end (live bytes slide down first): -1 when
 * out of memory. */
int h2_buf_room(h2_buf *b, size_t n);

/* h2.c, the engine.  Every call with s->mu held. */
int h2_init(h2_sess *s, const config *cfg);   /* queues our SETTINGS */
void h2_free(h2_sess *s);
/* Consume whole frames of in[0,n) (the preface first): returns the bytes
 * taken (a partial frame stays the caller's), -1 after a connection
 * error (its GOAWAY queued, s->dead).  Complete request heads join the
 * start queue. */
ssize_t h2_recv(h2_sess *s, const char *in, size_t n);
/* The most bytes h2_recv may need at once: the frame limit plus a head. */
size_t h2_frame_room(const h2_sess *s);
/* Frame what the streams have for the peer into s->out, as windows allow. */
void h2_produce(h2_sess *s);
/* Once a second: budgets; keep-alive PING (ms interval, 0 none); 1 when
 * the connection should go (a PING unanswered for timeout_ms). */
int h2_tick(h2_sess *s, int64_t now, int64_t ping_ms, int64_t timeout_ms);
void h2_goaway(h2_sess *s, int code);
void h2_rst(h2_sess *s, h2_stream *st, int code);
/* The body bytes ready (at *p, contiguous), and taking n of them: they
 * are granted again to the client once enough has gone. */
size_t h2_body_peek(h2_stream *st, const char **p);
void h2_body_take(h2_sess *s, h2_stream *st, size_t n);
/* The response head for st->r.res.code, HPACK-encoded into st->hblock;
 * -1 with errno EINVAL (a bad content-length) or ENOMEM. */
int h2_head(h2_stream *st, const http_header *f, size_t nf, int64_t total);
int h2_trailers(h2_stream *st, const http_header *f, size_t nf);
/* Free st if neither the app nor the protocol needs it any more. */
void h2_release(h2_sess *s, h2_stream *st);
h2_stream *h2_pop_start(h2_sess *s);

/* h2_conn.c, for conn.c and worker.c */
struct conn;
int h2_start(struct conn *c);            /* c speaks HTTP/2 from now: -1 closed */
void h2_io(struct conn *c, int mask);    /* readiness */
void h2_sweep(struct conn *c, int64_t now);
void h2_stop(struct conn *c);            /* graceful stop: GOAWAY */
void h2_force(struct conn *c);           /* --graceful-timeout ran out */
void h2_conn_free(struct conn *c);
void h2_wake(void);                      /* the loop was woken: sessions that
                                            application threads left output in */
void h2_drain_waitq(void);               /* --backpressure let go of a slot */
int h2_idle(struct conn *c);             /* no stream: may close when stopping */

#endif
