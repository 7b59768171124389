/* rsgi_scope.c -- the RSGI scope and its headers object.
 *
 * The scope copies what it needs out of the request into one block: apps
 * keep it after the response, when the connection has moved on to the
 * next request.  Its attributes, and the header names and values, become
 * Python strings only when the app reads them: hello world reads none.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include "asgi_int.h"
#include "http.h"
#include "net.h"
#include "py.h"
#include "rsgi.h"

static PyObject *s_http, *s_ws, *s_version, *s_v11, *s_v10, *s_v2, *s_http_scheme, *s_https_scheme;

typedef struct { uint32_t o, n; } span;   /* a piece of Scope.mem */

typedef struct {
    PyObject_HEAD
    char *mem;                   /* method, path, query, authority, headers */
    span method, path, query, authority;
    span (*h)[2];                /* header names (lower case) and values */
    size_t nh;
    const listener *ls;
    char client[PROXY_ADDR_MAX];
    int client_port;
    int ws, minor, secure;
} Scope;

typedef struct {
    PyObject_HEAD
    Scope *s;
} Headers;

static PyTypeObject ScopeType, HeadersType;

static void scope_dealloc(Scope *s)
{
    PyMem_Free(s->mem);
    PyObject_Free(s);
}

static void headers_dealloc(Headers *h)
{
    Py_DECREF(h->s);
    PyObject_Free(h);
}

static span put(char **w, char *base, const char *p, size_t n)
{
    if (n) memcpy(*w, p, n);
    span sp = { (uint32_t)(*w - base), (uint32_t)n };
    *w += n;
    return sp;
}

PyObject *rsgi_scope(request *r, int ws)
{
    const http_request *rq = r->head;
    size_t need = rq->method.n + rq->path.n + rq->query.n + rq->authority.n;
    for (size_t i = 0; i < rq->nheaders; i++)
        need += rq->headers[i].name.n + rq->headers[i].value.n;
    need += sizeof(span[2]) * rq->nheaders;
    Scope *s = PyObject_New(Scope, &ScopeType);
    if (!s) return NULL;
    if (!(s->mem = PyMem_Malloc(need ? need : 1))) {
        PyObject_Free(s);
        return PyErr_NoMemory();
    }
    /* the header table first: it wants the block's alignment */
    s->h = (span (*)[2])s->mem;
    s->nh = rq->nheaders;
    char *w = s->mem + sizeof(span[2]) * rq->nheaders;
    s->method = put(&w, s->mem, rq->method.p, rq->method.n);
    s->path = put(&w, s->mem, rq->path.p, rq->path.n);
    s->query = put(&w, s->mem, rq->query.p, rq->query.n);
    s->authority = put(&w, s->mem, rq->authority.p, rq->authority.n);
    for (size_t i = 0; i < rq->nheaders; i++) {
        slice nm = rq->headers[i].name, v = rq->headers[i].value;
        s->h[i][0] = put(&w, s->mem, nm.p, nm.n);
        for (size_t j = 0; j < nm.n; j++) {
            char c = s->mem[s->h[i][0].o + j];
            if (c >= 'A' && c <= 'Z') s->mem[s->h[i][0].o + j] = (char)(c + 32);
        }
        s->h[i][1] = put(&w, s->mem, v.p, v.n);
    }
    s->ls = r->ls;
    size_t cn = strnlen(r->client, sizeof(s->client) - 1);     /* (no printf per request) */
    memcpy(s->client, r->client, cn);
    s->client[cn] = '\0';
    s->client_port = r->client_port;
    s->ws = ws;
    s->minor = rq->h2 ? 2 : rq->minor;      /* 2: HTTP/2 */
    s->secure = r->secure;
    return (PyObject *)s;
}

static PyObject *text(Scope *s, span sp)
{
    return PyUnicode_DecodeLatin1(s->mem + sp.o, sp.n, NULL);
}

/* "ip:port" as Granian writes a socket address ("[ip]:port" for IPv6);
 * a Unix socket is its path (the client's: "", it has none). */
static PyObject *sockaddr_str(const char *ip, int port, int family)
{
    if (family == AF_UNIX) return PyUnicode_FromString(ip);
    return PyUnicode_FromFormat(strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, port);
}

static PyObject *sc_proto(Scope *s, void *c) { (void)c; return Py_NewRef(s->ws ? s_ws : s_http); }
static PyObject *sc_version(Scope *s, void *c) { (void)c; (void)s; return Py_NewRef(s_version); }
static PyObject *sc_http_version(Scope *s, void *c) { (void)c; return Py_NewRef(s->minor == 2 ? s_v2 : s->minor ? s_v11 : s_v10); }
static PyObject *sc_scheme(Scope *s, void *c)
{
    (void)c;    /* RSGI says http or https, for websockets too */
    return Py_NewRef(s->secure ? s_https_scheme : s_http_scheme);
}
static PyObject *sc_method(Scope *s, void *c) { (void)c; return text(s, s->method); }
static PyObject *sc_query(Scope *s, void *c) { (void)c; return text(s, s->query); }
static PyObject *sc_server(Scope *s, void *c)
{
    (void)c;
    return sockaddr_str(s->ls->addr, s->ls->port, s->ls->family);
}
static PyObject *sc_client(Scope *s, void *c)
{
    (void)c;
    return sockaddr_str(s->client, s->client_port, s->ls->family);
}
/* Only an absolute-form target has one on HTTP/1 (Granian: uri.authority()). */
static PyObject *sc_authority(Scope *s, void *c)
{
    (void)c;
    if (!s->authority.n) Py_RETURN_NONE;
    return text(s, s->authority);
}
/* Percent-decoded, invalid UTF-8 replaced (Granian: decode_utf8_lossy). */
static PyObject *sc_path(Scope *s, void *c)
{
    (void)c;
    char stackbuf[2048];
    char *dec = s->path.n <= sizeof(stackbuf) ? stackbuf : PyMem_Malloc(s->path.n);
    if (!dec) return PyErr_NoMemory();
    size_t dn = http_pct_decode(s->mem + s->path.o, s->path.n, dec);
    PyObject *p = PyUnicode_DecodeUTF8(dec, (Py_ssize_t)dn, "replace");
    if (dec != stackbuf) PyMem_Free(dec);
    return p;
}
/* A view of s's headers, new at each access: kept in s, it would make a
 * reference cycle (s -> headers -> s) that neither type's GC could break. */
static PyObject *sc_headers(Scope *s, void *c)
{
    (void)c;
    Headers *h = PyObject_New(Headers, &HeadersType);
    if (h) h->s = (Scope *)Py_NewRef(s);
    return (PyObject *)h;
}

static PyGetSetDef scope_getset[] = {
    {"proto", (getter)sc_proto, NULL, NULL, NULL},
    {"rsgi_version", (getter)sc_version, NULL, NULL, NULL},
    {"http_version", (getter)sc_http_version, NULL, NULL, NULL},
    {"server", (getter)sc_server, NULL, NULL, NULL},
    {"client", (getter)sc_client, NULL, NULL, NULL},
    {"scheme", (getter)sc_scheme, NULL, NULL, NULL},
    {"method", (getter)sc_method, NULL, NULL, NULL},
    {"path", (getter)sc_path, NULL, NULL, NULL},
    {"query_string", (getter)sc_query, NULL, NULL, NULL},
    {"authority", (getter)sc_authority, NULL, NULL, NULL},
    {"headers", (getter)sc_headers, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ScopeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granian._granian.RSGIHTTPScope",
    .tp_basicsize = sizeof(Scope),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)scope_dealloc,
    .tp_getset = scope_getset,
};

/* Header i's name equal to key, ASCII case-insensitively (names are
 * stored in lower case). */
static int name_is(Scope *s, size_t i, const char *k, Py_ssize_t kn)
{
    span nm = s->h[i][0];
    if (nm.n != (size_t)kn) return 0;
    for (Py_ssize_t j = 0; j < kn; j++) {
        char c = k[j] >= 'A' && k[j] <= 'Z' ? (char)(k[j] + 32) : k[j];
        if (s->mem[nm.o + j] != c) return 0;
    }
    return 1;
}

/* The first header named key from index from on, or -1; -2 with an
 * exception when key is not text. */
static Py_ssize_t find(Scope *s, PyObject *key, size_t from)
{
    const char *k;
    Py_ssize_t kn;
    if (!PyUnicode_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "header names are str");
        return -2;
    }
    if (py_text(key, &k, &kn) < 0) { PyErr_Clear(); return -1; }   /* not latin-1: none */
    for (size_t i = from; i < s->nh; i++)
        if (name_is(s, i, k, kn)) return (Py_ssize_t)i;
    return -1;
}

/* Whether header i's name appeared before i (keys() lists each once). */
static int seen(Scope *s, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (s->h[j][0].n == s->h[i][0].n &&
            !memcmp(s->mem + s->h[j][0].o, s->mem + s->h[i][0].o, s->h[i][0].n))
            return 1;
    return 0;
}

static PyObject *hd_get(Headers *h, PyObject *const *args, Py_ssize_t n)
{
    if (n < 1 || n > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, default=None)");
        return NULL;
    }
    Py_ssize_t i = find(h->s, args[0], 0);
    if (i == -2) return NULL;
    if (i < 0) return Py_NewRef(n > 1 ? args[1] : Py_None);
    return text(h->s, h->s->h[i][1]);
}

static PyObject *hd_get_all(Headers *h, PyObject *key)
{
    PyObject *l = PyList_New(0);
    for (Py_ssize_t i = 0; l && (i = find(h->s, key, (size_t)i)) >= 0; i++) {
        PyObject *v = text(h->s, h->s->h[i][1]);
        if (!v || PyList_Append(l, v) < 0) Py_CLEAR(l);
        Py_XDECREF(v);
    }
    if (l && PyErr_Occurred()) Py_CLEAR(l);
    return l;
}

/* keys (each name once), values or items, in the request's order. */
enum { KEYS, VALUES, ITEMS };
static PyObject *listing(Headers *h, int what)
{
    Scope *s = h->s;
    PyObject *l = PyList_New(0);
    for (size_t i = 0; l && i < s->nh; i++) {
        if (what == KEYS && seen(s, i)) continue;
        PyObject *v = what == KEYS ? text(s, s->h[i][0])
                    : what == VALUES ? text(s, s->h[i][1])
                    : Py_BuildValue("(NN)", text(s, s->h[i][0]), text(s, s->h[i][1]));
        if (!v || PyList_Append(l, v) < 0) Py_CLEAR(l);
        Py_XDECREF(v);
    }
    return l;
}
static PyObject *hd_keys(Headers *h, PyObject *u) { (void)u; return listing(h, KEYS); }
static PyObject *hd_values(Headers *h, PyObject *u) { (void)u; return listing(h, VALUES); }
static PyObject *hd_items(Headers *h, PyObject *u) { (void)u; return listing(h, ITEMS); }

static PyObject *hd_getitem(Headers *h, PyObject *key)
{
    Py_ssize_t i = find(h->s, key, 0);
    if (i == -2) return NULL;
    if (i < 0) { PyErr_SetObject(PyExc_KeyError, key); return NULL; }
    return text(h->s, h->s->h[i][1]);
}

static int hd_contains(Headers *h, PyObject *key)
{
    Py_ssize_t i = find(h->s, key, 0);
    return i == -2 ? -1 : i >= 0;
}

static Py_ssize_t hd_len(Headers *h)
{
    Py_ssize_t n = 0;
    for (size_t i = 0; i < h->s->nh; i++) n += !seen(h->s, i);
    return n;
}

static PyObject *hd_iter(Headers *h)
{
    PyObject *k = listing(h, KEYS), *it = k ? PyObject_GetIter(k) : NULL;
    Py_XDECREF(k);
    return it;
}

static PyMethodDef headers_methods[] = {
    {"get", (PyCFunction)(void (*)(void))hd_get, METH_FASTCALL, NULL},
    {"get_all", (PyCFunction)hd_get_all, METH_O, NULL},
    {"keys", (PyCFunction)hd_keys, METH_NOARGS, NULL},
    {"values", (PyCFunction)hd_values, METH_NOARGS, NULL},
    {"items", (PyCFunction)hd_items, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};
static PyMappingMethods headers_mapping = { .mp_length = (lenfunc)hd_len,
                                            .mp_subscript = (binaryfunc)hd_getitem };
static PySequenceMethods headers_seq = { .sq_contains = (objobjproc)hd_contains };

static PyTypeObject HeadersType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granian._granian.RSGIHeaders",
    .tp_basicsize = sizeof(Headers),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)headers_dealloc,
    .tp_methods = headers_methods,
    .tp_as_mapping = &headers_mapping,
    .tp_as_sequence = &headers_seq,
    .tp_iter = (getiterfunc)hd_iter,
};

int rsgi_scope_init(PyObject *mod)
{
    INTERN(s_http, "http"); INTERN(s_ws, "ws"); INTERN(s_version, "1.6");
    INTERN(s_v11, "1.1"); INTERN(s_v10, "1"); INTERN(s_v2, "2"); INTERN(s_http_scheme, "http");
    INTERN(s_https_scheme, "https");
    if (PyType_Ready(&ScopeType) < 0 || PyType_Ready(&HeadersType) < 0) return -1;
    return PyModule_AddObjectRef(mod, "RSGIHeaders", (PyObject *)&HeadersType) < 0 ||
           PyModule_AddObjectRef(mod, "RSGIHTTPScope", (PyObject *)&ScopeType) < 0 ? -1 : 0;
}
