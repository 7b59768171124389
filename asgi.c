/* asgi.c -- ASGI 3.0 (spec 2.3) on an asyncio event loop.
 *
 * The worker's main thread runs an asyncio loop (or uvloop) and holds the
 * GIL.  granc's own epoll/kqueue descriptor is one reader on that loop: when
 * it is readable, wk_poll() runs granc's events, so every socket is read,
 * parsed and written in C and Python runs only for the app.
 *
 * Each request runs the app as an asyncio Task.  receive() and send() are
 * C callables returning awaitables: a finished one (Ready) when they can
 * answer at once, which is the common case, or an asyncio Future that an
 * event of the connection resolves later.  Backpressure both ways:
 *  - the body is read from the socket only when the app calls receive();
 *  - send() writes what the socket takes, keeps the rest by reference (no
 *    copy) and waits while more than SEND_HWM bytes are unsent.
 *
 * The control plane (choosing the loop, lifespan, waiting for the drain)
 * is a short Python module embedded below: it is not on the hot path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "aio.h"
#include "asgi_int.h"
#include "py.h"
#include "tls.h"
#include "ev.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

#define FILE_CHUNK   (128 << 10)/* pathsend: bytes per sendfile call */

const config *asgi_cfg;
static PyObject *app;
static PyObject *asgi_dict, *ext_dict, *s_http, *s_http_scheme, *s_https_scheme, *v11, *v10, *v2;

/* The ASGI "tls" extension (beyond Granian), next to the usual ones. */
static PyObject *tls_extensions(tls_conn *tls)
{
    PyObject *ext = PyDict_Copy(ext_dict), *chain = PyList_New(0);
    const unsigned char *der;
    size_t n;
    for (int i = 0; chain && tls_client_chain(tls, &der, &n, i) == 0; i++) {
        PyObject *pem = der_to_pem(der, n);
        if (!pem || PyList_Append(chain, pem) < 0) Py_CLEAR(chain);
        Py_XDECREF(pem);
    }
    const char *cipher = tls_cipher(tls);
    static const struct { const char *name; int id; } suites[] = {
        {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xC02B},
        {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 0xC02C},
        {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xC02F},
        {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 0xC030},
        {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCA8},
        {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCA9},
    };
    int id = 0;
    for (size_t i = 0; cipher && i < sizeof(suites) / sizeof(suites[0]); i++)
        if (!strcmp(cipher, suites[i].name)) id = suites[i].id;
    PyObject *t = chain ? Py_BuildValue("{sOsNsOsOsisi}", "server_cert", Py_None,
                                        "client_cert_chain", chain, "client_cert_name", Py_None,
                                        "client_cert_error", Py_None, "tls_version", 0x0303,
                                        "cipher_suite", id) : NULL;
    if (!ext || !t || PyDict_SetItemString(ext, "tls", t) < 0) Py_CLEAR(ext);
    Py_XDECREF(t);
    return ext;
}
PyObject *k_type, *k_asgi, *k_http_version, *k_server, *k_client, *k_scheme,
                *k_method, *k_root_path, *k_path, *k_raw_path, *k_query, *k_headers,
                *k_extensions, *k_state, *k_body, *k_more_body, *k_status,
                *k_trailers, *k_more_trailers, *k_path_send;
static PyObject *t_request, *t_disconnect, *t_start, *t_rbody, *t_pathsend,
                *t_trailers;
static PyObject *msg_disconnect;
static PyObject *ready_none;            /* send()'s usual answer: done, None */
static PyObject *m_add_done_callback, *m_done, *m_set_result,
                *m_set_exception;

/* ---------------------------------------------------------------------
 * The per-request transport
 * ------------------------------------------------------------------- */


void tr_q_clear(Transport *t)
{
    for (int i = 0; i < t->qn; i++) {
        Py_XDECREF(t->q[i].owner);
        free(t->q[i].mem);
        if (t->q[i].fd >= 0) close(t->q[i].fd);
    }
    t->qn = 0;
    t->qbytes = 0;
}

static void transport_dealloc(Transport *t)
{
    tr_q_clear(t);
    Py_XDECREF(t->task);
    Py_XDECREF(t->recv_waiters);
    Py_XDECREF(t->send_fut);
    Py_XDECREF(t->start_headers);
    Py_XDECREF(t->tlist);
    Py_XDECREF(t->pending);
    Py_XDECREF(t->ws_reason);
    Py_XDECREF(t->owner);
    free(t->msg);
    PyObject_Free(t);
}

static PyTypeObject TransportType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granc.Transport",
    .tp_basicsize = sizeof(Transport),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)transport_dealloc,
};

/* Ask for the events this request waits on.  READ stays registered from
 * the head on (saving two epoll_ctl calls a request) until input arrives
 * that nobody waits for.  Once the body is in, READ only watches for the
 * client leaving, which a full buffer cannot see. */
void tr_watch(Transport *t)
{
    request *r = t->req;
    if (!r) return;
    int rd = (t->recv_waiters && PyList_GET_SIZE(t->recv_waiters) > 0) || !t->noread ||
             t->want_read;
    if (t->ws && t->wsstate != WSS_CONNECTING)  /* frames, unless a message waits */
        rd = !t->pending && !t->gone && t->wsstate != WSS_CLOSED;
    r->ops->watch(r, (rd ? EV_READ : 0) | (t->qn ? EV_WRITE : 0));
}

/* Resolve a pending future (steals value; NULL: set exc, or OSError). */
static void resolve_exc(PyObject **fut, PyObject *value, PyObject *exc_type)
{
    PyObject *f = *fut;
    *fut = NULL;
    if (!f) { Py_XDECREF(value); return; }
    PyObject *done = PyObject_CallMethodNoArgs(f, m_done);
    if (done == Py_False) {
        PyObject *exc = value ? NULL : PyObject_CallFunction(exc_type ? exc_type : PyExc_OSError,
                                                             "s", "client disconnected");
        PyObject *r = value ? PyObject_CallMethodOneArg(f, m_set_result, value)
                      : exc ? PyObject_CallMethodOneArg(f, m_set_exception, exc) : NULL;
        Py_XDECREF(exc);
        if (!r) PyErr_Clear();
        Py_XDECREF(r);
    }
    if (!done) PyErr_Clear();
    Py_XDECREF(done);
    Py_XDECREF(value);
    Py_DECREF(f);
}

static void resolve(PyObject **fut, PyObject *value)
{
    resolve_exc(fut, value, NULL);
}

/* Whether *slot holds a future someone still awaits.  One the app gave
 * up on (a receive() under a timeout or a cancel scope) is dropped: the
 * next message must not be lost in it. */
static int waiting(PyObject **slot)
{
    if (!*slot) return 0;
    PyObject *done = PyObject_CallMethodNoArgs(*slot, m_done);
    int pending = done == Py_False;
    if (!done) PyErr_Clear();
    Py_XDECREF(done);
    if (!pending) Py_CLEAR(*slot);
    return pending;
}

/* Futures of receive() calls still waiting, oldest first.  Each call has
 * its own, so that a caller giving up (a timeout, a cancel scope) never
 * cancels another's wait: Starlette listens for the disconnect in one task
 * while polling is_disconnected() in another. */
int tr_waiters(Transport *t)
{
    PyObject *l = t->recv_waiters;
    for (Py_ssize_t i = 0; l && i < PyList_GET_SIZE(l); ) {
        PyObject *d = PyObject_CallMethodNoArgs(PyList_GET_ITEM(l, i), m_done);
        int done = d != Py_False;
        if (!d) PyErr_Clear();
        Py_XDECREF(d);
        if (done) PySequence_DelItem(l, i); else i++;
    }
    return l ? (int)PyList_GET_SIZE(l) : 0;
}

PyObject *tr_new_waiter(Transport *t)
{
    if (!t->recv_waiters && !(t->recv_waiters = PyList_New(0))) return NULL;
    PyObject *f = PyObject_CallNoArgs(aio_create_future);
    if (f && PyList_Append(t->recv_waiters, f) < 0) Py_CLEAR(f);
    return f;
}

/* Give msg (stolen) to the oldest waiter, or a copy to each (all). */
void tr_wake(Transport *t, PyObject *msg, int all)
{
    if (!msg) { PyErr_Clear(); return; }
    while (tr_waiters(t)) {
        PyObject *f = PySequence_GetItem(t->recv_waiters, 0);
        PySequence_DelItem(t->recv_waiters, 0);
        resolve(&f, all ? PyDict_Copy(msg) : Py_NewRef(msg));
        if (!all) break;
    }
    Py_DECREF(msg);
}

static PyObject *future(PyObject **slot)
{
    waiting(slot);
    if (!*slot && !(*slot = PyObject_CallNoArgs(aio_create_future)))
        return NULL;
    Py_INCREF(*slot);
    return *slot;
}

/* Too much unsent output: send() waits until tr_flush() has caught up. */
static int q_busy(Transport *t)
{
    return t->qbytes > SEND_HWM || t->qn > QMAX - QROOM;
}

static void finish(Transport *t);

static void pop(Transport *t)
{
    piece *p = &t->q[0];
    Py_XDECREF(p->owner);
    free(p->mem);
    if (p->fd >= 0) close(p->fd);
    memmove(t->q, t->q + 1, sizeof(piece) * (size_t)--t->qn);
}


/* Write queued output as far as the socket takes it; on failure the client
 * is gone.  Then wake a waiting send(), or finish the request. */
void tr_flush(Transport *t)
{
    request *r = t->req;
    while (r && t->qn && !t->gone) {
        ssize_t w;
        if (t->q[0].fd >= 0) {      /* a file piece: sendfile where there is one */
            piece *pc = &t->q[0];
            w = r->ops->file(r, pc->fd, &pc->off, pc->n < FILE_CHUNK ? pc->n : FILE_CHUNK, 0);
            if (w > 0) {
                t->q[0].n -= (size_t)w;
                t->qbytes -= (size_t)w;
                if (t->q[0].n == 0) pop(t);
            }
        } else {
            struct iovec v[QMAX];
            int n = 0;
            for (int i = 0; i < t->qn && t->q[i].fd < 0; i++)
                v[n++] = (struct iovec){ (void *)t->q[i].p, t->q[i].n };
            w = r->ops->write(r, v, n, 0);
            if (w > 0) t->qbytes -= (size_t)w;
            while (w > 0) {             /* drop what left, in order */
                piece *p = &t->q[0];
                size_t k = (size_t)w < p->n ? (size_t)w : p->n;
                p->p += k;
                p->n -= k;
                w -= (ssize_t)k;
                if (p->n == 0) pop(t);
            }
        }
        if (w < 0) t->gone = 1;
        if (w <= 0) break;
    }
    if (t->gone) tr_q_clear(t);
    if (t->send_fut && (t->gone || !q_busy(t)))
        resolve_exc(&t->send_fut, t->gone ? NULL : (Py_INCREF(Py_None), Py_None), t->closed_exc);
    /* the response is out: the connection may serve the next request even
     * if the app's task goes on (background work after the response) */
    if ((t->app_done || (t->resp == RESP_DONE && !t->ws)) && (!t->qn || t->gone)) finish(t);
    else tr_watch(t);
}

/* Queue output: bytes owned by a Python object, our own copy, or a file. */
int tr_push(Transport *t, const char *p, size_t n, PyObject *owner, int copy)
{
    if (n == 0) return 0;
    if (copy && t->qn && t->q[t->qn - 1].mem) {   /* small copies share a piece */
        piece *pc = &t->q[t->qn - 1];
        size_t off = (size_t)(pc->p - pc->mem), used = off + pc->n;
        char *m = realloc(pc->mem, used + n);
        if (!m) { PyErr_NoMemory(); return -1; }
        memcpy(m + used, p, n);
        pc->mem = m;
        pc->p = m + off;
        pc->n += n;
        t->qbytes += n;
        return 0;
    }
    if (t->qn == QMAX) {
        PyErr_SetString(PyExc_RuntimeError, "granc: output queue full");
        return -1;
    }
    piece *pc = &t->q[t->qn++];
    *pc = (piece){ .p = p, .n = n, .fd = -1 };
    if (copy) {
        if (!(pc->mem = malloc(n))) { t->qn--; PyErr_NoMemory(); return -1; }
        memcpy(pc->mem, p, n);
        pc->p = pc->mem;
    } else if (owner) {
        Py_INCREF(owner);
        pc->owner = owner;
    }
    t->qbytes += n;
    return 0;
}

/* ---------------------------------------------------------------------
 * receive()
 * ------------------------------------------------------------------- */

static PyObject *request_msg(PyObject *body, int more)
{
    PyObject *m = PyDict_New();
    if (!m || !body || PyDict_SetItem(m, k_type, t_request) < 0 ||
        PyDict_SetItem(m, k_body, body) < 0 ||
        PyDict_SetItem(m, k_more_body, more ? Py_True : Py_False) < 0)
        Py_CLEAR(m);
    Py_XDECREF(body);
    return m;
}

static PyObject *disconnect_msg(void)
{
    return PyDict_Copy(msg_disconnect);
}

/* The next message, or NULL with no exception when it must wait. */
static PyObject *next_message(Transport *t)
{
    request *r = t->req;
    if (!r || t->gone) return disconnect_msg();
    if (!t->body_final) {
        const char *p;
        ssize_t n = r->ops->body(r, 1, 0, &p);
        if (n == HTTP_INCOMPLETE) return NULL;
        if (n < 0) {                    /* client gone, or a bad body */
            t->gone = 1;
            return disconnect_msg();
        }
        PyObject *body = PyBytes_FromStringAndSize(p, n);
        /* more_body is False only once nothing is left */
        int more = !r->ops->take(r, (size_t)n);
        t->body_wait = 0;
        if (!more || n == 0) { t->body_final = 1; more = 0; }
        return request_msg(body, more);
    }
    if (r->ops->gone(r)) t->gone = 1;
    return t->resp == RESP_DONE || t->gone ? disconnect_msg() : NULL;
}

static PyObject *asgi_receive(Transport *t, PyObject *unused)
{
    (void)unused;
    PyObject *m = next_message(t);
    if (m || PyErr_Occurred()) return aio_ready(m);
    PyObject *f = tr_new_waiter(t);
    tr_watch(t);
    return f;
}

/* ---------------------------------------------------------------------
 * send()
 * ------------------------------------------------------------------- */

PyObject *asgi_flow_error(const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "ASGI flow error: %s", what);
    return NULL;
}

/* The head, then body bytes with the framing it chose. */
int tr_out_body(Transport *t, const char *p, size_t n, PyObject *owner, int64_t total)
{
    request *r = t->req;
    struct iovec v, pre, post;
    if (t->resp < RESP_HEAD) {
        r->res.code = t->status;
        r->res.trailers = t->trailers;
        if (py_resp_head(r, NULL, 0, t->start_headers, total, &v) < 0 ||
            tr_push(t, v.iov_base, v.iov_len, NULL, 1) < 0)
            return -1;
        t->resp = RESP_HEAD;
    }
    n = r->ops->frame(r, n, &pre, &post);
    if (n == 0) return 0;
    return tr_push(t, pre.iov_base, pre.iov_len, NULL, 1) < 0 ||
           tr_push(t, p, n, owner, !owner) < 0 ||
           tr_push(t, post.iov_base, post.iov_len, NULL, 1) < 0 ? -1 : 0;
}

/* The end of the body; a refused trailer leaves the response unfinished,
 * so the app's error aborts it. */
int tr_out_end(Transport *t, PyObject *trailers)
{
    request *r = t->req;
    struct iovec v;
    int rc;
    if (trailers) {
        py_fields pf;
        if (py_fields_get(&pf, trailers, 0) < 0) return -1;
        rc = r->ops->end(r, pf.f, pf.n, &v);
        py_fields_free(&pf);
    } else {
        rc = r->ops->end(r, NULL, 0, &v);
    }
    if (rc < 0) { PyErr_SetString(PyExc_ValueError, "trailers too large"); return -1; }
    if (tr_push(t, v.iov_base, v.iov_len, NULL, 1) < 0) return -1;
    t->resp = RESP_DONE;
    return 0;
}

/* Answer in the app's place: status, headers (stolen; NULL: none) and
 * body[0,n), replacing output queued but not sent.  -1 with an exception
 * set; the caller then treats the client as gone. */
int tr_answer(Transport *t, int status, PyObject *headers, const char *body, size_t n)
{
    tr_q_clear(t);
    t->status = status;
    t->resp = t->resp >= RESP_HEAD ? RESP_HEAD : RESP_STARTED;
    Py_XSETREF(t->start_headers, headers ? headers : PyList_New(0));
    if (!t->start_headers || tr_out_body(t, body, n, NULL, (int64_t)n) < 0) return -1;
    return tr_out_end(t, NULL);
}

/* After a send has queued and flushed its output: an awaitable done at
 * once, or, above the high-water mark, the future tr_flush resolves once
 * the output has drained (the response backpressure). */
PyObject *tr_send_wait(Transport *t)
{
    if (q_busy(t))
        return future(&t->send_fut);
    return Py_NewRef(ready_none);
}

/* The end of every send(): write what was queued, then tell the app how
 * it went (at once, or once the output has drained). */
PyObject *tr_send_result(Transport *t, int rc)
{
    if (rc < 0) return NULL;
    tr_flush(t);
    if (t->gone) {                      /* ASGI 2.4: the client has gone */
        PyErr_SetString(PyExc_OSError, "client disconnected");
        return NULL;
    }
    return tr_send_wait(t);
}

/* The start of every send(): the message's type, or NULL with the error
 * set (not a message, or the client has gone: ASGI 2.4's OSError). */
PyObject *tr_send_type(Transport *t, PyObject *msg)
{
    PyObject *type = PyDict_Check(msg) ? PyDict_GetItemWithError(msg, k_type) : NULL;
    if (!type) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "Unsupported ASGI message");
        return NULL;
    }
    if (!t->req || t->gone) {
        PyErr_SetString(PyExc_OSError, "client disconnected");
        return NULL;
    }
    return type;
}

/* A response start message (http, or a websocket denial): status and
 * headers into t. */
int tr_take_start(Transport *t, PyObject *msg)
{
    PyObject *st = PyDict_GetItemWithError(msg, k_status);
    PyObject *hd = PyDict_GetItemWithError(msg, k_headers);
    long code = st ? PyLong_AsLong(st) : -1;
    if (code < 100 || code > 999) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "invalid status");
        return -1;
    }
    t->status = (int)code;
    Py_XSETREF(t->start_headers, hd ? Py_NewRef(hd) : PyList_New(0));
    t->resp = RESP_STARTED;
    return t->start_headers ? 0 : -1;
}

int asgi_get_bool(PyObject *msg, PyObject *key)
{
    PyObject *v = PyDict_GetItemWithError(msg, key);
    return v ? PyObject_IsTrue(v) : (PyErr_Occurred() ? -1 : 0);
}

static int send_pathsend(Transport *t, PyObject *msg)
{
    PyObject *path = PyDict_GetItemWithError(msg, k_path_send), *b = NULL;
    if (!path || !PyUnicode_FSConverter(path, &b)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "path");
        return -1;
    }
    int fd = open(PyBytes_AS_STRING(b), O_RDONLY | O_CLOEXEC);
    Py_DECREF(b);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        t->status = 404;               /* as Granian: a missing file is a 404 */
        Py_SETREF(t->start_headers, PyList_New(0));
        return t->start_headers ? tr_out_body(t, "", 0, NULL, 0) : -1;
    }
    if (tr_out_body(t, "", 0, NULL, st.st_size) < 0) { close(fd); return -1; }
    return tr_out_file(t, fd, (size_t)st.st_size);
}

/* n bytes of fd (taken, closed once sent) from its current offset, after
 * the head: sendfile where the connection allows. */
int tr_out_file(Transport *t, int fd, size_t n)
{
    struct iovec pre, post;
    off_t off = lseek(fd, 0, SEEK_CUR);
    n = t->req->ops->frame(t->req, n, &pre, &post);
    if (n == 0 || off < 0 || t->qn > QMAX - 3) { close(fd); return 0; }
    if (tr_push(t, pre.iov_base, pre.iov_len, NULL, 1) < 0) { close(fd); return -1; }
    t->q[t->qn++] = (piece){ .fd = fd, .off = off, .n = n };
    t->qbytes += n;
    return tr_push(t, post.iov_base, post.iov_len, NULL, 1);
}

/* A message type equal to an interned name: the app's literals are interned
 * too, so the pointer test nearly always answers. */
int asgi_is_type(PyObject *type, PyObject *name)
{
    return type == name || PyUnicode_Compare(type, name) == 0;
}

static PyObject *asgi_send(Transport *t, PyObject *msg)
{
    PyObject *type = tr_send_type(t, msg);
    if (!type) return NULL;
    int rc = 0;
    if (asgi_is_type(type, t_start)) {
        if (t->resp >= RESP_STARTED) return asgi_flow_error("Response already started");
        if (tr_take_start(t, msg) < 0 || (t->trailers = asgi_get_bool(msg, k_trailers)) < 0)
            return NULL;
        PyObject *hd = t->start_headers;
        /* Server-sent events: the head leaves at once (as Granian) */
        for (Py_ssize_t i = 0; hd && PyList_Check(hd) && i < PyList_GET_SIZE(hd); i++) {
            PyObject *p = PyList_GET_ITEM(hd, i);
            if (PyTuple_Check(p) && PyTuple_GET_SIZE(p) == 2 &&
                PyBytes_Check(PyTuple_GET_ITEM(p, 0)) && PyBytes_Check(PyTuple_GET_ITEM(p, 1)) &&
                http_name_is((slice){PyBytes_AS_STRING(PyTuple_GET_ITEM(p, 0)),
                                     (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(p, 0))},
                             "content-type") &&
                !strncmp(PyBytes_AS_STRING(PyTuple_GET_ITEM(p, 1)), "text/event-stream", 17))
                rc = tr_out_body(t, "", 0, NULL, -1);
        }
    } else if (asgi_is_type(type, t_rbody)) {
        if (t->resp < RESP_STARTED) return asgi_flow_error("Response not started");
        if (t->resp == RESP_DONE) return asgi_flow_error("Response already finished");
        PyObject *body = PyDict_GetItemWithError(msg, k_body);
        int more = asgi_get_bool(msg, k_more_body);
        if (more < 0) return NULL;
        Py_buffer view = { .buf = (void *)"", .len = 0 };
        if (body && PyObject_GetBuffer(body, &view, PyBUF_SIMPLE) < 0) return NULL;
        /* bytes are immutable: queue them by reference; anything else is copied */
        PyObject *owner = body && PyBytes_CheckExact(body) ? body : NULL;
        /* one last message and no trailers: a fixed length */
        rc = tr_out_body(t, view.buf, (size_t)view.len, owner,
                      more || t->trailers ? -1 : t->req->sent + view.len);
        if (body) PyBuffer_Release(&view);
        if (rc == 0 && !more && !t->trailers) rc = tr_out_end(t, NULL);
    } else if (asgi_is_type(type, t_trailers)) {
        if (t->resp < RESP_STARTED) return asgi_flow_error("Response not started");
        if (t->resp == RESP_DONE || !t->trailers) return asgi_flow_error("Response already finished");
        int more = asgi_get_bool(msg, k_more_trailers);
        PyObject *hd = PyDict_GetItemWithError(msg, k_headers);
        if (more < 0 || (!hd && PyErr_Occurred())) return NULL;
        if (!t->tlist && !(t->tlist = PyList_New(0))) return NULL;
        PyObject *x = hd ? PyObject_CallMethod(t->tlist, "extend", "O", hd) : Py_NewRef(Py_None);
        if (!x) return NULL;
        Py_DECREF(x);
        if (!more) rc = tr_out_end(t, t->tlist);
    } else if (asgi_is_type(type, t_pathsend)) {
        if (t->resp < RESP_STARTED) return asgi_flow_error("Response not started");
        if (t->resp == RESP_DONE) return asgi_flow_error("Response already finished");
        rc = send_pathsend(t, msg);
        t->resp = RESP_DONE;
    } else {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "Unsupported ASGI message");
        return NULL;
    }
    return tr_send_result(t, rc);
}

/* ---------------------------------------------------------------------
 * Request life: scope, task, completion
 * ------------------------------------------------------------------- */


/* A pair, stealing both references (NULL if either is). */
static PyObject *pair(PyObject *a, PyObject *b)
{
    PyObject *t = a && b ? PyTuple_New(2) : NULL;
    if (!t) { Py_XDECREF(a); Py_XDECREF(b); return NULL; }
    PyTuple_SET_ITEM(t, 0, a);
    PyTuple_SET_ITEM(t, 1, b);
    return t;
}

/* (ip, port), the port as a str as in Granian; written by hand, since a
 * snprintf here was 2 % of a hello-world request's instructions. */
static PyObject *addr_tuple(const char *ip, int port)
{
    char num[12], *e = num + sizeof(num), *d = http_utoa(e, port < 0 ? 0 : (unsigned)port);
    return pair(PyUnicode_FromString(ip), PyUnicode_FromStringAndSize(d, e - d));
}

/* Per-request objects that are nearly always the same, made once: the
 * scope's keys and constant values (a copy of a dict of the right size
 * costs less than growing a new one), and common header names and
 * methods (no allocation for them). */
static PyObject *scope_tmpl;
static const char *const common_names[] = {
    "host", "user-agent", "accept", "accept-encoding", "accept-language", "connection",
    "content-type", "content-length", "cookie", "referer", "origin", "cache-control",
    "authorization", "upgrade", "sec-websocket-key", "sec-websocket-version",
    "x-forwarded-for", "x-forwarded-proto", "if-none-match", "if-modified-since",
};
#define NCOMMON (sizeof(common_names) / sizeof(common_names[0]))
static PyObject *common_bytes[NCOMMON];
static const char *const common_methods[] = { "GET", "POST", "HEAD", "PUT", "DELETE",
                                              "OPTIONS", "PATCH" };
#define NMETHODS (sizeof(common_methods) / sizeof(common_methods[0]))
static PyObject *method_strs[NMETHODS];

static PyObject *header_name(slice nm)
{
    for (size_t i = 0; i < NCOMMON; i++)          /* the length first: no strlen */
        if ((size_t)PyBytes_GET_SIZE(common_bytes[i]) == nm.n &&
            http_lower_eq(nm.p, common_names[i], nm.n))
            return Py_NewRef(common_bytes[i]);
    PyObject *name = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)nm.n);
    if (!name) return NULL;
    char *p = PyBytes_AS_STRING(name);
    for (size_t j = 0; j < nm.n; j++)
        p[j] = (nm.p[j] >= 'A' && nm.p[j] <= 'Z') ? (char)(nm.p[j] + 32) : nm.p[j];
    return name;
}

static PyObject *method_str(slice m)
{
    for (size_t i = 0; i < NMETHODS; i++)
        if (strlen(common_methods[i]) == m.n && !memcmp(common_methods[i], m.p, m.n))
            return Py_NewRef(method_strs[i]);
    return PyUnicode_DecodeLatin1(m.p, (Py_ssize_t)m.n, NULL);
}

static int scope_init(void)
{
    for (size_t i = 0; i < NCOMMON; i++)
        if (!(common_bytes[i] = PyBytes_FromString(common_names[i]))) return -1;
    for (size_t i = 0; i < NMETHODS; i++)
        if (!(method_strs[i] = PyUnicode_InternFromString(common_methods[i]))) return -1;
    PyObject *root = PyUnicode_FromString(asgi_cfg->url_path_prefix ? asgi_cfg->url_path_prefix : "");
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    scope_tmpl = root && empty ? PyDict_New() : NULL;
    PyObject *const kv[][2] = {
        { k_type, s_http }, { k_asgi, asgi_dict }, { k_http_version, v11 },
        { k_server, Py_None }, { k_client, Py_None }, { k_scheme, s_http_scheme },
        { k_method, Py_None }, { k_root_path, root }, { k_path, Py_None },
        { k_raw_path, Py_None }, { k_query, empty }, { k_headers, Py_None },
        { k_extensions, ext_dict }, { k_state, Py_None },
    };
    for (size_t i = 0; scope_tmpl && i < sizeof(kv) / sizeof(kv[0]); i++)
        if (PyDict_SetItem(scope_tmpl, kv[i][0], kv[i][1]) < 0) Py_CLEAR(scope_tmpl);
    Py_XDECREF(root);
    Py_XDECREF(empty);
    return scope_tmpl ? 0 : -1;
}

/* scope["server"]: one tuple per listener, made once. */
static PyObject *server_tuple(const listener *ls)
{
    static const listener *keys[MAX_LISTENERS];
    static PyObject *vals[MAX_LISTENERS];
    for (int i = 0; i < MAX_LISTENERS; i++) {
        if (keys[i] == ls) return Py_NewRef(vals[i]);
        if (!keys[i]) {
            vals[i] = addr_tuple(ls->addr, ls->family == AF_UNIX ? 0 : ls->port);
            if (!vals[i]) return NULL;
            keys[i] = ls;
            return Py_NewRef(vals[i]);
        }
    }
    return addr_tuple(ls->addr, ls->port);
}

int asgi_set(PyObject *d, PyObject *k, PyObject *v)
{
    if (!v) return -1;
    int rc = PyDict_SetItem(d, k, v);
    Py_DECREF(v);
    return rc;
}

PyObject *asgi_scope(request *r)
{
    const http_request *rq = r->head;
    PyObject *scope = PyDict_Copy(scope_tmpl);
    if (!scope) return NULL;
    char stackbuf[2048];
    char *dec = rq->path.n <= sizeof(stackbuf) ? stackbuf : malloc(rq->path.n);
    if (!dec) { Py_DECREF(scope); return PyErr_NoMemory(); }
    size_t dn = http_pct_decode(rq->path.p, rq->path.n, dec);
    PyObject *path = PyUnicode_DecodeUTF8(dec, (Py_ssize_t)dn, "replace");
    if (dec != stackbuf) free(dec);
    PyObject *headers = PyList_New((Py_ssize_t)rq->nheaders);
    for (size_t i = 0; headers && i < rq->nheaders; i++) {
        slice val = rq->headers[i].value;
        PyObject *hp = pair(header_name(rq->headers[i].name),
                            PyBytes_FromStringAndSize(val.p, (Py_ssize_t)val.n));
        if (!hp) { Py_CLEAR(headers); break; }
        PyList_SET_ITEM(headers, (Py_ssize_t)i, hp);
    }
    const listener *ls = r->ls;
    int uds = ls->family == AF_UNIX;
    if ((!rq->minor && asgi_set(scope, k_http_version, Py_NewRef(v10))) ||
        (rq->h2 && asgi_set(scope, k_http_version, Py_NewRef(v2))) ||
        (r->secure && asgi_set(scope, k_scheme, Py_NewRef(s_https_scheme))) ||
        asgi_set(scope, k_server, server_tuple(ls)) ||
        asgi_set(scope, k_client, addr_tuple(r->client, uds ? 0 : r->client_port)) ||
        asgi_set(scope, k_method, method_str(rq->method)) ||
        asgi_set(scope, k_path, path) ||
        asgi_set(scope, k_raw_path, PyBytes_FromStringAndSize(rq->path.p, (Py_ssize_t)rq->path.n)) ||
        (rq->query.n && asgi_set(scope, k_query, PyBytes_FromStringAndSize(rq->query.p, (Py_ssize_t)rq->query.n))) ||
        asgi_set(scope, k_headers, headers) ||
        (r->tls && asgi_set(scope, k_extensions, tls_extensions(r->tls))) ||
        asgi_set(scope, k_state, PyDict_Copy(aio_lifespan_state))) {
        Py_DECREF(scope);
        return NULL;
    }
    return scope;
}

static PyObject *task_done(Transport *t, PyObject *task);
static PyMethodDef recv_def = {"receive", (PyCFunction)asgi_receive, METH_NOARGS, NULL};
static PyMethodDef send_def = {"send", (PyCFunction)asgi_send, METH_O, NULL};
static PyMethodDef done_def = {"done", (PyCFunction)task_done, METH_O, NULL};
static PyMethodDef ws_recv_def = {"receive", (PyCFunction)asgi_ws_receive, METH_NOARGS, NULL};
static PyMethodDef ws_send_def = {"send", (PyCFunction)asgi_ws_send, METH_O, NULL};

/* r's transport, which r holds (r->app) until finish; NULL (no
 * exception) when there is no memory, r then finished as broken. */
Transport *tr_new(request *r)
{
    Transport *t = PyObject_New(Transport, &TransportType);
    if (!t) {
        PyErr_Clear();
        r->broken = 1;
        r->ops->finish(r, 500, 0);
        r->ops->done(r);
        return NULL;
    }
    memset((char *)t + sizeof(PyObject), 0, sizeof(*t) - sizeof(PyObject));
    t->req = r;
    r->app = t;                          /* r holds the reference */
    return t;
}

static void asgi_begin(request *r)
{
    Transport *t = tr_new(r);
    if (!t) return;
    r->ws = t->ws = asgi_ws_wanted(r);
    char key[29];
    const char *why = NULL;
    if (t->ws && !asgi_ws_handshake_ok(r, key, &why)) {   /* a bad handshake: 400 */
        PyObject *hd = Py_BuildValue("[(yy)]", "content-type", "text/plain");
        if (!hd || tr_answer(t, 400, hd, why, strlen(why)) < 0) { PyErr_Clear(); t->gone = 1; }
        t->app_done = 1;
        tr_flush(t);
        return;
    }
    PyObject *scope = t->ws ? asgi_ws_scope(r) : asgi_scope(r);
    PyObject *recv = PyCFunction_New(t->ws ? &ws_recv_def : &recv_def, (PyObject *)t);
    PyObject *send = PyCFunction_New(t->ws ? &ws_send_def : &send_def, (PyObject *)t);
    PyObject *coro = scope && recv && send
                     ? PyObject_CallFunctionObjArgs(app, scope, recv, send, NULL) : NULL;
    Py_XDECREF(scope); Py_XDECREF(recv); Py_XDECREF(send);
    PyObject *cb = NULL, *added = NULL;
    if (coro) {
        t->task = aio_new_task(coro);
        Py_DECREF(coro);
    }
    if (t->task && (cb = PyCFunction_New(&done_def, (PyObject *)t)))
        added = PyObject_CallMethodOneArg(t->task, m_add_done_callback, cb);
    Py_XDECREF(cb);
    if (added) { Py_DECREF(added); return; }
    /* the app could not even start: as if it had raised */
    Py_XDECREF(task_done(t, NULL));
}

/* A request is ready: start its task.  It is handed back later, always
 * (finish), even when it fails at once. */
static int asgi_start(request *r)
{
    asgi_begin(r);
    return 0;
}

/* The app's task ended: answer 500 if nothing went out, abort a started
 * response, and finish once the output has left. */
static PyObject *task_done(Transport *t, PyObject *task)
{
    if (task) aio_task_raise(task);
    /* the task is over: let go of it, or the traceback it keeps (its
     * frames hold receive and send, which hold t) makes a cycle through t,
     * which the GC cannot see: 3.7 KiB lost per failed request */
    Py_CLEAR(t->task);
    if (t->ws) {
        int raised = PyErr_Occurred() != NULL;
        if (raised && !t->gone) py_log_exception("Application callable raised an exception");
        PyErr_Clear();
        asgi_ws_task_done(t, raised);
        t->app_done = 1;
        if (t->req) tr_flush(t);
        Py_RETURN_NONE;
    }
    if (PyErr_Occurred()) {
        if (!t->gone) py_log_exception("Application callable raised an exception");
        else PyErr_Clear();
        if (!t->req) Py_RETURN_NONE;
        if (t->resp < RESP_HEAD && !t->gone) {
            if (tr_answer(t, 500, NULL, "", 0) < 0) { PyErr_Clear(); t->gone = 1; }
        } else if (t->resp != RESP_DONE) {
            t->gone = 1;                /* never fake the end of a broken body */
        }
    } else if (t->req && t->resp != RESP_DONE && !t->gone) {
        if (t->resp < RESP_HEAD) {            /* returned without a response */
            log_error("ASGI callable returned without starting a response");
            if (tr_answer(t, 500, NULL, "", 0) < 0) { PyErr_Clear(); t->gone = 1; }
        } else {
            log_error("ASGI callable returned without completing the response");
            t->gone = 1;
        }
    }
    t->app_done = 1;
    if (t->req) tr_flush(t);
    Py_RETURN_NONE;
}

/* The request is over for granc: log it, hand it back. */
static void finish(Transport *t)
{
    request *r = t->req;
    if (!r) return;
    if (t->on_finish) t->on_finish(t);
    t->req = NULL;
    if (tr_waiters(t)) tr_wake(t, t->ws ? asgi_ws_disconnect_msg(t) : disconnect_msg(), 1);
    resolve_exc(&t->send_fut, NULL, t->closed_exc);
    if (t->gone) r->broken = 1;
    r->ops->finish(r, t->resp >= RESP_HEAD ? r->res.code : 500, 0);
    r->app = NULL;
    r->ops->done(r);
    Py_DECREF(t);                       /* the reference r held */
}

static void asgi_event(request *r, int mask)
{
    Transport *t = r->app;
    Py_INCREF(t);
    if (mask & EV_WRITE)
        tr_flush(t);
    if (t->ws && (mask & EV_READ) && t->req) {
        asgi_ws_event(t);
    } else if ((mask & EV_READ) && t->req && tr_waiters(t)) {
        PyObject *m = next_message(t);
        if (m) tr_wake(t, m, t->resp == RESP_DONE || t->gone);
        else if (PyErr_Occurred()) PyErr_Clear();
        if (t->req) tr_watch(t);
    } else if ((mask & EV_READ) && t->req) {
        t->noread = 1;                  /* nobody waits: stop reading */
        tr_watch(t);
    }
    Py_DECREF(t);
}

/* Once a second for each request (worker.c's sweep): a body the app waits
 * for and the client does not send.  The clock runs only while a receive()
 * waits for body bytes (never while the app has not asked: that is our
 * backpressure, not a slow client) and restarts with every chunk.  After
 * timeout_ms, as for WSGI's per-read timeout, the app gets http.disconnect
 * and the connection is closed. */
static void asgi_sweep(request *r, int64_t now, int64_t timeout_ms)
{
    Transport *t = r->app;
    if (t->ws || t->body_final || t->gone || !tr_waiters(t)) {
        t->body_wait = 0;
        return;
    }
    if (!t->body_wait) {
        t->body_wait = now;
        return;
    }
    if (now - t->body_wait < timeout_ms) return;
    log_info("request body from %s: nothing for %lld s, closing", r->client,
             (long long)(timeout_ms / 1000));
    r->ops->abort(r);                   /* the client sees the close now */
    Py_INCREF(t);
    t->gone = 1;
    tr_wake(t, disconnect_msg(), 1);
    tr_flush(t);
    Py_DECREF(t);
}

/* The transport and what its functions use (asgi_init, rsgi_init). */
int asgi_tr_init(void)
{
    if (ready_none) return 0;
    INTERN(m_done, "done"); INTERN(m_set_result, "set_result");
    INTERN(m_set_exception, "set_exception");
    if (PyType_Ready(&TransportType) < 0) return -1;
    ready_none = aio_ready(Py_NewRef(Py_None));
    return ready_none ? 0 : -1;
}

static int asgi_run(int loop_fd)
{
    M_SET(blocking_threads, 1);     /* the loop thread runs the app */
    return aio_run(app, asgi_cfg->iface == IF_ASGI, loop_fd, asgi_cfg->loop ? asgi_cfg->loop : "auto",
                   NULL, NULL);
}

static int asgi_init(const config *config, void *application)
{
    asgi_cfg = config;
    app = application;
    if (aio_init() < 0 || asgi_tr_init() < 0) return -1;
    if (asgi_ws_intern() < 0) return -1;
    INTERN(k_type, "type"); INTERN(k_asgi, "asgi"); INTERN(k_http_version, "http_version");
    INTERN(k_server, "server"); INTERN(k_client, "client"); INTERN(k_scheme, "scheme");
    INTERN(k_method, "method"); INTERN(k_root_path, "root_path"); INTERN(k_path, "path");
    INTERN(k_raw_path, "raw_path"); INTERN(k_query, "query_string");
    INTERN(k_headers, "headers"); INTERN(k_extensions, "extensions"); INTERN(k_state, "state");
    INTERN(k_body, "body"); INTERN(k_more_body, "more_body"); INTERN(k_status, "status");
    INTERN(k_trailers, "trailers"); INTERN(k_more_trailers, "more_trailers");
    INTERN(k_path_send, "path");
    INTERN(m_add_done_callback, "add_done_callback");
    INTERN(t_request, "http.request"); INTERN(t_disconnect, "http.disconnect");
    INTERN(t_start, "http.response.start"); INTERN(t_rbody, "http.response.body");
    INTERN(t_pathsend, "http.response.pathsend"); INTERN(t_trailers, "http.response.trailers");
    INTERN(s_http, "http"); INTERN(s_http_scheme, "http"); INTERN(s_https_scheme, "https"); INTERN(v11, "1.1"); INTERN(v10, "1"); INTERN(v2, "2");
    asgi_dict = Py_BuildValue("{ssss}", "version", "3.0", "spec_version", "2.3");
    ext_dict = Py_BuildValue("{s{}s{}s{}}", "http.response.pathsend", "websocket.http.response",
                             "http.response.trailers");
    msg_disconnect = Py_BuildValue("{sO}", "type", t_disconnect);
    if (!asgi_dict || !ext_dict || scope_init() < 0) return -1;
    return msg_disconnect ? 0 : -1;
}

const app_iface asgi_iface = {
    .name = "asgi",
    .init = asgi_init,
    .run = asgi_run,
    .start = asgi_start,
    .event = asgi_event,
    .sweep = asgi_sweep,
    .stop = asgi_stop,
};
