/* py.c -- the embedded interpreter.
 *
 * Start-up (PEP 587), loading the application the way Granian resolves its
 * target, --log-config (Python's logging takes granc's lines), tracebacks
 * into granc's log, and the PEM conversion both interfaces offer apps.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include "py.h"
#include "log.h"

/* Granian's target resolution (granian/_internal.py), in Python because
 * it is Python's import machinery that it drives. */
#include "py/loader.py.h"  /* loader_src[]: py/loader.py, made by the Makefile */

/* PEP 587 start-up.  $VIRTUAL_ENV decides sys.prefix the way `python`
 * does: we claim to be its bin/python, so CPython finds pyvenv.cfg. */
void py_start(void)
{
    PyConfig pc;
    PyConfig_InitPythonConfig(&pc);
    pc.install_signal_handlers = 0;
    pc.parse_argv = 0;
    pc.buffered_stdio = 0;
    char exe[PATH_MAX];
    const char *venv = getenv("VIRTUAL_ENV");
    if (venv && *venv)
        snprintf(exe, sizeof(exe), "%s/bin/python", venv);
    else
        snprintf(exe, sizeof(exe), "%s", GRANC_PYTHON);
    char *argv[] = { "granc", NULL };
    PyStatus st = PyConfig_SetBytesString(&pc, &pc.program_name, exe);
    if (!PyStatus_Exception(st))
        st = PyConfig_SetBytesString(&pc, &pc.executable, exe);
    if (!PyStatus_Exception(st))
        st = PyConfig_SetBytesArgv(&pc, 1, argv);
    if (!PyStatus_Exception(st))
        st = Py_InitializeFromConfig(&pc);
    PyConfig_Clear(&pc);
    if (PyStatus_Exception(st)) {
        log_error("Python could not start: %s", st.err_msg ? st.err_msg : "?");
        exit(WK_EXIT_LOAD);
    }
}

PyObject *py_load_app(const config *cfg)
{
    PyObject *globals = PyDict_New(), *app = NULL;
    if (!globals) return NULL;
    PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins());
    PyObject *r = PyRun_String(loader_src, Py_file_input, globals, globals);
    if (r) {
        Py_DECREF(r);
        PyObject *load = PyDict_GetItemString(globals, "load");
        app = PyObject_CallFunction(load, "siz", cfg->target, cfg->factory,
                                    cfg->working_dir);
    }
    Py_DECREF(globals);
    return app;
}

/* --log-config, as Granian does it. */
#include "py/logconf.py.h" /* logconf_src[]: py/logconf.py, made by the Makefile */

static PyObject *py_loggers[2];  /* _granian, granian.access */

/* A finished line into Python's logging, from any thread. */
static void py_log_sink(int level, int access, const char *line, size_t n)
{
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *msg = PyUnicode_DecodeUTF8(line, (Py_ssize_t)n, "backslashreplace");
    PyObject *r = msg ? PyObject_CallMethod(py_loggers[access], "log", "iO", level, msg) : NULL;
    if (!r) PyErr_Clear();      /* a broken handler must not break the server */
    Py_XDECREF(r);
    Py_XDECREF(msg);
    PyGILState_Release(g);
}

int py_log_config(const config *cfg)
{
    PyObject *g = PyDict_New(), *r = NULL, *pair = NULL;
    if (!g) return -1;
    PyDict_SetItemString(g, "__builtins__", PyEval_GetBuiltins());
    if ((r = PyRun_String(logconf_src, Py_file_input, g, g)))
        pair = PyObject_CallFunction(PyDict_GetItemString(g, "setup"), "sii",
                                     cfg->log_config, cfg->log_level, cfg->log);
    Py_XDECREF(r);
    Py_DECREF(g);
    if (!pair || !PyArg_ParseTuple(pair, "OO", &py_loggers[0], &py_loggers[1])) {
        Py_XDECREF(pair);
        return -1;
    }
    Py_INCREF(py_loggers[0]);
    Py_INCREF(py_loggers[1]);
    Py_DECREF(pair);
    log_set_sink(py_log_sink);
    return 0;
}

/* Log the pending Python exception with its traceback, and clear it. */
void py_log_exception(const char *what)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (!tb && v) tb = PyException_GetTraceback(v);
    PyObject *mod = PyImport_ImportModule("traceback"), *lines = NULL, *text = NULL;
    if (mod)
        lines = PyObject_CallMethod(mod, "format_exception", "OOO", t ? t : Py_None,
                                    v ? v : Py_None, tb ? tb : Py_None);
    if (lines) text = PyUnicode_Join(PyUnicode_FromString(""), lines);
    const char *s = text ? PyUnicode_AsUTF8(text) : NULL;
    log_error("%s\n%s", what, s ? s : "(no traceback)");
    PyErr_Clear();
    Py_XDECREF(text); Py_XDECREF(lines); Py_XDECREF(mod);
    Py_XDECREF(t); Py_XDECREF(v); Py_XDECREF(tb);
}

/* A DER certificate as PEM text (str). */
PyObject *der_to_pem(const unsigned char *der, size_t n)
{
    PyObject *b64 = PyImport_ImportModule("base64"), *enc = NULL, *r = NULL;
    if (b64) enc = PyObject_CallMethod(b64, "encodebytes", "y#", der, (Py_ssize_t)n);
    if (enc) r = PyUnicode_FromFormat("-----BEGIN CERTIFICATE-----\n%s-----END CERTIFICATE-----\n",
                                      PyBytes_AS_STRING(enc));
    Py_XDECREF(b64);
    Py_XDECREF(enc);
    return r;
}

int py_fields_get(py_fields *pf, PyObject *headers, size_t room)
{
    pf->f = pf->stack;
    pf->n = 0;
    pf->seq = NULL;
    if (headers && !(pf->seq = PySequence_Fast(headers, "headers must be a list"))) return -1;
    size_t n = pf->seq ? (size_t)PySequence_Fast_GET_SIZE(pf->seq) : 0;
    if (n + room > PY_FIELDS_STACK && !(pf->f = PyMem_Malloc(sizeof(*pf->f) * (n + room)))) {
        pf->f = pf->stack;
        py_fields_free(pf);
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        Py_ssize_t kn, vn;
        if (py_header(PySequence_Fast_GET_ITEM(pf->seq, (Py_ssize_t)i), &k, &kn, &v, &vn) < 0) {
            py_fields_free(pf);
            return -1;
        }
        pf->f[room + i] = (http_header){ { k, (size_t)kn }, { v, (size_t)vn } };
    }
    pf->n = room + n;
    return 0;
}

void py_fields_free(py_fields *pf)
{
    if (pf->f != pf->stack) PyMem_Free(pf->f);
    Py_CLEAR(pf->seq);
}

int py_head(request *r, const char *reason, size_t rn, const http_header *f, size_t nf,
            int64_t total, struct iovec *out)
{
    if (r->ops->head(r, reason, rn, f, nf, total, out) == 0) return 0;
    if (errno == EINVAL) PyErr_SetString(PyExc_ValueError, "invalid Content-Length header");
    else if (errno == E2BIG) PyErr_SetString(PyExc_ValueError, "response head too large");
    else PyErr_NoMemory();
    return -1;
}

int py_resp_head(request *r, const char *reason, size_t rn, PyObject *headers, int64_t total,
                 struct iovec *out)
{
    py_fields pf;
    if (py_fields_get(&pf, headers, 0) < 0) return -1;
    int rc = py_head(r, reason, rn, pf.f, pf.n, total, out);
    py_fields_free(&pf);
    return rc;
}
