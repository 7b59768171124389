/* py.h -- the embedded interpreter: start-up, the application, the log
 * bridge, and the helpers both Python interfaces (wsgi.c, asgi.c) share.
 *
 * Include after <Python.h>.  py_text and py_header are inline: they run
 * for every response header.
 */
#ifndef PY_H
#define PY_H

#include "granc.h"
#include "http.h"
#include "req.h"

/* PEP 587 start-up; exits with WK_EXIT_LOAD if Python cannot start. */
void py_start(void);
/* Granian's target resolution: cfg->target, --factory, --working-dir.
 * A new reference, or NULL with an exception set. */
PyObject *py_load_app(const config *cfg);
/* --log-config: Python's logging takes granc's log lines; -1 with an
 * exception set if the configuration fails. */
int py_log_config(const config *cfg);
/* Log the pending Python exception with its traceback, and clear it. */
void py_log_exception(const char *what);
/* Python (name, value) pairs as response fields, each checked by
 * py_header, after room fields left free at the front for the caller's
 * own (headers NULL: none).  They point into the pairs: free
 * (py_fields_free) once used. */
#define PY_FIELDS_STACK 32          /* fields converted without malloc */
typedef struct py_fields {
    PyObject *seq;
    http_header *f;
    size_t n;
    http_header stack[PY_FIELDS_STACK];
} py_fields;
int py_fields_get(py_fields *pf, PyObject *headers, size_t room);
void py_fields_free(py_fields *pf);
/* r's response head (r->ops->head), its failure as a Python exception;
 * py_resp_head from a Python list of (name, value) pairs.  -1 with an
 * exception set. */
int py_head(request *r, const char *reason, size_t rn, const http_header *f, size_t nf,
            int64_t total, struct iovec *out);
int py_resp_head(request *r, const char *reason, size_t rn, PyObject *headers, int64_t total,
                 struct iovec *out);
/* A DER certificate as PEM text (str), for apps that want the client's. */
PyObject *der_to_pem(const unsigned char *der, size_t n);

/* latin-1 bytes of a str (or bytes) without copying. */
static inline int py_text(PyObject *o, const char **p, Py_ssize_t *n)
{
    if (PyUnicode_Check(o)) {
        if (PyUnicode_READY(o) < 0) return -1;
        if (PyUnicode_KIND(o) != PyUnicode_1BYTE_KIND) {
            PyErr_SetString(PyExc_ValueError, "header text must be latin-1");
            return -1;
        }
        *p = (const char *)PyUnicode_1BYTE_DATA(o);
        *n = PyUnicode_GET_LENGTH(o);
        return 0;
    }
    if (PyBytes_Check(o)) {
        *p = PyBytes_AS_STRING(o);
        *n = PyBytes_GET_SIZE(o);
        return 0;
    }
    PyErr_SetString(PyExc_TypeError, "status and headers must be str");
    return -1;
}

/* One (name, value) pair of a response head, trailer or WebSocket
 * handshake, as text, checked by the one rule (http_is_token and
 * http_value_ok); ValueError names the header otherwise.  The pointers
 * live as long as the pair. */
static inline int py_header(PyObject *pair, const char **k, Py_ssize_t *kn, const char **v, Py_ssize_t *vn)
{
    if (!(PyTuple_Check(pair) || PyList_Check(pair)) || PySequence_Fast_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_TypeError, "a header must be a (name, value) pair");
        return -1;
    }
    PyObject *name = PySequence_Fast_GET_ITEM(pair, 0), *val = PySequence_Fast_GET_ITEM(pair, 1);
    if (py_text(name, k, kn) < 0 || py_text(val, v, vn) < 0) return -1;
    if (!http_is_token(*k, (size_t)*kn)) {
        PyErr_Format(PyExc_ValueError, "invalid header name %R", name);
        return -1;
    }
    if (!http_value_ok(*v, (size_t)*vn)) {
        PyErr_Format(PyExc_ValueError, "invalid value for header %R", name);
        return -1;
    }
    return 0;
}

#endif
