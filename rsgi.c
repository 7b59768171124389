/* rsgi.c -- RSGI 1.6, Granian's own interface, on the asyncio bridge.
 *
 * An RSGI app is `async app(scope, protocol)`: the scope is an object with
 * attributes (not a dict), and the protocol has methods instead of
 * messages: `await protocol()` and `async for` read the body, response_*
 * answer in one call, response_stream returns a transport whose
 * send_bytes/send_str stream the body.  Websockets are in rsgi_ws.c.
 *
 * Everything below the Python objects is ASGI's (asgi_int.h): the
 * per-request Transport with its output queue, tr_flush and the response
 * backpressure (send_bytes waits above SEND_HWM), and the asyncio bridge
 * (aio.c) that runs each request as a Task.  The body is read from the
 * socket only while the app waits for it: the upload backpressure.
 *
 * The scope and its headers are in rsgi_scope.c.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "aio.h"
#include "asgi_int.h"
#include "ev.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "py.h"
#include "rsgi.h"

static const config *rcfg;
static PyObject *target;                 /* the app as loaded (for the hooks) */
static PyObject *app;                    /* __rsgi__, or the app itself */
PyObject *rsgi_exc_proto, *rsgi_exc_closed;
static PyObject *empty_bytes;
static PyObject *m_add_done_callback, *m_done, *m_set_result,
                *m_set_exception;

/* ---------------------------------------------------------------------
 * Futures the protocol objects wait on
 * ------------------------------------------------------------------- */

/* Resolve *fut (taken) with value (stolen), or raise exc_type in it
 * (value NULL), unless the app has given up on it. */
void rsgi_resolve(PyObject **fut, PyObject *value, PyObject *exc_type)
{
    PyObject *f = *fut;
    *fut = NULL;
    if (!f) { Py_XDECREF(value); return; }
    PyObject *done = PyObject_CallMethodNoArgs(f, m_done), *r = NULL;
    if (done == Py_False) {
        if (value) {
            r = PyObject_CallMethodOneArg(f, m_set_result, value);
        } else {
            PyObject *exc = PyObject_CallFunction(exc_type, "s", "RSGI transport is closed");
            r = exc ? PyObject_CallMethodOneArg(f, m_set_exception, exc) : NULL;
            Py_XDECREF(exc);
        }
    }
    if (!done || (done == Py_False && !r)) PyErr_Clear();
    Py_XDECREF(r);
    Py_XDECREF(done);
    Py_XDECREF(value);
    Py_DECREF(f);
}

/* A new future in *slot (one the app gave up on is dropped), returned. */
PyObject *rsgi_future(PyObject **slot)
{
    Py_XDECREF(*slot);
    if (!(*slot = PyObject_CallNoArgs(aio_create_future))) return NULL;
    return Py_NewRef(*slot);
}

/* What a send (send_bytes, send_str) returns once its bytes are queued:
 * a future above the high-water mark (the response backpressure), else
 * done at once, but every SEND_YIELD-th time one turn of the loop: a loop
 * of sends the socket always takes would otherwise never let the loop
 * read (Granian's sends always go through the loop). */
#define SEND_YIELD 16
PyObject *rsgi_send_wait(Transport *t)
{
    static unsigned sends;
    PyObject *w = tr_send_wait(t);
    if (w && Py_TYPE(w) == &aio_ready_type && ++sends % SEND_YIELD == 0) {
        Py_DECREF(w);
        return aio_yield();
    }
    return w;
}

PyObject *rsgi_raise(PyObject *exc, const char *msg)
{
    PyErr_SetString(exc, msg);
    return NULL;
}

/* ---------------------------------------------------------------------
 * The HTTP protocol
 * ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Transport *t;
    int body;                    /* how the body is read: 0 not yet, 1 whole, 2 iterated */
    int body_end;                /* iterated: the end was given out */
    char *acc;                   /* the whole body, gathered */
    size_t acc_n, acc_cap;
    PyObject *body_fut;          /* a read waiting for bytes */
    PyObject *disc;              /* client_disconnect() futures */
} Proto;

typedef struct {
    PyObject_HEAD
    Proto *p;
} Stream;

static PyTypeObject ProtoType, StreamType;

static void proto_dealloc(Proto *p)
{
    Py_XDECREF(p->t);
    Py_XDECREF(p->body_fut);
    Py_XDECREF(p->disc);
    PyMem_Free(p->acc);
    PyObject_Free(p);
}

static void stream_dealloc(Stream *s)
{
    Py_DECREF(s->p);
    PyObject_Free(s);
}

/* The body's next step, not waiting: the whole body once it is in (whole)
 * or the next chunk; NULL without an exception when it must wait, with
 * RSGIProtocolClosed when the client has gone. */
static PyObject *body_step(Proto *p, int whole)
{
    Transport *t = p->t;
    request *r = t->req;
    for (;;) {
        const char *b;
        ssize_t n = !r || t->gone ? -1 : r->ops->body(r, 1, 0, &b);
        if (n == HTTP_INCOMPLETE) return NULL;
        if (n < 0) {
            t->gone = t->gone || r;     /* a body cut short: the client left */
            return rsgi_raise(rsgi_exc_closed, "RSGI transport is closed");
        }
        int last = n == 0 || r->ops->take(r, (size_t)n);
        if (last) t->body_final = 1;
        t->body_wait = 0;
        if (!whole) {
            if (n == 0) p->body_end = 1;    /* Granian ends with b"" */
            return n ? PyBytes_FromStringAndSize(b, n) : Py_NewRef(empty_bytes);
        }
        if (last && !p->acc_n)              /* all in at once: no copy to gather */
            return PyBytes_FromStringAndSize(b, n);
        if (p->acc_n + (size_t)n > p->acc_cap) {
            size_t cap = p->acc_cap ? p->acc_cap : 65536;
            while (cap < p->acc_n + (size_t)n) cap *= 2;
            char *m = PyMem_Realloc(p->acc, cap);
            if (!m) return PyErr_NoMemory();
            p->acc = m;
            p->acc_cap = cap;
        }
        memcpy(p->acc + p->acc_n, b, (size_t)n);
        p->acc_n += (size_t)n;
        if (last) {
            PyObject *all = PyBytes_FromStringAndSize(p->acc, (Py_ssize_t)p->acc_n);
            PyMem_Free(p->acc);
            p->acc = NULL;
            p->acc_n = p->acc_cap = 0;
            return all;
        }
    }
}

static int disc_waiting(Proto *p)
{
    return p->disc && PyList_GET_SIZE(p->disc) > 0;
}

/* Read interest: for a waiting read, or, once the body is all in, to see
 * the client leave; otherwise reading stops when bytes come (noread). */
static void proto_watch(Proto *p)
{
    p->t->want_read = p->body_fut || (disc_waiting(p) && p->t->body_final);
    tr_watch(p->t);
}

static PyObject *wait_body(Proto *p, int whole)
{
    PyObject *v = body_step(p, whole);
    if (v || PyErr_Occurred()) return aio_ready(v);
    PyObject *f = rsgi_future(&p->body_fut);
    proto_watch(p);
    return f;
}

/* await protocol(): the whole body, once. */
static PyObject *proto_call(Proto *p, PyObject *args, PyObject *kw)
{
    if ((args && PyTuple_GET_SIZE(args)) || (kw && PyDict_GET_SIZE(kw)))
        return rsgi_raise(PyExc_TypeError, "protocol() takes no arguments");
    if (p->body) return rsgi_raise(rsgi_exc_proto, "RSGI protocol error");
    p->body = 1;
    return wait_body(p, 1);
}

static PyObject *proto_aiter(Proto *p)
{
    if (p->body) return rsgi_raise(rsgi_exc_proto, "RSGI protocol error");
    p->body = 2;
    return Py_NewRef(p);
}

static PyObject *proto_anext(Proto *p)
{
    if (p->body != 2 || p->body_end) {
        PyErr_SetNone(PyExc_StopAsyncIteration);
        return NULL;
    }
    return wait_body(p, 0);
}

/* Resolves when the client has gone, or the request is over (the
 * connection may live on: RSGI leaves that case open). */
static PyObject *proto_disconnect(Proto *p, PyObject *u)
{
    (void)u;
    Transport *t = p->t;
    if (t->req && !t->gone && !t->body_final) {     /* a body already all in? */
        const char *b;
        ssize_t n = t->req->ops->body(t->req, 1, 0, &b);
        if (n == 0) t->body_final = 1;
        else if (n < 0 && n != HTTP_INCOMPLETE) t->gone = 1;
    }
    if (t->req && !t->gone && t->body_final && t->req->ops->gone(t->req)) t->gone = 1;
    if (!t->req || t->gone) return aio_ready(Py_NewRef(Py_None));
    if (!p->disc && !(p->disc = PyList_New(0))) return NULL;
    PyObject *f = PyObject_CallNoArgs(aio_create_future);
    if (!f || PyList_Append(p->disc, f) < 0) { Py_XDECREF(f); return NULL; }
    proto_watch(p);
    return f;
}

static void wake_disc(Proto *p)
{
    for (Py_ssize_t i = 0; p->disc && i < PyList_GET_SIZE(p->disc); i++) {
        PyObject *f = Py_NewRef(PyList_GET_ITEM(p->disc, i));
        rsgi_resolve(&f, Py_NewRef(Py_None), NULL);
    }
    Py_CLEAR(p->disc);
}

/* The socket is readable while the app runs. */
static void proto_event(Proto *p)
{
    Transport *t = p->t;
    if (p->body_fut) {
        PyObject *v = body_step(p, p->body == 1);
        if (v) rsgi_resolve(&p->body_fut, v, NULL);
        else if (PyErr_Occurred()) { PyErr_Clear(); rsgi_resolve(&p->body_fut, NULL, rsgi_exc_closed); }
    } else if (disc_waiting(p) && t->body_final) {
        if (t->req->ops->gone(t->req)) t->gone = 1;
    } else {
        t->noread = 1;                  /* nobody waits: stop reading */
    }
    if (t->gone) wake_disc(p);
    if (t->gone && t->qn) tr_q_clear(t);
    tr_flush(t);
    if (t->req) proto_watch(p);
}

/* ---------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------- */

/* Arguments by position or name, as Granian's signatures have them. */
static int args(PyObject *const *a, Py_ssize_t n, PyObject *kwn, const char *const *names,
                int nn, int required, PyObject **out)
{
    for (int i = 0; i < nn; i++) out[i] = i < n ? a[i] : NULL;
    if (n > nn) goto bad;
    for (Py_ssize_t k = 0; kwn && k < PyTuple_GET_SIZE(kwn); k++) {
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwn, k));
        int i = 0;
        while (name && i < nn && strcmp(name, names[i])) i++;
        if (!name || i == nn || out[i]) goto bad;
        out[i] = a[n + k];
    }
    for (int i = 0; i < required; i++) if (!out[i]) goto bad;
    return 0;
bad:
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "invalid arguments for an RSGI response");
    return -1;
}

/* Status and headers into t, for the head tr_out_body writes.  1: the
 * response is taken; 0: ignore it (one went before: Granian ignores a
 * second; or the client has gone); -1: an exception. */
static int begin(Proto *p, PyObject *status, PyObject *headers)
{
    Transport *t = p->t;
    long code = status ? PyLong_AsLong(status) : 200;
    if (code == -1 && PyErr_Occurred()) return -1;
    if (code < 100 || code > 999) {     /* Granian's Rust panics here */
        PyErr_Format(PyExc_ValueError, "invalid HTTP status %ld", code);
        return -1;
    }
    if (t->resp >= RESP_STARTED || !t->req || t->gone) return 0;
    t->status = (int)code;
    Py_XSETREF(t->start_headers, headers ? Py_NewRef(headers) : PyList_New(0));
    if (!t->start_headers) return -1;
    t->resp = RESP_STARTED;
    return 1;
}

/* The response is queued (rc 0) or failed (-1): send what the socket
 * takes; a failed head leaves no response (the app's error makes the 500). */
static PyObject *sent(Proto *p, int rc)
{
    Transport *t = p->t;
    if (rc < 0) {
        if (t->resp < RESP_HEAD) t->resp = RESP_NONE;
        return NULL;
    }
    tr_flush(t);
    Py_RETURN_NONE;
}

static const char *const kw_body[] = { "status", "headers", "body" };

static PyObject *resp_empty(Proto *p, PyObject *const *a, Py_ssize_t n, PyObject *kwn)
{
    PyObject *v[2];
    int b;
    if (args(a, n, kwn, kw_body, 2, 0, v) < 0 || (b = begin(p, v[0], v[1])) < 0) return NULL;
    if (!b) Py_RETURN_NONE;
    int rc = tr_out_body(p->t, "", 0, NULL, 0);
    return sent(p, rc < 0 ? rc : tr_out_end(p->t, NULL));
}

static PyObject *resp_bytes(Proto *p, PyObject *const *a, Py_ssize_t n, PyObject *kwn)
{
    PyObject *v[3];
    int b;
    if (args(a, n, kwn, kw_body, 3, 0, v) < 0) return NULL;
    Py_buffer view = { .buf = (void *)"", .len = 0 };
    if (v[2] && PyObject_GetBuffer(v[2], &view, PyBUF_SIMPLE) < 0) return NULL;
    if ((b = begin(p, v[0], v[1])) <= 0) {
        if (v[2]) PyBuffer_Release(&view);
        return b < 0 ? NULL : Py_NewRef(Py_None);
    }
    /* bytes are immutable: queued by reference; anything else is copied */
    int rc = tr_out_body(p->t, view.buf, (size_t)view.len,
                         v[2] && PyBytes_CheckExact(v[2]) ? v[2] : NULL, view.len);
    if (v[2]) PyBuffer_Release(&view);
    return sent(p, rc < 0 ? rc : tr_out_end(p->t, NULL));
}

static PyObject *resp_str(Proto *p, PyObject *const *a, Py_ssize_t n, PyObject *kwn)
{
    PyObject *v[3];
    const char *s = "";
    Py_ssize_t sn = 0;
    int b;
    if (args(a, n, kwn, kw_body, 3, 0, v) < 0) return NULL;
    if (v[2] && !PyUnicode_Check(v[2])) return rsgi_raise(PyExc_TypeError, "body must be str");
    if (v[2] && !(s = PyUnicode_AsUTF8AndSize(v[2], &sn))) return NULL;
    if ((b = begin(p, v[0], v[1])) <= 0) return b < 0 ? NULL : Py_NewRef(Py_None);
    int rc = tr_out_body(p->t, s, (size_t)sn, v[2], sn);   /* the UTF-8 lives in the str */
    return sent(p, rc < 0 ? rc : tr_out_end(p->t, NULL));
}

/* A file, whole or [start, end): sendfile where the connection allows.
 * One that cannot be opened is a 404 (Granian's "Not found"). */
static PyObject *file_response(Proto *p, PyObject *status, PyObject *headers, PyObject *path,
                               unsigned long long start, unsigned long long end, int range)
{
    PyObject *fs = NULL;
    int b;
    if (!PyUnicode_FSConverter(path, &fs)) return NULL;
    if ((b = begin(p, status, headers)) <= 0) { Py_DECREF(fs); return b < 0 ? NULL : Py_NewRef(Py_None); }
    Transport *t = p->t;
    int fd = open(PyBytes_AS_STRING(fs), O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        log_info("Cannot open file %s", PyBytes_AS_STRING(fs));
        Py_DECREF(fs);
        PyObject *hd = Py_BuildValue("[(ss)]", "content-type", "text/plain");
        int rc = hd ? tr_answer(t, 404, hd, "Not found", 9) : -1;
        return sent(p, rc);
    }
    Py_DECREF(fs);
    unsigned long long size = (unsigned long long)st.st_size;
    if (!range) { start = 0; end = size; }
    if (end > size) end = size;
    size_t n = start < end ? (size_t)(end - start) : 0;
    if (lseek(fd, (off_t)(start < size ? start : size), SEEK_SET) < 0 ||
        tr_out_body(t, "", 0, NULL, (int64_t)n) < 0) {
        close(fd);
        return sent(p, -1);
    }
    int rc = tr_out_file(t, fd, n);
    return sent(p, rc < 0 ? rc : tr_out_end(t, NULL));
}

static PyObject *resp_file(Proto *p, PyObject *const *a, Py_ssize_t n, PyObject *kwn)
{
    static const char *const kw[] = { "status", "headers", "file" };
    PyObject *v[3];
    if (args(a, n, kwn, kw, 3, 3, v) < 0) return NULL;
    return file_response(p, v[0], v[1], v[2], 0, 0, 0);
}

static PyObject *resp_file_range(Proto *p, PyObject *const *a, Py_ssize_t n, PyObject *kwn)
{
    static const char *const kw[] = { "status", "headers", "file", "start", "end" };
    PyObject *v[5];
    if (args(a, n, kwn, kw, 5, 5, v) < 0) return NULL;
    unsigned long long start = PyLong_AsUnsignedLongLong(v[3]);
    unsigned long long end = start == (unsigned long long)-1 && PyErr_Occurred()
                             ? 0 : PyLong_AsUnsignedLongLong(v[4]);
    if (PyErr_Occurred()) return NULL;
    if (start >= end) return rsgi_raise(PyExc_ValueError, "Invalid range");
    return file_response(p, v[0], v[1], v[2], start, end, 1);
}

/* The head now (chunked), the body from the transport's send_bytes and
 * send_str, its end when the app's task ends. */
static PyObject *resp_stream(Proto *p, PyObject *const *a, Py_ssize_t n, PyObject *kwn)
{
    PyObject *v[2];
    int b;
    if (args(a, n, kwn, kw_body, 2, 0, v) < 0 || (b = begin(p, v[0], v[1])) < 0) return NULL;
    if (!b && (p->t->resp >= RESP_STARTED || !p->t->req))
        return rsgi_raise(rsgi_exc_proto, "RSGI protocol error");
    if (b && tr_out_body(p->t, "", 0, NULL, -1) < 0) return sent(p, -1);
    if (b) tr_flush(p->t);
    Stream *s = PyObject_New(Stream, &StreamType);
    if (!s) return NULL;
    s->p = (Proto *)Py_NewRef(p);
    return (PyObject *)s;
}

static PyObject *stream_send(Stream *s, const char *b, size_t n, PyObject *owner)
{
    Transport *t = s->p->t;
    if (!t->req || t->gone || t->app_done || t->resp != RESP_HEAD)
        return rsgi_raise(rsgi_exc_closed, "RSGI transport is closed");
    if (tr_out_body(t, b, n, owner, -1) < 0) return NULL;
    tr_flush(t);
    if (t->gone) return rsgi_raise(rsgi_exc_closed, "RSGI transport is closed");
    return rsgi_send_wait(t);           /* above the high-water mark: wait */
}

static PyObject *stream_send_bytes(Stream *s, PyObject *data)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *r = stream_send(s, view.buf, (size_t)view.len, PyBytes_CheckExact(data) ? data : NULL);
    PyBuffer_Release(&view);
    return r;
}

static PyObject *stream_send_str(Stream *s, PyObject *data)
{
    Py_ssize_t n;
    const char *b = PyUnicode_Check(data) ? PyUnicode_AsUTF8AndSize(data, &n) : NULL;
    if (!b) return PyErr_Occurred() ? NULL : rsgi_raise(PyExc_TypeError, "send_str takes a str");
    return stream_send(s, b, (size_t)n, data);
}

static PyMethodDef stream_methods[] = {
    {"send_bytes", (PyCFunction)stream_send_bytes, METH_O, NULL},
    {"send_str", (PyCFunction)stream_send_str, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject StreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granian._granian.RSGIHTTPStreamTransport",
    .tp_basicsize = sizeof(Stream),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)stream_dealloc,
    .tp_methods = stream_methods,
};

#define FAST(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL | METH_KEYWORDS
static PyMethodDef proto_methods[] = {
    {"client_disconnect", (PyCFunction)proto_disconnect, METH_NOARGS, NULL},
    {"response_empty", FAST(resp_empty), NULL},
    {"response_str", FAST(resp_str), NULL},
    {"response_bytes", FAST(resp_bytes), NULL},
    {"response_file", FAST(resp_file), NULL},
    {"response_file_range", FAST(resp_file_range), NULL},
    {"response_stream", FAST(resp_stream), NULL},
    {NULL, NULL, 0, NULL},
};
static PyAsyncMethods proto_async = { .am_aiter = (unaryfunc)proto_aiter,
                                      .am_anext = (unaryfunc)proto_anext };

static PyTypeObject ProtoType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granian._granian.RSGIHTTPProtocol",
    .tp_basicsize = sizeof(Proto),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)proto_dealloc,
    .tp_call = (ternaryfunc)proto_call,
    .tp_as_async = &proto_async,
    .tp_methods = proto_methods,
};

/* ---------------------------------------------------------------------
 * Request life
 * ------------------------------------------------------------------- */

/* The request is over for granc (tr_flush's finish): waiting reads fail,
 * disconnect watchers resolve, and t lets go of the protocol object. */
static void proto_finish(Transport *t)
{
    Proto *p = (Proto *)t->owner;
    if (!p) return;
    rsgi_resolve(&p->body_fut, NULL, rsgi_exc_closed);
    wake_disc(p);
    Py_CLEAR(t->owner);                 /* p keeps t; t no longer keeps p */
}

/* The app's task ended.  No response: 500 (logged); an exception: logged,
 * 500 if nothing went out, the connection cut if a stream had begun (never
 * a clean end for a broken body); a stream the app left open ends. */
static PyObject *task_done(PyObject *self, PyObject *task)
{
    Transport *t = (Transport *)self;
    aio_task_raise(task);
    rsgi_task_end(t, PyErr_Occurred() != NULL);
    Py_RETURN_NONE;
}

void rsgi_task_end(Transport *t, int raised)
{
    if (raised) {
        if (!t->gone && t->req) py_log_exception("Application callable raised an exception");
        PyErr_Clear();
    }
    if (t->ws) {
        rsgi_ws_task_end(t);
    } else if (t->req && !t->gone && t->resp != RESP_DONE) {
        if (t->resp < RESP_HEAD) {
            if (!raised) log_error("RSGI callable returned without a response");
            if (tr_answer(t, 500, NULL, "", 0) < 0) { PyErr_Clear(); t->gone = 1; }
        } else if (raised) {
            t->gone = 1;
        } else if (tr_out_end(t, NULL) < 0) {
            PyErr_Clear();
            t->gone = 1;
        }
    }
    t->app_done = 1;
    /* the task is over: let go of it, or a traceback it keeps (its frames
     * hold the protocol, which holds t) would make a cycle through objects
     * the GC cannot see */
    Py_CLEAR(t->task);
    if (t->req) tr_flush(t);
}

static PyMethodDef done_def = {"done", (PyCFunction)task_done, METH_O, NULL};

/* Run app(scope, protocol) as a task; 0, or -1 with an exception. */
int rsgi_spawn(Transport *t, PyObject *scope, PyObject *proto)
{
    PyObject *coro = PyObject_CallFunctionObjArgs(app, scope, proto, NULL), *cb = NULL, *r = NULL;
    if (coro) {
        t->task = aio_new_task(coro);
        Py_DECREF(coro);
    }
    if (t->task && (cb = PyCFunction_New(&done_def, (PyObject *)t)))
        r = PyObject_CallMethodOneArg(t->task, m_add_done_callback, cb);
    Py_XDECREF(cb);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

static int rsgi_start(request *r)
{
    Transport *t = tr_new(r);
    if (!t) return 0;
    t->closed_exc = rsgi_exc_closed;
    if (rsgi_ws_wanted(r)) {
        rsgi_ws_start(t);
        return 0;
    }
    PyObject *scope = rsgi_scope(r, 0);
    Proto *p = scope ? PyObject_New(Proto, &ProtoType) : NULL;
    if (p) {
        memset((char *)p + sizeof(PyObject), 0, sizeof(*p) - sizeof(PyObject));
        p->t = (Transport *)Py_NewRef(t);
        t->owner = (PyObject *)p;       /* until finish: the event needs it */
        t->on_finish = proto_finish;
    }
    int rc = p ? rsgi_spawn(t, scope, (PyObject *)p) : -1;
    Py_XDECREF(scope);
    if (rc < 0) {                       /* the app could not even start */
        Py_INCREF(t);
        rsgi_task_end(t, 1);
        Py_DECREF(t);
    }
    return 0;
}

static void rsgi_event(request *r, int mask)
{
    Transport *t = r->app;
    Py_INCREF(t);
    if (mask & EV_WRITE) tr_flush(t);
    if ((mask & EV_READ) && t->req) {
        if (t->ws) rsgi_ws_event(t);
        else if (t->owner) proto_event((Proto *)t->owner);
        else { t->noread = 1; tr_watch(t); }
    }
    Py_DECREF(t);
}

/* Once a second: a body read the client does not feed (as asgi_sweep). */
static void rsgi_sweep(request *r, int64_t now, int64_t timeout_ms)
{
    Transport *t = r->app;
    Proto *p = (Proto *)t->owner;
    if (t->ws || !p || !p->body_fut || t->gone) { t->body_wait = 0; return; }
    if (!t->body_wait) { t->body_wait = now; return; }
    if (now - t->body_wait < timeout_ms) return;
    log_info("request body from %s: nothing for %lld s, closing", r->client,
             (long long)(timeout_ms / 1000));
    r->ops->abort(r);
    Py_INCREF(t);
    t->gone = 1;
    rsgi_resolve(&p->body_fut, NULL, rsgi_exc_closed);
    tr_flush(t);
    Py_DECREF(t);
}

static int rsgi_run(int loop_fd)
{
    M_SET(blocking_threads, 1);     /* the loop thread runs the app */
    PyObject *init = PyObject_HasAttrString(target, "__rsgi_init__")
                     ? PyObject_GetAttrString(target, "__rsgi_init__") : NULL;
    PyObject *fini = PyObject_HasAttrString(target, "__rsgi_del__")
                     ? PyObject_GetAttrString(target, "__rsgi_del__") : NULL;
    PyErr_Clear();
    int rc = aio_run(app, 0, loop_fd, rcfg->loop ? rcfg->loop : "auto", init, fini);
    Py_XDECREF(init);
    Py_XDECREF(fini);
    return rc;
}

/* The exceptions apps catch: Granian's own when it is installed (its
 * granian.rsgi names them), else ours, as granian._granian, for granc's
 * granian package (granian.rsgi) and for apps that import them there. */
static int exceptions_init(void)
{
    PyObject *mod = PyImport_ImportModule("granian._granian");
    if (mod) {
        rsgi_exc_proto = PyObject_GetAttrString(mod, "RSGIProtocolError");
        rsgi_exc_closed = PyObject_GetAttrString(mod, "RSGIProtocolClosed");
        Py_DECREF(mod);
        if (rsgi_exc_proto && rsgi_exc_closed) return 0;
        Py_CLEAR(rsgi_exc_proto);
        Py_CLEAR(rsgi_exc_closed);
    }
    PyErr_Clear();
    rsgi_exc_proto = PyErr_NewException("granian._granian.RSGIProtocolError", PyExc_RuntimeError, NULL);
    rsgi_exc_closed = PyErr_NewException("granian._granian.RSGIProtocolClosed", PyExc_RuntimeError, NULL);
    if (!rsgi_exc_proto || !rsgi_exc_closed || !(mod = PyModule_New("granian._granian"))) return -1;
    int rc = PyModule_AddObjectRef(mod, "RSGIProtocolError", rsgi_exc_proto) < 0 ||
             PyModule_AddObjectRef(mod, "RSGIProtocolClosed", rsgi_exc_closed) < 0 ||
             rsgi_scope_init(mod) < 0 ||
             PyModule_AddObjectRef(mod, "RSGIHTTPProtocol", (PyObject *)&ProtoType) < 0 ||
             PyModule_AddObjectRef(mod, "RSGIHTTPStreamTransport", (PyObject *)&StreamType) < 0 ||
             rsgi_ws_module(mod) < 0 ||
             PyDict_SetItemString(PyImport_GetModuleDict(), "granian._granian", mod) < 0 ? -1 : 0;
    Py_DECREF(mod);
    return rc;
}

/* Before the app is imported: the types, and the exceptions it imports. */
static int rsgi_prepare(const config *config)
{
    rcfg = config;
    asgi_cfg = config;                  /* the ws pump's limits (asgi_ws.c) */
    if (aio_init() < 0 || asgi_tr_init() < 0 || PyType_Ready(&ProtoType) < 0 ||
        PyType_Ready(&StreamType) < 0 || rsgi_ws_init(config) < 0)
        return -1;
    return exceptions_init();
}

static int rsgi_init(const config *config, void *application)
{
    (void)config;
    target = application;
    /* Granian prefers __rsgi__ when the app has one */
    app = PyObject_HasAttrString(target, "__rsgi__") ? PyObject_GetAttrString(target, "__rsgi__")
                                                      : Py_NewRef(target);
    if (!app) return -1;
    INTERN(m_add_done_callback, "add_done_callback");
    INTERN(m_done, "done"); INTERN(m_set_result, "set_result");
    INTERN(m_set_exception, "set_exception");
    return (empty_bytes = PyBytes_FromStringAndSize(NULL, 0)) ? 0 : -1;
}

const app_iface rsgi_iface = {
    .name = "rsgi",
    .prepare = rsgi_prepare,
    .init = rsgi_init,
    .run = rsgi_run,
    .start = rsgi_start,
    .event = rsgi_event,
    .sweep = rsgi_sweep,
    .stop = asgi_stop,              /* open websockets are told 1001 */
};
