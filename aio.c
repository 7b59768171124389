/* aio.c -- the bridge to asyncio, for ASGI and RSGI.
 *
 * A short Python module (runner_src) picks the loop (uvloop or asyncio),
 * runs the lifespan protocol, makes granc's epoll/kqueue descriptor one
 * reader of the loop (poll: wk_poll runs granc's events) and waits for the
 * drain.  From C: the loop's objects once it runs (futures, request
 * tasks), and Ready, an awaitable that is already done: receive() and
 * send() return one when they can answer at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "aio.h"
#include "log.h"
#include "py.h"
#include "worker.h"

PyObject *aio_create_future;             /* loop.create_future */
PyObject *aio_lifespan_state;            /* shared by the requests, copied */
static PyObject *loop_create_task, *loop_task_factory;
static PyObject *loop_obj, *task_type, *task_kwnames, *task_name;
static PyObject *cancelled_error, *m_exception;      /* for aio_task_raise */

static void ready_dealloc(Ready *self)
{
    Py_XDECREF(self->value);
    PyObject_Free(self);
}

static PyObject *ready_await(Ready *self)
{
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *ready_next(Ready *self)
{
    if (self->value && self->value != Py_None)
        PyErr_SetObject(PyExc_StopIteration, self->value);   /* never a tuple */
    return NULL;
}

static PyAsyncMethods ready_async = { .am_await = (unaryfunc)ready_await };

PyTypeObject aio_ready_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granc.Ready",
    .tp_basicsize = sizeof(Ready),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)ready_dealloc,
    .tp_as_async = &ready_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)ready_next,
};

/* aio_yield: one bare yield (a Task reschedules itself at once), then done. */
typedef struct {
    PyObject_HEAD
    int yielded;
} Yield;

static PyObject *yield_next(Yield *self)
{
    if (self->yielded) return NULL;             /* StopIteration(None) */
    self->yielded = 1;
    Py_RETURN_NONE;
}

static PyTypeObject yield_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "granc.Yield",
    .tp_basicsize = sizeof(Yield),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)PyObject_Free,
    .tp_as_async = &ready_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)yield_next,
};

PyObject *aio_yield(void)
{
    Yield *y = PyObject_New(Yield, &yield_type);
    if (y) y->yielded = 0;
    return (PyObject *)y;
}

/* loop.create_task(coro).  Without a task factory that is Task(coro,
 * loop=loop), but create_task first names the task "Task-<n>" with a
 * printf, 6 % of a hello-world request's instructions: request tasks are
 * all named "granc.request" instead. */
PyObject *aio_new_task(PyObject *coro)
{
    PyObject *f = PyObject_CallNoArgs(loop_task_factory);
    if (!f) return NULL;
    if (f != Py_None) {
        Py_DECREF(f);
        return PyObject_CallOneArg(loop_create_task, coro);
    }
    Py_DECREF(f);
    PyObject *args[] = { coro, loop_obj, task_name };
    return PyObject_Vectorcall(task_type, args, 1, task_kwnames);
}

/* Resolve the future in *fut with None, unless it is done already. */
static void set_done(PyObject **fut)
{
    PyObject *f = *fut, *done, *r = NULL;
    *fut = NULL;
    done = PyObject_CallMethod(f, "done", NULL);
    if (done == Py_False) r = PyObject_CallMethod(f, "set_result", "O", Py_None);
    if (!done || (done == Py_False && !r)) PyErr_Clear();
    Py_XDECREF(r);
    Py_XDECREF(done);
    Py_DECREF(f);
}

#include "py/runner.py.h"  /* runner_src[]: py/runner.py, made by the Makefile */

/* The reader callback of granc's loop descriptor (and a 0.5 s tick):
 * run granc's events; once a stop has drained the worker, say so. */
static PyObject *drained_fut;
static PyObject *py_poll(PyObject *self, PyObject *unused)
{
    (void)self; (void)unused;
    if (wk_poll() && drained_fut)
        set_done(&drained_fut);
    if (PyErr_Occurred()) py_log_exception("granc: error in the event loop");
    return PyBool_FromLong(wk_stopping());    /* the tick quickens while stopping */
}

static PyObject *py_listen(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *state, *loop, *done;
    if (!PyArg_ParseTuple(args, "OOO", &state, &loop, &done)) return NULL;
    Py_XSETREF(drained_fut, Py_NewRef(done));
    Py_INCREF(state);
    Py_XSETREF(aio_lifespan_state, state);
    aio_create_future = PyObject_GetAttrString(loop, "create_future");
    loop_create_task = PyObject_GetAttrString(loop, "create_task");
    loop_task_factory = PyObject_GetAttrString(loop, "get_task_factory");
    PyObject *aio = PyImport_ImportModule("asyncio");
    task_type = aio ? PyObject_GetAttrString(aio, "Task") : NULL;
    cancelled_error = aio ? PyObject_GetAttrString(aio, "CancelledError") : NULL;
    Py_XDECREF(aio);
    m_exception = PyUnicode_InternFromString("exception");
    loop_obj = Py_NewRef(loop);
    task_kwnames = Py_BuildValue("(ss)", "loop", "name");
    task_name = PyUnicode_InternFromString("granc.request");
    if (!aio_create_future || !loop_create_task || !loop_task_factory || !task_type ||
        !task_kwnames || !task_name || !cancelled_error || !m_exception)
        return NULL;
    wk_listen();
    Py_RETURN_NONE;
}

static PyObject *py_log(PyObject *self, PyObject *args)
{
    (void)self;
    int level;
    const char *msg;
    if (!PyArg_ParseTuple(args, "is", &level, &msg)) return NULL;
    log_msg(level, "%s", msg);
    Py_RETURN_NONE;
}

static PyMethodDef poll_def = {"poll", py_poll, METH_NOARGS, NULL};
static PyMethodDef listen_def = {"listen", py_listen, METH_VARARGS, NULL};
static PyMethodDef log_def = {"log", py_log, METH_VARARGS, NULL};

int aio_run(PyObject *app, int lifespan, int loop_fd, const char *loop_kind, PyObject *init,
            PyObject *fini)
{
    PyObject *g = PyDict_New(), *r = NULL;
    if (g && PyDict_SetItemString(g, "__builtins__", PyEval_GetBuiltins()) == 0)
        r = PyRun_String(runner_src, Py_file_input, g, g);
    PyObject *res = NULL;
    if (r) {
        PyObject *poll = PyCFunction_New(&poll_def, NULL);
        PyObject *listen = PyCFunction_New(&listen_def, NULL);
        PyObject *log = PyCFunction_New(&log_def, NULL);
        PyObject *run = PyDict_GetItemString(g, "run");
        if (poll && listen && log && run)
            res = PyObject_CallFunction(run, "OiiOOOsOO", app, lifespan, loop_fd, poll, listen,
                                        log, loop_kind, init ? init : Py_None,
                                        fini ? fini : Py_None);
        Py_XDECREF(poll); Py_XDECREF(listen); Py_XDECREF(log);
    }
    Py_XDECREF(r);
    Py_XDECREF(g);
    if (!res) {
        py_log_exception("granc: the worker failed");
        return WK_EXIT_LOAD;
    }
    int rc = (int)PyLong_AsLong(res);
    Py_DECREF(res);
    return rc;
}

/* One call (Task.exception() raises CancelledError for a cancelled task):
 * cancelled() and exception() by name each cost more than the rest of
 * the done callback (~2,900 instructions a request, callgrind). */
void aio_task_raise(PyObject *task)
{
    PyObject *exc = PyObject_CallMethodNoArgs(task, m_exception);
    if (!exc) {
        if (PyErr_ExceptionMatches(cancelled_error)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_RuntimeError, "the application task was cancelled");
        }
    } else if (exc != Py_None) {
        Py_INCREF(Py_TYPE(exc));
        PyErr_Restore((PyObject *)Py_TYPE(exc), exc, PyException_GetTraceback(exc));
    } else {
        Py_DECREF(exc);
    }
}

int aio_init(void)
{
    if (PyType_Ready(&aio_ready_type) < 0 || PyType_Ready(&yield_type) < 0) return -1;
    aio_lifespan_state = PyDict_New();
    return aio_lifespan_state ? 0 : -1;
}
