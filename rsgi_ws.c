/* rsgi_ws.c -- RSGI websockets, on the frame pump ASGI uses (asgi_ws.c,
 * over ws.c).
 *
 * The app gets a protocol with accept() and close(status).  Until it
 * accepts, the request is an HTTP request: close(status) answers it with
 * that status (403 when none is given, or when the app returns without
 * either), where Granian's Rust would panic.  accept() sends the 101 and
 * returns a transport: receive() gives message objects (kind 0 close,
 * 1 bytes, 2 str, with data), send_bytes and send_str queue frames and,
 * like ASGI's send(), wait while the output is above its high-water mark.
 * As in asgi_ws.c, one complete message waits for the app at most: reading
 * stops meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <string.h>
#include <structmember.h>
#include "aio.h"
#include "asgi_int.h"
#include "http.h"
#include "py.h"
#include "rsgi.h"
#include "ws.h"


/* The protocol (before and after accept) and the transport accept gives. */
typedef struct {
    PyObject_HEAD
    Transport *t;
    int accepted, closed;        /* accept() and close() were called */
    int close_given;             /* receive() gave the kind-0 message */
    PyObject *recv_fut;          /* a receive() waiting for a message */
} WsProto;

typedef struct {
    PyObject_HEAD
    WsProto *p;
} WsTrx;

typedef struct {
    PyObject_HEAD
    PyObject *kind, *data;
} WsMsg;

static PyTypeObject WsProtoType, WsTrxType, WsMsgType;

static void wsproto_dealloc(WsProto *p)
{
    Py_XDECREF(p->t);
    Py_XDECREF(p->recv_fut);
    PyObject_Free(p);
}

static void trx_dealloc(WsTrx *x)
{
    Py_DECREF(x->p);
    PyObject_Free(x);
}

static void msg_dealloc(WsMsg *m)
{
    Py_XDECREF(m->kind);
    Py_XDECREF(m->data);
    PyObject_Free(m);
}

static PyObject *kinds[3];               /* 0, 1, 2 */

static PyObject *new_msg(int kind, PyObject *data)
{
    if (!data) return NULL;
    WsMsg *m = PyObject_New(WsMsg, &WsMsgType);
    if (!m) { Py_DECREF(data); return NULL; }
    m->kind = Py_NewRef(kinds[kind]);
    m->data = data;
    return (PyObject *)m;
}

/* The pump's complete message (t->ws_msg): bytes or str. */
static PyObject *ws_message(int text, const char *p, size_t n)
{
    return text ? new_msg(2, PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, NULL))
                : new_msg(1, PyBytes_FromStringAndSize(p, (Py_ssize_t)n));
}

/* An upgrade to websocket that this worker serves (--ws). */
int rsgi_ws_wanted(request *r)
{
    return asgi_ws_wanted(r);
}

/* ---------------------------------------------------------------------
 * receive, send
 * ------------------------------------------------------------------- */

/* The next message, or NULL: with no exception, it must wait; with
 * RSGIProtocolClosed once the close message has been given.  A client
 * that leaves without a close frame gets the close message too. */
static PyObject *next_msg(WsProto *p)
{
    Transport *t = p->t;
    if (!t->pending && t->req && t->wsstate == WSS_OPEN) asgi_ws_pump(t);
    if (t->pending) {
        PyObject *m = t->pending;
        t->pending = NULL;
        return m;
    }
    if (t->req && !t->gone && t->wsstate == WSS_OPEN) return NULL;
    if (p->close_given) return rsgi_raise(rsgi_exc_closed, "RSGI transport is closed");
    p->close_given = 1;
    return new_msg(0, Py_NewRef(Py_None));
}

static PyObject *trx_receive(WsTrx *x, PyObject *u)
{
    (void)u;
    WsProto *p = x->p;
    PyObject *done = p->recv_fut ? PyObject_CallMethod(p->recv_fut, "done", NULL) : NULL;
    int busy = done == Py_False;
    Py_XDECREF(done);
    PyErr_Clear();
    if (busy) return rsgi_raise(rsgi_exc_proto, "RSGI protocol error");   /* one at a time */
    PyObject *m = next_msg(p);
    if (p->t->req) tr_flush(p->t);      /* pongs and close frames the pump queued */
    if (m || PyErr_Occurred()) return aio_ready(m);
    PyObject *f = rsgi_future(&p->recv_fut);
    tr_watch(p->t);
    return f;
}

static PyObject *trx_send(WsTrx *x, int opcode, const char *b, size_t n, PyObject *owner)
{
    WsProto *p = x->p;
    Transport *t = p->t;
    if (p->closed) return rsgi_raise(rsgi_exc_proto, "RSGI protocol error");
    if (!t->req || t->gone || t->wsstate != WSS_OPEN)
        return rsgi_raise(rsgi_exc_closed, "RSGI transport is closed");
    if (asgi_ws_out(t, opcode, b, n, owner) < 0) return NULL;
    tr_flush(t);
    if (t->gone) return rsgi_raise(rsgi_exc_closed, "RSGI transport is closed");
    return rsgi_send_wait(t);
}

static PyObject *trx_send_bytes(WsTrx *x, PyObject *data)
{
    Py_buffer v;
    if (PyObject_GetBuffer(data, &v, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *r = trx_send(x, WS_BINARY, v.buf, (size_t)v.len, PyBytes_CheckExact(data) ? data : NULL);
    PyBuffer_Release(&v);
    return r;
}

static PyObject *trx_send_str(WsTrx *x, PyObject *data)
{
    Py_ssize_t n;
    const char *b = PyUnicode_Check(data) ? PyUnicode_AsUTF8AndSize(data, &n) : NULL;
    if (!b) return PyErr_Occurred() ? NULL : rsgi_raise(PyExc_TypeError, "send_str takes a str");
    return trx_send(x, WS_TEXT, b, (size_t)n, data);   /* the UTF-8 lives in data */
}

/* ---------------------------------------------------------------------
 * accept, close
 * ------------------------------------------------------------------- */

static PyObject *ws_accept(WsProto *p, PyObject *u)
{
    (void)u;
    Transport *t = p->t;
    request *r = t->req;
    char key[29];
    const char *why = NULL;
    if (p->accepted || p->closed)       /* Granian's Rust panics on a second */
        return rsgi_raise(rsgi_exc_proto, "RSGI protocol error");
    if (!r || t->gone) return rsgi_raise(rsgi_exc_closed, "RSGI transport is closed");
    if (!asgi_ws_handshake_ok(r, key, &why)) return rsgi_raise(rsgi_exc_proto, why);
    http_header f[2] = { { { "upgrade", 7 }, { "websocket", 9 } },
                         { { "sec-websocket-accept", 20 }, { key, 28 } } };
    struct iovec v;
    r->res.code = 101;
    if (py_head(r, NULL, 0, f, 2, -1, &v) < 0 || tr_push(t, v.iov_base, v.iov_len, NULL, 1) < 0)
        return NULL;
    p->accepted = 1;
    t->wsstate = WSS_OPEN;
    t->resp = RESP_HEAD;
    WsTrx *x = PyObject_New(WsTrx, &WsTrxType);
    if (!x) return NULL;
    x->p = (WsProto *)Py_NewRef(p);    /* (p does not keep x: no cycle) */
    tr_flush(t);
    return aio_ready((PyObject *)x);
}

/* close(status): before accept, an HTTP answer with that status (403
 * without one); after, a close frame (with status as its code when it is
 * one a server may send).  A second close is ignored, as in Granian. */
static PyObject *ws_close(WsProto *p, PyObject *const *a, Py_ssize_t n)
{
    Transport *t = p->t;
    long status = n > 0 && a[0] != Py_None ? PyLong_AsLong(a[0]) : -1;
    if (status == -1 && PyErr_Occurred()) return NULL;
    if (n > 1) return rsgi_raise(PyExc_TypeError, "close(status=None)");
    if (p->closed) Py_RETURN_NONE;
    p->closed = 1;
    if (!t->req || t->gone) Py_RETURN_NONE;
    if (!p->accepted) {
        if (tr_answer(t, status >= 100 && status <= 999 ? (int)status : 403, NULL, "", 0) < 0) {
            PyErr_Clear();
            t->gone = 1;
        }
        t->wsstate = WSS_CLOSED;
    } else if (t->wsstate == WSS_OPEN) {
        if (!t->ws_code) t->ws_code = ws_close_code_ok((int)status) ? (int)status : 1005;
        asgi_ws_close(t, t->ws_code, "", 0);
    }
    tr_flush(t);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------
 * Request life
 * ------------------------------------------------------------------- */

/* The request is over for granc: a waiting receive() gets what is left. */
static void wsproto_finish(Transport *t)
{
    WsProto *p = (WsProto *)t->owner;
    if (!p) return;
    t->req = NULL;                      /* (finish clears it next) */
    if (p->recv_fut) {
        PyObject *m = next_msg(p);
        if (m) rsgi_resolve(&p->recv_fut, m, NULL);
        else { PyErr_Clear(); rsgi_resolve(&p->recv_fut, NULL, rsgi_exc_closed); }
    }
    Py_CLEAR(t->owner);
}

void rsgi_ws_start(Transport *t)
{
    request *r = t->req;
    char key[29];
    const char *why = NULL;
    r->ws = t->ws = 1;
    t->ws_msg = ws_message;
    if (!asgi_ws_handshake_ok(r, key, &why)) {      /* a bad handshake: 400 */
        PyObject *hd = Py_BuildValue("[(yy)]", "content-type", "text/plain");
        if (!hd || tr_answer(t, 400, hd, why, strlen(why)) < 0) { PyErr_Clear(); t->gone = 1; }
        t->app_done = 1;
        tr_flush(t);
        return;
    }
    PyObject *scope = rsgi_scope(r, 1);
    WsProto *p = scope ? PyObject_New(WsProto, &WsProtoType) : NULL;
    if (p) {
        memset((char *)p + sizeof(PyObject), 0, sizeof(*p) - sizeof(PyObject));
        p->t = (Transport *)Py_NewRef(t);
        t->owner = (PyObject *)p;
        t->on_finish = wsproto_finish;
    }
    int rc = p ? rsgi_spawn(t, scope, (PyObject *)p) : -1;
    Py_XDECREF(scope);
    if (rc < 0) {
        Py_INCREF(t);
        rsgi_task_end(t, 1);
        Py_DECREF(t);
    }
}

/* The socket is readable while the app owns a websocket. */
void rsgi_ws_event(Transport *t)
{
    WsProto *p = (WsProto *)t->owner;
    if (t->wsstate == WSS_CONNECTING) {
        if (t->req->ops->gone(t->req)) t->gone = 1;
        else t->noread = 1;
    } else {
        asgi_ws_pump(t);
    }
    if (p && p->recv_fut && (t->pending || t->gone || t->wsstate != WSS_OPEN)) {
        PyObject *m = next_msg(p);
        if (m) rsgi_resolve(&p->recv_fut, m, NULL);
        else { PyErr_Clear(); rsgi_resolve(&p->recv_fut, NULL, rsgi_exc_closed); }
    }
    if (t->req) tr_flush(t);
}

/* The app's task ended: 403 if it neither accepted nor closed (Granian's
 * Rust panics), a close frame if it left the socket open (1011 after an
 * exception; Granian sends one without a code either way). */
void rsgi_ws_task_end(Transport *t)
{
    WsProto *p = (WsProto *)t->owner;
    if (!t->req || t->gone) return;
    if (t->wsstate == WSS_CONNECTING && t->resp < RESP_HEAD) {
        if (tr_answer(t, 403, NULL, "", 0) < 0) { PyErr_Clear(); t->gone = 1; }
    } else if (t->wsstate == WSS_OPEN) {
        asgi_ws_close(t, p && p->closed ? t->ws_code : 1005, "", 0);
    }
}

/* ---------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------- */

static PyMethodDef wsproto_methods[] = {
    {"accept", (PyCFunction)ws_accept, METH_NOARGS, NULL},
    {"close", (PyCFunction)(void (*)(void))ws_close, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WsProtoType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granian._granian.RSGIWebsocketProtocol",
    .tp_basicsize = sizeof(WsProto),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)wsproto_dealloc,
    .tp_methods = wsproto_methods,
};

static PyMethodDef trx_methods[] = {
    {"receive", (PyCFunction)trx_receive, METH_NOARGS, NULL},
    {"send_bytes", (PyCFunction)trx_send_bytes, METH_O, NULL},
    {"send_str", (PyCFunction)trx_send_str, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WsTrxType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granian._granian.RSGIWebsocketTransport",
    .tp_basicsize = sizeof(WsTrx),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)trx_dealloc,
    .tp_methods = trx_methods,
};

static PyMemberDef msg_members[] = {
    {"kind", T_OBJECT, offsetof(WsMsg, kind), READONLY, NULL},
    {"data", T_OBJECT, offsetof(WsMsg, data), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject WsMsgType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granian._granian.WebsocketMessage",
    .tp_basicsize = sizeof(WsMsg),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)msg_dealloc,
    .tp_members = msg_members,
};

int rsgi_ws_module(PyObject *mod)
{
    return PyModule_AddObjectRef(mod, "RSGIWebsocketProtocol", (PyObject *)&WsProtoType) < 0 ||
           PyModule_AddObjectRef(mod, "RSGIWebsocketTransport", (PyObject *)&WsTrxType) < 0
           ? -1 : 0;
}

int rsgi_ws_init(const config *cfg)
{
    (void)cfg;
    for (int i = 0; i < 3; i++)
        if (!(kinds[i] = PyLong_FromLong(i))) return -1;
    return PyType_Ready(&WsProtoType) < 0 || PyType_Ready(&WsTrxType) < 0 ||
           PyType_Ready(&WsMsgType) < 0 || asgi_ws_intern() < 0 ? -1 : 0;
}
