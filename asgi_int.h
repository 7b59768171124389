/* asgi_int.h -- what asgi.c and asgi_ws.c share: the per-request
 * Transport (an HTTP request's or a websocket's), its output queue, and
 * the helpers both kinds of request use.  Include after <Python.h>.
 */
#ifndef ASGI_INT_H
#define ASGI_INT_H

#include "req.h"
#include "ws.h"

#define SEND_HWM     65536      /* unsent bytes above which send() waits */
#define QMAX         16         /* pieces of unsent output per request */
#define QROOM        4          /* pieces one send() may add */

typedef struct piece {
    const char *p;
    size_t n;
    PyObject *owner;             /* keeps p alive (bytes), or NULL */
    char *mem;                   /* or p is ours to free */
    int fd;                      /* or a file region: fd, off, n */
    off_t off;
} piece;

/* How far a response has gone, in Transport.resp: the start message
 * taken (status, headers), the head queued, the body ended. */
enum { RESP_NONE, RESP_STARTED, RESP_HEAD, RESP_DONE };

/* A websocket's life, in Transport.wsstate. */
enum { WSS_CONNECTING, WSS_OPEN, WSS_CLOSING, WSS_CLOSED };

typedef struct Transport {
    PyObject_HEAD
    request *req;                /* NULL once the request is over */
    PyObject *task;
    PyObject *recv_waiters;      /* futures of waiting receive() calls */
    PyObject *send_fut;
    PyObject *start_headers;     /* the start message's headers */
    PyObject *tlist;             /* trailers gathered so far */
    int status;
    int resp;                    /* RESP_*: how far the response has gone */
    int app_done, trailers, gone, body_final;
    int noread;                  /* input came that nobody waits for */
    int64_t body_wait;           /* asgi_sweep: since when receive() waits for body */
    /* websocket (asgi_ws.c) */
    int ws, wsstate, connect_sent, in_frame, ws_code;
    ws_state wss;
    ws_frame fr;
    uint64_t fr_done;            /* payload bytes of fr handled */
    char *msg;                   /* the message being assembled */
    size_t msg_len, msg_cap;
    PyObject *pending;           /* a complete message the app has not taken */
    PyObject *ws_reason;         /* the client's close reason */
    piece q[QMAX];
    int qn;
    size_t qbytes;
    /* RSGI (rsgi.c) */
    int want_read;               /* a read the interface waits for itself */
    void (*on_finish)(struct Transport *t);  /* before the request goes */
    PyObject *owner;             /* the interface's object for this request */
    /* a complete websocket message as the interface gives it (NULL: ASGI's) */
    PyObject *(*ws_msg)(int text, const char *p, size_t n);
    PyObject *closed_exc;        /* what a waiting send raises when the client
                                    leaves (NULL: OSError) */
} Transport;

#define INTERN(var, s) if (!(var = PyUnicode_InternFromString(s))) return -1

extern const config *asgi_cfg;
extern PyObject *k_type, *k_scheme, *k_method, *k_headers, *k_body, *k_more_body;

/* asgi.c: the transport (tr_*) and Python helpers */
int asgi_tr_init(void);
Transport *tr_new(request *r);
int tr_out_file(Transport *t, int fd, size_t n);
PyObject *tr_send_wait(Transport *t);
void tr_watch(Transport *t);
void tr_wake(Transport *t, PyObject *msg, int all);
PyObject *tr_new_waiter(Transport *t);
int tr_waiters(Transport *t);
int tr_push(Transport *t, const char *p, size_t n, PyObject *owner, int copy);
void tr_flush(Transport *t);
void tr_q_clear(Transport *t);
int tr_out_body(Transport *t, const char *p, size_t n, PyObject *owner, int64_t total);
int tr_out_end(Transport *t, PyObject *trailers);
int tr_answer(Transport *t, int status, PyObject *headers, const char *body, size_t n);
PyObject *tr_send_result(Transport *t, int rc);
PyObject *tr_send_type(Transport *t, PyObject *msg);
int tr_take_start(Transport *t, PyObject *msg);
PyObject *asgi_flow_error(const char *what);
int asgi_set(PyObject *d, PyObject *k, PyObject *v);
int asgi_get_bool(PyObject *msg, PyObject *key);
int asgi_is_type(PyObject *type, PyObject *name);
PyObject *asgi_scope(request *r);

/* asgi_ws.c: websocket requests */
void asgi_stop(request *r);          /* the worker stops: close (1001) */
int asgi_ws_wanted(request *r);
PyObject *asgi_ws_scope(request *r);
void asgi_ws_event(Transport *t);
void asgi_ws_task_done(Transport *t, int raised);
int asgi_ws_intern(void);
int asgi_ws_handshake_ok(request *r, char accept[29], const char **why);
PyObject *asgi_ws_disconnect_msg(Transport *t);
PyObject *asgi_ws_receive(Transport *t, PyObject *unused);
PyObject *asgi_ws_send(Transport *t, PyObject *msg);
/* for RSGI (rsgi_ws.c): a frame out, a close frame (once), the frame pump */
int asgi_ws_out(Transport *t, int opcode, const char *p, size_t n, PyObject *owner);
void asgi_ws_close(Transport *t, int code, const char *reason, size_t rn);
void asgi_ws_pump(Transport *t);

#endif
