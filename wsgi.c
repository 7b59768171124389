/* wsgi.c -- PEP 3333 on top of a parsed HTTP/1.1 request.
 *
 * wsgi_handle() runs on an application thread holding the GIL.  It builds
 * the environ from the request head (Granian's keys, plus what PEP 3333
 * promises and Granian lacks: write(), exc_info, wsgi.file_wrapper, the
 * reason phrase), calls the application and streams what it returns.
 * Every socket wait happens with the GIL released.
 *
 * Response framing: a list or tuple body, or a file wrapper on a regular
 * file, has a known length and goes out with Content-Length; any other
 * iterable is streamed chunked (HTTP/1.1) or until close (HTTP/1.0).  The
 * head leaves with the first non-empty chunk, as PEP 3333 asks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "req.h"
#include "py.h"
#include "tls.h"
#include "http.h"
#include "log.h"
#include "pool.h"
#include "wsgi.h"

#define KEY_CACHE_MAX  256       /* cached "HTTP_*" environ keys */
#define IOV_BATCH      60        /* list items written per writev */

static const config *cfg;
static PyObject *app;            /* the application callable */
static PyObject *base_environ;   /* os.environ + fixed keys, copied per request */
static PyObject *key_cache;      /* header name (bytes) -> "HTTP_..." str */
static PyObject *s_get, *s_post, *s_head, *s_close, *s_fileno, *s_write,
                *s_start_response;
static PyObject *k_method, *k_path, *k_query, *k_proto, *k_sname, *k_sport,
                *k_raddr, *k_rport, *k_input, *k_ctype, *k_clen;
static PyObject *proto2, *proto11, *proto10;
static PyObject *k_scheme, *k_https, *k_ssl_protocol, *k_ssl_cipher;

/* ---------------------------------------------------------------------
 * wsgi.input: reads the body from the socket as the app asks for it
 * ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    request *req;                /* NULL once the request is over */
    int bad_body;                /* 400 or 413: the request body was refused */
} Input;

/* Make body bytes available at *p; returns their count, 0 at the end,
 * -1 with an exception set. */
static Py_ssize_t input_fill(Input *in, const char **p)
{
    request *req = in->req;
    if (!req) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on a finished request");
        return -1;
    }
    ssize_t n = req->ops->body(req, 1, 0, p);     /* what is there already */
    if (n == HTTP_INCOMPLETE) {
        Py_BEGIN_ALLOW_THREADS
        pool_blocking();                /* the loop must not wait with us */
        n = req->ops->body(req, 1, 1, p);
        Py_END_ALLOW_THREADS
    }
    if (n < 0) {
        in->bad_body = errno == EFBIG ? 413 : errno == EBADMSG ? 400 : 0;
        PyErr_SetString(PyExc_OSError, in->bad_body == 413 ? "request body too large"
                        : in->bad_body ? "malformed chunked body" : "client disconnected");
        return -1;
    }
    return n;
}

/* Read up to size bytes (all if size < 0), stopping after a newline when
 * line is set. */
static PyObject *input_take(Input *in, Py_ssize_t size, int line)
{
    char *out = NULL;
    size_t len = 0, cap = 0;
    while (size < 0 || (Py_ssize_t)len < size) {
        const char *p;
        Py_ssize_t n = input_fill(in, &p);
        if (n < 0) { free(out); return NULL; }
        if (n == 0) break;
        size_t k = (size_t)n;
        if (size >= 0 && k > (size_t)size - len) k = (size_t)size - len;
        const char *nl = line ? memchr(p, '\n', k) : NULL;
        if (nl) k = (size_t)(nl - p) + 1;
        if (!out && (nl || (size >= 0 && k == (size_t)size)))
            { in->req->ops->take(in->req, k); return PyBytes_FromStringAndSize(p, (Py_ssize_t)k); }
        if (len + k > cap) {
            cap = (len + k) * 2;
            char *b = realloc(out, cap);
            if (!b) { free(out); return PyErr_NoMemory(); }
            out = b;
        }
        memcpy(out + len, p, k);
        len += k;
        in->req->ops->take(in->req, k);
        if (nl) break;
    }
    PyObject *r = PyBytes_FromStringAndSize(out ? out : "", (Py_ssize_t)len);
    free(out);
    return r;
}

static int size_arg(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *size)
{
    *size = -1;
    if (nargs > 1) { PyErr_SetString(PyExc_TypeError, "at most one argument"); return -1; }
    if (nargs == 1 && args[0] != Py_None) {
        *size = PyLong_AsSsize_t(args[0]);
        if (*size == -1 && PyErr_Occurred()) return -1;
    }
    return 0;
}

static PyObject *input_read(Input *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size;
    return size_arg(args, nargs, &size) < 0 ? NULL : input_take(self, size, 0);
}

static PyObject *input_readline(Input *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size;
    return size_arg(args, nargs, &size) < 0 ? NULL : input_take(self, size, 1);
}

static PyObject *input_readlines(Input *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t hint, total = 0;
    if (size_arg(args, nargs, &hint) < 0) return NULL;
    PyObject *list = PyList_New(0);
    while (list) {
        PyObject *l = input_take(self, -1, 1);
        if (!l) { Py_CLEAR(list); break; }
        if (PyBytes_GET_SIZE(l) == 0) { Py_DECREF(l); break; }
        total += PyBytes_GET_SIZE(l);
        if (PyList_Append(list, l) < 0) Py_CLEAR(list);
        Py_DECREF(l);
        if (hint > 0 && total >= hint) break;
    }
    return list;
}

static PyObject *input_next(Input *self)
{
    PyObject *l = input_take(self, -1, 1);
    if (l && PyBytes_GET_SIZE(l) == 0) { Py_DECREF(l); return NULL; }
    return l;
}

static PyMethodDef input_methods[] = {
    {"read", (PyCFunction)(void (*)(void))input_read, METH_FASTCALL, NULL},
    {"readline", (PyCFunction)(void (*)(void))input_readline, METH_FASTCALL, NULL},
    {"readlines", (PyCFunction)(void (*)(void))input_readlines, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL}
};

static PyTypeObject InputType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granc.Input",
    .tp_basicsize = sizeof(Input),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)input_next,
    .tp_methods = input_methods,
};

/* ---------------------------------------------------------------------
 * wsgi.file_wrapper
 * ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *filelike;
    Py_ssize_t blksize;
} FileWrapper;

static int fw_init(FileWrapper *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"filelike", "blksize", NULL};
    PyObject *f;
    self->blksize = 8192;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|n", names, &f, &self->blksize))
        return -1;
    Py_INCREF(f);
    Py_XSETREF(self->filelike, f);
    return 0;
}

static void fw_dealloc(FileWrapper *self)
{
    Py_XDECREF(self->filelike);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *fw_next(FileWrapper *self)
{
    PyObject *b = PyObject_CallMethod(self->filelike, "read", "n", self->blksize);
    if (b && PyBytes_Check(b) && PyBytes_GET_SIZE(b) == 0) { Py_DECREF(b); return NULL; }
    return b;
}

static PyObject *fw_close(FileWrapper *self, PyObject *unused)
{
    (void)unused;
    if (PyObject_HasAttr(self->filelike, s_close))
        return PyObject_CallMethodNoArgs(self->filelike, s_close);
    Py_RETURN_NONE;
}

static PyMethodDef fw_methods[] = {
    {"close", (PyCFunction)fw_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}
};

static PyTypeObject FileWrapperType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granc.FileWrapper",
    .tp_basicsize = sizeof(FileWrapper),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)fw_init,
    .tp_dealloc = (destructor)fw_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)fw_next,
    .tp_methods = fw_methods,
};

/* ---------------------------------------------------------------------
 * The response: start_response, write(), and the head on the wire
 * ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    request *req;                /* NULL once the request is over */
    PyObject *status;            /* the status line the app gave (str) */
    PyObject *headers;           /* the app's header list */
    int code;                    /* the status code */
    int started;                 /* start_response was called */
    int head_sent;
} Resp;

static void resp_dealloc(Resp *self)
{
    Py_XDECREF(self->status);
    Py_XDECREF(self->headers);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject RespType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granc.Response",
    .tp_basicsize = sizeof(Resp),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)resp_dealloc,
};

static PyObject *start_response(Resp *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "start_response() takes 2 or 3 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    PyObject *status = args[0], *headers = args[1], *exc_info = nargs > 2 ? args[2] : Py_None;
    if (exc_info != Py_None) {
        if (self->head_sent) {          /* too late to change: re-raise */
            PyObject *t, *v, *tb;
            if (!PyArg_ParseTuple(exc_info, "OOO", &t, &v, &tb)) return NULL;
            Py_INCREF(t); Py_INCREF(v); Py_INCREF(tb);
            PyErr_Restore(t, v, tb == Py_None ? NULL : tb);
            return NULL;
        }
    } else if (self->started) {
        PyErr_SetString(PyExc_RuntimeError, "start_response called twice without exc_info");
        return NULL;
    }
    const char *s;
    Py_ssize_t n;
    if (py_text(status, &s, &n) < 0) return NULL;
    if (n < 3 || s[0] < '1' || s[0] > '9' || s[1] < '0' || s[1] > '9' ||
        s[2] < '0' || s[2] > '9' || (n > 3 && s[3] != ' ') || !http_value_ok(s, (size_t)n)) {
        PyErr_Format(PyExc_ValueError, "invalid status %R", status);
        return NULL;
    }
    if (!PyList_Check(headers)) {
        PyErr_SetString(PyExc_TypeError, "headers must be a list");
        return NULL;
    }
    self->code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    Py_INCREF(status);
    Py_XSETREF(self->status, status);
    Py_INCREF(headers);
    Py_XSETREF(self->headers, headers);
    self->started = 1;
    return PyObject_GetAttr((PyObject *)self, s_write);
}




/* Write v[0,n) holding no GIL.  Returns 0, or 1 when the client failed. */
static int send_out(request *req, const struct iovec *v, int n)
{
    ssize_t rc;
    Py_BEGIN_ALLOW_THREADS
    rc = req->ops->write(req, v, n, 1);
    Py_END_ALLOW_THREADS
    return rc < 0 ? 1 : 0;
}

/* The WSGI head: the status line as the app wrote it. */
static int build_head(Resp *r, int64_t total, struct iovec *v)
{
    const char *s;
    Py_ssize_t n;
    if (!r->started) {
        PyErr_SetString(PyExc_RuntimeError, "start_response was not called");
        return -1;
    }
    if (py_text(r->status, &s, &n) < 0) return -1;
    r->req->res.code = r->code;
    if (py_resp_head(r->req, n > 4 ? s + 4 : NULL, n > 4 ? (size_t)n - 4 : 0, r->headers,
                     total, v) < 0)
        return -1;
    r->head_sent = 1;
    return 0;
}

/* Send body bytes (and the head first, if it has not left), framed as
 * the head decided.  Returns 0, 1 when the client failed (the caller
 * just stops), -1 with an exception set. */
static int send_body(Resp *r, const char *p, size_t n, int64_t total)
{
    struct iovec v[4], pre, post;
    int iv = 0;
    if (!r->req) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on a finished request");
        return -1;
    }
    if (!r->head_sent && build_head(r, total, &v[iv++]) < 0) return -1;
    size_t k = r->req->ops->frame(r->req, n, &pre, &post);
    if (k < n && !r->req->res.nobody) r->req->res.keep = 0;   /* more than announced */
    if (pre.iov_len) v[iv++] = pre;
    if (k) v[iv++] = (struct iovec){ (void *)p, k };
    if (post.iov_len) v[iv++] = post;
    return iv ? send_out(r->req, v, iv) : 0;
}

static PyObject *resp_write(Resp *self, PyObject *data)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    int rc = send_body(self, view.buf, (size_t)view.len, -1);
    PyBuffer_Release(&view);
    if (rc < 0) return NULL;
    if (rc > 0) { PyErr_SetString(PyExc_OSError, "client disconnected"); return NULL; }
    Py_RETURN_NONE;
}

static PyMethodDef resp_methods[] = {
    {"start_response", (PyCFunction)(void (*)(void))start_response, METH_FASTCALL, NULL},
    {"write", (PyCFunction)resp_write, METH_O, NULL},
    {NULL, NULL, 0, NULL}
};

/* The end of a streamed body: the head if nothing went yet (an empty
 * body has a known length), then the last chunk. */
static int end_body(Resp *r)
{
    struct iovec v = { NULL, 0 };
    int rc = r->head_sent ? 0 : send_body(r, "", 0, 0);
    if (rc == 0) r->req->ops->end(r->req, NULL, 0, &v);    /* no trailers: cannot fail */
    return rc == 0 && v.iov_len ? send_out(r->req, &v, 1) : rc;
}

/* A list or tuple of bytes: one head with Content-Length, then the items,
 * the head and the first items in one writev. */
static int send_sequence(Resp *r, PyObject *seq)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int64_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(items[i])) {
            PyErr_Format(PyExc_TypeError, "response body items must be bytes, not %.100s",
                         Py_TYPE(items[i])->tp_name);
            return -1;
        }
        total += PyBytes_GET_SIZE(items[i]);
    }
    if (r->head_sent) {                 /* write() came first: keep streaming */
        int rc = 0;
        for (Py_ssize_t i = 0; i < n && rc == 0; i++)
            rc = send_body(r, PyBytes_AS_STRING(items[i]), (size_t)PyBytes_GET_SIZE(items[i]), -1);
        return rc ? rc : end_body(r);
    }
    struct iovec v[IOV_BATCH];
    int iv = 0;
    if (build_head(r, total, &v[iv++]) < 0) return -1;
    request *req = r->req;
    for (Py_ssize_t i = 0; i < n || iv > 0; ) {
        for (; !req->res.nobody && i < n && iv <= IOV_BATCH - 3; i++) {
            struct iovec pre, post;
            size_t len = (size_t)PyBytes_GET_SIZE(items[i]);
            size_t k = req->ops->frame(req, len, &pre, &post);
            if (k < len) req->res.keep = 0;         /* more than announced */
            if (pre.iov_len) v[iv++] = pre;
            if (k) v[iv++] = (struct iovec){ PyBytes_AS_STRING(items[i]), k };
            if (post.iov_len) v[iv++] = post;
        }
        if (req->res.nobody) i = n;
        if (iv && send_out(req, v, iv)) return 1;
        iv = 0;
    }
    return 0;
}

/* A file wrapper on a regular file: sendfile from its current offset. */
static int send_file(Resp *r, FileWrapper *fw, int *done)
{
    *done = 0;
    PyObject *fno = PyObject_CallMethodNoArgs(fw->filelike, s_fileno);
    if (!fno) { PyErr_Clear(); return 0; }
    int fd = (int)PyLong_AsLong(fno);
    Py_DECREF(fno);
    struct stat st;
    off_t off;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        (off = lseek(fd, 0, SEEK_CUR)) < 0 || r->head_sent) {
        PyErr_Clear();
        return 0;                       /* not a plain file: iterate it */
    }
    /* Python's buffered reader may hold bytes already read: only a file
     * nobody has read from yet is safe to send from the descriptor. */
    PyObject *pos = PyObject_CallMethod(fw->filelike, "tell", NULL);
    if (!pos) { PyErr_Clear(); return 0; }
    long long tell = PyLong_AsLongLong(pos);
    Py_DECREF(pos);
    if (tell != (long long)off) { PyErr_Clear(); return 0; }
    *done = 1;
    int64_t size = st.st_size > off ? st.st_size - off : 0;
    if (send_body(r, "", 0, size) != 0) return -1;
    request *req = r->req;
    struct iovec pre, post;
    size_t n = req->ops->frame(req, (size_t)size, &pre, &post);
    if (n == 0) return 0;
    ssize_t rc = 0;
    Py_BEGIN_ALLOW_THREADS
    if (pre.iov_len) rc = req->ops->write(req, &pre, 1, 1);
    if (rc >= 0) rc = req->ops->file(req, fd, &off, n, 1);
    if (rc >= 0 && post.iov_len) rc = req->ops->write(req, &post, 1, 1);
    Py_END_ALLOW_THREADS
    return rc < 0 ? 1 : 0;
}

/* Iterate any other iterable, chunk by chunk. */
static int send_iter(Resp *r, PyObject *result)
{
    PyObject *it = PyObject_GetIter(result), *item;
    if (!it) return -1;
    int rc = 0;
    while (rc == 0 && (item = PyIter_Next(it))) {
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "response body items must be bytes, not %.100s",
                         Py_TYPE(item)->tp_name);
            rc = -1;
        } else if (PyBytes_GET_SIZE(item) > 0) {
            rc = send_body(r, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item), -1);
        }
        Py_DECREF(item);
    }
    Py_DECREF(it);
    if (rc == 0 && PyErr_Occurred()) rc = -1;
    return rc ? rc : end_body(r);
}

/* ---------------------------------------------------------------------
 * The environ
 * ------------------------------------------------------------------- */

static PyObject *latin1(const char *p, size_t n)
{
    return PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
}

static int set_item(PyObject *d, PyObject *k, PyObject *v)
{
    if (!v) return -1;
    int rc = PyDict_SetItem(d, k, v);
    Py_DECREF(v);
    return rc;
}

/* HTTPS: the scheme, and mod_ssl's names for what the handshake settled
 * (beyond Granian, which tells the app nothing of TLS). */
static int tls_environ(tls_conn *tls, PyObject *env)
{
    const unsigned char *der;
    size_t n;
    if (set_item(env, k_https, PyUnicode_FromString("on")) ||
        set_item(env, k_ssl_protocol, PyUnicode_FromString(tls_version(tls))) ||
        set_item(env, k_ssl_cipher, PyUnicode_FromString(tls_cipher(tls))))
        return -1;
    if (tls_client_chain(tls, &der, &n, 0) == 0) {
        PyObject *pem = der_to_pem(der, n);
        if (!pem || PyDict_SetItemString(env, "SSL_CLIENT_CERT", pem) < 0) {
            Py_XDECREF(pem);
            return -1;
        }
        Py_DECREF(pem);
    }
    return 0;
}

/* PATH_INFO: percent-decoded, latin-1, less the --url-path-prefix. */
static PyObject *path_info(slice path)
{
    char stackbuf[2048];
    char *out = path.n <= sizeof(stackbuf) ? stackbuf : malloc(path.n);
    if (!out) return PyErr_NoMemory();
    size_t n = http_pct_decode(path.p, path.n, out);
    const char *p = out;
    const char *prefix = cfg->url_path_prefix;
    size_t pl = prefix ? strlen(prefix) : 0;
    if (pl && n >= pl && !memcmp(p, prefix, pl)) { p += pl; n -= pl; }
    PyObject *r = n ? latin1(p, n) : PyUnicode_FromString(pl ? "/" : "");
    if (out != stackbuf) free(out);
    return r;
}

/* "HTTP_" + the header name upper-cased, '-' as '_'; cached. */
static PyObject *header_key(slice name)
{
    PyObject *raw = PyBytes_FromStringAndSize(name.p, (Py_ssize_t)name.n);
    if (!raw) return NULL;
    PyObject *k = PyDict_GetItemWithError(key_cache, raw);
    if (k || PyErr_Occurred()) { Py_XINCREF(k); Py_DECREF(raw); return k; }
    char buf[256];
    size_t n = name.n < sizeof(buf) - 6 ? name.n : sizeof(buf) - 6;
    memcpy(buf, "HTTP_", 5);
    for (size_t i = 0; i < n; i++) {
        char ch = name.p[i];
        buf[5 + i] = ch == '-' ? '_' : (ch >= 'a' && ch <= 'z') ? (char)(ch - 32) : ch;
    }
    k = PyUnicode_FromStringAndSize(buf, (Py_ssize_t)(n + 5));
    if (k && PyDict_GET_SIZE(key_cache) < KEY_CACHE_MAX)
        PyDict_SetItem(key_cache, raw, k);
    Py_DECREF(raw);
    return k;
}

/* SERVER_NAME (which 0) or SERVER_PORT (which 1), a new reference: the same for
 * every request on a listener, so made once per listener (under the GIL,
 * as every environ is built). */
static PyObject *server_str(const listener *ls, int which)
{
    static struct srv { const listener *ls; PyObject *s[2]; } srv[MAX_LISTENERS];
    int i = 0;
    while (i < MAX_LISTENERS && srv[i].ls && srv[i].ls != ls) i++;
    if (i < MAX_LISTENERS && srv[i].ls) return Py_NewRef(srv[i].s[which]);
    char num[8], *d = http_utoa(num + sizeof(num), (uint64_t)ls->port);
    PyObject *s[2] = { PyUnicode_FromString(ls->addr),
                       PyUnicode_FromStringAndSize(d, num + sizeof(num) - d) };
    if (!s[0] || !s[1]) { Py_XDECREF(s[0]); Py_XDECREF(s[1]); return NULL; }
    PyObject *r = Py_NewRef(s[which]);
    if (i < MAX_LISTENERS) srv[i] = (struct srv){ ls, { s[0], s[1] } };
    else { Py_DECREF(s[0]); Py_DECREF(s[1]); }
    return r;
}

static PyObject *build_environ(request *req, PyObject *input)
{
    const http_request *rq = req->head;
    PyObject *env = PyDict_Copy(base_environ);
    if (!env) return NULL;
    PyObject *m = rq->method.n == 3 && !memcmp(rq->method.p, "GET", 3) ? s_get
                : rq->method.n == 4 && !memcmp(rq->method.p, "POST", 4) ? s_post
                : rq->method.n == 4 && !memcmp(rq->method.p, "HEAD", 4) ? s_head : NULL;
    if (m) Py_INCREF(m);
    else m = latin1(rq->method.p, rq->method.n);
    char rport[8];                  /* the port without printf: a
                                       PyUnicode_FromFormat was 7 % of a
                                       hello world's instructions */
    char *rp = http_utoa(rport + sizeof(rport), (uint64_t)req->client_port);
    PyObject *proto = rq->h2 ? proto2 : rq->minor ? proto11 : proto10;
    Py_INCREF(proto);
    if (set_item(env, k_method, m) ||
        set_item(env, k_path, path_info(rq->path)) ||
        set_item(env, k_query, latin1(rq->query.p, rq->query.n)) ||
        set_item(env, k_proto, proto) ||
        set_item(env, k_sname, server_str(req->ls, 0)) ||
        set_item(env, k_sport, server_str(req->ls, 1)) ||
        set_item(env, k_raddr, PyUnicode_FromString(req->client)) ||
        set_item(env, k_rport, PyUnicode_FromStringAndSize(rp, rport + sizeof(rport) - rp)) ||
        PyDict_SetItem(env, k_input, input))
        goto fail;
    if (req->tls && tls_environ(req->tls, env) < 0) goto fail;
    if (req->secure && set_item(env, k_scheme, PyUnicode_FromString("https")))
        goto fail;                  /* TLS, or a trusted proxy's X-Forwarded-Proto */
    for (size_t i = 0; i < rq->nheaders; i++) {
        slice name = rq->headers[i].name, val = rq->headers[i].value;
        PyObject *key;
        /* "X_Forwarded_For" would pose as "X-Forwarded-For": drop it, as
         * nginx and gunicorn do */
        if (memchr(name.p, '_', name.n)) continue;
        if (http_name_is(name, "content-type")) { key = k_ctype; Py_INCREF(key); }
        else if (http_name_is(name, "content-length")) { key = k_clen; Py_INCREF(key); }
        else if (!(key = header_key(name))) goto fail;
        PyObject *v = latin1(val.p, val.n), *old;
        if (v && (old = PyDict_GetItemWithError(env, key))) {   /* repeated: join */
            PyObject *sep = PyUnicode_FromString(http_name_is(name, "cookie") ? "; " : ",");
            PyObject *joined = sep ? PyUnicode_Concat(old, sep) : NULL;
            Py_XDECREF(sep);
            Py_XSETREF(joined, joined ? PyUnicode_Concat(joined, v) : NULL);
            Py_SETREF(v, joined);
        }
        int rc = v ? PyDict_SetItem(env, key, v) : -1;
        Py_XDECREF(v);
        Py_DECREF(key);
        if (rc < 0) goto fail;
    }
    return env;
fail:
    Py_DECREF(env);
    return NULL;
}

/* ---------------------------------------------------------------------
 * Running one request
 * ------------------------------------------------------------------- */


/* Call the app and send what it returns.  Returns 0, 1 when the client
 * went away, -1 with a Python exception set. */
static int run_app(Resp *r, PyObject *env)
{
    PyObject *sr = PyObject_GetAttr((PyObject *)r, s_start_response);
    if (!sr) return -1;
    PyObject *result = PyObject_CallFunctionObjArgs(app, env, sr, NULL);
    Py_DECREF(sr);
    if (!result) return -1;
    int rc, done = 0;
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result))
        rc = send_sequence(r, result);
    else if (Py_TYPE(result) == &FileWrapperType &&
             (rc = send_file(r, (FileWrapper *)result, &done), done))
        ;
    else
        rc = send_iter(r, result);
    /* PEP 3333: close() is called whatever happened */
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);           /* HasAttr would clear the app's error */
    if (PyObject_HasAttr(result, s_close)) {
        PyObject *x = PyObject_CallMethodNoArgs(result, s_close);
        if (!x) { if (t) PyErr_Clear(); else rc = -1; }
        Py_XDECREF(x);
    }
    if (t) PyErr_Restore(t, v, tb);
    Py_DECREF(result);
    return rc;
}

void wsgi_handle(request *req)
{
    Input *in = PyObject_New(Input, &InputType);
    Resp *r = PyObject_New(Resp, &RespType);
    PyObject *env = NULL;
    int rc = -1;
    if (in && r) {
        in->req = req;
        in->bad_body = 0;
        memset((char *)r + sizeof(PyObject), 0, sizeof(*r) - sizeof(PyObject));
        r->req = req;
        env = build_environ(req, (PyObject *)in);
        if (env) rc = run_app(r, env);
    }
    if (rc < 0) {
        int bad_body = in ? in->bad_body : 0;
        if (bad_body) {                 /* our refusal, not the app's fault */
            PyErr_Clear();
            log_debug("refused a request body from %s: %d", req->client, bad_body);
            req->broken = 0;            /* answer it (the head says close) */
        } else {
            py_log_exception("Application callable raised an exception");
        }
        struct iovec v;
        if (r && !r->head_sent && !req->broken) {
            /* nothing left yet: a plain 500, and the connection may live */
            req->res.code = r->code = bad_body ? bad_body : 500;
            if (req->ops->head(req, NULL, 0, NULL, 0, 0, &v) == 0 && !send_out(req, &v, 1))
                r->head_sent = 1;
        } else {
            req->broken = 1;    /* the head is out: abort, never fake an end */
        }
    } else if (rc > 0) {
        req->broken = 1;
    }
    if (in) in->req = NULL;     /* a leaked wsgi.input must not touch req */
    if (r) r->req = NULL;       /* nor a leaked write() */
    int status = r ? r->code : 500;
    if (req->ops->take(req, 0)) {       /* the body is all read: nothing to wait for */
        req->ops->finish(req, status, 1);
    } else {
        Py_BEGIN_ALLOW_THREADS
        req->ops->finish(req, status, 1);
        Py_END_ALLOW_THREADS
    }
    if (PyErr_Occurred()) py_log_exception("Error while finishing a response");
    Py_XDECREF(env);
    Py_XDECREF((PyObject *)in);
    Py_XDECREF((PyObject *)r);
}

/* ---------------------------------------------------------------------
 * Start-up
 * ------------------------------------------------------------------- */

static int fixed(PyObject *env, const char *key, PyObject *v)
{
    return set_item(env, PyUnicode_InternFromString(key), v);
}

int wsgi_init(const config *config, void *application)
{
    cfg = config;
    app = application;
    RespType.tp_methods = resp_methods;
    if (PyType_Ready(&InputType) < 0 || PyType_Ready(&RespType) < 0 ||
        PyType_Ready(&FileWrapperType) < 0)
        return -1;
#define INTERN(var, s) if (!(var = PyUnicode_InternFromString(s))) return -1
    INTERN(s_get, "GET"); INTERN(s_post, "POST"); INTERN(s_head, "HEAD");
    INTERN(s_close, "close"); INTERN(s_fileno, "fileno"); INTERN(s_write, "write");
    INTERN(s_start_response, "start_response");
    INTERN(k_method, "REQUEST_METHOD"); INTERN(k_path, "PATH_INFO");
    INTERN(k_query, "QUERY_STRING"); INTERN(k_proto, "SERVER_PROTOCOL");
    INTERN(k_sname, "SERVER_NAME"); INTERN(k_sport, "SERVER_PORT");
    INTERN(k_raddr, "REMOTE_ADDR"); INTERN(k_rport, "REMOTE_PORT");
    INTERN(k_input, "wsgi.input"); INTERN(k_ctype, "CONTENT_TYPE");
    INTERN(k_clen, "CONTENT_LENGTH");
    INTERN(proto2, "HTTP/2"); INTERN(proto11, "HTTP/1.1"); INTERN(proto10, "HTTP/1.0");
    INTERN(k_scheme, "wsgi.url_scheme"); INTERN(k_https, "HTTPS");
    INTERN(k_ssl_protocol, "SSL_PROTOCOL"); INTERN(k_ssl_cipher, "SSL_CIPHER");
    if (!(key_cache = PyDict_New())) return -1;
    /* Granian's environ starts from os.environ, CGI-style */
    PyObject *os = PyImport_ImportModule("os"), *sys = PyImport_ImportModule("sys");
    PyObject *osenv = os ? PyObject_GetAttrString(os, "environ") : NULL;
    base_environ = PyDict_New();
    if (!osenv || !sys || !base_environ || PyDict_Update(base_environ, osenv) < 0) return -1;
    Py_DECREF(osenv);
    Py_DECREF(os);
    const char *prefix = cfg->url_path_prefix ? cfg->url_path_prefix : "";
    if (fixed(base_environ, "GATEWAY_INTERFACE", PyUnicode_FromString("CGI/1.1")) ||
        fixed(base_environ, "SERVER_SOFTWARE", PyUnicode_FromString("granc/" GRANC_VERSION)) ||
        fixed(base_environ, "SCRIPT_NAME", PyUnicode_FromString(prefix)) ||
        fixed(base_environ, "wsgi.version", Py_BuildValue("(ii)", 1, 0)) ||
        fixed(base_environ, "wsgi.url_scheme", PyUnicode_FromString("http")) ||
        fixed(base_environ, "wsgi.errors", PyObject_GetAttrString(sys, "stderr")) ||
        fixed(base_environ, "wsgi.multithread", PyBool_FromLong(cfg->blocking_threads > 1)) ||
        fixed(base_environ, "wsgi.multiprocess", PyBool_FromLong(config->workers > 1)) ||
        fixed(base_environ, "wsgi.run_once", PyBool_FromLong(0)) ||
        fixed(base_environ, "wsgi.input_terminated", PyBool_FromLong(1)) ||
        fixed(base_environ, "wsgi.file_wrapper", (Py_INCREF(&FileWrapperType),
                                                   (PyObject *)&FileWrapperType)))
        return -1;
    /* request keys that os.environ may also hold (HTTP_*, SSL_*, HTTPS,
     * CONTENT_*) must not pose as facts of a request that lacks them */
    PyObject *keys = PyDict_Keys(base_environ);
    for (Py_ssize_t i = 0; keys && i < PyList_GET_SIZE(keys); i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        const char *ks = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
        if (ks && (!strncmp(ks, "HTTP_", 5) || !strncmp(ks, "SSL_", 4) ||
                   !strcmp(ks, "HTTPS") || !strcmp(ks, "CONTENT_TYPE") ||
                   !strcmp(ks, "CONTENT_LENGTH")))
            PyDict_DelItem(base_environ, k);      /* also "httpoxy": HTTP_PROXY */
    }
    Py_XDECREF(keys);
    PyErr_Clear();
    Py_DECREF(sys);
    return 0;
}
